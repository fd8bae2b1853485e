"""Hardening (issue 5): strict HTTP/1 parsing, limits, timeouts, slow and broken clients.

Everything is sent as raw bytes over loopback sockets. The app (``apps/hardening_apps.py``)
appends an event line to the file named by ``HARDEN_EVENTS`` each time it is called, when its
``wsgi.input`` read raises, and when its ``close()`` runs, so a test can prove the app was
never called for a refused request: after each refusal a *sentinel* request is sent on a
fresh connection, and the only call recorded since the refusal must be the sentinel's (one
Python thread serves requests in order, so a call made for the refused bytes would be
recorded before the sentinel's).

Option names, defaults and statuses follow the hardening spec (gunicorn's names):
--limit-request-line (414), --limit-request-fields / --limit-request-field-size (431),
--limit-request-body (413), --keep-alive, --header-timeout (408), --body-timeout,
--write-timeout, --max-connections.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import pytest

from conftest import APPS_DIR, Server, server_env, tidegate_command

APP = "hardening_apps:app"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


# --- helpers --------------------------------------------------------------------------------


class Events:
    """The JSON-lines event file the hardening apps append to."""

    def __init__(self, path: Path):
        self.path = path

    def all(self) -> List[dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        # The app may be appending a line right now: only complete lines count.
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def mark(self) -> int:
        return len(self.all())

    def since(self, mark: int, event: Optional[str] = None) -> List[dict]:
        return [e for e in self.all()[mark:] if event is None or e["event"] == event]

    def wait(self, mark: int, event: str, path: Optional[str] = None, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for found in self.since(mark, event):
                if path is None or found.get("path") == path:
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {event!r} event for {path!r} within {timeout}s: {self.since(mark)}"
                )
            time.sleep(0.02)


def events_env(path: Optional[Path]) -> dict:
    env = server_env()
    if path is not None:
        env["HARDEN_EVENTS"] = str(path)
    return env


def start(server_factory, tmp_path: Path, *options: str, app: str = APP) -> Tuple[Server, Events]:
    path = tmp_path / f"events-{uuid.uuid4().hex[:8]}.jsonl"
    server = server_factory(app, *options, env=events_env(path))
    return server, Events(path)


def read_all(sock: socket.socket, timeout: float = 5.0) -> Tuple[bytes, bool]:
    """Everything the server sends until it closes. Returns (data, closed): closed is
    False when the server kept the connection open for `timeout` seconds."""
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return b"".join(chunks), False
        except (ConnectionResetError, BrokenPipeError):
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def parse(raw: bytes) -> Tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of the first response in `raw`."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {raw!r}"
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return status, headers, body


class Reader:
    """Successive responses from one socket (a 100 Continue and the final response may
    arrive in one read: nothing read past a response is lost)."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0):
        self.sock = sock
        self.buffer = b""
        sock.settimeout(timeout)

    def _fill(self, what: str) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"connection closed inside the {what}: {self.buffer!r}"
        self.buffer += chunk

    def response(self) -> Tuple[int, dict, bytes]:
        """One response framed by Content-Length (the apps here always send one)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill("response head")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, headers, _ = parse(head + b"\r\n\r\n")
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill("body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body


def read_response(sock: socket.socket, timeout: float = 5.0) -> Tuple[int, dict, bytes]:
    """One response (nothing else may be pending on the socket)."""
    return Reader(sock, timeout).response()


def get(path: str = "/", extra: str = "", version: str = "HTTP/1.1") -> bytes:
    return f"GET {path} {version}\r\nHost: x\r\n{extra}\r\n".encode()


def exchange(server: Server, data: bytes) -> Tuple[int, dict, bytes]:
    """Sends `data` on a new connection and reads one response."""
    with server.connect(timeout=5) as sock:
        sock.sendall(data)
        return read_response(sock)


def assert_sentinel_only(server: Server, events: Events, mark: int) -> None:
    """The app is still served, and the sentinel is the only call since `mark`."""
    path = f"/sentinel-{uuid.uuid4().hex[:8]}"
    status, _, _ = exchange(server, get(path, "Connection: close\r\n"))
    assert status == 200, "the server stopped serving after a refusal"
    calls = [c["path"] for c in events.since(mark, "call")]
    assert calls == [path], f"the app was called for a refused request: {calls}"


def assert_refused(
    server: Server,
    events: Events,
    data: bytes,
    statuses: Iterable[int],
) -> int:
    """Sends `data`, then asserts: a status in `statuses`, `Connection: close`, the
    connection closed, and the app never called. Returns the status."""
    statuses = set(statuses)
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(data)
        raw, closed = read_all(sock, 2.0)
    assert raw, f"no response at all to {data!r} (closed={closed})"
    status, headers, body = parse(raw)
    assert status in statuses, f"{data!r} answered {raw!r}, expected one of {sorted(statuses)}"
    assert headers.get("connection", "").lower() == "close", raw
    assert closed, f"connection left open after refusing {data!r}"
    assert b"Traceback" not in body
    assert_sentinel_only(server, events, mark)
    return status


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """One server for the whole strict-parsing table (each case uses fresh connections)."""
    path = tmp_path_factory.mktemp("strict") / "events.jsonl"
    server = Server(
        tidegate_command("--bind", "127.0.0.1:0", APP), APPS_DIR, events_env(path)
    )
    try:
        server.wait_listening()
        yield server, Events(path)
    finally:
        server.stop()
        assert "panicked" not in server.log, server.log


# --- strict HTTP/1 parsing: refused before the app runs ---------------------------------------

H = b"Host: x"
POST = b"POST / HTTP/1.1\r\n"


def head(*fields: bytes, line: bytes = POST, body: bytes = b"") -> bytes:
    return line + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


CHUNKED_SMUGGLE = b"0\r\n\r\n" + SMUGGLED

REFUSED = [
    # Content-Length together with Transfer-Encoding (the classic CL.TE / TE.CL desync).
    ("cl-then-te", head(H, b"Content-Length: 4", b"Transfer-Encoding: chunked", body=CHUNKED_SMUGGLE), {400}),
    ("te-then-cl", head(H, b"Transfer-Encoding: chunked", b"Content-Length: 4", body=CHUNKED_SMUGGLE), {400}),
    ("cl-zero-and-te", head(H, b"Content-Length: 0", b"Transfer-Encoding: chunked", body=CHUNKED_SMUGGLE), {400}),
    # Several Content-Length values, or a list.
    ("cl-twice-same", head(H, b"Content-Length: 5", b"Content-Length: 5", body=b"hello"), {400}),
    ("cl-twice-different", head(H, b"Content-Length: 0", b"Content-Length: 40", body=SMUGGLED), {400}),
    ("cl-list", head(H, b"Content-Length: 5, 5", body=b"hello"), {400}),
    ("cl-list-nospace", head(H, b"Content-Length: 5,5", body=b"hello"), {400}),
    # Content-Length that is not plain digits.
    *[
        (f"cl-{name}", head(H, b"Content-Length: " + value, body=b"hello"), {400})
        for name, value in [
            ("plus", b"+1"), ("minus", b"-1"), ("hex", b"0x1"), ("underscore", b"1_0"),
            ("inner-space", b"1 0"), ("dot", b"1.0"), ("exponent", b"1e1"), ("empty", b""),
            ("letters", b"abc"), ("arabic-digit", "\u0665".encode()),
            ("overflow", b"99999999999999999999999"), ("u64-overflow", b"18446744073709551616"),
        ]
    ],
    # Transfer-Encoding: chunked not exactly once and last; other codings; odd bytes.
    ("te-chunked-chunked", head(H, b"Transfer-Encoding: chunked, chunked", body=CHUNKED_SMUGGLE), {400}),
    ("te-chunked-two-fields", head(H, b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=CHUNKED_SMUGGLE), {400}),
    ("te-chunked-not-last", head(H, b"Transfer-Encoding: chunked, gzip", body=CHUNKED_SMUGGLE), {400}),
    ("te-chunked-then-identity-field", head(H, b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity", body=CHUNKED_SMUGGLE), {400}),
    ("te-gzip-chunked", head(H, b"Transfer-Encoding: gzip, chunked", body=CHUNKED_SMUGGLE), {400, 501}),
    ("te-gzip", head(H, b"Transfer-Encoding: gzip", body=b"x"), {400, 501}),
    ("te-identity", head(H, b"Transfer-Encoding: identity", body=b"x"), {400, 501}),
    ("te-unknown", head(H, b"Transfer-Encoding: foo", body=b"x"), {501}),
    ("te-empty", head(H, b"Transfer-Encoding: ", body=CHUNKED_SMUGGLE), {400, 501}),
    *[
        (f"te-odd-{name}", head(H, b"Transfer-Encoding: " + value, body=CHUNKED_SMUGGLE), {400})
        for name, value in [
            ("quoted", b'"chunked"'), ("param", b"chunked;q=1"), ("comma-junk", b"chunked,;"),
            ("vt", b"chunked\x0b"), ("ff-before", b"\x0cchunked"), ("nul", b"chunk\x00ed"),
            ("obs-text", b"chunked\xa0"), ("cr", b"chunked\rx"),
        ]
    ],
    ("te-odd-suffix", head(H, b"Transfer-Encoding: chunkedx", body=CHUNKED_SMUGGLE), {400, 501}),
    ("te-odd-prefix", head(H, b"Transfer-Encoding: xchunked", body=CHUNKED_SMUGGLE), {400, 501}),
    ("te-http10", head(b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.0\r\n", body=CHUNKED_SMUGGLE), {400}),
    ("te-http10-with-cl", head(b"Content-Length: 5", b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.0\r\n", body=b"hello"), {400}),
    # Line endings.
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: x\n\n", {400}),
    ("bare-lf-request-line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", {400}),
    ("bare-lf-between-fields", b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", {400}),
    ("bare-lf-final", b"GET / HTTP/1.1\r\nHost: x\r\n\n", {400}),
    ("bare-lf-hides-cl", b"POST / HTTP/1.1\r\nHost: x\r\nX-A: b\nContent-Length: 40\r\n\r\n" + SMUGGLED, {400}),
    ("bare-cr-request-line", b"GET / HTTP/1.1\rHost: x\r\n\r\n", {400}),
    ("bare-cr-between-fields", b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", {400}),
    ("bare-cr-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", {400}),
    ("bare-cr-final", b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n", {400}),
    # Obsolete line folding.
    ("obs-fold-space", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", {400}),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", {400}),
    ("obs-fold-te", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n ,chunked\r\n\r\n" + CHUNKED_SMUGGLE, {400}),
    ("space-before-first-field", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", {400}),
    # Field syntax.
    ("space-before-colon-host", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", {400}),
    ("space-before-colon-cl", head(H, b"Content-Length : 40", body=SMUGGLED), {400}),
    ("space-before-colon-te", head(H, b"Transfer-Encoding : chunked", body=CHUNKED_SMUGGLE), {400}),
    ("tab-before-colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n", {400}),
    ("no-colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A b\r\n\r\n", {400}),
    ("no-colon-bare-name", b"GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", {400}),
    ("empty-name", b"GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", {400}),
    *[
        (f"name-char-{name}", b"GET / HTTP/1.1\r\nHost: x\r\n" + field + b": b\r\n\r\n", {400})
        for name, field in [
            ("paren", b"X(A)"), ("at", b"X@A"), ("bracket", b"X[A]"), ("slash", b"X/A"),
            ("quote", b'X"A'), ("comma", b"X,A"), ("semicolon", b"X;A"), ("equals", b"X=A"),
            ("brace", b"X{A}"), ("backslash", b"X\\A"), ("question", b"X?A"),
            ("nul", b"X\x00A"), ("del", b"X\x7fA"), ("latin1", b"X\xe9A"), ("utf8", "X\u00e9A".encode()),
        ]
    ],
    # Control characters in field values.
    *[
        (f"value-ctl-{name}", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a" + char + b"b\r\n\r\n", {400})
        for name, char in [
            ("nul", b"\x00"), ("soh", b"\x01"), ("bel", b"\x07"), ("bs", b"\x08"), ("vt", b"\x0b"),
            ("ff", b"\x0c"), ("esc", b"\x1b"), ("us", b"\x1f"), ("del", b"\x7f"),
        ]
    ],
    ("host-value-nul", b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n", {400}),
    # Host: missing or doubled on HTTP/1.1.
    ("host-missing", b"GET / HTTP/1.1\r\n\r\n", {400}),
    ("host-missing-with-others", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", {400}),
    ("host-doubled", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("host-doubled-same", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", {400}),
    ("host-doubled-case", b"GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", {400}),
    # Method token.
    *[
        (f"method-{name}", line + b"\r\nHost: x\r\n\r\n", {400})
        for name, line in [
            ("paren", b"G(T / HTTP/1.1"), ("nul", b"GE\x00T / HTTP/1.1"), ("latin1", b"G\xc9T / HTTP/1.1"),
            ("empty", b" / HTTP/1.1"), ("slash", b"GE/T / HTTP/1.1"), ("del", b"GET\x7f / HTTP/1.1"),
            ("colon", b"GET: / HTTP/1.1"),
        ]
    ],
    # Request line shape and target.
    *[
        (f"target-{name}", line + b"\r\nHost: x\r\n\r\n", {400})
        for name, line in [
            ("double-space", b"GET  / HTTP/1.1"), ("tab-separator", b"GET\t/ HTTP/1.1"),
            ("leading-space", b" GET / HTTP/1.1"), ("trailing-space", b"GET / HTTP/1.1 "),
            ("nul", b"GET /\x00 HTTP/1.1"),
            ("del", b"GET /\x7f HTTP/1.1"), ("ctl", b"GET /\x01 HTTP/1.1"), ("tab", b"GET /a\tb HTTP/1.1"),
            ("relative", b"GET abc HTTP/1.1"), ("query-only", b"GET ?a=1 HTTP/1.1"),
            ("authority-form-with-get", b"GET x:80 HTTP/1.1"),
        ]
    ],
    # Version.
    ("version-1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", {400, 505}),
    ("version-2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", {505}),
    ("version-0.9-string", b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", {400, 505}),
    ("version-0.9-line", b"GET /\r\n\r\n", {400}),
    ("version-lowercase", b"GET / http/1.1\r\nHost: x\r\n\r\n", {400, 505}),
    # httparse reads `b HTTP/1.1` as the version: 505 is an acceptable refusal here.
    ("target-space-inside", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", {400, 505}),
    ("version-no-minor", b"GET / HTTP/1\r\nHost: x\r\n\r\n", {400, 505}),
    ("version-11.1", b"GET / HTTP/11.1\r\nHost: x\r\n\r\n", {400, 505}),
    ("version-junk", b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n", {400}),
    ("version-words", b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", {400}),
    # Asterisk form only with OPTIONS.
    ("asterisk-get", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    ("asterisk-post", b"POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", {400}),
    # Expectations other than 100-continue.
    ("expect-unknown", b"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", {417}),
]


@pytest.mark.parametrize("data, statuses", [pytest.param(d, s, id=i) for i, d, s in REFUSED])
def test_strict_refusal(strict, data, statuses):
    server, events = strict
    assert_refused(server, events, data, statuses)


ACCEPTED = [
    # (id, request, expected body length the app read) — guards against over-refusing.
    ("plain-get", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0),
    ("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 0),
    ("http10-no-host", b"GET / HTTP/1.0\r\n\r\n", 0),
    ("leading-empty-line", b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 0),
    ("absolute-form", b"GET http://x/a?b HTTP/1.1\r\nHost: x\r\n\r\n", 0),
    ("cl-with-ows", head(H, b"Content-Length: \t 5 \t", body=b"hello"), 5),
    ("cl-leading-zeros", head(H, b"Content-Length: 005", body=b"hello"), 5),
    ("te-chunked-case", head(H, b"Transfer-Encoding: ChUnKeD", body=b"5\r\nhello\r\n0\r\n\r\n"), 5),
    ("te-chunked-ows", head(H, b"Transfer-Encoding: \t chunked \t", body=b"5\r\nhello\r\n0\r\n\r\n"), 5),
    ("chunk-ext-and-trailer", head(H, b"Transfer-Encoding: chunked", body=b"5;a=b;c=\"d e\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), 5),
    ("chunk-size-leading-zeros", head(H, b"Transfer-Encoding: chunked", body=b"0005\r\nhello\r\n000\r\n\r\n"), 5),
    ("empty-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n", 0),
    ("obs-text-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\r\n\r\n", 0),
    ("tab-in-value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n", 0),
    ("expect-continue", head(H, b"Content-Length: 5", b"Expect: 100-continue", body=b"hello"), 5),
]


@pytest.mark.parametrize("data, length", [pytest.param(d, n, id=i) for i, d, n in ACCEPTED])
def test_strict_accepts_valid_requests(strict, data, length):
    server, events = strict
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(data)
        reader = Reader(sock)
        status, headers, body = reader.response()
        if status == 100:  # Expect: 100-continue: the real response follows
            status, headers, body = reader.response()
    assert (status, body) == (200, b"ok %d" % length), (status, headers, body)
    assert len(events.since(mark, "call")) == 1


def test_underscore_names_never_map_onto_real_headers(strict):
    """`X_Forwarded_For` must not pass for `X-Forwarded-For`, nor `Content_Length` or
    `Transfer_Encoding` frame a body: either the request is refused, or the app sees only
    the real header and the body the real framing says."""
    server, events = strict
    mark = events.mark()
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n"
        b"Content_Length: 40\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"
    )
    with server.connect(timeout=5) as sock:
        sock.sendall(data)
        raw, _ = read_all(sock, 1.0)
    status, _, body = parse(raw)
    if status == 400:
        assert_sentinel_only(server, events, mark)
        return
    assert (status, body[:4]) == (200, b"ok 5"), raw
    (call,) = events.since(mark, "call")
    assert call["headers"].get("HTTP_X_FORWARDED_FOR") == "1.2.3.4", call
    assert call["headers"].get("CONTENT_LENGTH") == "5", call
    assert not any("6.6.6.6" in v for v in call["headers"].values()), call
    assert "HTTP_TRANSFER_ENCODING" not in call["headers"], call


def test_pipelined_smuggle_after_refusal_is_never_served(strict):
    """A valid request followed by a refused one and a third: the first is served, the
    refusal closes the connection, the third never reaches the app."""
    server, events = strict
    mark = events.mark()
    data = (
        b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
        + head(H, b"Content-Length: 4", b"Transfer-Encoding: chunked", body=CHUNKED_SMUGGLE)
    )
    with server.connect(timeout=5) as sock:
        sock.sendall(data)
        raw, closed = read_all(sock)
    assert raw.startswith(b"HTTP/1.1 200 "), raw
    second = raw[raw.index(b"HTTP/1.1 ", 1):]
    status, headers, _ = parse(second)
    assert status == 400 and headers.get("connection") == "close", raw
    assert closed
    calls = [c["path"] for c in events.since(mark, "call")]
    assert calls == ["/first"], calls


# --- chunked bodies: the app's read raises, the client gets 400, nothing smuggled -------------

BAD_CHUNKED = [
    ("size-0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("size-plus", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("size-minus", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("size-leading-space", b" 5\r\nhello\r\n0\r\n\r\n"),
    ("size-trailing-space", b"5 \r\nhello\r\n0\r\n\r\n"),
    ("size-underscore", b"5_0\r\nhello\r\n0\r\n\r\n"),
    ("size-not-hex", b"g\r\nhello\r\n0\r\n\r\n"),
    ("size-empty", b"\r\nhello\r\n0\r\n\r\n"),
    ("size-overflow", b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("size-bare-lf", b"5\nhello\r\n0\r\n\r\n"),
    ("ext-bare-cr", b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
    ("ext-bare-lf", b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
    ("ext-nul", b"5;a\x00b\r\nhello\r\n0\r\n\r\n"),
    ("data-not-crlf", b"5\r\nhelloXX0\r\n\r\n"),
    ("data-bare-lf", b"5\r\nhello\n0\r\n\r\n"),
    ("data-no-crlf", b"5\r\nhello0\r\n\r\n"),
    ("last-chunk-bare-lf", b"5\r\nhello\r\n0\n\n"),
    ("trailer-content-length", b"5\r\nhello\r\n0\r\nContent-Length: 40\r\n\r\n"),
    ("trailer-transfer-encoding", b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("trailer-host", b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n"),
    ("trailer-no-colon", b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"),
    ("trailer-obs-fold", b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"),
    # Near misses of the forbidden names: a trailer field name must be a token.
    ("trailer-cl-space-before-colon", b"5\r\nhello\r\n0\r\nContent-Length : 40\r\n\r\n"),
    ("trailer-leading-space", b"5\r\nhello\r\n0\r\n Host: evil\r\n\r\n"),
    ("trailer-empty-name", b"5\r\nhello\r\n0\r\n: x\r\n\r\n"),
    ("trailer-value-del", b"5\r\nhello\r\n0\r\nX-T: a\x7fb\r\n\r\n"),
]


@pytest.mark.parametrize("body", [pytest.param(b, id=i) for i, b in BAD_CHUNKED])
def test_bad_chunked_body(strict, body):
    """A malformed chunked body gets a 400 with Connection: close and the connection
    closes; the request pipelined behind it never reaches the app. A bad body that arrives
    with its head is refused before the app runs; one that arrives in pieces reaches the
    app, whose wsgi.input read raises OSError (it never sees the body as valid)."""
    server, events = strict
    mark = events.mark()
    data = head(H, b"Transfer-Encoding: chunked", line=b"POST /chunked HTTP/1.1\r\n", body=body + SMUGGLED)
    with server.connect(timeout=5) as sock:
        sock.sendall(data)
        raw, closed = read_all(sock, 2.0)
    assert raw, "no response"
    status, headers, _ = parse(raw)
    assert status == 400, raw
    assert headers.get("connection") == "close", raw
    assert closed, "connection left open after a malformed chunked body"
    # One Python thread: a /chunked call, if any, is recorded before the sentinel's.
    sentinel = f"/sentinel-{uuid.uuid4().hex[:8]}"
    status, _, _ = exchange(server, get(sentinel, "Connection: close\r\n"))
    assert status == 200, "the server stopped serving after a refusal"
    calls = [c["path"] for c in events.since(mark, "call")]
    assert calls in ([sentinel], ["/chunked", sentinel]), calls
    if calls[0] == "/chunked":
        assert not events.since(mark, "body"), (
            f"the app read a whole body from a malformed chunked stream: {events.since(mark)}"
        )
        errors = events.since(mark, "read_error")
        assert errors and errors[0]["oserror"], events.since(mark)


def test_bad_chunked_body_app_never_reads(strict):
    """An app that never reads the body answers; the server then discards the body, finds
    it malformed, and closes: what follows the bad body is not taken as a request."""
    server, events = strict
    mark = events.mark()
    data = head(
        H, b"Transfer-Encoding: chunked", line=b"POST /?read=none HTTP/1.1\r\n",
        body=b"5\r\nhelloXX0\r\n\r\n" + SMUGGLED,
    )
    with server.connect(timeout=5) as sock:
        sock.sendall(data)
        raw, closed = read_all(sock, 2.0)
    assert closed
    assert raw.count(b"HTTP/1.1 ") <= 1, raw
    # The bad body came whole with its head, so it may be refused before the app runs;
    # either way, nothing after it is taken as a request.
    sentinel = f"/sentinel-{uuid.uuid4().hex[:8]}"
    assert exchange(server, get(sentinel, "Connection: close\r\n"))[0] == 200
    calls = [c["path"] for c in events.since(mark, "call")]
    assert calls in ([sentinel], ["/", sentinel]), calls


def test_truncated_chunked_body(strict):
    """The client sends part of a chunk and closes: the app's read raises OSError
    (ClientDisconnected), close() runs, nothing is answered as a success."""
    server, events = strict
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(head(H, b"Transfer-Encoding: chunked", line=b"POST /trunc HTTP/1.1\r\n", body=b"5\r\nhel"))
        time.sleep(0.2)
        sock.shutdown(socket.SHUT_WR)
        raw, closed = read_all(sock, 2.0)
    assert closed
    assert not raw.startswith(b"HTTP/1.1 2"), raw
    error = events.wait(mark, "read_error", "/trunc")
    assert error["oserror"] and error["type"] == "ClientDisconnected", error
    events.wait(mark, "close", "/trunc")


@pytest.mark.parametrize(
    "data, status",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00\r\n\r\n", 400, id="400"),
        pytest.param(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, id="505"),
        pytest.param(head(H, b"Transfer-Encoding: foo"), 501, id="501"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417, id="417"),
    ],
)
def test_refusal_is_logged(strict, data, status):
    """Every refusal: one INFO line `Bad request from IP:PORT: <detail> (answered NNN)`."""
    server, events = strict
    before = len(server.log)
    with server.connect(timeout=5) as sock:
        port = sock.getsockname()[1]
        sock.sendall(data)
        read_all(sock)
    match = server.wait_for_log(
        rf"\[INFO\] Bad request from 127\.0\.0\.1:{port}: (.+) \(answered {status}\)\n"
    )
    assert match.group(1).strip()
    assert len(re.findall(rf"127\.0\.0\.1:{port}\b", server.log[before:])) == 1


# --- limits -----------------------------------------------------------------------------------


def request_line_of(length: int) -> bytes:
    """A GET whose request line (without CRLF) is exactly `length` bytes."""
    fixed = len(b"GET / HTTP/1.1")
    return b"GET /" + b"a" * (length - fixed) + b" HTTP/1.1\r\nHost: x\r\n\r\n"


def test_limit_request_line(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path, "--limit-request-line", "100")
    assert exchange(server, request_line_of(100))[0] == 200
    assert_refused(server, events, request_line_of(101), {414})
    # Refused as soon as the line is too long, without waiting for its end.
    assert_refused(server, events, b"GET /" + b"a" * 200, {414})


def test_limit_request_line_default_4094(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path)
    assert exchange(server, request_line_of(4094))[0] == 200
    assert_refused(server, events, request_line_of(4095), {414})


def test_limit_request_line_zero_means_unlimited(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path, "--limit-request-line", "0")
    assert exchange(server, request_line_of(20000))[0] == 200


def fields(count: int) -> bytes:
    """A GET with `count` header fields in all (Host included)."""
    extra = b"".join(b"X-F%d: v\r\n" % i for i in range(count - 1))
    return b"GET / HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


def test_limit_request_fields(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path, "--limit-request-fields", "5")
    assert exchange(server, fields(5))[0] == 200
    assert_refused(server, events, fields(6), {431})


def test_limit_request_fields_default_100(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path)
    assert exchange(server, fields(100))[0] == 200
    assert_refused(server, events, fields(101), {431})


def field_of(size: int) -> bytes:
    """A GET with one field line `X-Long: vvv...` of exactly `size` bytes (no CRLF)."""
    value = b"v" * (size - len(b"X-Long: "))
    return b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + value + b"\r\n\r\n"


def test_limit_request_field_size(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path, "--limit-request-field-size", "100")
    assert exchange(server, field_of(100))[0] == 200
    assert_refused(server, events, field_of(101), {431})
    # A long field name counts too.
    assert_refused(server, events, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X" * 120 + b": v\r\n\r\n", {431})


def test_limit_request_field_size_default_8190(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path)
    assert exchange(server, field_of(8190))[0] == 200
    assert_refused(server, events, field_of(8191), {431})


def test_limit_request_body_content_length(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path, "--limit-request-body", "1000")
    ok = head(H, b"Content-Length: 1000", body=b"b" * 1000)
    status, _, body = exchange(server, ok)
    assert (status, body) == (200, b"ok 1000")
    # Refused from the head alone: the server does not wait for the body.
    assert_refused(server, events, head(H, b"Content-Length: 1001"), {413})
    # With Expect: 100-continue the client is refused instead of being told to continue.
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(head(H, b"Content-Length: 5000", b"Expect: 100-continue"))
        raw, closed = read_all(sock)
    assert raw.startswith(b"HTTP/1.1 413 "), raw
    assert b"100 Continue" not in raw and closed
    assert_sentinel_only(server, events, mark)


def test_limit_request_body_default_unlimited(server_factory, tmp_path):
    server, _ = start(server_factory, tmp_path)
    status, _, body = exchange(server, head(H, b"Content-Length: 3000000", body=b"b" * 3_000_000))
    assert (status, body) == (200, b"ok 3000000")


def chunked(*sizes: int) -> bytes:
    return b"".join(b"%x\r\n" % n + b"c" * n + b"\r\n" for n in sizes) + b"0\r\n\r\n"


def test_limit_request_body_chunked(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path, "--limit-request-body", "1000")
    ok = head(H, b"Transfer-Encoding: chunked", body=chunked(600, 400))
    assert exchange(server, ok)[::2] == (200, b"ok 1000")
    mark = events.mark()
    data = head(
        H, b"Transfer-Encoding: chunked", line=b"POST /big HTTP/1.1\r\n", body=chunked(600, 600) + SMUGGLED
    )
    with server.connect(timeout=5) as sock:
        sock.sendall(data)
        raw, closed = read_all(sock)
    status, headers, _ = parse(raw)
    assert status == 413 and headers.get("connection") == "close", raw
    assert closed
    # A body that arrived whole with its head is refused before the app runs; one that
    # arrived in pieces reached the app, whose read then raised.
    sentinel = f"/sentinel-{uuid.uuid4().hex[:8]}"
    assert exchange(server, get(sentinel, "Connection: close\r\n"))[0] == 200
    calls = [c["path"] for c in events.since(mark, "call")]
    assert calls in ([sentinel], ["/big", sentinel]), calls
    if calls[0] == "/big":
        error = events.wait(mark, "read_error", "/big")
        assert error["oserror"], error
    assert not [e for e in events.since(mark, "body") if e["path"] == "/big"]


# --- timeouts ---------------------------------------------------------------------------------


def wait_closed(sock: socket.socket, timeout: float) -> Tuple[bytes, Optional[float]]:
    """Reads until EOF; returns (data, monotonic time of the EOF or None on timeout)."""
    data, closed = read_all(sock, timeout)
    return data, (time.monotonic() if closed else None)


def test_header_timeout_trickled_head_gets_408(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path, "--header-timeout", "1")
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        trickle = b"X-Slow: " + b"a" * 60
        received = b""
        closed_at = None
        for byte in trickle:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                received, closed_at = wait_closed(sock, 2.0)
                break
        if closed_at is None:
            received, closed_at = wait_closed(sock, 2.0)
    assert closed_at is not None, "trickling client never closed"
    elapsed = closed_at - started
    assert 0.8 < elapsed < 2.0, elapsed
    status, headers, _ = parse(received)
    assert status == 408 and headers.get("connection") == "close", received
    assert not events.since(mark, "call")


def test_header_timeout_silent_connection(server_factory, tmp_path):
    """A connection that sends nothing is closed, silently, after --header-timeout."""
    server, _ = start(server_factory, tmp_path, "--header-timeout", "1", "--keep-alive", "30")
    with server.connect(timeout=5) as sock:
        started = time.monotonic()
        received, closed_at = wait_closed(sock, 4.0)
    assert closed_at is not None, "idle new connection never closed"
    assert 0.8 < closed_at - started < 2.0
    assert received == b""


def test_header_timeout_second_request_on_keep_alive(server_factory, tmp_path):
    """On a kept-alive connection the head clock starts with the next head's first byte."""
    server, _ = start(server_factory, tmp_path, "--header-timeout", "1", "--keep-alive", "30")
    with server.connect(timeout=5) as sock:
        sock.sendall(get())
        assert read_response(sock)[0] == 200
        time.sleep(1.5)  # idle longer than --header-timeout: the keep-alive clock applies
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        received, closed_at = wait_closed(sock, 4.0)
    assert closed_at is not None
    assert 0.8 < closed_at - started < 2.0
    assert received.startswith(b"HTTP/1.1 408 "), received


