"""An app behind --static: it counts its calls, so tests can prove static requests never
reach it, and /sleep holds its only Python thread busy."""

import threading
import time
from urllib.parse import parse_qs

_calls = 0
_lock = threading.Lock()


def counting_app(environ, start_response):
    global _calls
    with _lock:
        _calls += 1
        calls = _calls
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(parse_qs(environ["QUERY_STRING"]).get("s", ["1"])[0]))
    body = f"app {environ['REQUEST_METHOD']} {environ['PATH_INFO']} calls={calls}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
