"""WSGI applications used by the benchmark. Every server runs the very same callable."""

HELLO_BODY = b"Hello, World!"
HELLO_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(HELLO_BODY))),
]


def hello(environ, start_response):
    """13-byte plain-text body with Content-Type and Content-Length."""
    start_response("200 OK", list(HELLO_HEADERS))
    return [HELLO_BODY]
