"""wsgi.file_wrapper: real files (sent with sendfile(2), from the file's current position,
cut at the app's Content-Length), BytesIO and pipes (iterated in blocks), and close()
closing the file."""

import json
import re
import os
import shutil
import subprocess
import time
import uuid
from urllib.parse import urlencode

import pytest

import conftest
from conftest import ResponseReader



APP = "wsgi_apps:file_app"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A 10 MiB file of random bytes (generated, never committed)."""
    path = tmp_path_factory.mktemp("files") / "ten_mib.bin"
    data = os.urandom(10 * MIB)
    path.write_bytes(data)
    return path, data


def get(server, target: str, sock=None, method: str = "GET"):
    sock = sock or server.connect()
    sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return ResponseReader(sock, timeout=20).read(method)


def serve_file(server, sock=None, **query):
    return get(server, "/file?" + urlencode(query), sock=sock)


def same_bytes(got: bytes, want: bytes):
    """Compare big bodies without a 10 MiB diff in the failure message."""
    assert len(got) == len(want), f"body has {len(got)} bytes, expected {len(want)}"
    if got != want:
        first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
        raise AssertionError(f"bodies differ first at byte {first}")


def file_state(server, file_id: str, want_closed: bool = True, timeout: float = 5.0):
    """Poll state_app until the registered file is closed (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(get(server, "/state?" + urlencode({"id": file_id})).body)
        if state is not None and (state["closed"] or not want_closed):
            return state
        if time.monotonic() > deadline:
            return state
        time.sleep(0.05)


@pytest.fixture
def file_server(serve_app):
    """file_app and state_app in one process (state_app must see file_app's registry)."""
    return serve_app("wsgi_apps:file_dispatch")


def test_real_file_byte_exact(file_server, big_file):
    path, data = big_file
    file_id = uuid.uuid4().hex
    sock = file_server.connect()
    response = serve_file(file_server, sock=sock, path=path, id=file_id)
    assert response.status == 200
    same_bytes(response.body, data)
    # The connection stays usable after a file body.
    again = serve_file(file_server, sock=sock, path=path, cl=10)
    assert again.status == 200 and again.body == data[:10]
    assert file_state(file_server, file_id)["closed"] is True


def test_real_file_from_current_position(file_server, big_file):
    path, data = big_file
    response = serve_file(file_server, path=path, offset=12345)
    assert response.status == 200
    same_bytes(response.body, data[12345:])


@pytest.mark.parametrize("offset", [0, 777])
def test_content_length_smaller_than_file_cuts(file_server, big_file, offset):
    path, data = big_file
    sock = file_server.connect()
    response = serve_file(file_server, sock=sock, path=path, offset=offset, cl=1000)
    assert response.status == 200
    assert response.getheader("Content-Length") == "1000"
    same_bytes(response.body, data[offset:offset + 1000])
    # Nothing past the declared length reached the socket: the next response parses.
    again = serve_file(file_server, sock=sock, path=path, offset=5, cl=3)
    assert again.status == 200 and again.body == data[5:8]


def test_content_length_with_blocks_cuts(file_server, big_file):
    """The cut also applies when the file is iterated (BytesIO) mid-block."""
    path, data = big_file
    sock = file_server.connect()
    response = serve_file(file_server, sock=sock, path=path, kind="bytesio", blksize=4096, cl=10000)
    assert response.status == 200
    assert response.body == data[:10000]
    again = serve_file(file_server, sock=sock, path=path, kind="bytesio", cl=2)
    assert again.status == 200 and again.body == data[:2]


def test_head_file_no_body(file_server, big_file):
    path, data = big_file
    sock = file_server.connect()
    head = get(file_server, "/file?" + urlencode({"path": path, "cl": len(data)}), sock=sock, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.getheader("Content-Length") == str(len(data))
    after = serve_file(file_server, sock=sock, path=path, cl=4)
    assert after.body == data[:4]


def test_bytesio_iterated_in_blocks(file_server, big_file):
    path, data = big_file
    file_id = uuid.uuid4().hex
    response = serve_file(file_server, path=path, kind="bytesio", blksize=65536, id=file_id)
    assert response.status == 200
    same_bytes(response.body, data)
    state = file_state(file_server, file_id)
    assert state["closed"] is True, "file_wrapper close() did not close the BytesIO"
    reads = state["reads"]
    assert reads and set(reads) == {65536}, f"read sizes {sorted(set(map(str, reads)))}"
    assert len(reads) >= len(data) // 65536


def test_pipe_iterated_in_blocks(file_server, big_file):
    path, data = big_file
    file_id = uuid.uuid4().hex
    response = serve_file(file_server, path=path, kind="pipe", blksize=32768, id=file_id)
    assert response.status == 200
    same_bytes(response.body, data)
    assert file_state(file_server, file_id)["closed"] is True


def test_file_closed_after_response(file_server, big_file):
    path, _ = big_file
    file_id = uuid.uuid4().hex
    response = serve_file(file_server, path=path, id=file_id, cl=100)
    assert response.status == 200 and len(response.body) == 100
    assert file_state(file_server, file_id)["closed"] is True


def test_file_wrapper_in_app(serve_app, big_file):
    """Inside the app: blocks of blksize (default 8192), iteration from the current
    position, close() closes the file."""
    path, _ = big_file
    server = serve_app("wsgi_apps:file_wrapper_probe_app")
    response = get(server, "/?" + urlencode({"path": path}))
    assert response.status == 200
    report = json.loads(response.body)
    assert report["bytesio_blocks"] == [1000, 1000, 500]
    assert report["default_blocks"] == [8192, 8192, 3616]
    size = 10 * MIB - 100
    assert report["file_blocks"] == [4096] * (size // 4096) + ([size % 4096] if size % 4096 else [])
    assert report["file_from_position"] is True
    assert report["file_closed_by_close"] is True
    assert report["bytesio_closed_by_close"] is True


# --- sendfile(2), seen with strace --------------------------------------------------------

STRACE = shutil.which("strace")


def traced(server, tmp_path):
    """Attach strace (ours, by PID) to every thread of the server's worker process (the one
    that writes responses); wait until attached."""
    worker = server.worker_pids()[0]
    out = tmp_path / "strace.out"
    err = tmp_path / "strace.err"
    with open(err, "wb") as err_file:
        proc = subprocess.Popen([STRACE, "-f", "-qq", "-e", "trace=sendfile", "-o", str(out),
                                 "-p", str(worker)],
                                stdout=subprocess.DEVNULL, stderr=err_file)
    # strace -qq hides "attached" messages; probe with /proc/PID/status TracerPid instead.
    deadline = time.monotonic() + 5
    while True:
        with open(f"/proc/{worker}/status") as f:
            tracer = next(int(line.split()[1]) for line in f if line.startswith("TracerPid:"))
        if tracer == proc.pid:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.skip(f"strace could not attach: {err.read_text(errors='replace')}")
        time.sleep(0.02)
    time.sleep(0.3)  # let strace reach every thread
    return proc, out


SENDFILE_RESULT = re.compile(r"sendfile.*\)\s+=\s+(\d+)\s*$")


def sendfile_results(out):
    """Byte counts returned by successful sendfile calls (also '<... resumed>' lines)."""
    results = []
    for line in out.read_text().splitlines():
        match = SENDFILE_RESULT.search(line)
        if match:
            results.append(int(match.group(1)))
    return results


def stop_trace(proc):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
@pytest.mark.parametrize("offset", [0, 12345])
def test_real_file_uses_sendfile(server_factory, big_file, tmp_path, offset):
    path, data = big_file
    server = server_factory("wsgi_apps:file_dispatch")  # raw: the validator hides the wrapper
    proc, out = traced(server, tmp_path)
    try:
        response = serve_file(server, path=path, offset=offset)
    finally:
        stop_trace(proc)
    assert response.status == 200
    same_bytes(response.body, data[offset:])
    calls = [line for line in out.read_text().splitlines() if "sendfile" in line]
    sent = sum(sendfile_results(out))
    assert sent == len(data) - offset, f"sendfile moved {sent} bytes:\n" + "\n".join(calls[:20])
    first = re.search(r"sendfile\(\d+, \d+, \[(\d+)\]", calls[0])
    if first:  # the offset pointer form: the first call starts at the file's position
        assert int(first.group(1)) == offset, calls[0]


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
def test_pipe_does_not_use_sendfile(server_factory, big_file, tmp_path):
    path, data = big_file
    server = server_factory("wsgi_apps:file_dispatch")
    proc, out = traced(server, tmp_path)
    try:
        response = serve_file(server, path=path, kind="pipe", cl=MIB)
    finally:
        stop_trace(proc)
    assert response.status == 200
    same_bytes(response.body, data[:MIB])
    assert [n for n in sendfile_results(out) if n > 0] == []


def test_tidegate_file_wrapper_class():
    """The exported FileWrapper behaves the same outside a request."""
    import io

    import tidegate

    bio = io.BytesIO(b"a" * 20000)
    wrapper = tidegate.FileWrapper(bio)
    assert [len(b) for b in wrapper] == [8192, 8192, 3616]
    wrapper.close()
    assert bio.closed
    small = tidegate.FileWrapper(io.BytesIO(b"abcdef"), 4)
    assert list(small) == [b"abcd", b"ef"]
