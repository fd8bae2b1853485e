"""End-to-end tests: HTTP/1.1 behaviour (keep-alive, pipelining, HTTP/1.0, chunked requests,
``Expect: 100-continue``, HEAD, Date/Server) and response framing.

Framing is checked on raw sockets with the strict parser :class:`RawConn` below, which
reads responses byte-exactly (Content-Length, chunked, close-delimited) so that any stray
or missing body byte breaks the parse of the next pipelined response.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import random
import re
import shutil
import socket
import subprocess
import time
from datetime import datetime, timezone
from typing import List, Optional, Tuple

import pytest

from conftest import ResponseReader

# Keep in sync with apps/http_apps.py:big_chunks.
BIG_CHUNK = 64 * 1024
BIG_COUNT = 80
BIG_BODY = b"".join(i.to_bytes(4, "big") * (BIG_CHUNK // 4) for i in range(BIG_COUNT))
assert len(BIG_BODY) == 5 * 1024 * 1024

STATUS_RE = re.compile(rb"HTTP/(1\.[01]) (\d{3}) ([^\r\n]*)")
TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
CHUNK_LINE_RE = re.compile(rb"([0-9a-fA-F]+)(;[^\r\n]*)?\r\n")
IMF_FIXDATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} GMT"
)


# --------------------------------------------------------------------------- helpers


class RawResponse:
    def __init__(self, head: bytes, version: str, status: int, reason: str,
                 headers: List[Tuple[str, str]]):
        self.head = head
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # names exactly as sent
        self.body = b""
        self.framing = "none"  # none | length | chunked | close
        self.chunk_sizes: List[int] = []
        self.trailers: List[bytes] = []

    def get_all(self, name: str) -> List[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name: str) -> Optional[str]:
        values = self.get_all(name)
        assert len(values) <= 1, f"header {name} sent {len(values)} times: {self.head!r}"
        return values[0] if values else None

    def connection_tokens(self) -> List[str]:
        return [t.strip().lower() for v in self.get_all("Connection") for t in v.split(",")]

    def json(self) -> dict:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<RawResponse {self.head!r} body={self.body[:200]!r}>"


class RawConn:
    """A strict, byte-exact HTTP/1.x response reader over one raw socket."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0):
        self.sock = sock
        self.timeout = timeout
        sock.settimeout(timeout)
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        if self.eof:
            raise EOFError("connection closed by the server")
        data = self.sock.recv(262144)
        if not data:
            self.eof = True
            raise EOFError("connection closed by the server")
        self.buf += data

    def read_until(self, delim: bytes, limit: int = 1 << 20) -> bytes:
        start = 0
        while True:
            idx = self.buf.find(delim, start)
            if idx >= 0:
                end = idx + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            assert len(self.buf) < limit, f"no {delim!r} within {limit} bytes: {bytes(self.buf[:300])!r}"
            start = max(0, len(self.buf) - len(delim) + 1)
            self._fill()

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_close(self) -> bytes:
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_head(self) -> RawResponse:
        head = self.read_until(b"\r\n\r\n")
        assert b"\n" not in head.replace(b"\r\n", b""), f"bare LF in response head: {head!r}"
        lines = head[:-4].split(b"\r\n")
        match = STATUS_RE.fullmatch(lines[0])
        assert match, f"bad status line: {lines[0]!r} (head {head!r})"
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep and TOKEN_RE.fullmatch(name), f"bad header line {line!r} in {head!r}"
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        return RawResponse(head, "HTTP/" + match.group(1).decode(), int(match.group(2)),
                           match.group(3).decode("latin-1"), headers)

    def read_response(self, method: str = "GET", version: str = "HTTP/1.1") -> RawResponse:
        """Read one final response (interim 1xx responses are not skipped: they fail)."""
        resp = self.read_head()
        if version is not None:
            assert resp.version == version, f"expected {version}: {resp.head!r}"
        te = resp.get_all("Transfer-Encoding")
        cl = resp.get_all("Content-Length")
        assert len(cl) <= 1, f"several Content-Length headers: {resp.head!r}"
        assert not (te and cl), f"both Transfer-Encoding and Content-Length: {resp.head!r}"
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        if te:
            assert ",".join(te).strip().lower() == "chunked", f"unexpected TE: {resp.head!r}"
            resp.framing = "chunked"
            parts = []
            while True:
                line = self.read_until(b"\r\n", limit=1024)
                m = CHUNK_LINE_RE.fullmatch(line)
                assert m, f"bad chunk-size line {line!r}"
                size = int(m.group(1), 16)
                resp.chunk_sizes.append(size)
                if size == 0:
                    break
                parts.append(self.read_exact(size))
                crlf = self.read_exact(2)
                assert crlf == b"\r\n", f"chunk data not followed by CRLF: {crlf!r}"
            while True:
                line = self.read_until(b"\r\n", limit=8192)
                if line == b"\r\n":
                    break
                resp.trailers.append(line)
            resp.body = b"".join(parts)
        elif cl:
            assert re.fullmatch(r"\d+", cl[0]), f"bad Content-Length {cl[0]!r}"
            resp.framing = "length"
            resp.body = self.read_exact(int(cl[0]))
        else:
            resp.framing = "close"
            resp.body = self.read_to_close()
        return resp

    def assert_closed(self, timeout: float = 5.0) -> None:
        """The server closes the connection and sends nothing more."""
        self.sock.settimeout(timeout)
        try:
            extra = self.read_to_close()
        except socket.timeout:
            pytest.fail(f"server kept the connection open (no close within {timeout}s)")
        except ConnectionResetError:
            extra = bytes(self.buf)
        finally:
            self.sock.settimeout(self.timeout)
        assert extra == b"", f"unexpected bytes before close: {extra[:300]!r}"

    def assert_silent(self, wait: float = 0.3) -> bool:
        """Nothing arrives for ``wait`` seconds. Returns True if the server closed meanwhile."""
        assert not self.buf, f"unexpected bytes: {bytes(self.buf[:300])!r}"
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        assert data == b"", f"unexpected bytes: {data[:300]!r}"
        self.eof = True
        return True


