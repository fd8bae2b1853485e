"""Apps for the hardening suite (tests/python/test_hardening.py), served raw.

Every app records what happens to it as JSON lines appended to the file named by the
environment variable ``HARDEN_EVENTS`` (one ``open(..., "a")`` per line, so lines from
several threads never interleave): ``call`` when the app is called, ``read_error`` when
reading ``wsgi.input`` raised (with the exception type and whether it is an OSError),
``body`` with the number of body bytes read, ``close`` when the response's ``close()`` runs,
``generator_exit`` when a streamed body was stopped early, ``stream_done`` when it ran to
its end. The tests read that file to prove an app was
never called for a refused request, or that ``close()`` ran after a broken client.

``app`` takes its behaviour from the query string:
  ``read=all`` (default) / ``read=none`` / ``read=pieces`` — how wsgi.input is read;
  ``sleep=S`` — sleep before answering;  ``big=M`` — answer with one chunk of M MiB;
  ``stream=N`` — answer with N chunks of 64 KiB (streamed: no Content-Length);
  ``on_error=raise`` (default) / ``respond`` — what to do when reading the body raises.
"""

import json
import os
import threading
import time
from urllib.parse import parse_qs

PLAIN = [("Content-Type", "text/plain")]
CHUNK = b"x" * 65536


def record(event, **fields):
    path = os.environ.get("HARDEN_EVENTS")
    if not path:
        return
    fields["event"] = event
    fields["pid"] = os.getpid()
    fields["t"] = time.monotonic()
    with open(path, "a") as events:
        events.write(json.dumps(fields) + "\n")


class Response:
    """The app's iterable: does the work lazily (so close() runs whatever happens) and
    records close()."""

    def __init__(self, environ, start_response):
        self.environ = environ
        self.start_response = start_response
        self.path = environ.get("PATH_INFO", "")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        self.read = query.get("read", ["all"])[0]
        self.sleep = float(query.get("sleep", ["0"])[0])
        self.stream = int(query.get("stream", ["0"])[0])
        self.on_error = query.get("on_error", ["raise"])[0]
        self.big = int(query.get("big", ["0"])[0])

    def _read_body(self):
        stream = self.environ["wsgi.input"]
        if self.read == "none":
            return b""
        if self.read == "pieces":
            parts = []
            while True:
                part = stream.read(8192)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        return stream.read()

    def __iter__(self):
        try:
            body = self._read_body()
        except Exception as error:  # recorded, then handled as the query asks
            record(
                "read_error",
                path=self.path,
                type=type(error).__name__,
                oserror=isinstance(error, OSError),
                message=str(error),
            )
            if self.on_error == "raise":
                raise
            self.start_response("400 Bad Body", PLAIN + [("Content-Length", "8")])
            yield b"bad body"
            return
        record("body", path=self.path, length=len(body))
        if self.sleep:
            time.sleep(self.sleep)
        if self.stream:
            self.start_response("200 OK", PLAIN)
            for index in range(self.stream):
                try:
                    yield CHUNK
                except GeneratorExit:
                    record("generator_exit", path=self.path, sent=index)
                    raise
            record("stream_done", path=self.path)
            return
        if self.big:
            payload = b"b" * (self.big << 20)
            self.start_response("200 OK", PLAIN + [("Content-Length", str(len(payload)))])
            yield payload
            return
        payload = b"ok %d" % len(body)
        self.start_response("200 OK", PLAIN + [("Content-Length", str(len(payload)))])
        yield payload

    def close(self):
        record("close", path=self.path)


def app(environ, start_response):
    headers = {
        key: value
        for key, value in environ.items()
        if key.startswith("HTTP_") or key in ("CONTENT_LENGTH", "CONTENT_TYPE")
    }
    record(
        "call",
        method=environ["REQUEST_METHOD"],
        path=environ.get("PATH_INFO", ""),
        raw_uri=environ.get("RAW_URI", ""),
        protocol=environ.get("SERVER_PROTOCOL", ""),
        headers=headers,
    )
    return Response(environ, start_response)


# --- broken apps ---------------------------------------------------------------------------


class _RaisingClose:
    def __iter__(self):
        yield b"body before a failing close"

    def close(self):
        record("close", path="/close-raises")
        raise RuntimeError("close() failed on purpose")


def close_raises(environ, start_response):
    """Raises from close() after a full body: logged, the body is still delivered."""
    if environ.get("PATH_INFO") == "/ok":
        start_response("200 OK", PLAIN + [("Content-Length", "2")])
        return [b"ok"]
    start_response("200 OK", PLAIN)
    return _RaisingClose()


TINY_CHUNKS = 100_000


def tiny_chunks(environ, start_response):
    """Streams 100,000 one-byte chunks (a generator: no Content-Length)."""
    start_response("200 OK", PLAIN)

    def body():
        for index in range(TINY_CHUNKS):
            yield b"abcdefghij"[index % 10 : index % 10 + 1]

    return body()


ERROR_THREADS = 8
ERROR_LINES = 50


def errors_from_threads(environ, start_response):
    """8 threads write 50 lines each to wsgi.errors at once, then the app answers."""
    errors = environ["wsgi.errors"]
    start = threading.Barrier(ERROR_THREADS)

    def writer(number):
        start.wait()
        for line in range(ERROR_LINES):
            errors.write(f"thread-{number} line-{line} {'z' * 40}\n")
            if line % 10 == 0:
                errors.flush()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(ERROR_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    start_response("200 OK", PLAIN + [("Content-Length", "4")])
    return [b"done"]
