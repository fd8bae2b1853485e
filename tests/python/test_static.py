"""--static: files answered by the HTTP engine itself, never by the app.

The app (apps/static_apps.py) counts its calls, so every test can check that static
requests never reached it. Clients: requests, curl, and raw sockets for the request lines
that real clients would normalise (``..``, ``%2e%2e``, ``%2f``, backslashes, NUL).
"""

from __future__ import annotations

import email.utils
import gzip
import os
import re
import shutil
import socket
import subprocess
import time

import pytest
import requests

from conftest import ResponseReader, read_until_close, tidegate_command, server_env

APP = "static_apps:counting_app"
CACHE = "public, max-age=3600"
MIB = 1024 * 1024
CURL = shutil.which("curl")
STRACE = shutil.which("strace")

CSS = b"body { color: #333; }\n" * 50
PLAIN = b"0123456789"
SECRET = b"secret outside the static directory\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A static directory with a few kinds of files, precompressed siblings, symlinks in and
    out, a second directory for a longer prefix, and a secret file next to (outside) both."""
    base = tmp_path_factory.mktemp("site")
    root = base / "public"
    (root / "sub").mkdir(parents=True)
    (root / "css").mkdir()
    (root / "css" / "site.css").write_bytes(CSS)
    (root / "css" / "site.css.gz").write_bytes(gzip.compress(CSS))
    (root / "css" / "site.css.br").write_bytes(b"BROTLI-BYTES")  # only its bytes are checked
    (root / "css" / "only-gz.css").write_bytes(CSS)
    (root / "css" / "only-gz.css.gz").write_bytes(gzip.compress(CSS))
    (root / "plain.txt").write_bytes(PLAIN)
    (root / "app.js").write_bytes(b"console.log(1);\n")
    (root / "data.json").write_bytes(b'{"a": 1}')
    (root / "pixel.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    (root / "page.html").write_bytes(b"<!doctype html><p>hi</p>\n")
    (root / "noextension").write_bytes(b"raw")
    (root / "empty.txt").write_bytes(b"")
    (root / "sub" / "deep.txt").write_bytes(b"deep\n")
    (root / "big.bin").write_bytes(os.urandom(20 * MIB))
    (base / "secret.txt").write_bytes(SECRET)
    os.symlink(base / "secret.txt", root / "leak.txt")  # a file symlink pointing out
    os.symlink(base, root / "outdir")  # a directory symlink pointing out
    os.symlink("plain.txt", root / "alias.txt")  # a symlink inside: served
    os.symlink("sub", root / "subalias")  # a directory symlink inside: served
    other = base / "v2"
    other.mkdir()
    (other / "plain.txt").write_bytes(b"from v2")
    return base


@pytest.fixture(scope="module")
def server(site, tmp_path_factory):
    """One server for the module: static requests are read-only, and the app counter is
    checked as a difference."""
    from conftest import Server

    args = tidegate_command(
        "--bind", "127.0.0.1:0", "--access-log",
        "--static", f"/static={site / 'public'}",
        "--static", f"/static/v2={site / 'v2'}",
        "--static-cache-control", CACHE,
        APP,
    )
    from conftest import APPS_DIR

    srv = Server(args, APPS_DIR, server_env()).wait_listening()
    yield srv
    srv.stop()
    assert "panicked" not in srv.log, srv.log


def url(server, path):
    return f"http://127.0.0.1:{server.port}{path}"


def app_calls(server) -> int:
    """How many times the app has been called, this call excluded."""
    body = requests.get(url(server, "/count")).text
    return int(re.search(r"calls=(\d+)", body).group(1)) - 1


@pytest.fixture
def no_app_calls(server):
    """Fails the test if the app was called (other than by app_calls itself)."""
    before = app_calls(server)
    yield
    assert app_calls(server) == before + 1, "a static request reached the app"


def raw(server, request_line: str, headers: str = "") -> tuple:
    """Sends one request with the request line exactly as given; returns the response."""
    sock = server.connect()
    sock.sendall(f"{request_line}\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode("latin-1"))
    response = ResponseReader(sock).read()
    sock.close()
    return response


# --- files and their headers -------------------------------------------------------------

@pytest.mark.parametrize("path, content_type, body", [
    ("/static/plain.txt", "text/plain; charset=utf-8", PLAIN),
    ("/static/css/site.css", "text/css; charset=utf-8", CSS),
    ("/static/page.html", "text/html; charset=utf-8", b"<!doctype html><p>hi</p>\n"),
    ("/static/app.js", None, b"console.log(1);\n"),
    ("/static/data.json", "application/json", b'{"a": 1}'),
    ("/static/pixel.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(16)),
    ("/static/noextension", "application/octet-stream", b"raw"),
    ("/static/empty.txt", "text/plain; charset=utf-8", b""),
    ("/static/sub/deep.txt", "text/plain; charset=utf-8", b"deep\n"),
    ("/static/alias.txt", "text/plain; charset=utf-8", PLAIN),
    ("/static/subalias/deep.txt", "text/plain; charset=utf-8", b"deep\n"),
    ("/static/v2/plain.txt", "text/plain; charset=utf-8", b"from v2"),  # longest prefix
    ("/static/plain.txt?v=123", "text/plain; charset=utf-8", PLAIN),
    ("/static//sub//deep.txt", "text/plain; charset=utf-8", b"deep\n"),
])
def test_files_are_served_with_their_headers(server, no_app_calls, path, content_type, body):
    response = requests.get(url(server, path), headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == body
    if content_type is None:  # JavaScript: the table's name for it varies
        assert response.headers["Content-Type"] in (
            "application/javascript; charset=utf-8", "text/javascript; charset=utf-8")
    else:
        assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Length"] == str(len(body))
    assert response.headers["Cache-Control"] == CACHE
    assert response.headers["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', response.headers["ETag"])
    modified = email.utils.parsedate_to_datetime(response.headers["Last-Modified"])
    assert abs(modified.timestamp() - time.time()) < 3600
    assert "Content-Encoding" not in response.headers


def test_paths_outside_the_prefixes_reach_the_app(server):
    for path in ("/", "/app", "/staticky/plain.txt", "/stati"):
        response = requests.get(url(server, path))
        assert response.status_code == 200
        assert response.text.startswith(f"app GET {path} "), response.text


def test_head_sends_headers_without_body(server, no_app_calls):
    sock = server.connect()
    sock.sendall(b"HEAD /static/plain.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /static/sub/deep.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    reader = ResponseReader(sock)
    head = reader.read("HEAD")
    assert head.status == 200
    assert head.getheader("Content-Length") == "10"
    assert head.body == b""
    # The next response starts right after the HEAD head: no stray body bytes in between.
    after = reader.read()
    assert (after.status, after.body) == (200, b"deep\n")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405(server, no_app_calls, method):
    response = requests.request(method, url(server, "/static/plain.txt"), data=b"x" * 10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_missing_files_and_directories_are_404(server, no_app_calls):
    for path in ("/static/nope.txt", "/static/sub", "/static/sub/", "/static", "/static/",
                 "/static/plain.txt/", "/static/v2/nope"):
        response = requests.get(url(server, path))
        assert response.status_code == 404, path
        assert response.text == "Not Found"


def test_keep_alive_continues_after_static_responses(server):
    sock = server.connect()
    reader = ResponseReader(sock)
    requests_ = [b"/static/plain.txt", b"/static/nope", b"/app", b"/static/sub/deep.txt"]
    for path in requests_:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.sendall(b"POST /static/plain.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                 b"GET /static/plain.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    statuses = [(r.status, r.body) for r in (reader.read() for _ in range(6))]
    assert statuses[0] == (200, PLAIN)
    assert statuses[1][0] == 404
    assert statuses[2][0] == 200 and statuses[2][1].startswith(b"app GET /app ")
    assert statuses[3] == (200, b"deep\n")
    assert statuses[4][0] == 405
    assert statuses[5] == (200, PLAIN)


def test_static_requests_take_no_python_thread(site, server_factory):
    """With one Python thread busy for 2 s, a static request on an open connection is
    answered at once."""
    server = server_factory(APP, "--threads", "1", "--static", f"/static={site / 'public'}")
    idle = server.connect()
    busy = server.connect()
    busy.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)  # the app is now sleeping on the only thread
    started = time.monotonic()
    idle.sendall(b"GET /static/plain.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    response = ResponseReader(idle).read()
    elapsed = time.monotonic() - started
    assert (response.status, response.body) == (200, PLAIN)
    assert elapsed < 1.0, f"the static answer waited {elapsed:.2f}s for the Python thread"
    assert ResponseReader(busy).read().body.startswith(b"app GET /sleep calls=1")


def test_access_log_has_static_lines(server):
    requests.get(url(server, "/static/plain.txt"), headers={"User-Agent": "static-test/1"})
    requests.get(url(server, "/static/missing.txt"), headers={"User-Agent": "static-test/1"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if '"GET /static/missing.txt HTTP/1.1" 404 9' in server.stdout:
            break
        time.sleep(0.05)
    assert '"GET /static/plain.txt HTTP/1.1" 200 10 "-" "static-test/1"' in server.stdout
    assert '"GET /static/missing.txt HTTP/1.1" 404 9 "-" "static-test/1"' in server.stdout


# --- conditional requests ----------------------------------------------------------------

def test_if_none_match_gives_304(server, no_app_calls):
    first = requests.get(url(server, "/static/plain.txt"))
    etag = first.headers["ETag"]
    for value in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        response = requests.get(url(server, "/static/plain.txt"), headers={"If-None-Match": value})
        assert response.status_code == 304, value
        assert response.content == b""
        assert response.headers["ETag"] == etag
        assert response.headers["Cache-Control"] == CACHE
        assert "Content-Length" not in response.headers
    response = requests.get(url(server, "/static/plain.txt"), headers={"If-None-Match": '"other"'})
    assert (response.status_code, response.content) == (200, PLAIN)


def test_if_modified_since_gives_304(server, no_app_calls):
    last_modified = requests.get(url(server, "/static/plain.txt")).headers["Last-Modified"]
    response = requests.get(url(server, "/static/plain.txt"),
                            headers={"If-Modified-Since": last_modified})
    assert (response.status_code, response.content) == (304, b"")
    earlier = email.utils.formatdate(
        email.utils.parsedate_to_datetime(last_modified).timestamp() - 10, usegmt=True)
    response = requests.get(url(server, "/static/plain.txt"), headers={"If-Modified-Since": earlier})
    assert (response.status_code, response.content) == (200, PLAIN)
    # If-None-Match takes precedence: a mismatching tag wins over a matching date.
    response = requests.get(url(server, "/static/plain.txt"),
                            headers={"If-Modified-Since": last_modified, "If-None-Match": '"x"'})
    assert response.status_code == 200


def test_etag_changes_when_the_file_changes(site, server):
    path = site / "public" / "changing.txt"
    path.write_bytes(b"one")
    first = requests.get(url(server, "/static/changing.txt")).headers["ETag"]
    path.write_bytes(b"two!")
    response = requests.get(url(server, "/static/changing.txt"), headers={"If-None-Match": first})
    assert (response.status_code, response.content) == (200, b"two!")
    assert response.headers["ETag"] != first


# --- ranges ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, start, end", [
    ("bytes=2-5", 2, 5), ("bytes=7-", 7, 9), ("bytes=-3", 7, 9), ("bytes=0-0", 0, 0),
    ("bytes=4-100", 4, 9), ("bytes=-100", 0, 9),
])
def test_single_ranges_give_206(server, no_app_calls, spec, start, end):
    response = requests.get(url(server, "/static/plain.txt"), headers={"Range": spec})
    assert response.status_code == 206
    assert response.content == PLAIN[start:end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/10"
    assert response.headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("spec", ["bytes=10-", "bytes=10-20", "bytes=-0"])
def test_unsatisfiable_ranges_give_416(server, no_app_calls, spec):
    response = requests.get(url(server, "/static/plain.txt"), headers={"Range": spec})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */10"
    assert response.content == b""


@pytest.mark.parametrize("spec", ["bytes=0-1,4-5", "bytes=5-2", "lines=1-2", "bytes=x-"])
def test_multiple_or_invalid_ranges_send_the_whole_file(server, no_app_calls, spec):
    response = requests.get(url(server, "/static/plain.txt"), headers={"Range": spec})
    assert (response.status_code, response.content) == (200, PLAIN)


def test_if_range(server, no_app_calls):
    first = requests.get(url(server, "/static/plain.txt"))
    etag, date = first.headers["ETag"], first.headers["Last-Modified"]
    for validator in (etag, date):
        response = requests.get(url(server, "/static/plain.txt"),
                                headers={"Range": "bytes=0-3", "If-Range": validator})
        assert (response.status_code, response.content) == (206, b"0123"), validator
    for stale in ('"stale"', f"W/{etag}", "Thu, 01 Jan 1998 00:00:00 GMT"):
        response = requests.get(url(server, "/static/plain.txt"),
                                headers={"Range": "bytes=0-3", "If-Range": stale})
        assert (response.status_code, response.content) == (200, PLAIN), stale


def test_head_ignores_range(server, no_app_calls):
    response = requests.head(url(server, "/static/plain.txt"), headers={"Range": "bytes=0-3"})
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "10"


# --- precompressed siblings --------------------------------------------------------------

def raw_get(server, path, accept_encoding=None):
    """A GET whose body is left as sent (no decoding by the client)."""
    extra = f"Accept-Encoding: {accept_encoding}\r\n" if accept_encoding is not None else ""
    return raw(server, f"GET {path} HTTP/1.1", extra)


@pytest.mark.parametrize("accept, coding", [
    ("gzip, deflate, br", "br"),
    ("br", "br"),
    ("gzip", "gzip"),
    ("br;q=0, gzip", "gzip"),
    ("br;q=0.5, gzip;q=0.9", "gzip"),
    ("gzip;q=0.5, br;q=0.5", "br"),
    ("*", "br"),
    ("*;q=0.5, br;q=0", "gzip"),
    ("br;q=0, gzip;q=0", None),
    ("gzip;q=0", None),
    ("identity", None),
    ("deflate", None),
    (None, None),
])
def test_precompressed_sibling_follows_accept_encoding(server, no_app_calls, accept, coding):
    response = raw_get(server, "/static/css/site.css", accept)
    assert response.status == 200
    expected = {"br": b"BROTLI-BYTES", "gzip": gzip.compress(CSS), None: CSS}[coding]
    if coding == "gzip":
        assert gzip.decompress(response.body) == CSS
    else:
        assert response.body == expected
    assert response.getheader("Content-Encoding") == coding
    assert response.getheader("Content-Type") == "text/css; charset=utf-8"
    assert response.getheader("Content-Length") == str(len(response.body))
    assert response.getheader("Vary") == "Accept-Encoding"


def test_precompressed_etags_differ_and_ranges_apply_to_the_chosen_file(server, no_app_calls):
    plain = raw_get(server, "/static/css/site.css").getheader("ETag")
    br = raw_get(server, "/static/css/site.css", "br").getheader("ETag")
    assert plain != br
    response = raw(server, "GET /static/css/site.css HTTP/1.1", "Accept-Encoding: br\r\nRange: bytes=0-5\r\n")
    assert response.status == 206
    assert response.body == b"BROTLI"
    assert response.getheader("Content-Range") == f"bytes 0-5/{len(b'BROTLI-BYTES')}"
    assert response.getheader("Content-Encoding") == "br"
    response = raw(server, "GET /static/css/site.css HTTP/1.1", f"Accept-Encoding: br\r\nIf-None-Match: {br}\r\n")
    assert response.status == 304
    assert response.getheader("Vary") == "Accept-Encoding"


def test_only_existing_siblings_and_vary_only_when_one_exists(server, no_app_calls):
    response = raw_get(server, "/static/css/only-gz.css", "br, gzip")
    assert response.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(response.body) == CSS
    response = raw_get(server, "/static/css/only-gz.css", "br")
    assert (response.getheader("Content-Encoding"), response.body) == (None, CSS)
    assert response.getheader("Vary") == "Accept-Encoding"
    response = raw_get(server, "/static/plain.txt", "br, gzip")
    assert response.getheader("Vary") is None
    assert response.getheader("Content-Encoding") is None


def test_requests_decodes_the_gzip_sibling(server, no_app_calls):
    response = requests.get(url(server, "/static/css/only-gz.css"), headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.content == CSS


# --- path traversal ----------------------------------------------------------------------

TRAVERSALS = [
    "/static/../secret.txt",
    "/static/sub/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/sub%2f..%2f..%2fsecret.txt",
    "/static/..\\secret.txt",
    "/static/sub\\..\\..\\secret.txt",
    "/static/..%5csecret.txt",
    "/static/%5c..%5csecret.txt",
    "/static/plain.txt%00",
    "/static/plain.txt%00.png",
    "/static/./plain.txt",
    "/static/%2e/plain.txt",
    "/static/%252e%252e/secret.txt",  # decoded once: a literal "%2e%2e" directory, absent
    "/static/leak.txt",
    "/static/outdir/secret.txt",
    "/static/v2/../public/plain.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_attempts_are_404(server, no_app_calls, target):
    response = raw(server, f"GET {target} HTTP/1.1")
    assert response.status == 404, target
    assert response.body == b"Not Found"
    assert SECRET not in response.body


def test_a_raw_nul_in_the_target_is_refused(server, no_app_calls):
    sock = server.connect()
    sock.sendall(b"GET /static/plain.txt\x00.png HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = read_until_close(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert PLAIN not in answer


def test_symlinks_inside_are_served_outside_are_not(server, no_app_calls):
    assert requests.get(url(server, "/static/alias.txt")).content == PLAIN
    assert requests.get(url(server, "/static/subalias/deep.txt")).content == b"deep\n"
    assert requests.get(url(server, "/static/leak.txt")).status_code == 404
    assert requests.get(url(server, "/static/outdir/secret.txt")).status_code == 404


# --- curl --------------------------------------------------------------------------------

@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl(server, no_app_calls, tmp_path):
    def curl(*args):
        result = subprocess.run([CURL, "-sS", "-D", "-", *args], capture_output=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = curl(url(server, "/static/plain.txt"))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-type: text/plain; charset=utf-8\r\n" in out.lower()
    assert out.endswith(b"\r\n\r\n" + PLAIN)
    out = curl("-r", "3-6", url(server, "/static/plain.txt"))
    assert out.startswith(b"HTTP/1.1 206 ") and out.endswith(b"\r\n\r\n3456")
    out = curl("--compressed", url(server, "/static/css/only-gz.css"))
    assert b"content-encoding: gzip" in out.lower() and out.endswith(CSS)
    out = curl("-I", url(server, "/static/plain.txt"))
    assert out.startswith(b"HTTP/1.1 200 ") and b"content-length: 10\r\n" in out.lower()
    # Resuming a download: -C - asks for the rest of a partial file.
    partial = tmp_path / "resume.txt"
    partial.write_bytes(PLAIN[:4])
    curl("-C", "-", "-o", str(partial), url(server, "/static/plain.txt"))
    assert partial.read_bytes() == PLAIN
    # Conditional download: -z with a file as new as the resource gives a 304.
    stamp = tmp_path / "stamp"
    stamp.write_bytes(b"")  # newer than plain.txt
    out = curl("-z", str(stamp), url(server, "/static/plain.txt"))
    assert out.startswith(b"HTTP/1.1 304 ")
    # --path-as-is keeps "..": the engine refuses it.
    out = curl("--path-as-is", url(server, "/static/../secret.txt"))
    assert out.startswith(b"HTTP/1.1 404 ") and SECRET not in out


# --- a large file with sendfile ----------------------------------------------------------

def test_large_file_arrives_intact(site, server, no_app_calls):
    data = (site / "public" / "big.bin").read_bytes()
    response = requests.get(url(server, "/static/big.bin"))
    assert response.status_code == 200
    assert len(response.content) == len(data) and response.content == data
    response = requests.get(url(server, "/static/big.bin"), headers={"Range": f"bytes={MIB}-"})
    assert response.status_code == 206
    assert response.content == data[MIB:]


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
def test_large_file_goes_out_with_sendfile(site, server_factory, tmp_path):
    from test_file_wrapper import sendfile_results, stop_trace, traced

    data = (site / "public" / "big.bin").read_bytes()
    server = server_factory(APP, "--static", f"/static={site / 'public'}")
    proc, out = traced(server, tmp_path)
    try:
        sock = server.connect()
        sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=12345-\r\n\r\n")
        response = ResponseReader(sock, timeout=30).read()
    finally:
        stop_trace(proc)
    assert response.status == 206
    assert response.body == data[12345:]
    sent = sum(sendfile_results(out))
    assert sent == len(data) - 12345, out.read_text()[:2000]


# --- start-up errors ---------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    (["--static", "/static=/no/such/dir"], "argument --static: /static=/no/such/dir: directory '/no/such/dir' does not exist"),
    (["--static", "static=."], "argument --static: 'static=.': the URL prefix must start with '/'"),
    (["--static", "/static"], "argument --static: '/static' is not URL_PREFIX=DIRECTORY"),
    (["--static", "/a/../b=."], "argument --static /a/../b="),
    (["--static", "/s=.", "--static", "/s/=."], "is given twice"),
    (["--static-cache-control", "no-cache"], "argument --static-cache-control: needs --static"),
    (["--static", "/s=.", "--protocol", "fastcgi"], "argument --static: only served with --protocol http"),
])
def test_bad_static_options_are_named(site, options, message):
    result = subprocess.run(tidegate_command("--bind", "127.0.0.1:0", *options, APP),
                            capture_output=True, text=True, timeout=30, env=server_env(),
                            cwd=str(site))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr


def test_a_file_as_directory_is_refused(site):
    result = subprocess.run(
        tidegate_command("--bind", "127.0.0.1:0", "--static", "/s=public/plain.txt", APP),
        capture_output=True, text=True, timeout=30, env=server_env(), cwd=str(site))
    assert result.returncode == 2
    assert "directory 'public/plain.txt' is not a directory" in result.stderr


def test_relative_directories_follow_chdir(site, server_factory):
    server = server_factory(APP, "--chdir", str(site), "--static", "/s=public")
    response = requests.get(url(server, "/s/plain.txt"))
    assert (response.status_code, response.content) == (200, PLAIN)


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_http2_streams_get_static_files_too(server, site, no_app_calls, tmp_path):
    """The engine answers --static paths on HTTP/2 streams as on HTTP/1.1 (h2c here; the same
    code serves h2 over TLS): headers, ranges, validators, HEAD, traversal, a large file."""

    def curl(*args):
        result = subprocess.run(
            [CURL, "-sS", "--http2-prior-knowledge", "-D", "-", *args],
            capture_output=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = curl(url(server, "/static/plain.txt"))
    assert out.startswith(b"HTTP/2 200 \r\n"), out[:200]
    assert b"\r\ncontent-type: text/plain; charset=utf-8\r\n" in out
    assert f"\r\ncache-control: {CACHE}\r\n".encode() in out
    assert out.endswith(b"\r\n\r\n" + PLAIN)
    etag = re.search(rb"\r\netag: ([^\r]+)\r\n", out).group(1).decode()

    out = curl("-r", "3-6", url(server, "/static/plain.txt"))
    assert out.startswith(b"HTTP/2 206 ") and out.endswith(b"\r\n\r\n3456")
    assert b"\r\ncontent-range: bytes 3-6/10\r\n" in out
    out = curl("-H", f"If-None-Match: {etag}", url(server, "/static/plain.txt"))
    assert out.startswith(b"HTTP/2 304 ") and out.endswith(b"\r\n\r\n")
    out = curl("-I", url(server, "/static/plain.txt"))
    assert out.startswith(b"HTTP/2 200 ") and b"\r\ncontent-length: 10\r\n" in out
    out = curl("--path-as-is", url(server, "/static/../secret.txt"))
    assert out.startswith(b"HTTP/2 404 ") and SECRET not in out

    big = tmp_path / "big.bin"
    result = subprocess.run(
        [CURL, "-sS", "--http2-prior-knowledge", "-o", str(big), "-w", "%{http_version} %{http_code}",
         url(server, "/static/big.bin")],
        capture_output=True, timeout=60,
    )
    assert result.stdout == b"2 200", result.stderr
    assert big.read_bytes() == (site / "public" / "big.bin").read_bytes()
