"""The FastCGI responder at the protocol level, with a byte-exact client: management
records, roles, FCGI_KEEP_CONN, multiplexing refused, parameters and STDIN split anywhere,
a streamed body, an unread body drained between requests, protocol errors."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from gateway_clients import (
    ABORT_REQUEST, AUTHORIZER, BEGIN_REQUEST, CANT_MPX_CONN, END_REQUEST, GET_VALUES,
    GET_VALUES_RESULT, KEEP_CONN, PARAMS, REQUEST_COMPLETE, STDIN, UNKNOWN_ROLE, UNKNOWN_TYPE,
    FcgiReader, begin, cgi_params, pair, pairs, parse_pairs, record, request_records,
    split_cgi,
)

APP = "gateway_apps:suite"


@pytest.fixture
def fcgi(server_factory):
    server = server_factory(APP, "--protocol", "fastcgi", "--threads", "2")

    def connect():
        sock = server.connect(timeout=20)
        return sock, FcgiReader(sock)

    connect.server = server
    return connect


def test_a_request_and_its_response(fcgi):
    sock, reader = fcgi()
    sock.sendall(request_records(1, cgi_params(path="/hello")))
    output, end = reader.response(1)
    assert end == (0, REQUEST_COMPLETE)
    assert output == (b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
                      b"Hello, World!")
    # No FCGI_KEEP_CONN: the server closes after END_REQUEST.
    assert reader.record() is None


def test_get_values_is_answered(fcgi):
    sock, reader = fcgi()
    query = pairs({b"FCGI_MAX_CONNS": b"", b"FCGI_MAX_REQS": b"", b"FCGI_MPXS_CONNS": b"",
                   b"FCGI_NOT_A_VARIABLE": b""})
    sock.sendall(record(GET_VALUES, 0, query))
    kind, request_id, content = reader.record()
    assert (kind, request_id) == (GET_VALUES_RESULT, 0)
    values = dict(parse_pairs(content))
    assert set(values) == {b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"}
    assert values[b"FCGI_MPXS_CONNS"] == b"0"
    assert int(values[b"FCGI_MAX_CONNS"]) > 0 and int(values[b"FCGI_MAX_REQS"]) > 0
    # The connection still serves a request afterwards.
    sock.sendall(request_records(1, cgi_params(path="/hello")))
    assert reader.response(1)[0].endswith(b"Hello, World!")


def test_unknown_management_records_get_unknown_type(fcgi):
    sock, reader = fcgi()
    sock.sendall(record(42, 0, b"whatever"))
    kind, request_id, content = reader.record()
    assert (kind, request_id) == (UNKNOWN_TYPE, 0)
    assert content[0] == 42 and len(content) == 8


def test_roles_other_than_responder_are_refused(fcgi):
    sock, reader = fcgi()
    sock.sendall(begin(3, role=AUTHORIZER, flags=KEEP_CONN))
    output, end = reader.response(3)
    assert output == b"" and end[1] == UNKNOWN_ROLE
    sock.sendall(request_records(4, cgi_params(path="/hello"), flags=KEEP_CONN))
    assert reader.response(4)[0].endswith(b"Hello, World!")


def test_keep_conn_serves_many_requests_on_one_connection(fcgi):
    sock, reader = fcgi()
    for request_id in (1, 2, 7, 1):
        sock.sendall(request_records(request_id, cgi_params(path="/echo", method="POST", body_length=5),
                                     body=b"x=%03d" % request_id, flags=KEEP_CONN))
        output, end = reader.response(request_id)
        assert end == (0, REQUEST_COMPLETE)
        status, _, body = split_cgi(output)
        assert status == b"200 OK"
        assert json.loads(body)["body"] == "x=%03d" % request_id


def test_parameters_and_stdin_split_anywhere(fcgi):
    """A name-value pair straddling two PARAMS records, a long (4-byte) length, STDIN in
    one-byte records with padding."""
    sock, reader = fcgi()
    params = cgi_params(path="/echo", method="POST", body_length=11, HTTP_X_CUSTOM="v" * 300)
    encoded = pairs(params)
    data = begin(1, flags=KEEP_CONN)
    for i in range(0, len(encoded), 7):
        data += record(PARAMS, 1, encoded[i:i + 7], padding=3)
    data += record(PARAMS, 1)
    for byte in b"hello world":
        data += record(STDIN, 1, bytes([byte]), padding=5)
    data += record(STDIN, 1)
    sock.sendall(data)
    status, _, body = split_cgi(reader.response(1)[0])
    assert status == b"200 OK"
    echoed = json.loads(body)
    assert echoed["body"] == "hello world"
    assert echoed["environ"]["HTTP_X_CUSTOM"] == "v" * 300


def test_a_large_body_is_streamed(fcgi):
    """STDIN sent slowly in pieces: the app reads it as it comes."""
    sock, reader = fcgi()
    body = os.urandom(3 * 1024 * 1024)
    sock.sendall(begin(1) + record(PARAMS, 1, pairs(cgi_params(path="/upload", method="POST",
                                                                 body_length=len(body))))
                 + record(PARAMS, 1))
    for i in range(0, len(body), 65535):
        sock.sendall(record(STDIN, 1, body[i:i + 65535]))
        if i % (1024 * 1024) < 65535:
            time.sleep(0.05)
    sock.sendall(record(STDIN, 1))
    _, _, response = split_cgi(reader.response(1)[0])
    assert json.loads(response) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_body_the_app_did_not_read_is_drained_before_the_next_request(fcgi):
    sock, reader = fcgi()
    sock.sendall(request_records(1, cgi_params(path="/hello", method="POST", body_length=200000),
                                 body=b"z" * 200000, flags=KEEP_CONN))
    assert reader.response(1)[0].endswith(b"Hello, World!")
    sock.sendall(request_records(2, cgi_params(path="/hello"), flags=KEEP_CONN))
    assert reader.response(2)[0].endswith(b"Hello, World!")


def test_a_second_concurrent_request_is_refused(fcgi):
    sock, reader = fcgi()
    # Request 1 waits for its body; request 2 arrives meanwhile.
    sock.sendall(begin(1, flags=KEEP_CONN)
                 + record(PARAMS, 1, pairs(cgi_params(path="/echo", method="POST", body_length=4)))
                 + record(PARAMS, 1) + record(STDIN, 1, b"ab"))
    time.sleep(0.3)
    sock.sendall(begin(2, flags=KEEP_CONN))
    kind, request_id, content = reader.record()
    assert (kind, request_id) == (END_REQUEST, 2)
    assert content[4] == CANT_MPX_CONN
    sock.sendall(record(STDIN, 1, b"cd") + record(STDIN, 1))
    status, _, body = split_cgi(reader.response(1)[0])
    assert json.loads(body)["body"] == "abcd"


def test_an_aborted_request_before_it_starts_is_ended(fcgi):
    sock, reader = fcgi()
    sock.sendall(begin(5, flags=KEEP_CONN) + record(ABORT_REQUEST, 5))
    output, end = reader.response(5)
    assert output == b"" and end[1] == REQUEST_COMPLETE
    sock.sendall(request_records(6, cgi_params(path="/hello"), flags=KEEP_CONN))
    assert reader.response(6)[0].endswith(b"Hello, World!")


def test_https_and_latin1_parameters(fcgi):
    sock, reader = fcgi()
    sock.sendall(request_records(1, cgi_params(path="/caf\xe9", HTTPS="on")))
    status, _, body = split_cgi(reader.response(1)[0])
    assert status == b"404 Not Found"
    assert body == b"not found: /caf\xe9"
    sock, reader = fcgi()
    sock.sendall(request_records(1, cgi_params(path="/echo", HTTPS="on")))
    assert json.loads(split_cgi(reader.response(1)[0])[2])["environ"]["wsgi.url_scheme"] == "https"


def test_a_bad_record_version_closes_the_connection(fcgi):
    sock, reader = fcgi()
    sock.sendall(b"\x02" + record(BEGIN_REQUEST, 1, b"\0\x01" + b"\0" * 6)[1:])
    assert reader.record() is None
    # The server is unharmed.
    sock, reader = fcgi()
    sock.sendall(request_records(1, cgi_params(path="/hello")))
    assert reader.response(1)[0].endswith(b"Hello, World!")


@pytest.mark.allow_log
def test_an_app_error_after_the_head_ends_without_end_request(fcgi):
    sock, reader = fcgi()
    sock.sendall(request_records(1, cgi_params(path="/boom-after"), flags=KEEP_CONN))
    with pytest.raises(ConnectionError):
        reader.response(1)
    fcgi.server.wait_for_log(r"boom after the head")


def test_access_log_uses_the_front_servers_variables(server_factory):
    server = server_factory(APP, "--protocol", "fastcgi", "--access-log")
    sock = server.connect(timeout=20)
    params = cgi_params(path="/hello", query="q=1", REQUEST_URI="/hello?q=1", REMOTE_ADDR="198.51.100.9",
                        HTTP_USER_AGENT="agent/1.0", HTTP_REFERER="http://ref/")
    sock.sendall(request_records(1, params))
    FcgiReader(sock).response(1)
    deadline = time.monotonic() + 5
    while "GET /hello?q=1" not in server.stdout and time.monotonic() < deadline:
        time.sleep(0.02)
    line = server.stdout.strip().splitlines()[-1]
    assert line.startswith("198.51.100.9 - - [")
    assert '"GET /hello?q=1 HTTP/1.1" 200 13 "http://ref/" "agent/1.0"' in line