def test_keep_alive_idle_timeout(server_factory, tmp_path):
    server, _ = start(server_factory, tmp_path, "--keep-alive", "1")
    with server.connect(timeout=5) as sock:
        sock.sendall(get())
        assert read_response(sock)[0] == 200
        # A request inside the idle window is served and restarts the clock.
        time.sleep(0.6)
        sock.sendall(get())
        assert read_response(sock)[0] == 200
        served = time.monotonic()
        received, closed_at = wait_closed(sock, 4.0)
    assert closed_at is not None, "idle keep-alive connection never closed"
    assert 0.8 < closed_at - served < 2.0
    assert received == b""


def test_keep_alive_default_5s(server_factory, tmp_path):
    server, _ = start(server_factory, tmp_path)
    with server.connect(timeout=5) as sock:
        sock.sendall(get())
        assert read_response(sock)[0] == 200
        served = time.monotonic()
        received, closed_at = wait_closed(sock, 8.0)
    assert closed_at is not None
    assert 4.5 < closed_at - served < 6.5
    assert received == b""


def test_body_timeout(server_factory, tmp_path):
    """A body that stalls for --body-timeout: the app's read raises OSError, the
    connection is closed."""
    server, events = start(server_factory, tmp_path, "--body-timeout", "1")
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(head(H, b"Content-Length: 100", line=b"POST /stall HTTP/1.1\r\n", body=b"0123456789"))
        error = events.wait(mark, "read_error", "/stall", timeout=4.0)
        received, closed_at = wait_closed(sock, 4.0)
    assert error["oserror"], error
    assert closed_at is not None, "connection left open after the body timed out"
    assert not received.startswith(b"HTTP/1.1 2"), received
    events.wait(mark, "close", "/stall")
    assert exchange(server, get())[0] == 200


