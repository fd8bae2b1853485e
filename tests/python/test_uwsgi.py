"""The uwsgi gateway at the protocol level, with a byte-exact client: the packet header
and variable block, a body split across writes, the HTTP/1.1 response ending with the
connection, malformed requests."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from gateway_clients import cgi_params, read_to_close, uwsgi_packet

APP = "gateway_apps:suite"


@pytest.fixture
def uwsgi(server_factory):
    server = server_factory(APP, "--protocol", "uwsgi", "--threads", "2")

    def connect():
        return server.connect(timeout=20)

    connect.server = server
    return connect


def split_http(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.decode("latin-1").lower().split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


def test_a_request_and_its_response(uwsgi):
    sock = uwsgi()
    sock.sendall(uwsgi_packet(cgi_params(path="/hello")))
    data = read_to_close(sock)
    assert data == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
                    b"Hello, World!")


def test_packet_and_body_split_across_writes(uwsgi):
    sock = uwsgi()
    packet = uwsgi_packet(cgi_params(path="/echo", method="POST", body_length=11))
    for i in range(0, len(packet), 5):
        sock.sendall(packet[i:i + 5])
        time.sleep(0.01)
    for piece in (b"hello", b" ", b"world"):
        time.sleep(0.05)
        sock.sendall(piece)
    status, _, body = split_http(read_to_close(sock))
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["body"] == "hello world"


def test_a_large_body_is_streamed(uwsgi):
    sock = uwsgi()
    body = os.urandom(3 * 1024 * 1024)
    sock.sendall(uwsgi_packet(cgi_params(path="/upload", method="POST", body_length=len(body))))
    for i in range(0, len(body), 256 * 1024):
        sock.sendall(body[i:i + 256 * 1024])
    _, _, response = split_http(read_to_close(sock))
    assert json.loads(response) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_streamed_response_without_length_ends_with_the_connection(uwsgi):
    sock = uwsgi()
    sock.sendall(uwsgi_packet(cgi_params(path="/stream", query="n=3")))
    status, headers, body = split_http(read_to_close(sock))
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_variables_are_latin1_and_https_sets_the_scheme(uwsgi):
    sock = uwsgi()
    sock.sendall(uwsgi_packet(cgi_params(path="/echo", HTTPS="on", HTTP_X_CUSTOM=b"caf\xe9")))
    environ = json.loads(split_http(read_to_close(sock))[2])["environ"]
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_X_CUSTOM"] == "caf\xe9"


@pytest.mark.allow_log
def test_a_non_numeric_content_length_is_a_400(uwsgi):
    sock = uwsgi()
    sock.sendall(uwsgi_packet(cgi_params(path="/echo", CONTENT_LENGTH="ten")))
    status, _, body = split_http(read_to_close(sock))
    assert status == b"HTTP/1.1 400 Bad Request"
    uwsgi.server.wait_for_log(r"Bad uwsgi request: CONTENT_LENGTH")


def test_other_modifiers_are_refused_without_an_answer(uwsgi):
    sock = uwsgi()
    sock.sendall(uwsgi_packet({}, modifier1=100))
    assert read_to_close(sock) == b""
    sock = uwsgi()
    sock.sendall(uwsgi_packet(cgi_params(path="/hello")))
    assert read_to_close(sock).endswith(b"Hello, World!")


def test_head_gets_no_body(uwsgi):
    sock = uwsgi()
    sock.sendall(uwsgi_packet(cgi_params(path="/head", method="HEAD")))
    status, headers, body = split_http(read_to_close(sock))
    assert headers["content-length"] == "4" and body == b""