def request(method: str = "GET", path: str = "/", headers=(), body: bytes = b"",
            version: str = "HTTP/1.1", host: bool = True) -> bytes:
    lines = [f"{method} {path} {version}"]
    if host:
        lines.append("Host: 127.0.0.1")
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def connect(server) -> Tuple[socket.socket, RawConn]:
    sock = server.connect()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, RawConn(sock)


def check_date_and_server(resp) -> None:
    """Exactly one valid, current IMF-fixdate Date header and one non-empty Server header."""
    get_all = resp.get_all if isinstance(resp, RawResponse) else resp.headers.get_all
    dates = get_all("Date") or []
    servers = get_all("Server") or []
    assert len(dates) == 1, f"expected one Date header, got {dates!r}"
    assert len(servers) == 1 and servers[0].strip(), f"expected one Server header, got {servers!r}"
    assert IMF_FIXDATE_RE.fullmatch(dates[0]), f"Date is not an RFC 7231 IMF-fixdate: {dates[0]!r}"
    when = email.utils.parsedate_to_datetime(dates[0])
    skew = abs((datetime.now(timezone.utc) - when).total_seconds())
    assert skew < 5, f"Date {dates[0]!r} is {skew:.1f}s away from now"


def headers_without_date(resp: RawResponse) -> List[Tuple[str, str]]:
    return sorted((n, v) for n, v in resp.headers if n.lower() != "date")


# --------------------------------------------------------------------------- keep-alive


