"""Apps for the PEP 3333 conformance tests (environ, wsgi.input, start_response, close(),
wsgi.file_wrapper).

Every app takes its instructions from the query string, so one app serves many test
cases. Apps that must report what happened *after* the response (close() calls, files
closed, exceptions raised while the client is gone) write a "marker" file whose path the
test passes as ``marker=PATH``. All apps are well-behaved under ``wsgiref.validate`` unless
their docstring says otherwise (those run through ``server_factory`` only).
"""

import io
import json
import os
import sys
import threading
import time
import zlib
from urllib.parse import parse_qs

TEXT = [("Content-Type", "text/plain")]
JSON = [("Content-Type", "application/json")]
BINARY = [("Content-Type", "application/octet-stream")]


def _query(environ):
    """The query string as a dict of single values."""
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def _json_response(start_response, data, status="200 OK"):
    body = json.dumps(data).encode("ascii")
    start_response(status, JSON + [("Content-Length", str(len(body)))])
    return [body]


def _append(path, text):
    """Append a line to a marker file in one write (the test polls the file)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def _read_all(stream, size=65536):
    """Read a stream to its end with read(size) only (the validator forbids read())."""
    parts = []
    while True:
        part = stream.read(size)
        if not part:
            return b"".join(parts)
        parts.append(part)


# --- environ ---------------------------------------------------------------------------


def environ_app(environ, start_response):
    """Echo the environ: every str/int/bool value, plus checks of the wsgi.* objects that
    JSON cannot carry. Reads the request body to its end (reported as latin-1 text)."""
    body = _read_all(environ["wsgi.input"])
    values = {k: v for k, v in environ.items() if isinstance(v, (str, int, bool))}
    types = {k: type(v).__name__ for k, v in values.items()}
    wsgi_input = environ.get("wsgi.input")
    errors = environ.get("wsgi.errors")
    checks = {
        "version": list(environ.get("wsgi.version", ())),
        "version_type": type(environ.get("wsgi.version")).__name__,
        "input_methods": [m for m in ("read", "readline", "readlines", "__iter__") if hasattr(wsgi_input, m)],
        "errors_methods": [m for m in ("write", "writelines", "flush") if hasattr(errors, m)],
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        "non_str_cgi_keys": sorted(k for k, v in environ.items() if "." not in k and type(v) is not str),
    }
    return _json_response(start_response, {
        "environ": values, "types": types, "checks": checks, "body": body.decode("latin-1"),
    })


def environ_spoiling_app(environ, start_response):
    """Report the peer's keys and whether an earlier request's changes show, then spoil
    this environ: a later request of the connection must get a fresh one."""
    seen = {key: environ.get(key) for key in ("REMOTE_ADDR", "REMOTE_PORT", "X_SPOILED", "SERVER_NAME")}
    environ["REMOTE_ADDR"] = "203.0.113.9"
    environ["X_SPOILED"] = "1"
    del environ["REMOTE_PORT"]
    environ.pop("SERVER_NAME")
    return _json_response(start_response, seen)


def errors_app(environ, start_response):
    """Write lines to wsgi.errors with write(), writelines() and flush()."""
    errors = environ["wsgi.errors"]
    errors.write("errors line one\n")
    errors.writelines(["errors line two\n", "errors line three\n"])
    errors.flush()
    start_response("200 OK", TEXT)
    return [b"logged"]


# --- wsgi.input -------------------------------------------------------------------------


def _encode(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return {"unexpected": repr(value)}


def apply_input_ops(stream, ops):
    """Apply ``ops`` (e.g. ``["readline", "read:5", "iter"]``) to a binary stream and return
    the results as latin-1 text (lists for readlines/iter). The tests run the same ops on
    ``io.BytesIO(body)`` to get the expected values, so this function is the single
    definition of what an op does.

    ops: read, read:N, read:None, readline, readline:N, readlines, readlines:N,
    iter (list(stream)), next (the first line of a new iteration), rest (read(65536) to
    the end).
    """
    results = []
    for op in ops:
        name, _, arg = op.partition(":")
        try:
            if name == "read":
                if not arg:
                    value = stream.read()
                else:
                    value = stream.read(None if arg == "None" else int(arg))
            elif name == "readline":
                value = stream.readline(int(arg)) if arg else stream.readline()
            elif name == "readlines":
                value = stream.readlines(int(arg)) if arg else stream.readlines()
            elif name == "iter":
                value = list(stream)
            elif name == "next":
                value = b""
                for value in stream:
                    break
            elif name == "rest":
                value = _read_all(stream)
            else:
                raise ValueError(f"unknown op {op!r}")
            results.append(_encode(value))
        except Exception as exc:  # reported to the test, which prints it on failure
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    return results


def input_ops_app(environ, start_response):
    """Run ``ops=op,op,...`` on wsgi.input and return the JSON list of results."""
    ops = [op for op in _query(environ).get("ops", "").split(",") if op]
    results = apply_input_ops(environ["wsgi.input"], ops)
    return _json_response(start_response, results)


def echo_pieces_app(environ, start_response):
    """Answer the body read with ``read()`` (no size), in pieces of the sizes ``cuts=a,b``
    (the rest last), so response pieces below and above the writer's copy threshold mix."""
    body = environ["wsgi.input"].read()
    cuts = [int(c) for c in _query(environ).get("cuts", "").split(",") if c]
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(body[start:start + cut])
        start += cut
    pieces.append(body[start:])
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return pieces