def test_body_timeout_measured(server_factory, tmp_path):
    """The read raises about --body-timeout after the last body bytes, not at once and not
    after the default 30 s."""
    server, events = start(server_factory, tmp_path, "--body-timeout", "1")
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(head(H, b"Content-Length: 100", line=b"POST /stall HTTP/1.1\r\n", body=b"0123456789"))
        sent = time.monotonic()
        events.wait(mark, "call", "/stall")
        error = events.wait(mark, "read_error", "/stall", timeout=4.0)
    # Event times are the worker's time.monotonic(): the same clock on one machine.
    assert 0.8 < error["t"] - sent < 2.5, error["t"] - sent


def test_write_timeout_client_stops_reading(server_factory, tmp_path):
    """The client reads nothing of a large streamed response: after --write-timeout the
    connection is closed and the app's close() is called; the worker goes on serving."""
    server, events = start(server_factory, tmp_path, "--write-timeout", "1")
    mark = events.mark()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect((server.host, server.port))
        sock.sendall(get("/stalled?stream=4096"))  # 256 MiB if nobody stopped it
        started = time.monotonic()
        closed = events.wait(mark, "close", "/stalled", timeout=10.0)
        assert 0.8 < closed["t"] - started < 6.0, closed["t"] - started
        sock.settimeout(5)
        received = 0
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < 64 * 1024 * 1024, "the server kept streaming to a client that stopped reading"
    assert not events.since(mark, "stream_done")
    assert exchange(server, get())[0] == 200


