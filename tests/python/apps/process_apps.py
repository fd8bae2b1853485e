"""Apps for the process-model tests (tests/python/test_process.py).

``app`` answers every path with a JSON object saying which process served the request
and which process imported the module (``import_pid``), so a test can tell workers apart,
see a replacement, and tell ``--preload`` (one import, in the supervisor) from per-worker
imports. The path picks the behaviour:

* ``/`` : answer at once;
* ``/sleep?s=0.02`` : sleep ``s`` seconds first (a slow request, so requests are in flight);
* ``/hang`` : never return (for ``--timeout``; the stack must name :func:`hang`).
"""

import json
import os
import time
from urllib.parse import parse_qs

IMPORT_PID = os.getpid()


def hang():
    """Sleeps forever; the WORKER TIMEOUT stack must name this function and the line below."""
    while True:
        time.sleep(3600)  # HANG-LINE: test_process.py looks for this line number


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/sleep":
        time.sleep(float(query.get("s", "0.02")))
    elif path == "/hang":
        hang()
    body = json.dumps(
        {
            "pid": os.getpid(),
            "import_pid": IMPORT_PID,
            "path": path,
            "multiprocess": environ["wsgi.multiprocess"],
            "multithread": environ["wsgi.multithread"],
        }
    ).encode("ascii")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
