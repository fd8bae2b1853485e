"""Minimal FastCGI and uwsgi clients for the protocol-level tests: they build packets byte
by byte, so each test controls exactly what tidegate receives."""

from __future__ import annotations

import socket
import struct
from typing import Dict, List, Optional, Tuple

# FastCGI record types and constants (FastCGI 1.0 specification).
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 2, 3, 4, 5, 6, 7
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, AUTHORIZER = 1, 2
KEEP_CONN = 1
REQUEST_COMPLETE, CANT_MPX_CONN, UNKNOWN_ROLE = 0, 1, 3


def record(kind: int, request_id: int, content: bytes = b"", padding: int = 0) -> bytes:
    return struct.pack(">BBHHBB", 1, kind, request_id, len(content), padding, 0) + content + b"\0" * padding


def pair(name: bytes, value: bytes) -> bytes:
    def length(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def pairs(values: Dict[bytes, bytes]) -> bytes:
    return b"".join(pair(k, v) for k, v in values.items())


def parse_pairs(data: bytes) -> List[Tuple[bytes, bytes]]:
    out, i = [], 0
    while i < len(data):
        lengths = []
        for _ in range(2):
            if data[i] < 128:
                lengths.append(data[i])
                i += 1
            else:
                lengths.append(struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF)
                i += 4
        name = data[i:i + lengths[0]]
        value = data[i + lengths[0]:i + lengths[0] + lengths[1]]
        i += lengths[0] + lengths[1]
        out.append((name, value))
    return out


def begin(request_id: int, role: int = RESPONDER, flags: int = 0) -> bytes:
    return record(BEGIN_REQUEST, request_id, struct.pack(">HB5x", role, flags))


def cgi_params(method="GET", path="/hello", query="", body_length: Optional[int] = None, **extra) -> Dict[bytes, bytes]:
    params = {
        b"REQUEST_METHOD": method.encode(), b"SCRIPT_NAME": b"", b"PATH_INFO": path.encode("latin-1"),
        b"QUERY_STRING": query.encode(), b"SERVER_NAME": b"localhost", b"SERVER_PORT": b"80",
        b"SERVER_PROTOCOL": b"HTTP/1.1", b"REMOTE_ADDR": b"127.0.0.1", b"REQUEST_URI": path.encode("latin-1"),
    }
    if body_length is not None:
        params[b"CONTENT_LENGTH"] = str(body_length).encode()
    for key, value in extra.items():
        params[key.encode()] = value if isinstance(value, bytes) else value.encode()
    return params


def request_records(request_id: int, params: Dict[bytes, bytes], body: bytes = b"", flags: int = 0) -> bytes:
    encoded = pairs(params)
    out = begin(request_id, flags=flags) + record(PARAMS, request_id, encoded) + record(PARAMS, request_id)
    for i in range(0, len(body), 65535):
        out += record(STDIN, request_id, body[i:i + 65535])
    return out + record(STDIN, request_id)


class FcgiReader:
    """Reads records from a socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def record(self) -> Optional[Tuple[int, int, bytes]]:
        """The next record as (type, request id, content); None when the server closed."""
        while len(self.buf) < 8:
            if not self._fill():
                return None
        _, kind, request_id, length, padding, _ = struct.unpack(">BBHHBB", self.buf[:8])
        while len(self.buf) < 8 + length + padding:
            if not self._fill():
                return None
        content = self.buf[8:8 + length]
        self.buf = self.buf[8 + length + padding:]
        return kind, request_id, content

    def response(self, request_id: int) -> Tuple[bytes, Tuple[int, int]]:
        """STDOUT of ``request_id`` up to its END_REQUEST: (output, (app status, protocol
        status)). Raises if the connection closes first."""
        out = b""
        while True:
            got = self.record()
            if got is None:
                raise ConnectionError(f"closed before END_REQUEST; stdout so far: {out[:200]!r}")
            kind, rid, content = got
            if rid != request_id:
                continue
            if kind == STDOUT:
                out += content
            elif kind == END_REQUEST:
                app_status, protocol_status = struct.unpack(">IB3x", content)
                return out, (app_status, protocol_status)


def split_cgi(output: bytes) -> Tuple[bytes, Dict[str, str], bytes]:
    """A CGI response as (status line, headers, body)."""
    head, _, body = output.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers[name.decode("latin-1").lower()] = value.decode("latin-1")
    return headers.pop("status", "").encode("latin-1"), headers, body


def uwsgi_packet(params: Dict[bytes, bytes], modifier1: int = 0) -> bytes:
    block = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in params.items())
    return struct.pack("<BHB", modifier1, len(block), 0) + block


def read_to_close(sock: socket.socket, timeout: float = 20.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not piece:
            return data
        data += piece