def test_max_connections(server_factory, tmp_path):
    """--max-connections 2: a 3rd connection waits (in the backlog) until one closes, then
    it is served; nothing is refused or crashes."""
    server, events = start(server_factory, tmp_path, "--max-connections", "2", "--keep-alive", "30")
    first = server.connect(timeout=5)
    second = server.connect(timeout=5)
    for sock in (first, second):
        sock.sendall(get())
        assert read_response(sock)[0] == 200
    third = server.connect(timeout=5)
    third.sendall(get("/third"))
    readable, _, _ = select.select([third], [], [], 1.0)
    assert not readable, "a 3rd connection was served past --max-connections 2"
    # The open ones still work.
    second.sendall(get())
    assert read_response(second)[0] == 200
    first.close()
    status, _, _ = read_response(third, timeout=3.0)
    assert status == 200
    assert server.process.poll() is None
    for sock in (second, third):
        sock.close()


def test_limit_and_timeout_options_show_their_defaults():
    """The defaults of the options whose default is too slow to wait for here."""
    result = subprocess.run(
        tidegate_command("--help"), capture_output=True, text=True, env=server_env(), timeout=30
    )
    assert result.returncode == 0, result.stderr
    # The options' own group, past the usage lines (whose layout differs between Python
    # versions: "options:" on 3.10+, "optional arguments:" before).
    text = " ".join(result.stdout.split()).split(" limits and timeouts:", 1)[-1]
    for option, default in [
        ("--limit-request-line", "4094"), ("--limit-request-fields", "100"),
        ("--limit-request-field-size", "8190"), ("--limit-request-body", "0"),
        ("--keep-alive", "5"), ("--header-timeout", "10"), ("--body-timeout", "30"),
        ("--write-timeout", "30"), ("--max-connections", "4096"),
    ]:
        match = re.search(re.escape(option) + r" \S+ (.*?)(?= --|$)", text)
        assert match, f"{option} missing from --help"
        assert re.search(rf"default {default}\b", match.group(1)), (option, match.group(1))