def test_keep_alive_serves_several_requests_on_one_connection(serve_app):
    server = serve_app("http_apps:echo")
    sock, conn = connect(server)
    with sock:
        port = str(sock.getsockname()[1])
        for i in range(4):
            conn.send(request("GET", f"/ka/{i}?n={i}"))
            resp = conn.read_response()
            assert resp.status == 200
            assert "close" not in resp.connection_tokens()
            data = resp.json()
            assert (data["path"], data["query"]) == (f"/ka/{i}", f"n={i}")
            assert data["remote_port"] == port
            assert data["protocol"] == "HTTP/1.1"
            check_date_and_server(resp)
        assert conn.assert_silent(0.2) is False  # idle keep-alive connection stays open
        conn.send(request("GET", "/last"))
        assert conn.read_response().json()["path"] == "/last"


def test_connection_close_from_client_closes_after_response(serve_app):
    server = serve_app("http_apps:echo")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/first"))
        assert conn.read_response().json()["path"] == "/first"
        conn.send(request("POST", "/bye", [("Connection", "close"), ("Content-Length", "3")], b"abc"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.json()["body"] == "abc"
        conn.assert_closed()


def test_no_request_served_after_connection_close_in_pipeline(serve_app):
    server = serve_app("http_apps:echo")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/closing", [("Connection", "close")]) + request("GET", "/ignored"))
        resp = conn.read_response()
        assert resp.json()["path"] == "/closing"
        conn.assert_closed()


@pytest.mark.parametrize("threads", ["1", "4"])
def test_bytes_a_closed_connection_left_never_reach_the_next_one(server_factory, threads):
    """Each thread hands the buffers of its closed connections to its next ones. Whatever a
    connection left in them (a pipelined head after Connection: close, half a head, a
    response cut by the client) must not show up in another connection's request or
    response: every fresh connection is parsed and answered cleanly."""
    server = server_factory("http_apps:framing", "--threads", threads)

    def fresh_connection_is_answered_exactly(after):
        # The strict reader fails on any stray byte before, between or after the answers.
        sock, conn = connect(server)
        with sock:
            conn.send(request("GET", "/list") + request("GET", "/declared"))
            first = conn.read_response()
            second = conn.read_response()
            assert (first.status, first.body) == (200, b"hello world"), after
            assert (second.status, second.body) == (200, b"hello"), after
            assert conn.assert_silent(0.05) is False, after

    for round_number in range(12):
        # A pipelined head left unread behind Connection: close.
        sock, conn = connect(server)
        with sock:
            conn.send(request("GET", "/one", [("Connection", "close")])
                      + b"GET /leftover HTTP/1.1\r\nHost: x\r\nX-Half: ")
            resp = conn.read_response()
            assert (resp.status, resp.body) == (200, b"hello")
            conn.assert_closed()
        fresh_connection_is_answered_exactly(f"a pipelined head left, round {round_number}")
        # Half a head, then the client goes away.
        sock, conn = connect(server)
        with sock:
            conn.send(b"GET /half HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"z" * 3000)
            time.sleep(0.01)
        fresh_connection_is_answered_exactly(f"half a head left, round {round_number}")
        # A big response the client stops reading and closes.
        sock, conn = connect(server)
        with sock:
            conn.send(request("GET", "/big-gen"))
            head = conn.read_head()
            assert head.status == 200, head
        fresh_connection_is_answered_exactly(f"a cut response, round {round_number}")


def test_real_clients_reuse_the_connection(serve_app):
    server = serve_app("http_apps:echo")
    client = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        ports = set()
        for i in range(3):
            client.request("POST", f"/hc/{i}", body=b"x" * i)
            resp = client.getresponse()
            data = json.loads(resp.read())
            assert resp.status == 200 and data["body"] == "x" * i
            ports.add(data["remote_port"])
        assert ports == {str(client.sock.getsockname()[1])}
    finally:
        client.close()

    requests = pytest.importorskip("requests")
    with requests.Session() as session:
        ports = {session.get(f"{server.url}/rq/{i}", timeout=10).json()["remote_port"] for i in range(3)}
    assert len(ports) == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_reuses_the_connection(serve_app):
    server = serve_app("http_apps:echo")
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
         f"{server.url}/c1", f"{server.url}/c2", f"{server.url}/c3"],
        capture_output=True, timeout=20, check=True, text=True,
    ).stdout.split("\n")
    assert out[:3] == ["200 1", "200 0", "200 0"], out


# --------------------------------------------------------------------------- pipelining


def test_pipelined_requests_answered_in_order(serve_app):
    server = serve_app("http_apps:echo")
    with server.connect() as sock:
        sock.sendall(
            request("GET", "/one?a=1")
            + request("POST", "/two", [("Content-Type", "text/plain"), ("Content-Length", "15")],
                      b"pipelined body!")
            + request("GET", "/three")
            + request("PUT", "/four", [("Content-Length", "0")])
        )
        reader = ResponseReader(sock)
        got = []
        for _ in range(4):
            resp = reader.read()
            assert resp.status == 200
            data = json.loads(resp.body)
            got.append((data["method"], data["path"], data["body"]))
        assert got == [("GET", "/one", ""), ("POST", "/two", "pipelined body!"),
                       ("GET", "/three", ""), ("PUT", "/four", "")]


def test_pipelined_order_kept_with_several_threads(serve_app):
    server = serve_app("http_apps:echo", "--threads", "4")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/slow?sleep=0.3") + request("GET", "/fast1") + request("GET", "/fast2"))
        paths = [conn.read_response().json()["path"] for _ in range(3)]
        assert paths == ["/slow", "/fast1", "/fast2"]


# --------------------------------------------------------------------------- HTTP/1.0


def test_http10_without_keep_alive_closes_after_response(serve_app):
    server = serve_app("http_apps:echo")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/old", version="HTTP/1.0", host=False))
        resp = conn.read_response(version=None)
        assert resp.status == 200
        assert resp.json()["protocol"] == "HTTP/1.0"
        assert "keep-alive" not in resp.connection_tokens()
        check_date_and_server(resp)
        conn.assert_closed()


def test_http10_keep_alive_keeps_connection_open(serve_app):
    server = serve_app("http_apps:echo")
    sock, conn = connect(server)
    with sock:
        port = str(sock.getsockname()[1])
        for i in range(2):
            conn.send(request("GET", f"/ka10/{i}", [("Connection", "keep-alive")], version="HTTP/1.0"))
            resp = conn.read_response(version=None)
            assert resp.status == 200
            assert "keep-alive" in resp.connection_tokens(), resp.head
            assert resp.framing == "length"
            data = resp.json()
            assert (data["path"], data["protocol"], data["remote_port"]) == (f"/ka10/{i}", "HTTP/1.0", port)
        assert conn.assert_silent(0.2) is False  # still open
        conn.send(request("GET", "/ka10/end", version="HTTP/1.0"))
        assert conn.read_response(version=None).json()["path"] == "/ka10/end"
        conn.assert_closed()


def test_server_protocol_echoed(serve_app):
    server = serve_app("http_apps:echo")
    for version in ("HTTP/1.0", "HTTP/1.1"):
        sock, conn = connect(server)
        with sock:
            conn.send(request("GET", "/proto", [("Connection", "close")], version=version))
            assert conn.read_response(version=None).json()["protocol"] == version


# --------------------------------------------------------------------------- chunked requests

CHUNKED_BODY = (
    b"5;ext=1\r\nhello\r\n"
    b"1;foo;bar=\"baz\"\r\n \r\n"
    b"A\r\n0123456789\r\n"
    b"6\r\n\r\nCRLF\r\n"
    b"0;last\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
)
CHUNKED_EXPECTED = b"hello 0123456789\r\nCRLF"


@pytest.mark.parametrize("mode", ["one-write", "fragmented"])
def test_chunked_request_body_reaches_app(serve_app, mode):
    server = serve_app("http_apps:echo")
    sock, conn = connect(server)
    with sock:
        data = (request("POST", "/chunked", [("Transfer-Encoding", "chunked"),
                                              ("Content-Type", "application/octet-stream")])
                + CHUNKED_BODY + request("GET", "/after"))
        if mode == "one-write":
            conn.send(data)
        else:
            for i in range(0, len(data), 7):
                conn.send(data[i:i + 7])
                time.sleep(0.004)
        resp = conn.read_response()
        assert resp.status == 200
        got = resp.json()
        assert got["body"] == CHUNKED_EXPECTED.decode("latin-1")
        assert got["content_length"] is None  # no CONTENT_LENGTH for chunked bodies
        assert got["input_terminated"] is True
        assert conn.read_response().json()["path"] == "/after"  # trailers fully consumed


def test_chunked_request_with_zero_chunks(serve_app):
    server = serve_app("http_apps:echo")
    sock, conn = connect(server)
    with sock:
        conn.send(request("POST", "/empty", [("Transfer-Encoding", "chunked"),
                                             ("Content-Type", "text/plain")])
                  + b"0\r\n\r\n" + request("GET", "/next"))
        got = conn.read_response().json()
        assert (got["path"], got["body"], got["length"]) == ("/empty", "", 0)
        assert conn.read_response().json()["path"] == "/next"


def test_chunked_request_large_body(serve_app):
    server = serve_app("http_apps:echo")
    rng = random.Random(1234)
    payload = rng.randbytes(300_000) if hasattr(rng, "randbytes") else bytes(
        rng.getrandbits(8) for _ in range(300_000))
    encoded = bytearray()
    pos = 0
    while pos < len(payload):
        size = min(rng.choice([1, 7, 100, 4096, 65536, 70000]), len(payload) - pos)
        fmt = "%X" if rng.random() < 0.5 else "%x"
        encoded += (fmt % size).encode() + b"\r\n" + payload[pos:pos + size] + b"\r\n"
        pos += size
    encoded += b"0\r\n\r\n"
    sock, conn = connect(server)
    with sock:
        conn.send(request("POST", "/big", [("Transfer-Encoding", "chunked"),
                                           ("Content-Type", "application/octet-stream")])
                  + bytes(encoded) + request("GET", "/next"))
        got = conn.read_response().json()
        assert got["length"] == len(payload)
        assert got["sha256"] == hashlib.sha256(payload).hexdigest()
        assert conn.read_response().json()["path"] == "/next"


def test_chunked_upload_with_requests(serve_app):
    requests = pytest.importorskip("requests")
    server = serve_app("http_apps:echo")
    parts = [b"first part ", b"second", b" third"]
    resp = requests.post(f"{server.url}/up", data=iter(parts), timeout=10,
                         headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 200
    assert resp.json()["body"] == "first part second third"
    assert resp.json()["content_length"] is None


# --------------------------------------------------------------------------- Expect: 100-continue


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_expect_100_continue_sent_when_app_reads(serve_app, framing):
    server = serve_app("http_apps:slow_reader")
    body = b"expected body"
    if framing == "content-length":
        headers = [("Content-Length", str(len(body)))]
        wire_body = body
    else:
        headers = [("Transfer-Encoding", "chunked")]
        wire_body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    sock, conn = connect(server)
    with sock:
        started = time.monotonic()
        conn.send(request("POST", "/expect", [("Expect", "100-continue"),
                                               ("Content-Type", "text/plain")] + headers))
        # The app sleeps 0.5 s before reading: nothing may arrive before that.
        assert conn.assert_silent(0.35) is False
        interim = conn.read_until(b"\r\n\r\n")
        elapsed = time.monotonic() - started
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        assert elapsed >= 0.45, f"100 Continue came {elapsed:.3f}s after the request (app sleeps 0.5 s)"
        assert not conn.buf, f"bytes after the interim response: {bytes(conn.buf)!r}"
        conn.send(wire_body)
        resp = conn.read_response()  # a second interim response would fail here
        assert resp.status == 200
        got = resp.json()
        assert got["body"] == body.decode()
        check_date_and_server(resp)
        conn.send(request("GET", "/after"))  # connection still usable
        assert conn.read_response().status == 200


def test_expect_100_continue_not_sent_when_app_never_reads(serve_app):
    server = serve_app("http_apps:no_reader")
    sock, conn = connect(server)
    with sock:
        conn.send(request("POST", "/noread", [("Expect", "100-continue"), ("Content-Length", "11"),
                                               ("Content-Type", "text/plain")]))
        resp = conn.read_response()
        assert resp.status == 200, resp.head
        assert resp.body == b"body never read: /noread"
        check_date_and_server(resp)
        conn.assert_silent(0.3)  # no late 100 Continue (closing is fine)


def test_expect_unread_body_never_parsed_as_request(serve_app):
    """After a final response to an unread Expect body, the server either closes the
    connection or discards the body: the body is never taken as a request."""
    server = serve_app("http_apps:no_reader")
    sock, conn = connect(server)
    with sock:
        smuggled = request("GET", "/smuggled")
        conn.send(request("POST", "/noread", [("Expect", "100-continue"), ("Content-Type", "text/plain"),
                                               ("Content-Length", str(len(smuggled)))]))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"body never read: /noread"
        paths = []
        try:
            conn.send(smuggled + request("GET", "/real"))
            while b"body never read: /real" not in paths:
                paths.append(conn.read_response().body)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            pass  # closing the connection is fine
        except socket.timeout:
            pytest.fail(f"server neither closed nor answered /real; got {paths!r}")
        assert b"body never read: /smuggled" not in paths, f"the unread body was answered as a request: {paths!r}"
        assert paths in ([], [b"body never read: /real"]), paths


# --------------------------------------------------------------------------- HEAD


def test_head_same_headers_as_get_and_no_body(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("HEAD", "/list") + request("GET", "/list")
                  + request("HEAD", "/declared") + request("GET", "/declared"))
        head = conn.read_response("HEAD")
        get = conn.read_response("GET")
        assert head.status == get.status == 200
        assert headers_without_date(head) == headers_without_date(get)
        assert get.body == b"hello world"
        assert head.get("Content-Type") == "text/plain"
        if not serve_app.validated:  # the server sees the list itself
            assert head.get("Content-Length") == "11"
        check_date_and_server(head)
        head2 = conn.read_response("HEAD")
        get2 = conn.read_response("GET")
        assert head2.get("Content-Length") == "5"
        assert headers_without_date(head2) == headers_without_date(get2)
        assert get2.body == b"hello"
        # nothing was left over from the HEAD responses
        assert conn.assert_silent(0.1) is False


def test_head_of_streamed_body_has_no_body(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("HEAD", "/gen") + request("GET", "/one"))
        head = conn.read_response("HEAD")
        assert head.status == 200
        nxt = conn.read_response()  # would fail on any body byte of the HEAD response
        assert nxt.body == b"hello"


def test_head_then_get_with_http_client(serve_app):
    server = serve_app("http_apps:framing")
    client = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        client.request("HEAD", "/list")
        head = client.getresponse()
        assert head.read() == b""
        sock_before = client.sock
        client.request("GET", "/list")
        get = client.getresponse()
        assert get.read() == b"hello world"
        assert client.sock is sock_before  # kept alive after HEAD
        assert head.getheader("Content-Type") == get.getheader("Content-Type") == "text/plain"
        assert head.getheader("Content-Length") == get.getheader("Content-Length")
    finally:
        client.close()


# --------------------------------------------------------------------------- Date and Server


def test_date_and_server_headers_on_every_response(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        reqs = [("GET", "/one"), ("GET", "/gen"), ("GET", "/204"), ("GET", "/304"),
                ("HEAD", "/list"), ("GET", "/nowhere"), ("GET", "/empty-list")]
        conn.send(b"".join(request(m, p) for m, p in reqs))
        statuses = []
        for method, _ in reqs:
            resp = conn.read_response(method)
            statuses.append(resp.status)
            check_date_and_server(resp)
        assert statuses == [200, 200, 204, 304, 200, 404, 200]


@pytest.mark.allow_log
def test_date_and_server_headers_on_500(server_factory):
    server = server_factory("http_apps:broken")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/boom"))
        resp = conn.read_response()
        assert resp.status == 500
        check_date_and_server(resp)
    server.wait_for_log(r"\[ERROR\] Error handling request GET /boom: RuntimeError: boom before start_response")


# --------------------------------------------------------------------------- framing


def test_app_content_length_honoured(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/declared") + request("GET", "/declared-gen") + request("GET", "/one"))
        first = conn.read_response()
        assert (first.get("Content-Length"), first.framing, first.body) == ("5", "length", b"hello")
        second = conn.read_response()
        assert second.get("Transfer-Encoding") is None
        assert (second.get("Content-Length"), second.framing, second.body) == ("10", "length", b"helloworld")
        assert conn.read_response().body == b"hello"


@pytest.mark.allow_log
@pytest.mark.parametrize("path", ["/long", "/long-gen"])
def test_longer_body_cut_at_declared_length(server_factory, path):
    server = server_factory("http_apps:broken")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", path))
        resp = conn.read_response()
        assert resp.get("Content-Length") == "5"
        assert resp.body == b"hello"
        # Either the connection is closed, or it is clean and serves the next request.
        if conn.assert_silent(0.3):
            return
        conn.send(request("GET", "/ok"))
        assert conn.read_response().body == b"ok /ok"


@pytest.mark.allow_log
@pytest.mark.parametrize("path", ["/short", "/short-gen"])
def test_shorter_body_closes_connection(server_factory, path):
    server = server_factory("http_apps:broken")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", path))
        resp = conn.read_head()
        assert resp.status == 200 and resp.get("Content-Length") == "10"
        sock.settimeout(5)
        try:
            rest = conn.read_to_close()
        except socket.timeout:
            pytest.fail(f"connection left open after a short body; got {bytes(conn.buf)!r}")
        assert rest == b"hello"
    server.wait_for_log(rf"\[ERROR\] Error handling request GET {path}: ")


def test_list_and_one_chunk_bodies_get_content_length(server_factory):
    server = server_factory("http_apps:framing")  # raw: the server sees the list itself
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/one") + request("GET", "/list") + request("GET", "/empty-list"))
        for expected in (b"hello", b"hello world", b""):
            resp = conn.read_response()
            assert resp.get("Transfer-Encoding") is None, resp.head
            assert resp.get("Content-Length") == str(len(expected)), resp.head
            assert resp.body == expected


def test_bodies_framed_correctly_when_validated(serve_app):
    """Under the validator the server sees an iterator, not a list: any valid framing."""
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/one") + request("GET", "/list") + request("GET", "/empty-list")
                  + request("GET", "/gen"))
        for expected in (b"hello", b"hello world", b"", b"abcdefg"):
            resp = conn.read_response()
            assert resp.framing in ("length", "chunked")
            assert resp.body == expected


def test_generator_body_chunked_on_http11(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/gen") + request("GET", "/one"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.get("Content-Length") is None
        assert resp.get("Transfer-Encoding").lower() == "chunked"
        assert resp.framing == "chunked"
        assert resp.body == b"abcdefg"
        # empty chunks from the app never show up as a (terminating) zero-size chunk
        assert resp.chunk_sizes[-1] == 0 and 0 not in resp.chunk_sizes[:-1]
        assert resp.trailers == []
        assert conn.read_response().body == b"hello"


@pytest.mark.parametrize("keep_alive", [False, True])
def test_generator_body_close_delimited_on_http10(serve_app, keep_alive):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        headers = [("Connection", "keep-alive")] if keep_alive else []
        conn.send(request("GET", "/gen", headers, version="HTTP/1.0"))
        resp = conn.read_head()
        assert resp.status == 200
        assert resp.get("Transfer-Encoding") is None, resp.head
        assert resp.get("Content-Length") is None, resp.head
        assert "keep-alive" not in resp.connection_tokens(), resp.head
        sock.settimeout(5)
        try:
            body = conn.read_to_close()
        except socket.timeout:
            pytest.fail("HTTP/1.0 streamed body not ended by closing the connection")
        assert body == b"abcdefg"


@pytest.mark.allow_log
def test_204_and_304_carry_no_body(server_factory):
    server = server_factory("http_apps:broken")
    sock, conn = connect(server)
    with sock:
        paths = ["/204-list", "/204-gen", "/304-list", "/304-gen"]
        conn.send(b"".join(request("GET", p) for p in paths) + request("GET", "/ok"))
        for path in paths:
            resp = conn.read_response()  # no body read for 204/304
            assert resp.status == int(path[1:4])
            assert resp.get("Transfer-Encoding") is None, resp.head
            if resp.status == 204:
                assert resp.get("Content-Length") is None, resp.head
        last = conn.read_response()  # stray body bytes would break this parse
        assert last.status == 200 and last.body == b"ok /ok"


def test_well_behaved_204_and_304_pipelined(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/204") + request("GET", "/304") + request("GET", "/one"))
        first, second = conn.read_response(), conn.read_response()
        assert (first.status, second.status) == (204, 304)
        assert second.get("ETag") == '"abc"'
        for resp in (first, second):
            assert resp.get("Transfer-Encoding") is None
        assert first.get("Content-Length") is None
        assert conn.read_response().body == b"hello"


def test_custom_reason_phrase_kept(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/reason") + request("GET", "/reason404"))
        first = conn.read_response()
        assert first.head.startswith(b"HTTP/1.1 200 Everything Fine\r\n")
        assert first.body == b"fine"
        second = conn.read_response()
        assert second.head.startswith(b"HTTP/1.1 404 Not Here At All\r\n")
        assert second.body == b"nope"


def test_response_header_name_case_kept(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/case"))
        resp = conn.read_response()
        names = [n for n, _ in resp.headers]
        for name in ("content-type", "X-CuStOm-HeAdEr", "x-lower-case", "X-UPPER-CASE"):
            assert name in names, resp.head
        assert "Content-Type" not in names
        assert resp.get("X-CuStOm-HeAdEr") == "MiXeD value"
        assert resp.body == b"case"


# --------------------------------------------------------------------------- big responses


def test_big_list_body_byte_exact(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/big-list") + request("GET", "/one"))
        resp = conn.read_response()
        if not serve_app.validated:
            assert resp.get("Content-Length") == str(len(BIG_BODY))
        assert len(resp.body) == len(BIG_BODY)
        assert resp.body == BIG_BODY
        assert conn.read_response().body == b"hello"


def test_big_generator_body_byte_exact(serve_app):
    server = serve_app("http_apps:framing")
    sock, conn = connect(server)
    with sock:
        conn.send(request("GET", "/big-gen") + request("GET", "/one"))
        resp = conn.read_response()
        assert resp.framing == "chunked"
        assert len(resp.body) == len(BIG_BODY)
        assert resp.body == BIG_BODY
        assert conn.read_response().body == b"hello"
    client = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        client.request("GET", "/big-gen")
        real = client.getresponse()
        assert hashlib.sha256(real.read()).digest() == hashlib.sha256(BIG_BODY).digest()
    finally:
        client.close()


def test_silent_connections_do_not_block_a_one_thread_worker(server_factory):
    """Backpressure counts requests, not connections: clients that connect and send
    nothing (or trickle a head) must not stop a worker with one Python thread from
    accepting and serving others."""
    server = server_factory("http_apps:echo", "--threads", "1", "--header-timeout", "30")
    silent = [server.connect() for _ in range(20)]
    for sock in silent[:10]:
        sock.sendall(b"GET / HTTP/1.1\r\nHo")  # a head that never completes
    started = time.monotonic()
    for _ in range(5):
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            response = ResponseReader(sock).read()
            assert response.status == 200
    assert time.monotonic() - started < 2.0
