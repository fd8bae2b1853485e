# Short targets for building, checking and testing tidegate. `make test` is the one
# command that installs everything it needs and runs every test (CI calls it).

PYTHON ?= python3
VENV ?= .venv
# Test builds skip the release profile's fat LTO: it triples link time and tests do not
# measure speed. `pip install .` and bench/ use the full release profile.
DEV_BUILD_ENV = CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
# Other CPython versions tested by `make test` when pyenv has them.
OTHER_PYTHONS ?= 3.9 3.10 3.12 3.13

.PHONY: system-deps dev lint rust-test stubtest pytest test test-pythons bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q "maturin>=1.9.4,<2" "pytest>=7" pytest-timeout requests flask django mypy
	touch $@

## system-deps: strace, which the sendfile test uses to see the syscall (Debian, as root)
system-deps:
	@command -v strace >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; \
	  else echo "strace is not installed: the sendfile(2) test will be skipped"; fi; }

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

## bench: compare tidegate with the peers (see bench/README.md)
bench:
	bash bench/run.sh

clean:
	rm -rf $(VENV) .venv-* target