def test_slow_reader_does_not_hold_the_python_thread(server_factory, tmp_path):
    """With one Python thread, a client that stops reading a 32 MiB (one-chunk) response
    does not keep others waiting: the body is handed to the I/O side."""
    server, events = start(server_factory, tmp_path, "--threads", "1", "--write-timeout", "30")
    mark = events.mark()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(5)
        slow.connect((server.host, server.port))
        slow.sendall(get("/big?big=32"))
        events.wait(mark, "close", "/big")
        begun = time.monotonic()
        assert exchange(server, get("/other"))[0] == 200
        assert time.monotonic() - begun < 1.0


# --- broken clients ---------------------------------------------------------------------------


def test_disconnect_mid_upload(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path)
    worker = server.worker_pids()[0]
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(head(H, b"Content-Length: 10000000", line=b"POST /up?read=pieces HTTP/1.1\r\n"))
        sock.sendall(b"u" * 1_000_000)
        events.wait(mark, "call", "/up")
    error = events.wait(mark, "read_error", "/up")
    assert error["type"] == "ClientDisconnected" and error["oserror"], error
    events.wait(mark, "close", "/up")
    assert exchange(server, get())[0] == 200
    assert server.worker_pids() == [worker]


def test_disconnect_mid_response(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path)
    worker = server.worker_pids()[0]
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(get("/down?stream=2000"))  # 125 MiB
        got = 0
        while got < 256 * 1024:
            got += len(sock.recv(65536))
    events.wait(mark, "close", "/down", timeout=5.0)
    assert not events.since(mark, "stream_done")
    assert exchange(server, get())[0] == 200
    assert server.worker_pids() == [worker]


