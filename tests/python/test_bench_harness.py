"""The comparison harness (bench/, `make bench`) reads wrk's report and judges the targets of
issue 6 from measured medians; these tests pin that arithmetic without running a benchmark."""

import math
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
# bench/ only while importing its modules: it also holds a cgi.py that must not shadow the
# standard library's for the rest of the session.
sys.path.insert(0, os.path.abspath(BENCH))
try:
    import report
    import targets
    from scenarios import WrkFailed, parse_wrk, scenarios
finally:
    sys.path.remove(os.path.abspath(BENCH))

WRK_OUTPUT = """\
Running 4s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  310.11us   9.87ms   90.12%
    Req/Sec    49.12k     2.01k   52.30k    75.00%
  Latency Distribution
     50%    0.98ms
     75%    1.10ms
     90%    1.30ms
     99%  512.00us
  195512 requests in 4.00s, 1.50GB read
  Socket errors: connect 0, read 12, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:  48878.00
Transfer/sec:    384.00MB
"""


def test_parse_wrk_reads_every_figure():
    figures = parse_wrk(WRK_OUTPUT)
    assert figures["requests"] == 195512
    assert figures["elapsed_s"] == 4.0
    assert figures["rps"] == 48878.0
    assert figures["p99_ms"] == pytest.approx(0.512)
    assert figures["bytes_read"] == 1.5 * (1 << 30)
    assert figures["mbps"] == pytest.approx(1.5 * (1 << 30) / 4.0 / 1e6)
    assert figures["socket_errors"] == 13
    assert figures["non2xx"] == 3


def test_parse_wrk_without_latency_or_errors():
    text = "  10 requests in 1.00s, 1.00KB read\nRequests/sec:     10.00\n"
    figures = parse_wrk(text)
    assert math.isnan(figures["p99_ms"])
    assert figures["socket_errors"] == 0 and figures["non2xx"] == 0


def test_parse_wrk_refuses_an_unreadable_report():
    with pytest.raises(WrkFailed):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def _verdicts(medians):
    return {v.target.text: v for v in targets.evaluate(medians)}


def test_targets_are_computed_from_the_medians():
    medians = {
        "hello-c50": {
            "tidegate": {"rps": 120.0, "cpu_us_per_req": 8.0, "p99_ms": 1.0},
            "bjoern": {"rps": 100.0, "cpu_us_per_req": 10.0, "p99_ms": 0.9},
            "granian-bt1": {"rps": 80.0, "cpu_us_per_req": 12.0, "p99_ms": 1.0},
            "granian": {"rps": 70.0, "cpu_us_per_req": 20.0, "p99_ms": 3.0},
        },
        "io": {"tidegate-t8": {"rps": 780.0}, "gunicorn-gthread": {"rps": 780.0}},
        "memory": {"tidegate": {"worker_rss_mib": 20.0},
                   "granian-bt1": {"worker_rss_mib": 30.0},
                   "granian": {"worker_rss_mib": 19.0}},
    }
    v = _verdicts(medians)
    cpu = v["hello CPU/req ≤ 0.9× bjoern (-c50)"]
    assert (cpu.ratio, cpu.status) == (pytest.approx(0.8), "met")
    assert v["hello req/s ≥ bjoern (-c50)"].status == "met"
    # Granian best for req/s is the faster configuration: 120 / 80 = 1.5 < 1.6.
    granian = v["hello req/s ≥ 1.6× Granian best (-c50)"]
    assert (granian.reference_name, granian.status) == ("granian-bt1", "not met")
    assert v["hello p99 ≤ bjoern (-c50)"].status == "not met"
    assert v["I/O-bound req/s ≥ 95% of 800"].status == "met"  # 780 / 800 = 0.975
    assert v["I/O-bound req/s > gunicorn gthread"].status == "not met"  # equal is not more
    # Granian best for memory is the smaller worker.
    rss = v["idle worker RSS ≤ Granian worker (smallest)"]
    assert (rss.reference_name, rss.status) == ("granian", "not met")


def test_a_missing_reference_is_not_a_verdict():
    medians = {"json": {"tidegate": {"rps": 100.0}},
               "file": {"nginx": {"mbps": 1000.0}}}
    v = _verdicts(medians)
    assert v["JSON req/s ≥ bjoern"].status == "not measured: no result for bjoern"
    assert v["file_wrapper MB/s ≥ 0.8× nginx"].status.startswith("not measured: tidegate")
    close = v["Connection: close req/s ≥ bjoern"]
    assert close.ratio is None
    assert close.status.startswith("not measured: scenario not run")


def test_the_report_names_unavailable_and_failed_servers():
    chosen = [sc for sc in scenarios(1 << 20) if sc.key == "json"]
    runs = [
        {"scenario": "json", "server": "tidegate", "round": 1, "ok": True, "notes": [],
         "data": {"rps": 100.0, "cpu_us_per_req": 10.0, "p99_ms": float("nan"),
                  "server_cores": 1.0, "wrk_cores": 0.5, "other_cores": 0.0,
                  "socket_errors": 0, "non2xx": 0}},
        {"scenario": "json", "server": "granian-bt1", "round": 1, "ok": False, "notes": [],
         "reason": "exited with status 1 before serving", "data": {}},
    ]
    text = report.render(chosen, runs, {"json": {"bjoern": "pip install bjoern failed"}},
                         targets.evaluate(report.medians(runs)), ["- header"], 1)
    assert "not available: pip install bjoern failed" in text
    assert "failed: round 1: exited with status 1 before serving" in text
    assert "| JSON req/s ≥ bjoern | 100 |" in text
