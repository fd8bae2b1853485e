"""wsgi.input: every method in any mix, against io.BytesIO as the reference, for bodies
framed by Content-Length and by chunked encoding; streaming a 1 GiB upload in bounded
memory; a client that disconnects mid-upload."""

import io
import json
import socket
import struct
import threading
import time
import zlib
from urllib.parse import quote

import pytest

from apps.wsgi_apps import apply_input_ops
import conftest
from conftest import ResponseReader



APP = "wsgi_apps:input_ops_app"

SMALL = b"first line\nsecond line\r\n\nfourth: no newline at end"
LINES = b"alpha\nbeta\ngamma\ndelta\n"


def chunked(body: bytes, size: int) -> bytes:
    """``body`` in chunked encoding, ``size`` bytes per chunk."""
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def request(body: bytes, ops, framing: str, chunk: int = 3, path: str = "/") -> bytes:
    target = f"{path}?ops={quote(','.join(ops))}".encode()
    if framing == "length":
        return (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, chunk))


def run_ops(server, body: bytes, ops, framing: str, chunk: int = 3):
    sock = server.connect()
    sock.sendall(request(body, ops, framing, chunk))
    response = ResponseReader(sock).read()
    sock.close()
    assert response.status == 200, response.body
    return json.loads(response.body)


def expected(body: bytes, ops):
    return apply_input_ops(io.BytesIO(body), ops)


def mismatches(server, body, ops, framing, chunk=3):
    """Differences between the server's results and io.BytesIO's for one op sequence."""
    got = run_ops(server, body, ops, framing, chunk)
    want = expected(body, ops)
    problems = [f"{ops}: op {op!r} got {g!r}, expected {w!r}"
                for op, g, w in zip(ops, got, want) if g != w]
    if len(got) != len(want):
        problems.append(f"{ops}: {len(got)} results, expected {len(want)}")
    return problems


def check_all(server, body, sequences, framing, chunk=3):
    """Run every op sequence (one request each) and report every difference at once."""
    problems = []
    for ops in sequences:
        problems += mismatches(server, body, ops, framing, chunk)
    assert not problems, "\n".join(problems)


FRAMINGS = ["length", "chunked"]

#: Op sequences the validator allows (read() always has one argument).
VALIDATED_OPS = {
    "readline keeps newline and continues": ["readline"] * 6,
    "iteration yields every line": ["iter"],
    "iteration resumes": ["next", "next", "iter"],
    "read after readline": ["readline", "read:5", "read:-1"],
    "readline after read(n)": ["read:3", "readline", "read:None"],
    "readline(size)": ["readline:4", "readline:4", "readline:100", "readline:0", "readline"],
    "readline(-1)": ["readline:-1", "readline:1", "rest"],
    "readlines()": ["readlines"],
    "readlines(hint)": ["readlines:12", "rest"],
    "readlines(1)": ["readline", "readlines:1", "readlines"],
    "read past end": ["read:0", "read:7", "read:100000", "read:10", "readline", "read:-1"],
    "read(-1) then EOF everywhere": ["read:-1", "read:-1", "readline", "readlines", "iter"],
    "read(None)": ["read:None", "read:1"],
    "read in pieces": ["rest"],
}

#: Sequences with read() without argument (the validator forbids it: raw only).
RAW_OPS = {
    "read()": ["read"],
    "read() after readline": ["readline", "read"],
    "read() after read(n)": ["read:5", "read"],
    "read() twice": ["readline", "readline:3", "read", "read"],
    "read() after iteration": ["next", "read"],
    "read() after readlines(hint)": ["readlines:8", "read"],
}


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_methods(serve_app, framing):
    """Every method and mix, 3-byte chunks for chunked bodies (boundaries inside lines)."""
    server = serve_app(APP)
    check_all(server, SMALL, VALIDATED_OPS.values(), framing)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_read_without_argument(server_factory, framing):
    server = server_factory(APP)
    check_all(server, SMALL, RAW_OPS.values(), framing)


