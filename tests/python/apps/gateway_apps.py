"""One app for the request suite that runs through plain HTTP and through nginx's
fastcgi_pass and uwsgi_pass (test_frontends.py), chosen by PATH_INFO. Well-behaved paths
pass wsgiref.validate; /boom-* break on purpose.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs

TEXT = [("Content-Type", "text/plain")]


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class _Closing:
    """An iterable whose close() appends a line to a marker file."""

    def __init__(self, chunks, marker):
        self._chunks = iter(chunks)
        self._marker = marker

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._chunks)

    def close(self):
        with open(self._marker, "a") as f:
            f.write("closed\n")


def _boom_after(chunks):
    for chunk in chunks:
        yield chunk
    raise RuntimeError("boom after the head")


def suite(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = _query(environ)
    if path == "/hello":
        start_response("200 OK", TEXT + [("Content-Length", "13")])
        return [b"Hello, World!"]
    if path == "/echo":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
                "HTTP_X_CUSTOM", "HTTP_COOKIE", "wsgi.url_scheme", "SERVER_PROTOCOL")
        return _json(start_response, {
            "environ": {k: environ.get(k) for k in keys},
            "body": body.decode("latin-1"),
            "pid": os.getpid(),
        })
    if path == "/upload":
        # Read in pieces: the body is never held whole.
        digest, size, stream = hashlib.sha256(), 0, environ["wsgi.input"]
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
        while remaining:
            piece = stream.read(min(65536, remaining))
            if not piece:
                break
            digest.update(piece)
            size += len(piece)
            remaining -= len(piece)
        return _json(start_response, {"size": size, "sha256": digest.hexdigest()})
    if path == "/stream":
        count, delay = int(query.get("n", "5")), float(query.get("delay", "0"))

        def chunks():
            for i in range(count):
                if delay:
                    time.sleep(delay)
                yield b"chunk %d\n" % i

        # nginx buffers upstream responses unless told not to (uwsgi_buffering, or this
        # header, which streaming endpoints such as server-sent events send).
        extra = [("X-Accel-Buffering", "no")] if query.get("unbuffered") else []
        start_response("200 OK", TEXT + extra)
        return chunks()
    if path == "/big":
        # 8 MiB in 128 distinct 64 KiB pieces, no Content-Length.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (bytes([i % 251]) * 65536 for i in range(128))
    if path == "/file":
        f = open(query["path"], "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/write":
        write = start_response("200 OK", TEXT)
        write(b"written-")
        return [b"returned"]
    if path == "/close":
        start_response("200 OK", TEXT)
        return _Closing([b"a", b"b"], query["marker"])
    if path == "/head":
        start_response("200 OK", TEXT + [("Content-Length", "4"), ("X-Head", "yes")])
        return [b"body"]
    if path == "/latin1":
        start_response("200 OK", TEXT + [("X-Name", "caf\u00e9")])
        return [environ.get("HTTP_X_NAME", "").encode("latin-1")]
    if path == "/boom-before":
        raise RuntimeError("boom before the head")
    if path == "/boom-after":
        start_response("200 OK", TEXT)
        return _boom_after([b"x" * 1000, b"y" * 1000])
    if path == "/boom-after-length":
        start_response("200 OK", TEXT + [("Content-Length", "100000")])
        return _boom_after([b"x" * 1000])
    start_response("404 Not Found", TEXT)
    return [b"not found: " + path.encode("latin-1")]
