"""Where this morning's features meet: TLS and HTTP/2 with the PROXY protocol, forwarding
headers and --root-path; metrics and the access log of HTTP/2 streams, static files and
TLS connections; the JSON error log with TLS and HTTP/2 failures; one configuration file
(and the same TIDEGATE_* variables) setting them all; a graceful stop with an HTTP/2 stream
over TLS and a static download in flight. Real `tidegate` command, real clients (Python's
ssl and http.client, curl, nghttp, HAProxy)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import APPS_DIR, read_until_close, server_env, tidegate_command, wait_until
from test_tls import Pki

APP = "combined_apps:app"
METRICS_AT = r"Serving metrics at: (http://\S+/metrics)"

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
needs_nghttp = pytest.mark.skipif(
    shutil.which("nghttp") is None, reason="nghttp (Debian nghttp2-client) not installed"
)
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    pki = Pki(tmp_path_factory.mktemp("pki"))
    pki.server = pki.issue("server")
    return pki


@pytest.fixture
def static_dir(tmp_path):
    """A static directory: a small text file and a 16 MiB binary one."""
    root = tmp_path / "static"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello, static\n")
    (root / "big.bin").write_bytes(os.urandom(1 << 20) * 16)
    return root


def tls_options(pki):
    cert, key = pki.server
    return ["--certfile", str(cert), "--keyfile", str(key)]


def client_context(pki, alpn=None):
    context = ssl.create_default_context(cafile=str(pki.ca))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                          capture_output=True, timeout=timeout + 5)


def curl_json(*args: str) -> dict:
    done = curl(*args)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def https_get(server, pki, path="/", headers=None):
    conn = http.client.HTTPSConnection(server.host, server.port, timeout=10,
                                       context=client_context(pki))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return response, body


def access_lines(server, count):
    """The first ``count`` access log lines, once they are written (after each response)."""
    def ready():
        lines = [line for line in server.stdout.splitlines() if line.strip()]
        return lines if len(lines) >= count else None
    return wait_until(ready, 5, f"{count} access log lines", lambda: server.stdout + server.log)


SPOOFED = ["-H", "X-Forwarded-For: 6.6.6.6, 203.0.113.7", "-H", "X-Forwarded-Proto: https",
           "-H", "X-Forwarded-Host: public.example", "-H", "X-Forwarded-Port: 8443"]
FORWARDED_KEYS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                  "HTTP_X_FORWARDED_PORT", "HTTP_FORWARDED")


# --- PROXY protocol in front of a TLS listener -----------------------------------------------

def proxy_v2_header(source: str, source_port: int, destination: str, destination_port: int) -> bytes:
    addresses = (socket.inet_aton(source) + socket.inet_aton(destination)
                 + struct.pack("!HH", source_port, destination_port))
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses))
            + addresses)


def test_proxy_protocol_v2_then_tls_handshake(server_factory, pki):
    server = server_factory(APP, *tls_options(pki), "--proxy-protocol", "--access-log",
                            "--access-logformat", "%(h)s %(H)s %(s)s")
    raw = socket.create_connection((server.host, server.port), timeout=10)
    raw.sendall(proxy_v2_header("203.0.113.9", 4711, "127.0.0.1", server.port))
    with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = read_until_close(tls)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    environ = json.loads(body)
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert environ["REMOTE_PORT"] == "4711"
    assert environ["wsgi.url_scheme"] == "https"
    assert access_lines(server, 1) == ["203.0.113.9 HTTP/1.1 200"]


def test_proxy_protocol_then_tls_with_h2_by_alpn(server_factory, pki):
    """The same over HTTP/2: ALPN after the PROXY header still picks h2."""
    server = server_factory(APP, *tls_options(pki), "--proxy-protocol")
    raw = socket.create_connection((server.host, server.port), timeout=10)
    raw.sendall(proxy_v2_header("198.51.100.4", 5000, "127.0.0.1", server.port))
    with client_context(pki, ["h2", "http/1.1"]).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "h2"


HAPROXY_TCP = """
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend public
    bind 127.0.0.1:{port}
    default_backend app
