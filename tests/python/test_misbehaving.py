"""Misbehaving applications: the client gets a clean 500 (or, once bytes went out, a closed
connection), the error log names the fault once, and the server goes on serving.

The apps live in ``apps/bad_apps.py`` and are served raw: each one does something
``wsgiref.validate`` would refuse.
"""

import re
import time

import pytest

SERVER_ERROR_BODY = b"Internal Server Error"


# --- a raw response reader that keeps the exact header bytes -----------------------------


class RawResponse:
    def __init__(self, head: bytes, body: bytes):
        self.head = head
        lines = head.split(b"\r\n")
        self.status_line = lines[0]
        self.status = int(self.status_line.split(b" ")[1])
        self.headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                self.headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        self.body = body

    def header(self, name):
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None

    def header_names(self):
        return [n.lower() for n, _ in self.headers]


def read_raw_response(file) -> RawResponse:
    """Read one complete response (Content-Length or chunked) from a buffered socket file."""
    head = b""
    while True:
        line = file.readline(65537)
        if not line:
            raise ConnectionError(f"connection closed inside the response head: {head!r}")
        if line in (b"\r\n", b"\n"):
            break
        head += line
    response = RawResponse(head.rstrip(b"\r\n"), b"")
    length = response.header("Content-Length")
    if length is not None:
        response.body = _read_exact(file, int(length))
    elif (response.header("Transfer-Encoding") or "").lower() == "chunked":
        body = b""
        while True:
            size = int(file.readline().split(b";")[0], 16)
            if size == 0:
                while file.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += _read_exact(file, size)
            assert file.readline() == b"\r\n"
        response.body = body
    else:
        response.body = file.read()
    return response


def _read_exact(file, size):
    data = file.read(size)
    if len(data) != size:
        raise ConnectionError(f"body cut short: {len(data)} of {size} bytes")
    return data


def get(path, connection=None):
    extra = f"Connection: {connection}\r\n" if connection else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def read_all(sock, timeout=10.0):
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def dechunk_partial(data: bytes):
    """Decode a chunked body that may be cut short; return (bytes, saw_last_chunk)."""
    out = b""
    while data:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            break
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return out, True
        out += rest[:size]
        if len(rest) < size + 2:
            break
        data = rest[size + 2:]
    return out, False


def error_lines(server, path):
    return [line for line in server.log.splitlines() if f"Error handling request GET {path}" in line]


def assert_served_normally(server, sock=None, reader=None):
    """``/ok`` is answered 200 on a new connection (and on ``sock``, read through ``reader``,
    when given)."""
    pairs = [(sock, reader)] if sock is not None else []
    fresh = server.connect()
    pairs.append((fresh, fresh.makefile("rb")))
    try:
        for s, r in pairs:
            s.sendall(get("/ok"))
            response = read_raw_response(r)
            assert response.status_line == b"HTTP/1.1 200 OK", response.head
            assert response.body == b"ok"
    finally:
        fresh.close()


# --- faults before any byte was sent: a 500 ---------------------------------------------

EXCEPTION = r"(?:ValueError|TypeError|UnicodeEncodeError)"

# path -> (regex the ERROR message must match, words of which one must name the fault,
#          whether the fault is an exception (so a Traceback follows))
BEFORE_HEADERS = {
    "/status-1000": (EXCEPTION, ["status", "1000 X"], True),
    "/status-ok": (EXCEPTION, ["status", "'OK'"], True),
    "/status-int": (EXCEPTION, ["status", "int"], True),
    "/status-no-reason": (EXCEPTION, ["status", "'200'"], True),
    "/status-crlf": (EXCEPTION, ["status"], True),
    "/status-lf": (EXCEPTION, ["status"], True),
    "/header-crlf": (EXCEPTION, ["header", "X-Test"], True),
    "/header-lf": (EXCEPTION, ["header", "X-Test"], True),
    "/header-cr": (EXCEPTION, ["header", "X-Test"], True),
    "/header-name-crlf": (EXCEPTION, ["header"], True),
    "/header-non-latin1": (EXCEPTION, ["header", "X-Test", "latin"], True),
    "/header-name-space": (EXCEPTION, ["header", "X Bad"], True),
    "/header-name-colon": (EXCEPTION, ["header", "X:Bad"], True),
    "/header-name-empty": (EXCEPTION, ["header"], True),
    "/header-name-bytes": (EXCEPTION, ["header", "bytes"], True),
    "/header-value-bytes": (EXCEPTION, ["header", "bytes"], True),
    "/header-value-int": (EXCEPTION, ["header", "int"], True),
    "/header-not-tuple": (EXCEPTION, ["header", "tuple"], True),
    "/header-3-tuple": (EXCEPTION, ["header", "tuple"], True),
    "/content-length-word": (EXCEPTION, ['Content-Length "many"'], True),
    "/content-length-negative": (EXCEPTION, ['Content-Length "-1"'], True),
    "/content-length-twice": (EXCEPTION, ["two different Content-Length"], True),
    "/str-chunk": (r".*", ["str"], False),
    "/int-chunk": (r".*", ["int"], False),
    "/return-none": (r".*", ["None"], False),
    "/raise-before-start": (r"RuntimeError: boom before start_response$", [], True),
    "/raise-after-start": (r"RuntimeError: boom after start_response$", [], True),
    "/raise-in-first-next": (r"RuntimeError: boom in the first chunk$", [], True),
    "/never-start-response": (r".*", ["start_response"], False),
}