# The Granian 2.8.7 bugs, named one by one (see shared/notes/anchors.md).

def test_granian_readline_keeps_newline_and_second_readline_works(serve_app):
    server = serve_app(APP)
    got = run_ops(server, LINES, ["readline", "readline"], "length")
    assert got == ["alpha\n", "beta\n"]


def test_granian_iteration_yields_all_lines(serve_app):
    server = serve_app(APP)
    got = run_ops(server, LINES, ["iter"], "length")
    assert got == [["alpha\n", "beta\n", "gamma\n", "delta\n"]]


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("cuts", ["", "100", "4095,4096,1", "3000,20000,5"])
def test_echo_of_bodies_around_the_zero_copy_threshold(server_factory, framing, cuts):
    """read() without a size returns the whole body (received whole, or streamed when the
    client sends it in slices), and response pieces copied (< 4 KiB) or shared with
    Python (>= 4 KiB) go out intact and in order, on a kept-alive connection."""
    server = server_factory("wsgi_apps:echo_pieces_app")
    sock = server.connect()
    reader = ResponseReader(sock)
    for size, split in [(10 * 1024, False), (10 * 1024, True), (4096, False), (40 * 1024, True)]:
        body = bytes(range(256)) * (size // 256) + b"tail"
        target = f"/?cuts={cuts}".encode()
        if framing == "length":
            head = (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body))
            payload = head + body
        else:
            head = b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            payload = head + chunked(body, 5000)
        if split:
            # Half of it first, so that the body is streamed rather than received whole.
            sock.sendall(payload[:len(payload) // 2])
            time.sleep(0.05)
            sock.sendall(payload[len(payload) // 2:])
        else:
            sock.sendall(payload)
        response = reader.read("POST")
        assert response.status == 200
        assert response.body == body
    sock.close()


def test_granian_read_after_readline_keeps_buffered_bytes(server_factory):
    server = server_factory(APP)
    got = run_ops(server, LINES, ["readline", "read"], "length")
    assert got == ["alpha\n", "beta\ngamma\ndelta\n"]
    got = run_ops(server, LINES, ["read:3", "read"], "length")
    assert got == ["alp", "ha\nbeta\ngamma\ndelta\n"]


def test_granian_read_minus_one(serve_app):
    server = serve_app(APP)
    got = run_ops(server, LINES, ["read:-1"], "length")
    assert got == [LINES.decode()]


def test_granian_readline_size_honoured(serve_app):
    server = serve_app(APP)
    got = run_ops(server, LINES, ["readline:3", "readline:3", "readline:3"], "length")
    assert got == ["alp", "ha\n", "bet"]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_large_body_mixed(serve_app, framing):
    """300 KB of lines of varied length, read with every method in turn; chunk boundaries
    fall inside lines."""
    lines = [(b"line %d " % i) + b"x" * (i * 37 % 200) + b"\n" for i in range(3000)]
    body = b"".join(lines) + b"tail without newline"
    ops = ["readline", "read:70000", "readline:10", "readline", "readlines:50000", "next",
           "read:1", "iter", "read:10", "readline"]
    server = serve_app(APP)
    check_all(server, body, [ops], framing, chunk=1000)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_large_body_read_all_raw(server_factory, framing):
    body = bytes(range(256)) * 4096 + b"\nend"
    server = server_factory(APP)
    check_all(server, body, [["readline", "read"], ["read:-1"], ["iter"]], framing, chunk=65536)


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("ops", [["read:1048576"], ["readline"], ["readline:2"], []],
                         ids=["read-big-n", "readline", "readline-2", "no-read"])
def test_input_never_reads_past_body(serve_app, framing, ops):
    """A pipelined second request right after the body is never seen by wsgi.input, and
    is served after the first whatever the app read of its body."""
    server = serve_app(APP)
    body = b"abc\ndef"
    first = request(body, ops, framing)
    second = b"GET /?ops=rest,readline HTTP/1.1\r\nHost: x\r\n\r\n"
    sock = server.connect()
    sock.sendall(first + second)
    reader = ResponseReader(sock)
    r1 = reader.read()
    r2 = reader.read()
    assert r1.status == 200 and r2.status == 200
    assert json.loads(r1.body) == expected(body, ops)
    assert json.loads(r2.body) == ["", ""]


# --- 1 GiB upload in bounded memory ------------------------------------------------------

MIB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def upload(server, total: int, block: bytes, timeout: float = 30.0):
    sock = server.connect(timeout=timeout)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Length: %d\r\n\r\n" % total)
    view = memoryview(block)
    sent = 0
    while sent < total:
        n = min(len(block), total - sent)
        sock.sendall(view[:n])
        sent += n
    response = ResponseReader(sock, timeout=timeout).read()
    sock.close()
    assert response.status == 200, response.body
    return json.loads(response.body)


def test_input_1gib_upload_bounded_memory(serve_app):
    server = serve_app("wsgi_apps:upload_app")
    block = bytes(range(256)) * 4096  # 1 MiB
    total = 1024 * MIB
    # Warm up: threads, buffers and the app's first call are allocated before measuring.
    assert upload(server, 8 * MIB, block)["length"] == 8 * MIB
    rss_before = status_kib(server.pid, "VmRSS")
    hwm_before = status_kib(server.pid, "VmHWM")

    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(status_kib(server.pid, "VmRSS"))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        result = upload(server, total, block)
    finally:
        done.set()
        sampler.join()
    elapsed = time.monotonic() - started
    rss_after = status_kib(server.pid, "VmRSS")
    hwm_after = status_kib(server.pid, "VmHWM")

    crc = 0
    for _ in range(total // len(block)):
        crc = zlib.crc32(block, crc)
    assert result == {"length": total, "crc32": crc}
    growth_kib = max(samples + [rss_after]) - rss_before
    assert growth_kib < 32 * 1024, f"RSS grew by {growth_kib} KiB during a 1 GiB upload"
    if hwm_after != hwm_before:
        assert hwm_after - rss_before < 32 * 1024, (
            f"peak RSS {hwm_after} KiB is {hwm_after - rss_before} KiB above {rss_before} KiB")
    assert elapsed < 25, f"1 GiB upload over loopback took {elapsed:.1f} s"


# --- client disconnects mid-upload -------------------------------------------------------

def wait_for_lines(path, count: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"marker {path} has {lines!r}, expected {count} lines")
        time.sleep(0.02)


@pytest.mark.parametrize("close_mode", ["fin", "rst"])
@pytest.mark.parametrize("framing", FRAMINGS)
def test_input_client_disconnect_raises_oserror(serve_app, tmp_path, close_mode, framing):
    server = serve_app("wsgi_apps:upload_app")
    marker = tmp_path / "marker"
    sock = server.connect()
    head = (b"POST /upload?marker=" + quote(str(marker)).encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/octet-stream\r\n")
    piece = b"z" * 65536
    if framing == "length":
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % (100 * MIB))
        for _ in range(16):
            sock.sendall(piece)
    else:
        sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(16):
            sock.sendall(b"10000\r\n" + piece + b"\r\n")
        sock.sendall(b"10000\r\n" + piece[:100])  # stop inside a chunk
    assert wait_for_lines(marker, 1)[0] == "started"
    time.sleep(0.2)
    if close_mode == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

    lines = wait_for_lines(marker, 2)
    assert lines[1] == "raised ClientDisconnected True True", lines

    # The server keeps serving.
    sock = server.connect()
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 5\r\n\r\nhello")
    response = ResponseReader(sock).read()
    assert response.status == 200
    assert json.loads(response.body) == {"length": 5, "crc32": zlib.crc32(b"hello")}


def test_client_disconnected_is_an_oserror():
    import tidegate

    assert issubclass(tidegate.ClientDisconnected, OSError)
