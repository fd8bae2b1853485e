"""start_response(): write(), a second call, exc_info before and after the headers,
lazy calls inside a generator, custom reason phrases; and the iterable's close() being
called after a full response, an error, and a client disconnect."""

import json
import socket
import struct
import time
from urllib.parse import quote

import pytest

import conftest
from conftest import ResponseReader, read_until_close



def get(server, target: str = "/", sock=None):
    sock = sock or server.connect()
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return ResponseReader(sock).read()


# --- write() -----------------------------------------------------------------------------

def test_write_only_body(serve_app):
    server = serve_app("wsgi_apps:write_only_app")
    sock = server.connect()
    for _ in range(2):  # and the connection stays usable
        response = get(server, sock=sock)
        assert response.status == 200
        assert response.body == b"hello world"
        assert response.getheader("Content-Type") == "text/plain"


def test_write_then_iterable(serve_app):
    server = serve_app("wsgi_apps:write_mix_app")
    response = get(server)
    assert response.status == 200
    assert response.body == b"one,two,three,four"


def test_write_http10_close_delimited(serve_app):
    server = serve_app("wsgi_apps:write_mix_app")
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    raw = read_until_close(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 200 OK")
    assert body == b"one,two,three,four"


def test_start_response_and_write_kept_past_their_request_stay_with_it(serve_app):
    """A Python thread reuses its start_response and write() for the next request only when
    the app kept neither: kept ones stay bound to their own (finished) request, so calling
    them raises and nothing leaks into the request being served."""
    server = serve_app("wsgi_apps:kept_callables_app")
    sock = server.connect()
    # Requests before, so that the thread has a spare to reuse by the time /keep runs.
    for _ in range(3):
        assert get(server, "/warm", sock=sock).body == b"warm"
    kept = get(server, "/keep", sock=sock)
    assert kept.status == 200 and kept.body == b"kept"
    for _ in range(2):
        response = get(server, "/use", sock=sock)
        assert response.status == 200
        assert b"LEAKED" not in response.body
        outcome = json.loads(response.body)
        assert outcome["start_response"] == "RuntimeError"
        assert outcome["write"] is not None
        assert outcome["same_start_response"] is False


# --- calling start_response twice --------------------------------------------------------

def test_second_call_without_exc_info_raises(serve_app):
    server = serve_app("wsgi_apps:double_start_app")
    response = get(server)
    # The first call stands; the second raised inside the app.
    assert response.status == 200
    assert response.getheader("X-First") == "1"
    assert response.getheader("X-Second") is None
    raised = json.loads(response.body)["raised"]
    assert raised is not None, "a second start_response without exc_info did not raise"


def test_exc_info_before_headers_replaces_response(serve_app):
    server = serve_app("wsgi_apps:exc_info_before_app")
    sock = server.connect()
    response = get(server, sock=sock)
    assert response.status == 500
    assert response.reason == "Internal Server Error"
    assert response.body == b"custom error page"
    assert response.getheader("X-Second") == "1"
    assert response.getheader("X-First") is None
    # The app handled its error: the connection is still usable.
    again = get(server, sock=sock)
    assert again.status == 500 and again.body == b"custom error page"


def test_exc_info_after_yielded_chunk_with_empty_first_chunk(serve_app):
    """b'' sends nothing, so a later start_response with exc_info may still replace the
    response."""
    server = serve_app("wsgi_apps:empty_then_exc_app")
    response = get(server)
    assert response.status == 503
    assert response.reason == "Service Unavailable"
    assert response.body == b"replaced"
    assert response.getheader("X-Replaced") == "yes"
    assert response.getheader("X-First") is None


@pytest.mark.parametrize("mode", ["gen", "write"])
def test_exc_info_after_headers_reraises(serve_app, mode):
    server = serve_app("wsgi_apps:exc_info_after_app")
    sock = server.connect()
    sock.sendall(f"GET /late?mode={mode} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = read_until_close(sock)  # the server closes the truncated response
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert b"partial-" in body
    assert b"SHOULD-NOT-APPEAR" not in raw
    assert not body.endswith(b"0\r\n\r\n"), "a truncated response must not look complete"
    server.wait_for_log(r"\[ERROR\] Error handling request GET /late\?mode=" + mode + r": ValueError: late failure")
    again = get(server, "/late?mode=ok")  # a fresh connection is served normally
    assert again.status == 200 and again.body == b"fine"


# --- headers with the first non-empty chunk ----------------------------------------------

def test_lazy_start_response_in_generator(serve_app):
    server = serve_app("wsgi_apps:lazy_app")
    response = get(server)
    assert response.status == 201
    assert response.reason == "Created"
    assert response.getheader("X-Lazy") == "yes"
    assert response.body == b"made lazily"


def test_empty_body_headers_sent_at_end(serve_app):
    server = serve_app("wsgi_apps:empty_body_app")
    sock = server.connect()
    for _ in range(2):
        response = get(server, sock=sock)
        assert response.status == 200
        assert response.getheader("X-Empty") == "yes"
        assert response.body == b""


@pytest.mark.parametrize("status", ["200 Everything Fine", "404 Nope Not Here", "299 Custom",
                                    "500 It Broke Differently"])
def test_custom_reason_phrase_kept(serve_app, status):
    server = serve_app("wsgi_apps:reason_app")
    sock = server.connect()
    sock.sendall(f"GET /?status={quote(status)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    reader = ResponseReader(sock)
    response = reader.read()
    assert f"{response.status} {response.reason}" == status
    assert response.body == b"ok"


# --- close() -----------------------------------------------------------------------------

def marker_lines(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_closed(path, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not marker_lines(path):
        if time.monotonic() > deadline:
            raise AssertionError("close() was never called on the app's iterable")
        time.sleep(0.02)
    time.sleep(0.2)  # a second (wrong) call would show up by now
    return marker_lines(path)


def test_close_after_full_response(serve_app, tmp_path):
    server = serve_app("wsgi_apps:closing_app")
    marker = tmp_path / "closed"
    response = get(server, f"/?mode=full&marker={quote(str(marker))}")
    assert response.status == 200 and response.body == b"abc"
    assert wait_closed(marker) == ["closed"]


def test_close_after_error_mid_stream(serve_app, tmp_path):
    server = serve_app("wsgi_apps:closing_app")
    marker = tmp_path / "closed"
    sock = server.connect()
    sock.sendall(f"GET /?mode=error&marker={quote(str(marker))} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"first-" in raw
    assert wait_closed(marker) == ["closed"]
    server.wait_for_log(r"\[ERROR\] Error handling request GET /\?mode=error&marker=\S+: RuntimeError: mid-stream failure")
    assert_serves_again_closing(server, tmp_path)


def test_close_after_error_before_body(serve_app, tmp_path):
    server = serve_app("wsgi_apps:closing_app")
    marker = tmp_path / "closed"
    sock = server.connect()
    response = get(server, f"/?mode=error_before&marker={quote(str(marker))}", sock=sock)
    assert response.status == 500
    assert response.body.strip() == b"Internal Server Error"
    assert wait_closed(marker) == ["closed"]
    server.wait_for_log(r"RuntimeError: failure before the body")
    # The same connection serves the next request.
    marker2 = tmp_path / "closed2"
    again = get(server, f"/?mode=full&marker={quote(str(marker2))}", sock=sock)
    assert again.status == 200 and again.body == b"abc"
    assert wait_closed(marker2) == ["closed"]


def assert_serves_again_closing(server, tmp_path):
    marker = tmp_path / "after"
    response = get(server, f"/?mode=full&marker={quote(str(marker))}")
    assert response.status == 200 and response.body == b"abc"
    assert wait_closed(marker) == ["closed"]


@pytest.mark.parametrize("close_mode", ["fin", "rst"])
@pytest.mark.parametrize("mode", ["forever", "gen_forever"])
def test_close_after_client_disconnect(serve_app, tmp_path, mode, close_mode):
    server = serve_app("wsgi_apps:closing_app")
    marker = tmp_path / "closed"
    sock = server.connect()
    sock.sendall(f"GET /?mode={mode}&marker={quote(str(marker))} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    received = 0
    while received < 100_000:
        data = sock.recv(65536)
        assert data, "server closed the streaming response"
        received += len(data)
    if close_mode == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert wait_closed(marker) == ["closed"]
    assert_serves_again_closing(server, tmp_path)


# --- the same status and header objects, request after request ---------------------------

def test_constant_headers_are_sent_as_given_request_after_request(serve_app):
    """The server remembers the status and header strs it checked, by object: every
    response must still carry its own, a refused constant is refused every time, and a
    remembered `Connection: close` still closes."""
    server = serve_app("wsgi_apps:known_strings_app")
    # wsgiref.validate refuses /bad's header itself, before the server sees it.
    paths = ["/a", "/b"] if serve_app.validated else ["/a", "/b", "/bad"]
    sock = server.connect()
    for count in range(24):
        path = paths[count % len(paths)]
        response = get(server, f"{path}?{count}", sock=sock)
        assert response.getheader("X-Count") == str(count)
        if path == "/a":
            assert (response.status, response.reason) == (200, "OK")
            assert response.getheader("Content-Type") == "text/plain"
            assert response.getheader("X-Variant") == "a"
            assert response.body == f"/a {count}".encode()
        elif path == "/b":
            assert response.status == 203
            assert response.reason == "Non-Authoritative Information"
            assert response.getheader("Content-Type") == "text/html; charset=utf-8"
            assert response.getheader("X-Variant") == "b" * 80
            assert response.body == f"/b {count}".encode()
        else:
            assert response.status == 200
            assert response.getheader("X-Injected") is None
            assert response.body.startswith(b"refused: ")
            assert b"header injection refused" in response.body
    for attempt in range(2):
        sock = server.connect()
        sock.sendall(f"GET /close?{attempt} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw = read_until_close(sock)
        assert b"\r\nConnection: close\r\n" in raw
        assert f"/close {attempt}".encode() in raw


# --- a body handed over whole (a list), small and large ----------------------------------

def _pieces(sizes):
    return b"".join(bytes([97 + index % 26]) * size for index, size in enumerate(sizes))


@pytest.mark.parametrize(
    "sizes",
    [[], [0], [13], [96], [97], [95, 1], [95, 2], [50, 46, 1], [0, 96, 0], [200],
     [10, 200, 10], [1] * 100],
    ids=lambda sizes: ",".join(map(str, sizes[:4])) + ("..." if len(sizes) > 4 else ""),
)
def test_list_bodies_arrive_whole_with_their_length(serve_app, sizes):
    """Small list bodies travel inline, larger ones as pieces (the inline buffer holds 96
    bytes): every byte arrives in order, with the summed Content-Length, on one connection
    that stays usable. (wsgiref.validate hands the server an iterator instead of the list,
    which is sent chunked.)"""
    server = serve_app("wsgi_apps:list_body_app")
    sock = server.connect()
    query = ",".join(map(str, sizes))
    for _ in range(2):
        response = get(server, f"/?sizes={query}", sock=sock)
        assert response.status == 200
        if not serve_app.validated:
            assert response.getheader("Content-Length") == str(sum(sizes))
        assert response.body == _pieces(sizes)


def test_list_body_longer_than_its_declared_length_is_cut(serve_app):
    server = serve_app("wsgi_apps:list_body_app")
    sock = server.connect()
    cases = [([60, 60], 100, ""), ([200, 5], 150, ""), ([40], 7, ""), ([30], 12, "&padded=1")]
    for sizes, declared, padded in cases:
        query = ",".join(map(str, sizes))
        response = get(server, f"/?sizes={query}&declared={declared}{padded}", sock=sock)
        assert response.getheader("Content-Length") == str(declared)
        assert response.body == _pieces(sizes)[:declared]
    sock.sendall(b"HEAD /?sizes=97 HTTP/1.1\r\nHost: x\r\n\r\n")
    response = ResponseReader(sock).read(method="HEAD")
    if not serve_app.validated:
        assert response.getheader("Content-Length") == "97"
    assert response.body == b""
    assert get(server, "/?sizes=3", sock=sock).body == b"aaa"