def test_disconnect_while_app_runs(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path)
    worker = server.worker_pids()[0]
    mark = events.mark()
    with server.connect(timeout=5) as sock:
        sock.sendall(get("/busy?sleep=1"))
        events.wait(mark, "call", "/busy")
    events.wait(mark, "close", "/busy", timeout=5.0)
    assert exchange(server, get())[0] == 200
    assert server.worker_pids() == [worker]


def proc_status(pid: int) -> Tuple[int, int]:
    """(open fds, VmRSS in KiB) of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return fds, rss


BROKEN_CLIENTS = 10_000


def broken_client(host: str, port: int, kind: int) -> None:
    sock = socket.create_connection((host, port), timeout=5)
    try:
        if kind < 4:  # a partial head
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ab"[: 10 + kind * 8])
        elif kind < 6:  # nothing at all
            pass
        elif kind < 8:  # a partial upload
            sock.sendall(head(H, b"Content-Length: 100000", line=b"POST /?on_error=respond HTTP/1.1\r\n", body=b"p" * 500))
        elif kind == 8:  # a whole request, response never read
            sock.sendall(get())
        else:  # a streamed response, abandoned after its first bytes
            sock.sendall(get("/?stream=16"))
            sock.recv(1024)
    finally:
        sock.close()


def test_ten_thousand_broken_clients_leak_nothing(server_factory, tmp_path):
    server = server_factory(APP, env=events_env(None))
    worker = server.worker_pids()[0]
    for _ in range(300):  # warm up: allocator arenas, buffers, thread stacks
        broken_client(server.host, server.port, _ % 10)
    assert exchange(server, get())[0] == 200
    time.sleep(0.5)
    fds_before, rss_before = proc_status(worker)

    errors: List[BaseException] = []

    def run(offset: int) -> None:
        try:
            for i in range(offset, BROKEN_CLIENTS, 4):
                broken_client(server.host, server.port, i % 10)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(50)
    assert not errors, errors[:3]
    elapsed = time.monotonic() - started

    deadline = time.monotonic() + 10
    while True:
        fds_after, rss_after = proc_status(worker)
        if abs(fds_after - fds_before) <= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(f"{BROKEN_CLIENTS} clients in {elapsed:.1f}s: fds {fds_before}->{fds_after}, "
          f"VmRSS {rss_before}->{rss_after} KiB")
    assert exchange(server, get())[0] == 200
    assert server.worker_pids() == [worker]
    assert abs(fds_after - fds_before) <= 5, (fds_before, fds_after)
    assert rss_after - rss_before < 20 * 1024, (rss_before, rss_after, elapsed)


# --- broken apps ------------------------------------------------------------------------------


def test_app_close_raises(server_factory, tmp_path):
    server, events = start(server_factory, tmp_path, app="hardening_apps:close_raises")
    with server.connect(timeout=5) as sock:
        sock.sendall(get("/close-raises") + get("/ok", "Connection: close\r\n"))
        raw, _ = read_all(sock, 5.0)
    assert raw.startswith(b"HTTP/1.1 200 "), raw
    assert b"body before a failing close" in raw
    assert raw.endswith(b"\r\n\r\nok"), "the next request on the connection was not served"
    server.wait_for_log(r"\[ERROR\] Error handling request GET /close-raises: [^\n]*RuntimeError: close\(\) failed on purpose")
    assert exchange(server, get("/ok"))[::2] == (200, b"ok")


TINY_CHUNKS = 100_000  # hardening_apps.TINY_CHUNKS


def test_app_returns_100k_tiny_chunks(server_factory, tmp_path):
    server, _ = start(server_factory, tmp_path, app="hardening_apps:tiny_chunks")
    with server.connect(timeout=20) as sock:
        sock.sendall(get("/", "Connection: close\r\n"))
        raw, closed = read_all(sock, 20.0)
    assert closed
    status, headers, body = parse(raw)
    assert status == 200
    if headers.get("transfer-encoding") == "chunked":
        decoded, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    assert body == (b"abcdefghij" * (TINY_CHUNKS // 10))
    assert exchange(server, get())[0] == 200


def test_wsgi_errors_from_eight_threads(server_factory, tmp_path):
    server, _ = start(server_factory, tmp_path, app="hardening_apps:errors_from_threads")
    assert exchange(server, get())[::2] == (200, b"done")
    wanted = {f"thread-{t} line-{n} {'z' * 40}" for t in range(8) for n in range(50)}
    deadline = time.monotonic() + 5
    while True:
        logged = re.findall(r"\[WARNING\] \[wsgi\.errors\] (.*)\n", server.log)
        if wanted <= set(logged) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    missing = wanted - set(logged)
    assert not missing, f"{len(missing)} lines lost or torn, e.g. {sorted(missing)[:3]}"
    assert exchange(server, get())[0] == 200


# --- slowloris --------------------------------------------------------------------------------


def test_slowloris_does_not_starve_others(server_factory, tmp_path):
    """200 connections trickle a head (1 byte per 100 ms) for ~5 s while a normal client's
    sequential requests, each on a new connection, keep a p99 under 100 ms."""
    server = server_factory(APP, "--header-timeout", "30", env=events_env(None))
    slow = []
    for _ in range(200):
        sock = server.connect(timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\n")
        slow.append(sock)
    stop = threading.Event()
    trickle_errors: List[BaseException] = []

    def trickle() -> None:
        try:
            while not stop.wait(0.1):
                for sock in slow:
                    sock.sendall(b"a")
        except BaseException as error:  # noqa: BLE001
            trickle_errors.append(error)

    thread = threading.Thread(target=trickle)
    thread.start()
    latencies = []
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            begun = time.perf_counter()
            with server.connect(timeout=5) as sock:
                sock.sendall(get("/", "Connection: close\r\n"))
                status, _, _ = read_response(sock)
            latencies.append(time.perf_counter() - begun)
            assert status == 200
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert not trickle_errors, f"a trickling connection was closed early: {trickle_errors[0]!r}"
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"slowloris: {len(latencies)} requests, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    assert len(latencies) > 50
    assert p99 < 0.1, f"p99 {p99 * 1000:.1f} ms over {len(latencies)} requests"
    for sock in slow:
        sock.close()