backend app
    server tidegate 127.0.0.1:{upstream} send-proxy-v2
"""


@needs_curl
def test_haproxy_tcp_send_proxy_v2_to_a_tls_listener(server_factory, pki, tmp_path):
    haproxy = "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        pytest.skip("haproxy (Debian haproxy) not installed")
    server = server_factory(APP, *tls_options(pki), "--proxy-protocol")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(HAPROXY_TCP.format(port=port, upstream=server.port))
    front = subprocess.Popen([haproxy, "-db", "-f", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, 10, "haproxy to listen")
        for version in ("--http1.1", "--http2"):
            environ = curl_json(version, "--cacert", str(pki.ca), "--interface", "127.0.0.2",
                                f"https://127.0.0.1:{port}/via")
            assert environ["REMOTE_ADDR"] == "127.0.0.2"
            assert environ["wsgi.url_scheme"] == "https"
            assert environ["SERVER_PROTOCOL"] == ("HTTP/2" if version == "--http2" else "HTTP/1.1")
    finally:
        front.terminate()
        front.wait(10)


# --- forwarding headers and --root-path over HTTP/2 ------------------------------------------

@needs_curl
def test_forwarding_headers_over_h2c_untrusted_are_removed(server_factory):
    server = server_factory(APP, "--forwarded-allow-ips", "10.9.9.9")
    environ = curl_json("--http2-prior-knowledge", *SPOOFED, "-H", "Forwarded: for=7.7.7.7;proto=https",
                        f"http://127.0.0.1:{server.port}/x")
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    for key in FORWARDED_KEYS:
        assert environ[key] is None, key


@needs_curl
def test_forwarding_headers_over_h2c_trusted_are_applied(server_factory):
    server = server_factory(APP)  # the default trusts 127.0.0.1
    environ = curl_json("--http2-prior-knowledge", *SPOOFED, f"http://127.0.0.1:{server.port}/x")
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == "public.example:8443"
    assert environ["SERVER_NAME"] == "public.example"
    assert environ["SERVER_PORT"] == "8443"
    # Forwarded alone (no X-Forwarded-*), over HTTP/2 too.
    environ = curl_json("--http2-prior-knowledge", "-H", 'Forwarded: for="[2001:db8::1]:4711";proto=https',
                        f"http://127.0.0.1:{server.port}/x")
    assert environ["REMOTE_ADDR"] == "2001:db8::1"
    assert environ["REMOTE_PORT"] == "4711"
    assert environ["wsgi.url_scheme"] == "https"


@needs_curl
@pytest.mark.parametrize("version", ["--http2", "--http1.1"])
def test_forwarding_headers_over_tls(server_factory, pki, version):
    untrusted = server_factory(APP, *tls_options(pki), "--forwarded-allow-ips", "10.9.9.9")
    url = f"https://127.0.0.1:{untrusted.port}/x"
    environ = curl_json(version, "--cacert", str(pki.ca), *SPOOFED, "-H", "X-Forwarded-Proto: http", url)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.url_scheme"] == "https"
    for key in FORWARDED_KEYS:
        assert environ[key] is None, key
    trusted = server_factory(APP, *tls_options(pki))
    url = f"https://127.0.0.1:{trusted.port}/x"
    environ = curl_json(version, "--cacert", str(pki.ca), "-H", "X-Forwarded-For: 203.0.113.7",
                        "-H", "X-Forwarded-Proto: http", url)
    assert environ["SERVER_PROTOCOL"] == ("HTTP/2" if version == "--http2" else "HTTP/1.1")
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["wsgi.url_scheme"] == "http"  # what the trusted proxy says
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"


@needs_curl
def test_root_path_over_http2(server_factory, pki):
    for options, scheme, flag in (([], "http", "--http2-prior-knowledge"),
                                  (tls_options(pki), "https", "--http2")):
        server = server_factory(APP, "--root-path", "/app", *options)
        base = f"{scheme}://127.0.0.1:{server.port}"
        extra = ["--cacert", str(pki.ca)] if scheme == "https" else []
        environ = curl_json(flag, *extra, f"{base}/app/users/7")
        assert environ["SERVER_PROTOCOL"] == "HTTP/2"
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/users/7")
        environ = curl_json(flag, *extra, f"{base}/application")
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/application")


@needs_curl
def test_static_files_under_the_root_path(server_factory, static_dir):
    """A proxy that keeps the prefix sends /app/s/hello.txt for the /s mount (the URL an app
    mounted at /app builds); one that strips it sends /s/hello.txt. Both get the file, over
    HTTP/1.1 and HTTP/2; other paths under /app still reach the app."""
    server = server_factory(APP, "--root-path", "/app", "--static", f"/s={static_dir}")
    base = f"http://127.0.0.1:{server.port}"
    for flag in ("--http1.1", "--http2-prior-knowledge"):
        for path in ("/app/s/hello.txt", "/s/hello.txt"):
            done = curl(flag, "-i", f"{base}{path}")
            head, _, body = done.stdout.partition(b"\r\n\r\n")
            assert body == b"hello, static\n", (flag, path, done.stdout)
            assert b"text/plain" in head
        environ = curl_json(flag, f"{base}/app/x")
        assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/x")
        done = curl(flag, "-o", "/dev/null", "-w", "%{http_code}", f"{base}/app/s/missing.txt")
        assert done.stdout == b"404"


# --- metrics ---------------------------------------------------------------------------------

def scrape(url):
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


@needs_curl
def test_metrics_count_http2_static_and_tls(server_factory, pki, static_dir):
    server = server_factory(APP, *tls_options(pki), "--static", f"/s={static_dir}",
                            "--metrics-bind", "127.0.0.1:0")
    url = server.wait_for_log(METRICS_AT).group(1)
    base = f"https://127.0.0.1:{server.port}"
    # One HTTP/2 connection: two app requests, one static file, one missing static file.
    done = curl("--http2", "--cacert", str(pki.ca), "-o", "/dev/null", "-o", "/dev/null", "-o",
                "/dev/null", "-o", "/dev/null", "-w", "%{http_version} %{http_code}\\n",
                f"{base}/a", f"{base}/b", f"{base}/s/hello.txt", f"{base}/s/missing.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split("\n")[:4] == ["2 200", "2 200", "2 200", "2 404"]
    # One HTTP/1.1 connection over TLS: a static file.
    response, body = https_get(server, pki, "/s/hello.txt")
    assert (response.status, body) == (200, b"hello, static\n")
    # One failed handshake: cleartext to the TLS port.
    with socket.create_connection((server.host, server.port), timeout=10) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until_close(plain)

    def settled():
        samples = scrape(url)
        # The in-flight gauge drops once the Python thread is back, which may be just
        # after the connection closed: wait for both.
        idle = value(samples, "tidegate_connections_open") == 0
        return samples if idle and value(samples, "tidegate_requests_in_flight") == 0 else None

    samples = wait_until(settled, 5, "connections to close", server.log)
    assert value(samples, "tidegate_requests_total", code="2xx") == 4
    assert value(samples, "tidegate_requests_total", code="4xx") == 1
    assert value(samples, "tidegate_request_duration_seconds_count") == 5
    assert value(samples, "tidegate_connections_total") == 3
    assert value(samples, "tidegate_requests_in_flight") == 0
    # TLS records: more bytes than the bodies and heads alone, in both directions.
    assert value(samples, "tidegate_received_bytes_total") > 500
    assert value(samples, "tidegate_sent_bytes_total") > 2000


# --- access log --------------------------------------------------------------------------------

FORMAT = "%(H)s %(s)s %(U)s o=%({x-app-trace}o)s ct=%({content-type}o)s i=%({x-client}i)s"


@needs_curl
def test_access_log_format_over_http2_and_static(server_factory, static_dir):
    server = server_factory(APP, "--access-log", "--access-logformat", FORMAT,
                            "--static", f"/s={static_dir}", "--static-cache-control", "max-age=60")
    base = f"http://127.0.0.1:{server.port}"
    curl_json("--http2-prior-knowledge", "-H", "X-Client: c1", f"{base}/app")
    assert access_lines(server, 1)[0] == "HTTP/2 200 /app o=trace-42 ct=application/json i=c1"
    done = curl("--http2-prior-knowledge", "-H", "X-Client: c2", f"{base}/s/hello.txt")
    assert done.stdout == b"hello, static\n"
    assert access_lines(server, 2)[1] == "HTTP/2 200 /s/hello.txt o=- ct=text/plain; charset=utf-8 i=c2"
    done = curl("--http1.1", "-H", "X-Client: c3", f"{base}/s/hello.txt")
    assert done.stdout == b"hello, static\n"
    assert access_lines(server, 3)[2] == "HTTP/1.1 200 /s/hello.txt o=- ct=text/plain; charset=utf-8 i=c3"


def test_access_log_response_headers_of_static_answers(server_factory, static_dir):
    """`{name}o` captures what a static answer sent (HTTP/1.1: 200, 304 and 404)."""
    server = server_factory(APP, "--access-log", "--access-logformat",
                            "%(s)s %({etag}o)s %({cache-control}o)s %({content-length}o)s",
                            "--static", f"/s={static_dir}", "--static-cache-control", "max-age=60")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", "/s/hello.txt")
    response = conn.getresponse()
    response.read()
    etag = response.getheader("ETag")
    conn.request("GET", "/s/hello.txt", headers={"If-None-Match": etag})
    assert conn.getresponse().read() == b""
    conn.request("GET", "/s/nothing.txt")
    assert conn.getresponse().status == 404
    conn.close()
    logged = etag.replace('"', '\\"')  # quotes are escaped in a text line
    assert access_lines(server, 3) == [f"200 {logged} max-age=60 14", f"304 {logged} max-age=60 -",
                                       "404 - - 9"]


@needs_curl
def test_json_access_log_over_tls(server_factory, pki):
    server = server_factory(APP, *tls_options(pki), "--access-log", "--log-format", "json",
                            "--access-logformat", "%(h)s %(r)s %(H)s %(s)s %({x-app-trace}o)s")
    https_get(server, pki, "/one?q=1")
    curl_json("--http2", "--cacert", str(pki.ca), f"https://127.0.0.1:{server.port}/two")
    first, second = (json.loads(line) for line in access_lines(server, 2))
    assert first["remote_addr"] == "127.0.0.1"
    assert first["request"] == "GET /one?q=1 HTTP/1.1"
    assert (first["protocol"], first["status"]) == ("HTTP/1.1", 200)
    assert first["response_headers"] == {"x-app-trace": "trace-42"}
    assert (second["protocol"], second["status"]) == ("HTTP/2", 200)
    assert second["request"] == "GET /two HTTP/2"
    assert second["response_headers"] == {"x-app-trace": "trace-42"}


# --- JSON error log with TLS and HTTP/2 failures -----------------------------------------------

@pytest.mark.allow_log
@needs_curl
def test_json_error_log_with_tls_and_http2_failures(server_factory, pki):
    server = server_factory(APP, *tls_options(pki), "--log-format", "json", "--log-level", "debug")
    # A failed handshake: cleartext to the TLS port.
    with socket.create_connection((server.host, server.port), timeout=10) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        read_until_close(plain)
    # A client that does not trust the certificate and hangs up during the handshake.
    raw = socket.create_connection((server.host, server.port), timeout=10)
    with pytest.raises(ssl.SSLError):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    raw.close()
    # HTTP/2 connection errors: a wrong preface after ALPN h2, then an app error on a stream.
    raw = socket.create_connection((server.host, server.port), timeout=10)
    with client_context(pki, ["h2"]).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "h2"
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64)
        try:
            read_until_close(tls)
        except (ssl.SSLError, OSError):
            pass
    done = curl("--http2", "--cacert", str(pki.ca), f"https://127.0.0.1:{server.port}/x/boom")
    assert b"500" in done.stdout or done.returncode == 0
    server.wait_for_log("ValueError: boom")
    time.sleep(0.3)
    server.stop()
    lines = [line for line in server.log.splitlines() if line.strip()]
    assert lines
    for line in lines:
        json.loads(line)  # raises on any line that is not JSON
    records = [json.loads(line) for line in lines]
    assert any("boom" in record["message"] for record in records)
    # --log-level debug is tidegate's debug lines, not h2's trace of every frame.
    assert not [line for line in lines if "send frame" in line or "schedule_send" in line], lines
    assert len(records) < 60, lines
    assert any("handshake" in record["message"].lower() or "TLS" in record["message"]
               for record in records), lines


# --- one configuration for every feature -------------------------------------------------------

def write_config(path: Path, pki, static_dir, metrics_port: int, http="\"2\"") -> Path:
    cert, key = pki.server
    path.write_text(f"""