def upload_app(environ, start_response):
    """Read the body in 64 KiB pieces and return its length and CRC-32, holding no more
    than one piece. With ``marker=PATH``: write ``started`` before the first read and, if
    a read raises, ``raised <ExcType> <is OSError> <is tidegate.ClientDisconnected>``
    (then re-raise)."""
    marker = _query(environ).get("marker")
    stream = environ["wsgi.input"]
    length = 0
    crc = 0
    if marker:
        _append(marker, "started")
    try:
        while True:
            piece = stream.read(65536)
            if not piece:
                break
            length += len(piece)
            crc = zlib.crc32(piece, crc)
    except BaseException as exc:
        if marker:
            try:
                import tidegate
                disconnected = isinstance(exc, tidegate.ClientDisconnected)
            except Exception:  # pragma: no cover - reported as False
                disconnected = False
            _append(marker, f"raised {type(exc).__name__} {isinstance(exc, OSError)} {disconnected}")
        raise
    return _json_response(start_response, {"length": length, "crc32": crc})


def vmrss_app(environ, start_response):
    """A trivial app (used to warm the server up before measuring memory)."""
    start_response("200 OK", TEXT)
    return [b"ok"]


# --- start_response ---------------------------------------------------------------------


def write_only_app(environ, start_response):
    """The whole body through write(); the iterable is empty."""
    write = start_response("200 OK", TEXT)
    write(b"hello ")
    write(b"world")
    return []


_KEPT = {}


def kept_callables_app(environ, start_response):
    """/warm just answers; /keep stores this request's start_response and write(); /use calls the
    stored ones (their request is over, so both must raise) and answers with what they did,
    then writes its own body."""
    if environ["PATH_INFO"] == "/warm":
        start_response("200 OK", TEXT)
        return [b"warm"]
    if environ["PATH_INFO"] == "/keep":
        _KEPT["start_response"] = start_response
        _KEPT["write"] = start_response("200 OK", TEXT)
        return [b"kept"]
    outcome = {}
    for name, call in (("start_response", lambda: _KEPT["start_response"]("200 OK", TEXT)),
                       ("write", lambda: _KEPT["write"](b"LEAKED"))):
        try:
            call()
            outcome[name] = None
        except Exception as error:  # what the old callable raised
            outcome[name] = type(error).__name__
    outcome["same_start_response"] = start_response is _KEPT["start_response"]
    write = start_response("200 OK", [("Content-Type", "application/json")])
    write(json.dumps(outcome).encode())
    return []


def write_mix_app(environ, start_response):
    """write() first, then an iterable: the written bytes come first."""
    write = start_response("200 OK", TEXT)
    write(b"one,")
    write(b"two,")
    return [b"three,", b"four"]


def double_start_app(environ, start_response):
    """Call start_response twice without exc_info; report whether the second call raised."""
    start_response("200 OK", TEXT + [("X-First", "1")])
    try:
        start_response("201 Created", TEXT + [("X-Second", "1")])
    except Exception as exc:
        raised = type(exc).__name__
    else:
        raised = None
    return [json.dumps({"raised": raised}).encode()]


def exc_info_before_app(environ, start_response):
    """start_response, then an error handled by calling start_response again with exc_info
    before any byte was sent: the 500 page replaces the 200."""
    start_response("200 OK", TEXT + [("X-First", "1")])
    try:
        raise ValueError("boom")
    except ValueError:
        start_response("500 Internal Server Error", TEXT + [("X-Second", "1")], sys.exc_info())
    return [b"custom error page"]