@pytest.mark.parametrize("path", list(BEFORE_HEADERS))
def test_fault_before_headers_gives_500(server_factory, path):
    pattern, words, is_exception = BEFORE_HEADERS[path]
    server = server_factory("bad_apps:app")
    sock = server.connect()
    reader = sock.makefile("rb")
    try:
        sock.sendall(get(path))
        response = read_raw_response(reader)

        # A short plain-text 500, nothing of the app's response or of the traceback.
        assert response.status_line == b"HTTP/1.1 500 Internal Server Error", response.head
        assert (response.header("Content-Type") or "").startswith("text/plain"), response.head
        assert response.body.rstrip(b"\r\n") == SERVER_ERROR_BODY
        assert b"Traceback" not in response.body
        assert response.header("Date") and response.header("Server"), response.head
        # No response splitting: nothing the app tried to inject reaches the client.
        assert b"X-Injected" not in response.head and b"X-Injected" not in response.body
        assert "x-injected" not in response.header_names()
        assert b"should never be sent" not in response.body
        assert (response.header("Connection") or "").lower() != "close", response.head

        # One ERROR line naming the fault (with the traceback for exceptions).
        match = server.wait_for_log(
            rf"\[ERROR\] Error handling request GET {re.escape(path)}: ([^\n]*)"
        )
        message = match.group(1)
        assert re.match(pattern, message), message
        if words:
            assert any(w.lower() in message.lower() for w in words), (
                f"the ERROR line does not name the fault ({words}): {message}"
            )
        if is_exception:
            after = server.log[match.end():]
            assert re.match(
                r"\n(?:\[[^\]\n]*\] \[\d+\] \[ERROR\] )?Traceback \(most recent call last\):",
                after,
            ), server.log
            assert "bad_apps.py" in after, server.log

        # The same connection and a new one are served normally.
        assert_served_normally(server, sock, reader)
        time.sleep(0.1)
        assert len(error_lines(server, path)) == 1, server.log
        assert "Error handling request GET /ok" not in server.log
    finally:
        sock.close()


def test_500_does_not_leak_the_exception_message(server_factory):
    server = server_factory("bad_apps:app")
    with server.connect() as sock:
        sock.sendall(get("/raise-before-start", connection="close"))
        raw = read_all(sock)
    assert raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), raw
    assert b"boom" not in raw and b"RuntimeError" not in raw and b"bad_apps" not in raw
    server.wait_for_log(r"RuntimeError: boom before start_response")


def test_500_on_http10(server_factory):
    server = server_factory("bad_apps:app")
    with server.connect() as sock:
        sock.sendall(b"GET /raise-after-start HTTP/1.0\r\n\r\n")
        raw = read_all(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 500 Internal Server Error\r\n") or head.startswith(
        b"HTTP/1.1 500 Internal Server Error\r\n"
    ), raw
    assert body.rstrip(b"\r\n") == SERVER_ERROR_BODY
    server.wait_for_log(r"\[ERROR\] Error handling request GET /raise-after-start: RuntimeError")
    assert_served_normally(server)


def test_pipelined_request_after_500_is_answered(server_factory):
    server = server_factory("bad_apps:app")
    with server.connect() as sock:
        sock.sendall(get("/str-chunk") + get("/ok") + get("/int-chunk") + get("/ok"))
        reader = sock.makefile("rb")
        statuses = []
        bodies = []
        for _ in range(4):
            response = read_raw_response(reader)
            statuses.append(response.status)
            bodies.append(response.body.rstrip(b"\r\n"))
    assert statuses == [500, 200, 500, 200]
    assert bodies == [SERVER_ERROR_BODY, b"ok", SERVER_ERROR_BODY, b"ok"]
    server.wait_for_log(r"Error handling request GET /int-chunk")
    assert len(error_lines(server, "/str-chunk")) == 1
    assert len(error_lines(server, "/int-chunk")) == 1


# --- faults after the headers went out: the connection is closed ------------------------


