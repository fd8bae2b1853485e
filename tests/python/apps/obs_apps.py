"""Apps for the logging and metrics tests.

``application`` answers by path: ``/status/NNN`` with status NNN and the body ``status
NNN`` (none for 204 and 304), ``/slow?SECONDS`` after sleeping, ``/headers`` with
``X-Trace: trace-42``, ``/boom`` by raising ``ValueError``, ``/warn`` after a line on
``wsgi.errors``.
"""

import time

STATUS_REASONS = {200: "OK", 201: "Created", 204: "No Content", 302: "Found", 304: "Not Modified",
                  404: "Not Found", 418: "I'm a teapot", 500: "Internal Server Error",
                  503: "Service Unavailable"}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        body = b"" if code in (204, 304) else f"status {code}".encode()
        headers = [("Content-Type", "text/plain")]
        if body:
            headers.append(("Content-Length", str(len(body))))
        start_response(f"{code} {STATUS_REASONS.get(code, 'Other')}", headers)
        return [body]
    if path == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"slept"]
    if path == "/headers":
        time.sleep(0.25)
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Trace", "trace-42"),
                                  ("Content-Length", "7")])
        return [b"headers"]
    if path == "/boom":
        raise ValueError("boom for the log")
    if path == "/warn":
        environ["wsgi.errors"].write("a warning\nfrom the app\n")
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    start_response("404 Not Found", [("Content-Length", "9")])
    return [b"not found"]
