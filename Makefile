# Short targets for building, checking and testing tidegate. `make test` is the one
# command that installs everything it needs and runs every test (CI calls it).

PYTHON ?= python3
VENV ?= .venv
# Test builds skip the release profile's fat LTO: it triples link time and tests do not
# measure speed. `pip install .` and bench/ use the full release profile.
DEV_BUILD_ENV = CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
# Other CPython versions tested by `make test` when pyenv has them.
OTHER_PYTHONS ?= 3.9 3.10 3.12 3.13

.PHONY: soak slowloris system-deps dev lint rust-test stubtest pytest test test-pythons bench bench-cgi fuzz clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q "maturin>=1.9.4,<2" "pytest>=7" pytest-timeout requests flask django mypy prometheus-client
	touch $@

## system-deps: what the tests run besides Python (Debian, as root): strace for the sendfile
## test, nginx (fastcgi_pass/uwsgi_pass, and in front of two instances) and lighttpd (CGI)
## for the gateway tests, systemd-socket-activate for the socket activation test; openssl
## (test certificates), curl and h2load (nghttp2-client) for the TLS, HTTP/2 and static-file
## tests; haproxy for the PROXY protocol tests. A policy-rc.d guard keeps apt from starting
## their system services.
SYSTEM_TOOLS = strace:strace nginx:/usr/sbin/nginx haproxy:/usr/sbin/haproxy lighttpd:/usr/sbin/lighttpd systemd:systemd-socket-activate openssl:openssl curl:curl nghttp2-client:h2load
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair#*:}" >/dev/null 2>&1 || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; fi; \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      || echo "could not install$$missing: the tests that need them will be skipped"; \
	    if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  else echo "not installed:$$missing (not root or no apt-get): the tests that need them will be skipped"; fi; \
	fi

## dev: build the extension in release mode (no LTO) into .venv
dev: $(VENV)/.deps
	VIRTUAL_ENV=$(abspath $(VENV)) $(DEV_BUILD_ENV) $(VENV)/bin/maturin develop --release -q

## lint: rustfmt and clippy with warnings as errors
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## rust-test: the Rust unit tests
rust-test:
	PYO3_PYTHON=$(abspath $(VENV))/bin/python cargo test --quiet

## stubtest: the .pyi stub matches the built extension module
stubtest: dev
	$(VENV)/bin/python -m mypy.stubtest tidegate._tidegate

## pytest: the end-to-end suite against the built package
pytest: dev
	$(VENV)/bin/python -m pytest -q tests/python

## test-pythons: the end-to-end suite on every other CPython that pyenv has
test-pythons:
	bash scripts/test-pythons.sh $(OTHER_PYTHONS)

## test: everything: lint, Rust tests, stub check, the suite on 3.11 and on the other CPythons
test: system-deps $(VENV)/.deps lint rust-test stubtest pytest test-pythons

## bench: compare tidegate with bjoern, Granian, gunicorn and nginx on every scenario, in
## interleaved rounds; installs what it needs (root on Debian: wrk, nginx, libev-dev) and a
## venv in bench/.venv. Table and chart in bench/results/comparison.{md,png}. Knobs (env or
## make variables): BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_WARMUP (1), BENCH_SETTLE (5),
## BENCH_FILE_MB (100), BENCH_SCENARIOS, BENCH_SERVERS, BENCH_ARGS (see bench/README.md).
## Never run by `make test`.
bench:
	bash bench/run.sh

## bench-cgi: one CGI request through tidegate vs wsgiref.handlers.CGIHandler (whole process)
bench-cgi: dev
	$(VENV)/bin/python bench/cgi.py

## fuzz: every fuzz target under libFuzzer for FUZZ_SECONDS each (cargo-fuzz on the stable
## toolchain, hence RUSTC_BOOTSTRAP); the corpus stays in fuzz/corpus/ (see docs/fuzzing.md)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= request_head chunked_body fastcgi_codec uwsgi_codec proxy_header
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	@for target in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$target; \
	  seeds=""; [ -d fuzz/seeds/$$target ] && seeds=seeds/$$target; \
	  dict=""; [ -f fuzz/$$target.dict ] && dict=-dict=$$target.dict; \
	  echo "== $$target: $(FUZZ_SECONDS) s"; \
	  (cd fuzz && PYO3_PYTHON=$(abspath $(VENV))/bin/python RUSTC_BOOTSTRAP=1 \
	    cargo fuzz run -O $$target corpus/$$target $$seeds -- $$dict \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 -print_final_stats=1) || exit 1; \
	  echo "== $$target corpus: $$(ls fuzz/corpus/$$target | wc -l) files"; \
	done

## soak: 1,000,000 mixed requests against one worker; RSS and fds must hold (bench/soak.py)
soak: dev
	python3 bench/soak.py --python $(VENV)/bin/python

## slowloris: 1,000 trickling connections while a normal client keeps p99 < 100 ms
slowloris: dev
	python3 bench/slowloris.py --python $(VENV)/bin/python

clean:
	rm -rf $(VENV) .venv-* target
