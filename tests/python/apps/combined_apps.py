"""The app for test_combined.py: an environ echo (the keys the proxy, TLS, HTTP/2 and
root-path features set) that also sets a response header for the access log, and a slow
path for the graceful-stop test."""

import json
import time
from urllib.parse import parse_qs

KEYS = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "SERVER_PROTOCOL", "SERVER_NAME",
        "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "HTTP_HOST", "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT",
        "HTTP_FORWARDED")


def app(environ, start_response):
    """Echoes KEYS as JSON (absent keys as null). ``?sleep=S`` waits S seconds first;
    a path ending in ``/boom`` raises."""
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if environ.get("PATH_INFO", "").endswith("/boom"):
        raise ValueError("boom")
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    body = json.dumps({key: environ.get(key) for key in KEYS}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))),
                              ("X-App-Trace", "trace-42")])
    return [body]
