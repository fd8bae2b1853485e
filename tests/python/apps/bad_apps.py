"""Misbehaving WSGI applications, one fault per path (served raw: the validator forbids them).

``app`` dispatches on PATH_INFO: ``/ok`` is a well-behaved response (used to check that the
server still serves normally after a fault), every other path in ``FAULTS`` commits one fault.
``tiny_chunks_generator`` / ``tiny_chunks_list`` stream 100,000 one-byte chunks.
"""

import time

PLAIN = [("Content-Type", "text/plain")]
INJECTED = "X-Injected: yes"


def ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _bad_status(status):
    def fault(environ, start_response):
        start_response(status, PLAIN)
        return [b"should never be sent"]

    return fault


def _bad_headers(headers):
    def fault(environ, start_response):
        start_response("200 OK", headers)
        return [b"should never be sent"]

    return fault


def str_chunk(environ, start_response):
    start_response("200 OK", PLAIN)
    return ["a str chunk"]


def int_chunk(environ, start_response):
    start_response("200 OK", PLAIN)
    return [42]


def return_none(environ, start_response):
    start_response("200 OK", PLAIN)
    return None


def raise_before_start(environ, start_response):
    raise RuntimeError("boom before start_response")


def raise_after_start(environ, start_response):
    start_response("200 OK", PLAIN)
    raise RuntimeError("boom after start_response")


def raise_in_first_next(environ, start_response):
    start_response("200 OK", PLAIN)

    def body():
        raise RuntimeError("boom in the first chunk")
        yield b"never"  # pragma: no cover - makes this a generator

    return body()


def never_start_response(environ, start_response):
    return [b"body without start_response"]


def raise_mid_stream(environ, start_response):
    def body():
        start_response("200 OK", PLAIN)
        yield b"partial-data-"
        time.sleep(0.2)
        raise RuntimeError("boom in the middle of the stream")

    return body()


def raise_mid_stream_with_length(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])

    def body():
        yield b"0123456789"
        time.sleep(0.2)
        raise RuntimeError("boom after 10 of 100 bytes")

    return body()


def str_chunk_mid_stream(environ, start_response):
    start_response("200 OK", PLAIN)

    def body():
        yield b"first-chunk-"
        time.sleep(0.2)
        yield "second chunk is a str"

    return body()


class _CloseRaises:
    def __init__(self):
        self.chunks = [b"hello ", b"world"]

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        raise RuntimeError("close() failed on purpose")


def close_raises(environ, start_response):
    start_response("200 OK", PLAIN)
    return _CloseRaises()


FAULTS = {
    # invalid status lines
    "/status-1000": _bad_status("1000 X"),
    "/status-ok": _bad_status("OK"),
    "/status-int": _bad_status(200),
    "/status-no-reason": _bad_status("200"),
    "/status-crlf": _bad_status("200 OK\r\n" + INJECTED),
    "/status-lf": _bad_status("200 OK\n" + INJECTED),
    # invalid headers
    "/header-crlf": _bad_headers(PLAIN + [("X-Test", "a\r\n" + INJECTED)]),
    "/header-lf": _bad_headers(PLAIN + [("X-Test", "a\n" + INJECTED)]),
    "/header-cr": _bad_headers(PLAIN + [("X-Test", "a\r" + INJECTED)]),
    "/header-name-crlf": _bad_headers(PLAIN + [("X-Test\r\nX-Injected", "yes")]),
    "/header-non-latin1": _bad_headers(PLAIN + [("X-Test", "snow \u2603")]),
    "/header-name-space": _bad_headers(PLAIN + [("X Bad", "v")]),
    "/header-name-colon": _bad_headers(PLAIN + [("X:Bad", "v")]),
    "/header-name-empty": _bad_headers(PLAIN + [("", "v")]),
    "/header-name-bytes": _bad_headers(PLAIN + [(b"X-Bytes", "v")]),
    "/header-value-bytes": _bad_headers(PLAIN + [("X-Bytes", b"v")]),
    "/header-value-int": _bad_headers(PLAIN + [("X-Int", 5)]),
    "/header-not-tuple": _bad_headers(PLAIN + ["X-Str: v"]),
    "/header-3-tuple": _bad_headers(PLAIN + [("X-Three", "v", "extra")]),
    "/content-length-word": _bad_headers(PLAIN + [("Content-Length", "many")]),
    "/content-length-negative": _bad_headers(PLAIN + [("Content-Length", "-1")]),
    "/content-length-twice": _bad_headers(
        PLAIN + [("Content-Length", "20"), ("Content-Length", "21")]
    ),
    # bad bodies and exceptions before any byte was sent
    "/str-chunk": str_chunk,
    "/int-chunk": int_chunk,
    "/return-none": return_none,
    "/raise-before-start": raise_before_start,
    "/raise-after-start": raise_after_start,
    "/raise-in-first-next": raise_in_first_next,
    "/never-start-response": never_start_response,
    # faults after the headers went out
    "/raise-mid-stream": raise_mid_stream,
    "/raise-mid-stream-length": raise_mid_stream_with_length,
    "/str-chunk-mid-stream": str_chunk_mid_stream,
    "/close-raises": close_raises,
}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/ok":
        return ok(environ, start_response)
    return FAULTS[path](environ, start_response)


TINY_CHUNKS = 100_000


def tiny_chunk(i):
    return bytes([48 + i % 10])


def tiny_chunks_generator(environ, start_response):
    start_response("200 OK", PLAIN)
    return (tiny_chunk(i) for i in range(TINY_CHUNKS))


def tiny_chunks_list(environ, start_response):
    start_response("200 OK", PLAIN)
    return [tiny_chunk(i) for i in range(TINY_CHUNKS)]
