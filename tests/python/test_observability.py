"""Logs and metrics: ``--log-format json``, ``--access-logformat`` (gunicorn's atoms) and
``--metrics-bind`` (Prometheus text, parsed with prometheus_client's own parser)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import APPS_DIR, read_until_close, server_env, tidegate_command, wait_until

APP = "obs_apps"
METRICS_AT = r"Serving metrics at: (http://\S+/metrics)"


def raw_request(server, path, extra=b"", method=b"GET"):
    """One request on its own connection (Connection: close); returns (sent, received)."""
    request = (method + b" " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra
               + b"Connection: close\r\n\r\n")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request)
        response = read_until_close(sock)
    return request, response


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


# --- error log ---------------------------------------------------------------------------------

def json_lines(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # raises if any line is not one JSON object


@pytest.mark.allow_log
def test_json_error_log_lines_parse(server_factory):
    server = server_factory(APP, "--log-format", "json", "-w", "1")
    assert status_of(raw_request(server, "/boom")[1]) == 500
    assert status_of(raw_request(server, "/warn")[1]) == 200
    wait_until(lambda: "from the app" in server.log, 5, "the wsgi.errors lines", server.log)
    server.stop()
    records = json_lines(server.log)
    for record in records:
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")
        assert isinstance(record["message"], str)
        assert isinstance(record["pid"], int)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    messages = [r["message"] for r in records]
    assert any(m.startswith("Listening at: http://127.0.0.1:") for m in messages)
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1, errors
    # The traceback is inside the one JSON object, not on lines of its own.
    assert errors[0]["message"].startswith("Error handling request GET /boom: ValueError: boom")
    assert "Traceback (most recent call last)" in errors[0]["message"]
    warnings = [r["message"] for r in records if r["level"] == "WARNING"]
    assert "[wsgi.errors] a warning" in warnings and "[wsgi.errors] from the app" in warnings
    supervisor_pid = server.pid
    assert {r["pid"] for r in records} - {supervisor_pid}, "worker lines carry the worker's pid"


def test_json_error_log_covers_worker_start_failures():
    # The module exists (so the supervisor starts) but has no such attribute: the worker
    # reports the load error through the log, the supervisor its exit.
    process = subprocess.run(
        tidegate_command("--bind", "127.0.0.1:0", "--log-format", "json", "obs_apps:missing"),
        cwd=str(APPS_DIR), env=server_env(), capture_output=True, timeout=30,
    )
    assert process.returncode == 4, process.stderr
    records = json_lines(process.stderr.decode())
    messages = [r["message"] for r in records if r["level"] == "ERROR"]
    assert any("missing" in m and m.startswith("tidegate: error:") for m in messages), messages
    assert any("could not load the application" in m for m in messages), messages


def test_text_error_log_is_unchanged(server_factory):
    server = server_factory(APP)
    assert re.search(
        r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000\] \[\d+\] \[INFO\] Listening at: ", server.log, re.M
    )


# --- access log --------------------------------------------------------------------------------

EVERY_ATOM = "|".join([
    "%(h)s", "%(l)s", "%(u)s", "%(t)s", "%(r)s", "%(m)s", "%(U)s", "%(q)s", "%(H)s", "%(s)s",
    "%(B)s", "%(b)s", "%(f)s", "%(a)s", "%(T)s", "%(M)s", "%(D)s", "%(L)s", "%(p)s",
    "%({X-Request-Id}i)s", "%({x-trace}o)s", "%({Content-Length}o)s", "%({OBS_TEST_VARIABLE}e)s",
    "%({absent}i)s", "%({absent}o)s", "%({OBS_ABSENT_VARIABLE}e)s", "100%%",
])


def test_every_access_log_atom(server_factory):
    env = server_env()
    env["OBS_TEST_VARIABLE"] = "from the environment"
    env.pop("OBS_ABSENT_VARIABLE", None)
    server = server_factory(APP, "--access-log", "--access-logformat", EVERY_ATOM, env=env)
    credentials = base64.b64encode(b"alice:secret").decode()
    extra = (f"Authorization: Basic {credentials}\r\nReferer: http://ref.example/p\r\n"
             "User-Agent: agent/2.0\r\nX-Request-Id: req-7\r\n").encode()
    assert status_of(raw_request(server, "/headers?a=1&b=%20x", extra)[1]) == 200
    assert status_of(raw_request(server, "/status/204", method=b"GET")[1]) == 204
    lines = wait_until(lambda: server.stdout.splitlines() if len(server.stdout.splitlines()) >= 2 else None,
                       5, "two access log lines", server.log)
    fields = lines[0].split("|")
    assert len(fields) == 27, lines[0]
    (h, l, u, t, r, m, U, q, H, s, B, b, f, a, T, M, D, L, p, req_id, trace, length, env_value,
     absent_in, absent_out, absent_env, percent) = fields
    assert (h, l, u) == ("127.0.0.1", "-", "alice")
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\]", t), t
    assert r == "GET /headers?a=1&b=%20x HTTP/1.1"
    assert (m, U, q, H) == ("GET", "/headers", "a=1&b=%20x", "HTTP/1.1")
    assert (s, B, b) == ("200", "7", "7")
    assert (f, a) == ("http://ref.example/p", "agent/2.0")
    # /headers sleeps 0.25 s before answering.
    assert T == "0"
    assert 250 <= int(M) < 5000
    assert 250_000 <= int(D) < 5_000_000
    assert re.fullmatch(r"\d+\.\d{6}", L) and 0.25 <= float(L) < 5
    assert abs(float(L) - int(D) / 1e6) < 1e-5 and int(M) == int(D) // 1000
    pids = [int(pid) for pid in server.worker_pids(1)]
    assert p == f"<{pids[0]}>"
    assert (req_id, trace, length, env_value) == ("req-7", "trace-42", "7", "from the environment")
    assert (absent_in, absent_out, absent_env, percent) == ("-", "-", "-", "100%")
    second = lines[1].split("|")
    # No Authorization, no query, no body: '-' for u, q and b, but B says 0.
    assert (second[2], second[7], second[9], second[10], second[11]) == ("-", "-", "204", "0", "-")


def test_access_log_escapes_quotes_and_control_bytes(server_factory):
    server = server_factory(APP, "--access-log", "--access-logformat", '"%(a)s"')
    raw_request(server, "/status/200", b'User-Agent: say "hi"\\ \xe9\r\n')
    line = wait_until(lambda: server.stdout.strip(), 5, "an access log line", server.log)
    assert line == r'"say \"hi\"\\ \xe9"'


def test_json_access_log(server_factory):
    server = server_factory(APP, "--log-format", "json", "--access-log")
    raw_request(server, "/status/404?x=1", b"User-Agent: agent/3\r\n")
    line = wait_until(lambda: server.stdout.strip(), 5, "an access log line", server.log)
    record = json.loads(line)
    assert record["remote_addr"] == "127.0.0.1"
    assert record["request"] == "GET /status/404?x=1 HTTP/1.1"
    assert record["status"] == 404 and record["bytes"] == len(b"status 404")
    assert record["user_agent"] == "agent/3" and record["referer"] is None
    assert record["remote_user"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])


def test_json_access_log_with_a_chosen_format(server_factory):
    server = server_factory(APP, "--log-format", "json", "--access-log", "--access-logformat",
                            "%(m)s %(U)s %(q)s %(s)s %(D)s %({x-trace}o)s %({x-request-id}i)s")
    raw_request(server, "/headers", b"X-Request-Id: r1\r\n")
    record = json.loads(wait_until(lambda: server.stdout.strip(), 5, "an access log line", server.log))
    assert record["method"] == "GET" and record["path"] == "/headers" and record["query"] is None
    assert record["status"] == 200 and record["duration_us"] >= 250_000
    assert record["response_headers"] == {"x-trace": "trace-42"}
    assert record["request_headers"] == {"x-request-id": "r1"}


@pytest.mark.parametrize("options, message", [
    (["--access-logformat", "%(h)s %(zz)s"], "%(zz)s"),
    (["--access-logformat", "%(h)s %(t"], "unterminated atom"),
    (["--access-logformat", "50% off"], "'%'"),
    (["--log-format", "yaml"], "--log-format"),
    (["--metrics-bind", "unix:/tmp/m.sock"], "--metrics-bind"),
    (["--metrics-bind", "nohost"], "--metrics-bind"),
])
def test_bad_options_are_start_up_errors(options, message):
    process = subprocess.run(tidegate_command(*options, APP), cwd=str(APPS_DIR), env=server_env(),
                             capture_output=True, timeout=30)
    assert process.returncode == 2, process.stderr
    assert message in process.stderr.decode()


def test_metrics_bind_in_use_is_a_start_up_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.run(
            tidegate_command("--bind", "127.0.0.1:0", "--metrics-bind", f"127.0.0.1:{port}", APP),
            cwd=str(APPS_DIR), env=server_env(), capture_output=True, timeout=30)
    assert process.returncode == 1
    assert f"could not bind --metrics-bind 127.0.0.1:{port}" in process.stderr.decode()


# --- metrics -----------------------------------------------------------------------------------

def metrics_url(server):
    return server.wait_for_log(METRICS_AT).group(1)


def scrape(url):
    """Samples by (name, labels) from a scrape, parsed by prometheus_client."""
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    families = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, key
            samples[key] = sample.value
    return samples, families


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def check_histogram(samples, count):
    buckets = sorted(
        ((float(dict(labels)["le"]), v) for (name, labels), v in samples.items()
         if name == "tidegate_request_duration_seconds_bucket"),
    )
    assert buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert counts[-1] == count == value(samples, "tidegate_request_duration_seconds_count")
    assert value(samples, "tidegate_request_duration_seconds_sum") >= 0


def test_metrics_count_requests_bytes_and_connections(server_factory):
    server = server_factory(APP, "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    samples, families = scrape(url)
    assert families["tidegate_requests"] == "counter"
    assert families["tidegate_request_duration_seconds"] == "histogram"
    assert families["tidegate_requests_in_flight"] == "gauge"
    assert families["tidegate_worker_restarts"] == "counter"
    assert families["tidegate_gil_wait_seconds"] == "counter"
    assert value(samples, "tidegate_requests_total", code="2xx") == 0

    sent = received = 0
    statuses = [200, 201, 204, 302, 404, 404, 418, 500, 503, 200]
    for code in statuses:
        request, response = raw_request(server, f"/status/{code}")
        assert status_of(response) == code
        sent += len(request)
        received += len(response)
    request, response = raw_request(server, "/boom")
    assert status_of(response) == 500
    sent += len(request)
    received += len(response)
    # A malformed head is refused before the app: counted apart.
    request, response = raw_request(server, "/x", b"Content-Length: 1\r\nContent-Length: 2\r\n")
    assert status_of(response) == 400
    sent += len(request)
    received += len(response)

    def settled():
        samples, _ = scrape(url)
        # The gauge drops once the Python thread is back, which may be just after the
        # connection closed: wait for both.
        idle = value(samples, "tidegate_connections_open") == 0
        return samples if idle and value(samples, "tidegate_requests_in_flight") == 0 else None

    samples = wait_until(settled, 5, "connections to close", server.log)
    assert value(samples, "tidegate_requests_total", code="1xx") == 0
    assert value(samples, "tidegate_requests_total", code="2xx") == 4
    assert value(samples, "tidegate_requests_total", code="3xx") == 1
    assert value(samples, "tidegate_requests_total", code="4xx") == 3
    assert value(samples, "tidegate_requests_total", code="5xx") == 3
    assert value(samples, "tidegate_requests_refused_total") == 1
    check_histogram(samples, 11)
    assert value(samples, "tidegate_connections_total") == 12
    assert value(samples, "tidegate_received_bytes_total") == sent
    assert value(samples, "tidegate_sent_bytes_total") == received
    assert value(samples, "tidegate_requests_in_flight") == 0
    assert value(samples, "tidegate_gil_wait_seconds_total") >= 0
    assert value(samples, "tidegate_workers") == 1
    for reason in ("timeout", "max_requests", "max_rss", "crash", "reload"):
        assert value(samples, "tidegate_worker_restarts_total", reason=reason) == 0


def test_in_flight_and_open_connections_while_a_request_runs(server_factory):
    server = server_factory(APP, "--metrics-bind", "127.0.0.1:0", "--threads", "2")
    url = metrics_url(server)
    slow = threading.Thread(target=raw_request, args=(server, "/slow?1.5"))
    slow.start()
    try:
        samples = wait_until(
            lambda: (lambda s: s if value(s, "tidegate_requests_in_flight") >= 1 else None)(scrape(url)[0]),
            5, "a request in flight", server.log)
        assert value(samples, "tidegate_requests_in_flight") == 1
        assert value(samples, "tidegate_connections_open") == 1
        # The slow request has not been answered: nothing counted yet.
        assert value(samples, "tidegate_requests_total", code="2xx") == 0
    finally:
        slow.join()
    samples = wait_until(
        lambda: (lambda s: s if value(s, "tidegate_requests_total", code="2xx") == 1 else None)(scrape(url)[0]),
        5, "the slow request counted", server.log)
    assert value(samples, "tidegate_requests_in_flight") == 0
    check_histogram(samples, 1)
    buckets = {dict(labels)["le"]: v for (name, labels), v in samples.items()
               if name == "tidegate_request_duration_seconds_bucket"}
    assert buckets["1.0"] == 0 and buckets["2.5"] == 1, buckets
    assert 1.5 <= value(samples, "tidegate_request_duration_seconds_sum") < 2.5


def test_metrics_are_summed_over_workers(server_factory):
    server = server_factory(APP, "-w", "2", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    server.worker_pids(2)
    sent = 0
    for i in range(20):
        request, response = raw_request(server, "/status/200" if i % 4 else "/status/404")
        sent += len(request)
    samples = wait_until(
        lambda: (lambda s: s if value(s, "tidegate_connections_open") == 0 else None)(scrape(url)[0]),
        5, "connections to close", server.log)
    assert value(samples, "tidegate_workers") == 2
    assert value(samples, "tidegate_requests_total", code="2xx") == 15
    assert value(samples, "tidegate_requests_total", code="4xx") == 5
    check_histogram(samples, 20)
    assert value(samples, "tidegate_connections_total") == 20
    assert value(samples, "tidegate_received_bytes_total") == sent


def test_restarts_after_max_requests_and_a_killed_worker(server_factory):
    server = server_factory(APP, "--max-requests", "2", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    for round in (1, 2):
        [pid] = server.worker_pids(1)
        for _ in range(2):
            assert status_of(raw_request(server, "/status/200")[1]) == 200
        # The next requests go to the replacement once this worker has gone.
        server.wait_for_log(rf"Worker {pid} exited", timeout=10)
        assert server.log.count("retiring: served 2 requests") == round
    samples = wait_until(
        lambda: (lambda s: s if value(s, "tidegate_workers") == 1 else None)(scrape(url)[0]),
        10, "the retired workers to exit", server.log)
    assert value(samples, "tidegate_worker_restarts_total", reason="max_requests") == 2
    assert value(samples, "tidegate_worker_restarts_total", reason="crash") == 0
    # Counts of workers that exited are kept.
    assert value(samples, "tidegate_requests_total", code="2xx") == 4
    assert value(samples, "tidegate_connections_total") == 4

    [pid] = server.worker_pids(1)
    assert status_of(raw_request(server, "/status/404")[1]) == 404
    os.kill(pid, signal.SIGKILL)
    server.wait_for_log(rf"Worker {pid} exited unexpectedly")
    samples, _ = scrape(url)
    assert value(samples, "tidegate_worker_restarts_total", reason="crash") == 1
    assert value(samples, "tidegate_worker_restarts_total", reason="max_requests") == 2
    assert value(samples, "tidegate_requests_total", code="2xx") == 4
    assert value(samples, "tidegate_requests_total", code="4xx") == 1
    check_histogram(samples, 5)


@pytest.mark.allow_log
def test_restarts_after_a_timeout_and_a_reload(server_factory):
    server = server_factory(APP, "--timeout", "1", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    server.worker_pids(1)
    assert status_of(raw_request(server, "/slow?3")[1]) == 504
    server.wait_for_log(r"WORKER TIMEOUT")
    samples = wait_until(
        lambda: (lambda s: s if value(s, "tidegate_worker_restarts_total", reason="timeout") == 1
                 else None)(scrape(url)[0]),
        10, "the timeout restart", server.log)
    assert value(samples, "tidegate_requests_total", code="5xx") == 1
    wait_until(lambda: "Worker" in server.log and len(server.worker_pids(1)) == 1, 10, "a new worker")
    os.kill(server.pid, signal.SIGHUP)
    server.wait_for_log(r"Reload complete")
    samples, _ = scrape(url)
    assert value(samples, "tidegate_worker_restarts_total", reason="reload") == 1
    assert value(samples, "tidegate_worker_restarts_total", reason="timeout") == 1
    assert value(samples, "tidegate_worker_restarts_total", reason="crash") == 0


def test_the_endpoint_answers_only_metrics(server_factory):
    server = server_factory(APP, "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(server)
    base = url.rsplit("/", 1)[0]
    assert requests.get(base + "/other", timeout=5).status_code == 404
    assert requests.post(url, timeout=5).status_code == 405
    # A scraper that connects and says nothing does not stop others from being served.
    with socket.create_connection((server.host, int(url.split(":")[2].split("/")[0])), timeout=5):
        samples, _ = scrape(url)
        assert value(samples, "tidegate_workers") == 1


def test_metrics_behind_a_front_server(server_factory):
    from gateway_clients import FcgiReader, cgi_params, read_to_close, request_records, uwsgi_packet

    fcgi = server_factory("obs_apps", "--protocol", "fastcgi", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(fcgi)
    records = request_records(1, cgi_params(path="/status/404"))
    sock = fcgi.connect()
    sock.sendall(records)
    FcgiReader(sock).response(1)
    sock.close()
    samples = wait_until(
        lambda: (lambda s: s if value(s, "tidegate_connections_open") == 0 else None)(scrape(url)[0]),
        5, "the connection to close", fcgi.log)
    assert value(samples, "tidegate_requests_total", code="4xx") == 1
    assert value(samples, "tidegate_received_bytes_total") == len(records)
    check_histogram(samples, 1)

    uwsgi = server_factory("obs_apps", "--protocol", "uwsgi", "--metrics-bind", "127.0.0.1:0")
    url = metrics_url(uwsgi)
    packet = uwsgi_packet(cgi_params(path="/status/201"))
    sock = uwsgi.connect()
    sock.sendall(packet)
    response = read_to_close(sock)
    assert response.startswith(b"HTTP/1.1 201 ") or response.startswith(b"HTTP/1.0 201 "), response[:40]
    samples = wait_until(
        lambda: (lambda s: s if value(s, "tidegate_connections_open") == 0 else None)(scrape(url)[0]),
        5, "the connection to close", uwsgi.log)
    assert value(samples, "tidegate_requests_total", code="2xx") == 1
    assert value(samples, "tidegate_sent_bytes_total") == len(response)
