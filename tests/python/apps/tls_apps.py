"""Apps for the TLS and HTTP/2 tests."""

import hashlib
import json
import time
from urllib.parse import parse_qs

KEYS = ("wsgi.url_scheme", "SERVER_PROTOCOL", "HTTP_HOST", "PATH_INFO", "QUERY_STRING",
        "REQUEST_METHOD", "CONTENT_LENGTH")


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def environ_app(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in KEYS}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def upload_app(environ, start_response):
    """Reads wsgi.input in small pieces; answers its length and sha256."""
    digest = hashlib.sha256()
    total = 0
    stream = environ["wsgi.input"]
    while True:
        piece = stream.read(10000)
        if not piece:
            break
        digest.update(piece)
        total += len(piece)
    body = f"{total} {digest.hexdigest()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def stream_app(environ, start_response):
    """?chunks=N&size=S: N chunks of S bytes, no Content-Length."""
    query = _query(environ)
    chunks, size = int(query.get("chunks", "4")), int(query.get("size", "1000"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for i in range(chunks):
        yield bytes([65 + i % 26]) * size


def file_app(environ, start_response):
    """?path=FILE through wsgi.file_wrapper."""
    path = _query(environ)["path"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 32768)


def hop_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close"),
                              ("Keep-Alive", "timeout=5"), ("X-Kept", "yes")])
    return [b"hop"]


def boom_app(environ, start_response):
    raise ValueError("boom")


def slow_app(environ, start_response):
    """?sleep=S before answering."""
    time.sleep(float(_query(environ).get("sleep", "1")))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slept"]


ROUTES = {"/env": environ_app, "/upload": upload_app, "/stream": stream_app, "/file": file_app,
          "/hop": hop_app, "/boom": boom_app, "/slow": slow_app}


def router(environ, start_response):
    """Dispatches on PATH_INFO to the apps above."""
    app = ROUTES.get(environ.get("PATH_INFO", ""), environ_app)
    return app(environ, start_response)