def exc_info_after_app(environ, start_response):
    """Headers and b'partial-' are sent (``mode=gen``: by yielding; ``mode=write``: by
    write()), then start_response is called with exc_info: it must re-raise the
    ValueError, so b'SHOULD-NOT-APPEAR' is never produced. ``mode=ok``: a normal response."""
    mode = _query(environ).get("mode", "gen")

    def fail_late():
        try:
            raise ValueError("late failure")
        except ValueError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())

    if mode == "ok":
        start_response("200 OK", TEXT)
        return [b"fine"]
    if mode == "write":
        write = start_response("200 OK", TEXT)
        write(b"partial-")
        fail_late()
        return [b"SHOULD-NOT-APPEAR"]

    def body():
        start_response("200 OK", TEXT)
        yield b"partial-"
        fail_late()
        yield b"SHOULD-NOT-APPEAR"

    return body()


def lazy_app(environ, start_response):
    """start_response is called only inside the generator, with 201."""
    def body():
        start_response("201 Created", TEXT + [("X-Lazy", "yes")])
        yield b"made "
        yield b"lazily"
    return body()


def empty_then_exc_app(environ, start_response):
    """Yield b'' first (nothing is sent yet), then replace the response with exc_info."""
    def body():
        start_response("200 OK", TEXT + [("X-First", "1")])
        yield b""
        try:
            raise RuntimeError("changed my mind")
        except RuntimeError:
            start_response("503 Service Unavailable", TEXT + [("X-Replaced", "yes")], sys.exc_info())
        yield b"replaced"
    return body()


def empty_body_app(environ, start_response):
    """A generator that yields only b'': headers go out at the end of the empty body."""
    def body():
        start_response("200 OK", TEXT + [("X-Empty", "yes")])
        yield b""
    return body()


def reason_app(environ, start_response):
    """Respond with the status line given as ``status=...``."""
    status = _query(environ)["status"]
    start_response(status, TEXT)
    return [b"ok"]


# --- close() ----------------------------------------------------------------------------


class _ClosingBody:
    """An iterable whose close() appends ``closed`` to the marker file."""

    def __init__(self, chunks, marker):
        self._chunks = chunks
        self._marker = marker

    def __iter__(self):
        return iter(self._chunks)

    def close(self):
        _append(self._marker, "closed")


def _forever():
    chunk = b"x" * 16384
    while True:
        yield chunk
        time.sleep(0.001)


def closing_app(environ, start_response):
    """Return an iterable with close() (marker=PATH records each call). mode:

    * full: three chunks;
    * error: one chunk, then RuntimeError('mid-stream failure');
    * error_before: RuntimeError('failure before the body') on the first next();
    * forever: 16 KiB chunks without end (the client disconnects);
    * gen_forever: same, as a generator function whose ``finally`` writes the marker.
    """
    q = _query(environ)
    marker, mode = q["marker"], q.get("mode", "full")
    start_response("200 OK", TEXT)

    if mode == "full":
        return _ClosingBody([b"a", b"b", b"c"], marker)
    if mode == "error":
        def failing():
            yield b"first-"
            raise RuntimeError("mid-stream failure")
        return _ClosingBody(failing(), marker)
    if mode == "error_before":
        def failing_first():
            raise RuntimeError("failure before the body")
            yield b""  # pragma: no cover - makes this a generator
        return _ClosingBody(failing_first(), marker)
    if mode == "forever":
        return _ClosingBody(_forever(), marker)
    if mode == "gen_forever":
        def generator():
            try:
                yield from _forever()
            finally:
                _append(marker, "closed")
        return generator()
    raise ValueError(f"unknown mode {mode!r}")


# --- wsgi.file_wrapper -------------------------------------------------------------------

#: Files handed to wsgi.file_wrapper by file_app, by the test's ``id``, so that a later
#: request to ``state_app`` can tell whether the server closed them.
_FILES = {}
_FILES_LOCK = threading.Lock()


class RecordingBytesIO(io.BytesIO):
    """A BytesIO that records the size argument of every read()."""

    def __init__(self, data):
        super().__init__(data)
        self.reads = []

    def read(self, *args):
        self.reads.append(args[0] if args else None)
        return super().read(*args)


def _pipe_reader(path):
    """A buffered reader over a pipe that a thread fills with the file at ``path``."""
    read_fd, write_fd = os.pipe()

    def feed():
        with open(path, "rb") as src, os.fdopen(write_fd, "wb") as dst:
            while True:
                block = src.read(65536)
                if not block:
                    break
                dst.write(block)

    threading.Thread(target=feed, daemon=True).start()
    return os.fdopen(read_fd, "rb")


