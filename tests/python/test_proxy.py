"""Running behind proxies: --forwarded-allow-ips with X-Forwarded-* and Forwarded,
--proxy-protocol (PROXY v1/v2 by hand, and HAProxy's send-proxy/send-proxy-v2), HAProxy's
`option forwardfor` and nginx's proxy_set_header in front, and --root-path with Flask.

The echo app returns its environ, so each test asserts what the application sees. To make
the loopback client untrusted, tests pass --forwarded-allow-ips with an address that is not
127.0.0.1; to tell a proxied client from the proxy, clients connect from 127.0.0.2.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import read_response, read_until_close, tidegate_command, server_env, APPS_DIR
from frontends import FrontServer, NGINX_CONF, free_port, require, start_nginx  # noqa: F401

ECHO = "wsgi_apps:environ_app"
FORWARDING_KEYS = [
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_FORWARDED",
]
SPOOFED = (
    b"X-Forwarded-For: 6.6.6.6\r\n"
    b"X-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: evil.example\r\n"
    b"X-Forwarded-Port: 444\r\n"
    b"Forwarded: for=7.7.7.7;proto=https;host=evil.example\r\n"
)


def request_bytes(path: bytes = b"/", headers: bytes = b"", close: bool = True) -> bytes:
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: app.local:8000\r\n" + headers
        + (b"Connection: close\r\n" if close else b"") + b"\r\n"
    )


def environ_of(sock: socket.socket, path: bytes = b"/", headers: bytes = b"", prefix: bytes = b"") -> dict:
    sock.sendall(prefix + request_bytes(path, headers))
    response = read_response(sock)
    assert response.status == 200, (response.status, response.body)
    return json.loads(response.body)["environ"]


def assert_closed(sock: socket.socket) -> None:
    """The server closed the connection without a byte of response (a reset when our
    unread request was still in its buffer)."""
    try:
        assert read_until_close(sock) == b""
    except ConnectionResetError:
        pass


def ask(server, headers: bytes = b"", path: bytes = b"/") -> dict:
    return environ_of(server.connect(), path, headers)


# --- X-Forwarded-* and Forwarded ----------------------------------------------------------


def test_untrusted_peer_cannot_spoof_anything(server_factory):
    server = server_factory(ECHO, "--forwarded-allow-ips", "10.9.9.9")
    sock = server.connect()
    env = environ_of(sock, headers=SPOOFED + b"x-forwarded-for: 5.5.5.5\r\n")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(sock.getsockname()[1])
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "app.local:8000"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    for key in FORWARDING_KEYS:
        assert key not in env, key


def test_default_trusts_loopback_and_applies_each_header(server_factory):
    server = server_factory(ECHO)
    env = ask(server, b"X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n")
    # From the right: 203.0.113.7 is the first untrusted hop; the client-written 6.6.6.6 loses.
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert "REMOTE_PORT" not in env  # the proxy's port would be a lie next to the client's IP
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 203.0.113.7"
    assert env["wsgi.url_scheme"] == "http"

    env = ask(server, b"X-Forwarded-Proto: https\r\n")
    assert env["wsgi.url_scheme"] == "https"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("app.local", "8000")

    env = ask(server, b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n")
    assert env["HTTP_HOST"] == "shop.example"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "443")

    env = ask(server, b"X-Forwarded-Port: 8443\r\n")
    assert env["SERVER_PORT"] == "8443"
    assert env["HTTP_HOST"] == "app.local:8443"

    env = ask(server, b"X-Forwarded-For: [2001:db8::5]:4711\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::5", "4711")


def test_forwarded_header(server_factory):
    server = server_factory(ECHO)
    env = ask(server, b'Forwarded: for="[2001:db8::1]:4711";proto=https;host=shop.example\r\n')
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "4711")
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example"
    assert env["SERVER_PORT"] == "443"
    assert env["HTTP_FORWARDED"].startswith("for=")

    # Elements from the right: the trusted proxy's element is skipped.
    env = ask(server, b"Forwarded: for=6.6.6.6, for=192.0.2.60;proto=https, for=127.0.0.1\r\n")
    assert env["REMOTE_ADDR"] == "192.0.2.60"
    assert env["wsgi.url_scheme"] == "https"

    # An obfuscated or unknown client keeps the direct peer.
    for value in [b"for=_hidden", b"for=unknown", b'for="_abc.def"']:
        env = ask(server, b"Forwarded: " + value + b"\r\n")
        assert env["REMOTE_ADDR"] == "127.0.0.1", value


def test_x_forwarded_headers_win_over_forwarded(server_factory):
    server = server_factory(ECHO)
    env = ask(server, b"Forwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-For: 203.0.113.9\r\n")
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize("headers", [
    b"X-Forwarded-For: not-an-ip\r\nX-Forwarded-Proto: gopher\r\n",
    b"X-Forwarded-For: 300.1.2.3\r\nX-Forwarded-Host: a b\r\nX-Forwarded-Port: 99999\r\n",
    b"Forwarded: for=\"unterminated\r\n",
    b"Forwarded: for=1.2.3.4;for=5.6.7.8\r\n",
    b"X-Forwarded-For: \xe9\xff\r\n",
])
def test_invalid_values_are_ignored(server_factory, headers):
    server = server_factory(ECHO)
    sock = server.connect()
    env = environ_of(sock, headers=headers)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(sock.getsockname()[1])
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "app.local:8000"
    assert env["SERVER_PORT"] == str(server.port)
    assert ask(server)["REMOTE_ADDR"] == "127.0.0.1"  # still serving


@pytest.mark.parametrize("allow, trusted", [
    ("127.0.0.0/8", True),
    ("10.0.0.0/8,192.168.0.0/16", False),
    ("*", True),
    ("10.1.1.1, 127.0.0.1", True),
    ("", False),
])
def test_allow_list_forms(server_factory, allow, trusted):
    server = server_factory(ECHO, "--forwarded-allow-ips", allow)
    env = ask(server, b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n")
    assert (env["REMOTE_ADDR"] == "203.0.113.7") is trusted
    assert (env["wsgi.url_scheme"] == "https") is trusted
    assert ("HTTP_X_FORWARDED_FOR" in env) is trusted


def test_trusted_hops_are_skipped_in_a_cidr(server_factory):
    server = server_factory(ECHO, "--forwarded-allow-ips", "127.0.0.0/8,10.0.0.0/8")
    env = ask(server, b"X-Forwarded-For: 6.6.6.6, 198.51.100.4, 10.2.3.4, 127.0.0.9\r\n")
    assert env["REMOTE_ADDR"] == "198.51.100.4"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("allow, trusted", [(None, True), ("127.0.0.1", False), ("::/0", True)])
def test_ipv6_loopback_peer(server_factory, allow, trusted):
    options = [] if allow is None else ["--forwarded-allow-ips", allow]
    server = server_factory(ECHO, *options, bind="[::1]:0")
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("::1", port), timeout=10) as sock:
        env = environ_of(sock, headers=b"X-Forwarded-For: 203.0.113.7\r\n")
    assert env["REMOTE_ADDR"] == ("203.0.113.7" if trusted else "::1")


def test_unix_socket_peer_is_trusted(server_factory, tmp_path):
    path = tmp_path / "app.sock"
    server_factory(ECHO, "--forwarded-allow-ips", "10.9.9.9", bind=f"unix:{path}")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        env = environ_of(sock, headers=b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n")
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"


# --- PROXY protocol by hand ------------------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(command: int, family: int, block: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def v2_tcp4(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 80, tlvs: bytes = b"") -> bytes:
    block = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return v2_header(1, 0x11, block + tlvs)


def v2_tcp6(src: str, sport: int, dst: str = "::1", dport: int = 80, tlvs: bytes = b"") -> bytes:
    block = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
             + struct.pack("!HH", sport, dport))
    return v2_header(1, 0x21, block + tlvs)


@pytest.mark.parametrize("header, addr, port", [
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n", "192.0.2.7", "56324"),
    (b"PROXY TCP6 2001:db8::7 ::1 4711 443\r\n", "2001:db8::7", "4711"),
    (v2_tcp4("192.0.2.8", 1234), "192.0.2.8", "1234"),
    # A TLV (PP2_TYPE_AUTHORITY) after the addresses is skipped.
    (v2_tcp6("2001:db8::8", 4321, tlvs=b"\x02\x00\x0bexample.com"), "2001:db8::8", "4321"),
])
def test_proxy_header_names_the_peer_for_every_request(server_factory, header, addr, port):
    server = server_factory(ECHO, "--proxy-protocol")
    sock = server.connect()
    # The header and two pipelined requests in one send: not a byte of HTTP may be lost.
    sock.sendall(header + request_bytes(b"/one", close=False) + request_bytes(b"/two", SPOOFED))
    from conftest import ResponseReader
    reader = ResponseReader(sock)
    for path in ("/one", "/two"):
        response = reader.read()
        assert response.status == 200, response.body
        env = json.loads(response.body)["environ"]
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"], env["PATH_INFO"]) == (addr, port, path)
    # The proxied client is not a trusted proxy: the headers it wrote are dropped.
    for key in FORWARDING_KEYS:
        assert key not in env, key


def test_proxy_header_on_a_unix_socket_and_in_the_access_log(server_factory, tmp_path):
    path = tmp_path / "app.sock"
    server = server_factory(ECHO, "--proxy-protocol", "--access-log", bind=f"unix:{path}")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        env = environ_of(sock, prefix=v2_tcp6("2001:db8::9", 5555))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::9", "5555")
    deadline = time.monotonic() + 5
    while "2001:db8::9 - - [" not in server.stdout:
        assert time.monotonic() < deadline, server.stdout
        time.sleep(0.02)


@pytest.mark.parametrize("header", [
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    v2_header(0, 0x00, b""),  # LOCAL: the proxy's own health check
    v2_header(0, 0x11, b"\x00" * 12),
    v2_header(1, 0x31, b"\x00" * 216),  # unix addresses: nothing usable, the real peer stays
])
def test_local_and_unknown_headers_keep_the_real_peer(server_factory, header):
    server = server_factory(ECHO, "--proxy-protocol")
    sock = server.connect()
    env = environ_of(sock, prefix=header)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(sock.getsockname()[1])


def test_proxy_header_in_pieces(server_factory):
    server = server_factory(ECHO, "--proxy-protocol")
    sock = server.connect()
    data = v2_tcp4("192.0.2.9", 999) + request_bytes()
    for piece in (data[:5], data[5:14], data[14:20], data[20:]):
        sock.sendall(piece)
        time.sleep(0.05)
    response = read_response(sock)
    assert json.loads(response.body)["environ"]["REMOTE_ADDR"] == "192.0.2.9"


@pytest.mark.parametrize("data, reason", [
    (request_bytes(), "did not start with a PROXY protocol header"),
    (b"PROXY TCP4 192.0.2.7 nonsense 1 2\r\n" + request_bytes(), "malformed PROXY protocol header"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n" + request_bytes(), "malformed PROXY protocol header"),
    (b"PROXY " + b"x" * 120 + b"\r\n", "malformed PROXY protocol header"),
    (V2_SIGNATURE + b"\x21\x11\x00\x04abcd" + request_bytes(), "malformed PROXY protocol header"),
    (V2_SIGNATURE + b"\x13\x11\x00\x0c" + b"\x00" * 12, "malformed PROXY protocol header"),
])
def test_allowed_peer_without_a_valid_header_is_closed(server_factory, data, reason):
    server = server_factory(ECHO, "--proxy-protocol")
    sock = server.connect()
    sock.sendall(data)
    assert_closed(sock)
    server.wait_for_log(reason)
    assert ask_proxied(server)["REMOTE_ADDR"] == "192.0.2.1"  # the server goes on


def ask_proxied(server) -> dict:
    return environ_of(server.connect(), prefix=b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2\r\n")


def test_untrusted_peer_is_a_plain_client_and_cannot_send_a_header(server_factory):
    server = server_factory(ECHO, "--proxy-protocol", "--forwarded-allow-ips", "10.9.9.9")
    assert ask(server)["REMOTE_ADDR"] == "127.0.0.1"
    for header in (b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n", v2_tcp4("192.0.2.7", 5)):
        sock = server.connect()
        sock.sendall(header + request_bytes())
        assert_closed(sock)
    server.wait_for_log("sent a PROXY protocol header but is not in --forwarded-allow-ips")


def test_proxy_header_must_arrive_within_the_header_timeout(server_factory):
    server = server_factory(ECHO, "--proxy-protocol", "--header-timeout", "1")
    sock = server.connect()
    sock.sendall(b"PROXY TCP4 192.0.2.7")
    started = time.monotonic()
    assert_closed(sock)
    assert 0.5 < time.monotonic() - started < 5


# --- HAProxy and nginx in front ----------------------------------------------------------------

HAPROXY = "/usr/sbin/haproxy"
HAPROXY_CONF = """
global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend public
    bind 127.0.0.1:{port}
    default_backend app
