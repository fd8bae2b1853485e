"""Apps for ``tests/python/test_http.py``: HTTP/1.1 behaviour and response framing.

``echo``, ``slow_reader``, ``no_reader`` and ``framing`` are well-behaved (the tests run
them raw and under ``wsgiref.validate``); ``broken`` breaks rules on purpose (wrong
Content-Length, a body on 204/304, an exception) and is only run raw.
"""

import hashlib
import json
import time

BIG_CHUNK = 64 * 1024
BIG_COUNT = 80  # 80 x 64 KiB = 5 MiB


def big_chunks():
    """5 MiB in 80 distinct 64 KiB chunks (chunk i repeats its 4-byte index)."""
    return [i.to_bytes(4, "big") * (BIG_CHUNK // 4) for i in range(BIG_COUNT)]


def _read_body(environ):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        return stream.read(int(length))
    if environ.get("HTTP_TRANSFER_ENCODING"):
        parts = []
        while True:
            block = stream.read(65536)
            if not block:
                break
            parts.append(block)
        return b"".join(parts)
    return b""


def _json(start_response, data, status="200 OK"):
    payload = json.dumps(data, sort_keys=True).encode("ascii")
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(payload)))])
    return [payload]


def _describe(environ, body):
    return {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "protocol": environ.get("SERVER_PROTOCOL"),
        "remote_port": environ.get("REMOTE_PORT"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "input_terminated": environ.get("wsgi.input_terminated"),
        "body": body.decode("latin-1") if len(body) <= 4096 else None,
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def echo(environ, start_response):
    """Describe the request (method, path, protocol, client port, body) as JSON.

    ``?sleep=S`` sleeps S seconds before answering. Always sends a Content-Length.
    """
    query = environ.get("QUERY_STRING", "")
    if query.startswith("sleep="):
        time.sleep(float(query[len("sleep="):]))
    body = _read_body(environ)
    return _json(start_response, _describe(environ, body))


def slow_reader(environ, start_response):
    """Sleep 0.5 s, then read the whole body (for ``Expect: 100-continue``)."""
    started = time.time()
    time.sleep(0.5)
    read_at = time.time()
    body = _read_body(environ)
    data = _describe(environ, body)
    data["slept"] = read_at - started
    return _json(start_response, data)


def no_reader(environ, start_response):
    """Answer without ever touching wsgi.input."""
    payload = b"body never read: " + environ.get("PATH_INFO", "").encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(payload)))])
    return [payload]


def _gen(chunks):
    for chunk in chunks:
        yield chunk


def framing(environ, start_response):
    """Well-behaved bodies of every shape, chosen by PATH_INFO."""
    path = environ.get("PATH_INFO", "")
    text = [("Content-Type", "text/plain")]
    if path == "/one":
        start_response("200 OK", text)
        return [b"hello"]
    if path == "/list":
        start_response("200 OK", text)
        return [b"hel", b"lo ", b"world"]
    if path == "/empty-list":
        start_response("200 OK", text)
        return []
    if path == "/gen":
        start_response("200 OK", text)
        return _gen([b"ab", b"", b"cd", b"efg", b""])
    if path == "/declared":
        start_response("200 OK", text + [("Content-Length", "5")])
        return [b"hello"]
    if path == "/declared-gen":
        start_response("200 OK", text + [("Content-Length", "10")])
        return _gen([b"hello", b"world"])
    if path == "/reason":
        start_response("200 Everything Fine", text)
        return [b"fine"]
    if path == "/reason404":
        start_response("404 Not Here At All", text)
        return [b"nope"]
    if path == "/case":
        start_response("200 OK", [("content-type", "text/plain"),
                                  ("X-CuStOm-HeAdEr", "MiXeD value"),
                                  ("x-lower-case", "1"),
                                  ("X-UPPER-CASE", "2")])
        return [b"case"]
    if path == "/204":
        start_response("204 No Content", [])
        return []
    if path == "/304":
        start_response("304 Not Modified", [("ETag", '"abc"')])
        return []
    if path == "/big-list":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return big_chunks()
    if path == "/big-gen":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _gen(big_chunks())
    start_response("404 Not Found", text)
    return [b"unknown path " + path.encode("latin-1")]


def broken(environ, start_response):
    """Apps that break the rules on purpose (run raw only), chosen by PATH_INFO."""
    path = environ.get("PATH_INFO", "")
    text = [("Content-Type", "text/plain")]
    if path == "/long":
        start_response("200 OK", text + [("Content-Length", "5")])
        return [b"hello world"]
    if path == "/long-gen":
        start_response("200 OK", text + [("Content-Length", "5")])
        return _gen([b"hel", b"lo wor", b"ld"])
    if path == "/short":
        start_response("200 OK", text + [("Content-Length", "10")])
        return [b"hello"]
    if path == "/short-gen":
        start_response("200 OK", text + [("Content-Length", "10")])
        return _gen([b"hel", b"lo"])
    if path == "/204-list":
        start_response("204 No Content", text)
        return [b"must not be sent"]
    if path == "/204-gen":
        start_response("204 No Content", text)
        return _gen([b"must ", b"not be sent"])
    if path == "/304-list":
        start_response("304 Not Modified", text + [("Content-Length", "16")])
        return [b"must not be sent"]
    if path == "/304-gen":
        start_response("304 Not Modified", text)
        return _gen([b"must ", b"not be sent"])
    if path == "/boom":
        raise RuntimeError("boom before start_response")
    start_response("200 OK", text)
    return [b"ok " + path.encode("latin-1")]