def _split_response(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head: {raw!r}"
    return RawResponse(head, b""), body


def test_exception_mid_generator_truncates_chunked_response(server_factory):
    server = server_factory("bad_apps:app")
    with server.connect() as sock:
        sock.sendall(get("/raise-mid-stream"))  # keep-alive asked: the server must still close
        raw = read_all(sock)
    response, body = _split_response(raw)
    assert response.status_line == b"HTTP/1.1 200 OK", raw
    assert response.header("Transfer-Encoding") == "chunked", raw
    assert response.header("Content-Length") is None
    data, complete = dechunk_partial(body)
    assert data == b"partial-data-"
    assert not complete, f"a failed stream must not end with the last-chunk marker: {raw!r}"
    assert b"Internal Server Error" not in raw and b"Traceback" not in raw

    match = server.wait_for_log(
        r"\[ERROR\] Error handling request GET /raise-mid-stream: "
        r"RuntimeError: boom in the middle of the stream\n"
    )
    assert "Traceback (most recent call last):" in server.log[match.end():match.end() + 200]
    assert_served_normally(server)
    assert len(error_lines(server, "/raise-mid-stream")) == 1


def test_exception_mid_generator_with_content_length_closes_short(server_factory):
    server = server_factory("bad_apps:app")
    with server.connect() as sock:
        sock.sendall(get("/raise-mid-stream-length"))
        raw = read_all(sock)
    response, body = _split_response(raw)
    assert response.status_line == b"HTTP/1.1 200 OK", raw
    assert response.header("Content-Length") == "100"
    assert body == b"0123456789"
    server.wait_for_log(
        r"\[ERROR\] Error handling request GET /raise-mid-stream-length: "
        r"RuntimeError: boom after 10 of 100 bytes\n(?:\[[^\]\n]*\] \[\d+\] \[ERROR\] )?Traceback"
    )
    assert_served_normally(server)
    assert len(error_lines(server, "/raise-mid-stream-length")) == 1


def test_str_chunk_after_bytes_were_sent_closes_connection(server_factory):
    server = server_factory("bad_apps:app")
    with server.connect() as sock:
        sock.sendall(get("/str-chunk-mid-stream"))
        raw = read_all(sock)
    response, body = _split_response(raw)
    assert response.status_line == b"HTTP/1.1 200 OK", raw
    data, complete = dechunk_partial(body)
    assert data == b"first-chunk-"
    assert not complete, raw
    assert b"second chunk is a str" not in raw
    match = server.wait_for_log(r"\[ERROR\] Error handling request GET /str-chunk-mid-stream: ([^\n]*)")
    assert "str" in match.group(1), match.group(0)
    assert_served_normally(server)
    assert len(error_lines(server, "/str-chunk-mid-stream")) == 1


def test_close_raising_is_logged_and_body_delivered(server_factory):
    server = server_factory("bad_apps:app")
    with server.connect() as sock:
        sock.sendall(get("/close-raises", connection="close"))
        raw = read_all(sock)
    response, body = _split_response(raw)
    # The body was produced completely before close() was called.
    assert response.status_line == b"HTTP/1.1 200 OK", raw
    if response.header("Transfer-Encoding") == "chunked":
        data, _ = dechunk_partial(body)
    else:
        data = body
        if response.header("Content-Length") is not None:
            assert response.header("Content-Length") == "11"
    assert data == b"hello world"
    match = server.wait_for_log(
        r"\[ERROR\] Error handling request GET /close-raises: [^\n]*\bclose\(\)[^\n]*"
        r"RuntimeError: close\(\) failed on purpose\n"
    )
    assert "Traceback (most recent call last):" in server.log[match.end():match.end() + 200]
    assert_served_normally(server)
    assert len(error_lines(server, "/close-raises")) == 1


# --- a well-behaved but extreme app ------------------------------------------------------

EXPECTED_TINY = b"".join(bytes([48 + i % 10]) for i in range(100_000))


@pytest.mark.parametrize("app", ["bad_apps:tiny_chunks_generator", "bad_apps:tiny_chunks_list"])
def test_100k_tiny_chunks(server_factory, app):
    server = server_factory(app)
    started = time.monotonic()
    with server.connect(timeout=30) as sock:
        sock.sendall(get("/") + get("/"))
        reader = sock.makefile("rb")
        for _ in range(2):  # twice on one connection: the framing must be exact
            response = read_raw_response(reader)
            assert response.status_line == b"HTTP/1.1 200 OK"
            assert response.body == EXPECTED_TINY
            if app.endswith("list"):
                assert response.header("Content-Length") == "100000"
    assert time.monotonic() - started < 20
    assert "[ERROR]" not in server.log