backend app
{backend}
    server tidegate 127.0.0.1:{upstream}{server_options}
"""


def start_haproxy(directory: Path, upstream: int, backend: str = "", server_options: str = "") -> FrontServer:
    haproxy = require(HAPROXY)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(port=port, upstream=upstream, backend=backend,
                                        server_options=server_options))
    check = subprocess.run([haproxy, "-c", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    return FrontServer([haproxy, "-db", "-f", str(conf)], directory, port, directory / "stderr.log")


def get_through(front: FrontServer, path: str = "/", headers=None):
    """A request from 127.0.0.2 (so the client differs from the proxy at 127.0.0.1)."""
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10,
                                            source_address=("127.0.0.2", 0))
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        client_port = connection.sock.getsockname()[1] if connection.sock else None
    finally:
        connection.close()
    assert response.status == 200, (response.status, body)
    return json.loads(body), client_port


@pytest.fixture
def fronted(server_factory, tmp_path):
    """Start tidegate with options and a front server for it; both stopped after the test."""
    fronts = []

    def start(kind: str, tidegate_options, **front_options):
        server = server_factory(ECHO, *tidegate_options)
        if kind == "haproxy":
            front = start_haproxy(tmp_path / "haproxy", server.port, **front_options)
        else:
            front = start_nginx_proxy(tmp_path / "nginx", server.port, **front_options)
        fronts.append(front)
        return server, front

    yield start
    for front in fronts:
        front.stop()


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_haproxy_send_proxy(fronted, send_proxy):
    _, front = fronted("haproxy", ["--proxy-protocol"], server_options=" " + send_proxy)
    data, client_port = get_through(front, headers={"X-Forwarded-For": "6.6.6.6"})
    env = data["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    assert env["REMOTE_PORT"] == str(client_port)
    # The client (127.0.0.2) is not trusted, so what it wrote itself is dropped.
    assert "HTTP_X_FORWARDED_FOR" not in env


def test_haproxy_option_forwardfor(fronted):
    _, front = fronted("haproxy", [], backend="    option forwardfor\n"
                       "    http-request set-header X-Forwarded-Proto https")
    data, _ = get_through(front, headers={"X-Forwarded-For": "6.6.6.6"})
    env = data["environ"]
    # HAProxy adds its own X-Forwarded-For line; repeated fields are joined with ",".
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6,127.0.0.2"
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    assert "REMOTE_PORT" not in env
    assert env["wsgi.url_scheme"] == "https"


def test_haproxy_not_trusted_changes_nothing(fronted):
    server, front = fronted("haproxy", ["--forwarded-allow-ips", "10.9.9.9"],
                            backend="    option forwardfor")
    env = get_through(front)[0]["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in env


# What the README tells users to write for nginx (the literal https stands for a TLS
# listener, which this test has not: $scheme there).
NGINX_PROXY_LOCATION = """
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host $host:8443;
"""


def start_nginx_proxy(directory: Path, upstream: int) -> FrontServer:
    from frontends import NGINX
    nginx = require(NGINX)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, upstream=f"127.0.0.1:{upstream}",
                                      location=NGINX_PROXY_LOCATION))
    return FrontServer([nginx, "-c", str(conf), "-p", str(directory)], directory, port,
                       directory / "error.log")


def test_nginx_proxy_set_header(fronted):
    _, front = fronted("nginx", [])
    data, _ = get_through(front, "/x?y=1", headers={"Host": "shop.example", "X-Forwarded-For": "6.6.6.6"})
    env = data["environ"]
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 127.0.0.2"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example:8443"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "8443")
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/x", "y=1")


# --- --root-path ----------------------------------------------------------------------------


def test_root_path_splits_script_name_and_path_info(server_factory):
    server = server_factory(ECHO, "--root-path", "/app/")
    for path, path_info in [(b"/app/x/y", "/x/y"), (b"/app", ""), (b"/app/", "/"),
                            (b"/application", "/application"), (b"/x", "/x"),
                            (b"/app/a%20b?q=1", "/a b")]:
        env = ask(server, path=path)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", path_info), path
        assert env["RAW_URI"] == path.decode()


def test_root_path_with_flask_url_for(server_factory):
    server = server_factory("proxy_apps:flask_app", "--root-path", "/app")
    sock = server.connect()
    data = json.loads(read_response(_send(sock, request_bytes(b"/app/page"))).body)
    assert data["path"] == "/app/page"
    assert data["script_root"] == "/app"
    assert data["external"] == "http://app.local:8000/app/page"
    # A proxy that strips the prefix (nginx `proxy_pass http://app/;`) works the same.
    sock = server.connect()
    data = json.loads(read_response(_send(sock, request_bytes(
        b"/page", b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n"
        b"X-Forwarded-For: 203.0.113.7\r\n"))).body)
    assert data["external"] == "https://shop.example/app/page"
    assert data["remote_addr"] == "203.0.113.7"


def _send(sock: socket.socket, data: bytes) -> socket.socket:
    sock.sendall(data)
    return sock


# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize("args, expected", [
    (["--forwarded-allow-ips", "10.0.0.1/8"], "argument --forwarded-allow-ips: \"10.0.0.1/8\" has bits set"),
    (["--forwarded-allow-ips", "10.0.0.0/40"], "argument --forwarded-allow-ips:"),
    (["--forwarded-allow-ips", "proxy.local"], "argument --forwarded-allow-ips: \"proxy.local\" is not an IP address"),
    (["--root-path", "app"], "argument --root-path: \"app\" must start with '/'"),
    (["--root-path", "/a/../b"], "argument --root-path:"),
    (["--protocol", "fastcgi", "--proxy-protocol"], "argument --proxy-protocol: applies to --protocol http only"),
    (["--protocol", "uwsgi", "--root-path", "/app"], "argument --root-path: applies to --protocol http only"),
])
def test_bad_proxy_options_exit_2(args, expected):
    result = subprocess.run(tidegate_command(*args, ECHO), cwd=str(APPS_DIR), env=server_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "tidegate: error: " + expected in result.stderr, result.stderr
    assert "Listening at" not in result.stderr
