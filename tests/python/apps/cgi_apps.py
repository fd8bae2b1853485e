"""Apps for the CGI differential tests (test_cgi.py): each runs once under tidegate's CGI
gateway and once under wsgiref.handlers.CGIHandler, with the same environment and stdin.
"""

import json
import os
import sys

TEXT = [("Content-Type", "text/plain")]


def hello(environ, start_response):
    """One-item list: both gateways compute Content-Length."""
    start_response("200 OK", TEXT)
    return [b"Hello, World!"]


def declared(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "5"), ("X-After", "1")])
    return [b"hello"]


def several(environ, start_response):
    """Several items, no Content-Length (tidegate adds one: a documented difference)."""
    start_response("200 OK", TEXT)
    return [b"one ", b"two ", b"three"]


def generator(environ, start_response):
    """start_response called lazily inside the generator, with a custom reason phrase and
    a latin-1 header value."""
    def body():
        start_response("299 Fine Indeed", TEXT + [("X-Name", "caf\u00e9")])
        yield b""
        yield b"first "
        yield b"second"
    return body()


def empty(environ, start_response):
    start_response("204 No Content", [])
    return []


def empty_generator(environ, start_response):
    start_response("200 OK", TEXT)
    return (b"" for _ in range(3))


def write_app(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"written ")
    write(b"")
    return [b"returned"]


def environ_app(environ, start_response):
    """The CGI variables and wsgi.* flags as JSON (ASCII-escaped, so every code point shows)."""
    cgi = {k: v for k, v in environ.items() if "." not in k and k not in ("PATH", "PYTHONPATH")}
    flags = {k: environ[k] for k in ("wsgi.url_scheme", "wsgi.run_once", "wsgi.multithread",
                                      "wsgi.multiprocess")}
    flags["wsgi.version"] = list(environ["wsgi.version"])
    body = json.dumps({"cgi": cgi, "flags": flags}, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def echo(environ, start_response):
    """Read CONTENT_LENGTH bytes of wsgi.input, with readline() and read(n) mixed."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    first = stream.readline(length)
    rest = stream.read(length - len(first))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [b"first=" + first + b"|rest=" + rest]


def read_everything(environ, start_response):
    """read() with no size: tidegate stops at CONTENT_LENGTH (wsgiref reads all of stdin)."""
    data = environ["wsgi.input"].read()
    start_response("200 OK", TEXT)
    return [data]


def exc_info_app(environ, start_response):
    """Replace a response not yet sent after an error, with exc_info."""
    start_response("200 OK", TEXT)
    try:
        raise ValueError("handled")
    except ValueError:
        start_response("503 Service Unavailable", TEXT, sys.exc_info())
    return [b"replaced"]


def boom_before(environ, start_response):
    raise RuntimeError("boom before the head")


def boom_after(environ, start_response):
    def body():
        yield b"partial "
        raise RuntimeError("boom after the head")
    start_response("200 OK", TEXT)
    return body()


class _Closing:
    def __init__(self, chunks):
        self._chunks = chunks

    def __iter__(self):
        return iter(self._chunks)

    def close(self):
        with open(os.environ["MARKER"], "a") as f:
            f.write("closed\n")


def closing(environ, start_response):
    start_response("200 OK", TEXT)
    return _Closing([b"a", b"b"])


def closing_boom(environ, start_response):
    """close() must be called even when the body fails."""
    class Failing(_Closing):
        def __iter__(self):
            yield b"x"
            raise RuntimeError("failing body")
    start_response("200 OK", TEXT)
    return Failing([])


def file_app(environ, start_response):
    f = open(os.environ["FILE"], "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f, 8192)


def head_app(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "4")])
    return [b"body"]
