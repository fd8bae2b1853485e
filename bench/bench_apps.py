"""WSGI applications used by the benchmark. Every server runs the very same callables.

Each scenario of bench/run.py names one of these; nothing here depends on the server.
"""

import json
import os
import time

HELLO_BODY = b"Hello, World!"
HELLO_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(HELLO_BODY))),
]


def hello(environ, start_response):
    """13-byte plain-text body with Content-Type and Content-Length."""
    start_response("200 OK", list(HELLO_HEADERS))
    return [HELLO_BODY]


def hello_iter(environ, start_response):
    """hello through a generator: how Flask, Django and most frameworks hand their body back
    (an iterable that is not a list), so the server cannot see the whole response at once."""
    start_response("200 OK", list(HELLO_HEADERS))
    yield HELLO_BODY


# Twenty keys of mixed types, serialised on every request (the app's own work is part of
# what is measured, the same for every server).
JSON_DOC = {
    "id": 12345,
    "name": "tidegate",
    "active": True,
    "score": 98.6,
    "tags": ["wsgi", "rust", "http"],
    "owner": {"login": "bench", "id": 42},
    "created": "2026-11-21T09:00:00Z",
    "updated": "2026-11-21T10:00:00Z",
    "count": 7,
    "ratio": 0.125,
    "empty": None,
    "description": "A 20-key document for the JSON scenario",
    "language": "Python",
    "license": "MIT",
    "forks": 3,
    "stars": 256,
    "watchers": 12,
    "open_issues": 6,
    "default_branch": "main",
    "archived": False,
}


def json_app(environ, start_response):
    """A 20-key dict through json.dumps on every request."""
    body = json.dumps(JSON_DOC).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    """Answer the request body (read whole from wsgi.input) as the response body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


STREAM_CHUNK = b"x" * 65536
STREAM_CHUNKS = 16  # 16 x 64 KiB = 1 MiB


def stream(environ, start_response):
    """1 MiB from a generator in 64 KiB chunks, no Content-Length (chunked on HTTP/1.1)."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _chunks()


def _chunks():
    for _ in range(STREAM_CHUNKS):
        yield STREAM_CHUNK


# The file the file scenario serves; bench/run.py creates it and sets BENCH_FILE.
BIG_FILE = os.environ.get("BENCH_FILE", "")


def file(environ, start_response):
    """BENCH_FILE through wsgi.file_wrapper, with Content-Length.

    A server without wsgi.file_wrapper gets the file in 64 KiB reads instead; the header
    X-File-Wrapper says which way it went (the harness notes it in the report).
    """
    f = open(BIG_FILE, "rb")
    size = os.fstat(f.fileno()).st_size
    wrapper = environ.get("wsgi.file_wrapper")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size)),
                              ("X-File-Wrapper", "yes" if wrapper else "no")])
    if wrapper is not None:
        return wrapper(f, 65536)
    return _read_blocks(f)


def _read_blocks(f):
    try:
        while True:
            block = f.read(65536)
            if not block:
                return
            yield block
    finally:
        f.close()


def sleep(environ, start_response):
    """An I/O-bound request: 10 ms of time.sleep (the GIL is released), then hello."""
    time.sleep(0.01)
    start_response("200 OK", list(HELLO_HEADERS))
    return [HELLO_BODY]