def file_app(environ, start_response):
    """Return ``wsgi.file_wrapper(f, blksize)``. Query: path, kind (file | bytesio | pipe),
    offset (seek before wrapping), blksize (omitted: the default), cl (a Content-Length
    header to send), id (register f for state_app)."""
    q = _query(environ)
    kind = q.get("kind", "file")
    if kind == "file":
        f = open(q["path"], "rb")
    elif kind == "bytesio":
        with open(q["path"], "rb") as src:
            f = RecordingBytesIO(src.read())
    elif kind == "pipe":
        f = _pipe_reader(q["path"])
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if "offset" in q:
        f.seek(int(q["offset"]))
    if "id" in q:
        with _FILES_LOCK:
            _FILES[q["id"]] = f
    headers = list(BINARY)
    if "cl" in q:
        headers.append(("Content-Length", q["cl"]))
    start_response("200 OK", headers)
    wrap = environ["wsgi.file_wrapper"]
    return wrap(f, int(q["blksize"])) if "blksize" in q else wrap(f)


def state_app(environ, start_response):
    """Report, for the file registered by file_app under ``id``: closed, and the read()
    sizes if it was a RecordingBytesIO."""
    with _FILES_LOCK:
        f = _FILES.get(_query(environ)["id"])
    if f is None:
        return _json_response(start_response, None)
    return _json_response(start_response, {"closed": f.closed, "reads": getattr(f, "reads", None)})


def file_wrapper_probe_app(environ, start_response):
    """Use wsgi.file_wrapper inside the app (query ``path`` names a regular file of at
    least 20000 bytes) and report block sizes and close() behaviour."""
    wrap = environ["wsgi.file_wrapper"]
    path = _query(environ)["path"]
    report = {}

    report["bytesio_blocks"] = [len(b) for b in wrap(io.BytesIO(b"x" * 2500), 1000)]
    report["default_blocks"] = [len(b) for b in wrap(io.BytesIO(b"y" * 20000))]

    with open(path, "rb") as src:
        expected = src.read()
    f = open(path, "rb")
    f.seek(100)
    wrapper = wrap(f, 4096)
    blocks = list(wrapper)
    report["file_blocks"] = [len(b) for b in blocks]
    report["file_from_position"] = b"".join(blocks) == expected[100:]
    wrapper.close()
    report["file_closed_by_close"] = f.closed

    bio = io.BytesIO(b"z")
    wrap(bio).close()
    report["bytesio_closed_by_close"] = bio.closed
    return _json_response(start_response, report)


def file_dispatch(environ, start_response):
    """``/state`` -> state_app, anything else -> file_app (one process, one registry)."""
    if environ["PATH_INFO"] == "/state":
        return state_app(environ, start_response)
    return file_app(environ, start_response)


# Module constants, so that every request passes the very same str objects: the server
# remembers the ones it checked (by object) and must still send each response its own.
_KNOWN_HEADERS = {
    "/a": ("200 OK", [("Content-Type", "text/plain"), ("X-Variant", "a")]),
    "/b": (
        "203 Non-Authoritative Information",
        [("Content-Type", "text/html; charset=utf-8"), ("X-Variant", "b" * 80)],
    ),
    "/close": ("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")]),
    "/bad": ("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\r\nX-Injected: 1")]),
}


def known_strings_app(environ, start_response):
    """The same status and header objects again and again, with a value made afresh for
    each request (X-Count, from the query string); /bad's constant header is refused."""
    status, headers = _KNOWN_HEADERS[environ["PATH_INFO"]]
    count = environ["QUERY_STRING"]
    try:
        start_response(status, headers + [("X-Count", count)])
    except ValueError as error:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Count", count)])
        return [f"refused: {error}".encode()]
    return [f"{environ['PATH_INFO']} {count}".encode()]


def list_body_app(environ, start_response):
    """A list body of pieces of the sizes in ``?sizes=a,b,...``, each a run of its own
    letter; ``&declared=N`` declares that Content-Length (no more than the pieces hold),
    written between spaces with ``&padded=1``."""
    query = dict(part.split("=", 1) for part in environ["QUERY_STRING"].split("&") if part)
    sizes = [int(size) for size in query.get("sizes", "").split(",") if size]
    pieces = [bytes([97 + index % 26]) * size for index, size in enumerate(sizes)]
    headers = [("Content-Type", "application/octet-stream")]
    if "declared" in query:
        declared = query["declared"]
        headers.append(("Content-Length", f" {declared}  " if "padded" in query else declared))
    start_response("200 OK", headers)
    return pieces