certfile = "{cert}"
keyfile = "{key}"
static = ["/s={static_dir}"]
forwarded-allow-ips = "10.9.9.9"
metrics-bind = "127.0.0.1:{metrics_port}"
log-format = "json"
http = {http}
http2-max-concurrent-streams = 7
access-log = true
access-logformat = "%(H)s %(s)s %(U)s %({{x-app-trace}}o)s"
""")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_configured_server(server, pki, metrics_port):
    """What the configuration above asks for, each checked with a request."""
    base = f"https://127.0.0.1:{server.port}"
    # certfile/keyfile + http = 2: HTTPS, and only HTTP/2 by ALPN.
    environ = curl_json("--http2", "--cacert", str(pki.ca), *SPOOFED, f"{base}/x")
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["wsgi.url_scheme"] == "https"
    # forwarded-allow-ips = 10.9.9.9: 127.0.0.1 is not trusted.
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["HTTP_X_FORWARDED_FOR"] is None
    # static
    done = curl("--http2", "--cacert", str(pki.ca), f"{base}/s/hello.txt")
    assert done.stdout == b"hello, static\n"
    # access-logformat + log-format json: JSON lines with the format's atoms.
    lines = access_lines(server, 2)
    first = json.loads(lines[0])
    assert (first["protocol"], first["status"], first["path"]) == ("HTTP/2", 200, "/x")
    assert first["response_headers"] == {"x-app-trace": "trace-42"}
    for line in server.log.splitlines():
        json.loads(line)
    # metrics-bind
    samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    assert value(samples, "tidegate_requests_total", code="2xx") == 2
    # http2-max-concurrent-streams, as the server's SETTINGS frame says.
    if shutil.which("nghttp"):
        done = subprocess.run(["nghttp", "-nv", f"{base}/x"], capture_output=True, timeout=30)
        assert b"SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7" in done.stdout, done.stdout


@needs_curl
def test_configuration_file_sets_every_feature(server_factory, pki, static_dir, tmp_path):
    metrics_port = free_port()
    config = write_config(tmp_path / "tidegate.toml", pki, static_dir, metrics_port)
    server = server_factory(APP, "--config", str(config))
    check_configured_server(server, pki, metrics_port)


@needs_curl
def test_configuration_file_with_http_as_a_toml_integer(server_factory, pki, static_dir, tmp_path):
    """`http = 2` is what users write: it means the same as `http = "2"`."""
    metrics_port = free_port()
    config = write_config(tmp_path / "tidegate.toml", pki, static_dir, metrics_port, http="2")
    server = server_factory(APP, "--config", str(config))
    check_configured_server(server, pki, metrics_port)


@needs_curl
def test_environment_variables_set_every_feature(server_factory, pki, static_dir):
    metrics_port = free_port()
    cert, key = pki.server
    env = server_env()
    env.update({
        "TIDEGATE_CERTFILE": str(cert), "TIDEGATE_KEYFILE": str(key),
        "TIDEGATE_STATIC": f"/s={static_dir}", "TIDEGATE_FORWARDED_ALLOW_IPS": "10.9.9.9",
        "TIDEGATE_METRICS_BIND": f"127.0.0.1:{metrics_port}", "TIDEGATE_LOG_FORMAT": "json",
        "TIDEGATE_HTTP": "2", "TIDEGATE_HTTP2_MAX_CONCURRENT_STREAMS": "7",
        "TIDEGATE_ACCESS_LOG": "yes",
        "TIDEGATE_ACCESS_LOGFORMAT": "%(H)s %(s)s %(U)s %({x-app-trace}o)s",
    })
    server = server_factory(APP, env=env)
    check_configured_server(server, pki, metrics_port)


@needs_curl
def test_forwarded_allow_ips_as_a_toml_array(server_factory, tmp_path):
    config = tmp_path / "tidegate.toml"
    config.write_text('forwarded-allow-ips = ["10.0.0.0/8", "127.0.0.1"]\n')
    printed = run_tidegate("--print-config", "--config", str(config), APP)
    assert 'forwarded-allow-ips = "10.0.0.0/8,127.0.0.1"' in printed.stdout, printed.stderr
    server = server_factory(APP, "--config", str(config))
    environ = curl_json("--http2-prior-knowledge", *SPOOFED, f"http://127.0.0.1:{server.port}/")
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    config.write_text('forwarded-allow-ips = ["10.0.0.1", 5]\n')
    done = run_tidegate("--config", str(config), APP)
    assert done.returncode == 2
    assert f"key 'forwarded-allow-ips' in {config}" in done.stderr


def run_tidegate(*args, env=None, cwd=APPS_DIR):
    return subprocess.run(tidegate_command(*args), cwd=str(cwd), env=env or server_env(),
                          capture_output=True, text=True, timeout=30)


def test_print_config_round_trip(pki, static_dir, tmp_path):
    config = write_config(tmp_path / "tidegate.toml", pki, static_dir, 9911, http="2")
    printed = run_tidegate("--print-config", "--config", str(config), APP)
    assert printed.returncode == 0, printed.stderr
    again = tmp_path / "printed.toml"
    again.write_text(printed.stdout)
    reprinted = run_tidegate("--print-config", "--config", str(again))
    assert reprinted.returncode == 0, reprinted.stderr

    def values(text):
        return sorted(line.split("  #")[0] for line in text.splitlines()
                      if line and not line.startswith("#"))

    assert values(printed.stdout) == values(reprinted.stdout)
    shown = values(printed.stdout)
    cert, key = pki.server
    for line in (f'certfile = "{cert}"', f'keyfile = "{key}"', f'static = ["/s={static_dir}"]',
                 'forwarded-allow-ips = "10.9.9.9"', 'metrics-bind = "127.0.0.1:9911"',
                 'log-format = "json"', 'http = "2"', "http2-max-concurrent-streams = 7",
                 'access-logformat = "%(H)s %(s)s %(U)s %({x-app-trace}o)s"'):
        assert line in shown, (line, printed.stdout)


@pytest.mark.parametrize("line, message", [
    ("http = 3", "invalid choice"),
    ('http = "3"', "invalid choice"),
    ("http = true", "expected"),
    ('static = "nodir"', "URL_PREFIX=DIRECTORY"),
    ('static = "/s=no-such-directory"', "does not exist"),
    ("static = 5", "URL_PREFIX=DIRECTORY"),
    ("http2-max-concurrent-streams = 0", "0"),
    ('http2-max-concurrent-streams = "many"', "many"),
    ('forwarded-allow-ips = "not-an-ip"', "not-an-ip"),
    ('metrics-bind = "nowhere"', "nowhere"),
    ('log-format = "xml"', "invalid choice"),
    ('access-logformat = "%(zz)s"', "zz"),
    ('root-path = "app"', "app"),
    ('certfile = "/no/such/cert.pem"', "/no/such/cert.pem"),
])
def test_configuration_errors_name_the_key(tmp_path, pki, line, message):
    config = tmp_path / "tidegate.toml"
    cert, key = pki.server
    tls = "" if line.startswith("certfile") else f'certfile = "{cert}"\n'
    config.write_text(f'{tls}keyfile = "{key}"\n{line}\n')
    done = run_tidegate("--config", str(config), APP)
    key_name = line.split(" =")[0]
    assert done.returncode in (1, 2), done.stderr
    assert f"key '{key_name}' in {config}" in done.stderr, done.stderr
    assert message in done.stderr, done.stderr


# --- graceful stop -----------------------------------------------------------------------------

@needs_curl
def test_graceful_stop_finishes_an_h2_stream_over_tls_and_a_static_download(server_factory, pki,
                                                                         static_dir):
    server = server_factory(APP, *tls_options(pki), "--static", f"/s={static_dir}",
                            "--threads", "2")
    base = f"https://127.0.0.1:{server.port}"
    slow = subprocess.Popen(["curl", "-sS", "--http2", "--cacert", str(pki.ca), "-w",
                             "\n%{http_version} %{http_code}", f"{base}/slow?sleep=1.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    download = static_dir.parent / "download.bin"
    big = subprocess.Popen(["curl", "-sS", "--http1.1", "--cacert", str(pki.ca), "--limit-rate", "8M",
                            "-o", str(download), "-w", "%{http_code}", f"{base}/s/big.bin"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: download.exists() and download.stat().st_size > 1 << 20, 10, "the download")
    time.sleep(0.3)  # the slow request is in the app by now
    os.kill(server.pid, signal.SIGTERM)
    out, err = slow.communicate(timeout=30)
    assert slow.returncode == 0, err
    body, _, tail = out.decode().rpartition("\n")
    assert tail == "2 200"
    assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/2"
    out, err = big.communicate(timeout=30)
    assert big.returncode == 0, err
    assert out == b"200"
    assert download.read_bytes() == (static_dir / "big.bin").read_bytes()
    assert server.process.wait(30) == 0


@pytest.mark.parametrize("name, text, message", [
    ("TIDEGATE_HTTP", "3", "invalid choice"),
    ("TIDEGATE_STATIC", "/s=no-such-directory", "does not exist"),
    ("TIDEGATE_FORWARDED_ALLOW_IPS", "not-an-ip", "not-an-ip"),
    ("TIDEGATE_METRICS_BIND", "nowhere", "nowhere"),
    ("TIDEGATE_ACCESS_LOGFORMAT", "%(zz)s", "zz"),
    ("TIDEGATE_ROOT_PATH", "app", "app"),
    ("TIDEGATE_CERTFILE", "/no/such/cert.pem", "/no/such/cert.pem"),
])
def test_environment_errors_name_the_variable(pki, name, text, message):
    env = server_env()
    env["TIDEGATE_KEYFILE"] = str(pki.server[1])
    if name != "TIDEGATE_CERTFILE":
        env["TIDEGATE_CERTFILE"] = str(pki.server[0])
    env[name] = text
    done = run_tidegate(APP, env=env)
    assert done.returncode in (1, 2), done.stderr
    assert f"environment variable {name}" in done.stderr, done.stderr
    assert message in done.stderr, done.stderr


def test_errors_from_the_command_line_still_name_the_option(pki):
    done = run_tidegate("--static", "/s=no-such-directory", APP)
    assert done.returncode == 2
    assert "argument --static: /s=no-such-directory" in done.stderr
    done = run_tidegate("--certfile", "/no/such/cert.pem", "--keyfile", str(pki.server[1]), APP)
    assert done.returncode == 1
    assert "tidegate: error: --certfile /no/such/cert.pem: no such file" in done.stderr
    done = run_tidegate("--root-path", "app", APP)
    assert done.returncode == 2
    assert "argument --root-path: " in done.stderr
