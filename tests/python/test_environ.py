"""PEP 3333 environ: CGI keys, HTTP_* keys, wsgi.* keys, and nothing leaked from the
server's own process environment."""

import json

import pytest

import conftest
from conftest import ResponseReader, read_until_close



APP = "wsgi_apps:environ_app"

#: Keys the brief requires in every environ (CGI keys and wsgi.* keys).
REQUIRED_CGI = {
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
    "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "RAW_URI",
    "SERVER_SOFTWARE",
}


def exchange(server, raw: bytes, sock=None):
    """Send one raw request; return (parsed JSON report, response, client socket)."""
    sock = sock or server.connect()
    sock.sendall(raw)
    response = ResponseReader(sock).read()
    assert response.status == 200, response.body
    return json.loads(response.body), response, sock


def cgi_keys(environ):
    return {k for k in environ if "." not in k}


def test_environ_get_every_key(serve_app):
    server = serve_app(APP)
    sock = server.connect()
    host = f"127.0.0.1:{server.port}"
    raw = (
        b"GET /a%2Fb/%E9t%C3%A9?x=%2F&y=%E9+z HTTP/1.1\r\n"
        b"Host: " + host.encode() + b"\r\n"
        b"X-Multi: a\r\n"
        b"X-Multi: b\r\n"
        b"Cookie: a=1\r\n"
        b"Cookie: b=2\r\n"
        b"X_Under: evil\r\n"
        b"X-Under: good\r\n"
        b"X-Other: good\r\n"
        b"X_Other: evil\r\n"
        b"X-Name: \xe9t\xe9\r\n"
        b"X-Spaced:   padded value  \r\n"
        b"User-Agent: envtest/1\r\n"
        b"\r\n"
    )
    report, _, _ = exchange(server, raw, sock)
    env = report["environ"]

    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a/b/\xe9t\xc3\xa9"
    assert env["QUERY_STRING"] == "x=%2F&y=%E9+z"
    assert env["RAW_URI"] == "/a%2Fb/%E9t%C3%A9?x=%2F&y=%E9+z"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(sock.getsockname()[1])
    assert isinstance(env["SERVER_SOFTWARE"], str) and env["SERVER_SOFTWARE"]

    # Headers: repeated joined with ',', cookies with '; ', '_' names dropped, latin-1.
    http = {k: v for k, v in env.items() if k.startswith("HTTP_")}
    assert http == {
        "HTTP_HOST": host,
        "HTTP_X_MULTI": "a,b",
        "HTTP_COOKIE": "a=1; b=2",
        "HTTP_X_UNDER": "good",
        "HTTP_X_OTHER": "good",
        "HTTP_X_NAME": "\xe9t\xe9",
        "HTTP_X_SPACED": "padded value",
        "HTTP_USER_AGENT": "envtest/1",
    }
    # No body: CONTENT_LENGTH / CONTENT_TYPE absent or empty, never HTTP_CONTENT_*.
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env.get("CONTENT_TYPE", "") == ""
    assert report["body"] == ""

    # wsgi.* keys.
    checks = report["checks"]
    assert checks["version"] == [1, 0] and checks["version_type"] == "tuple"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert checks["input_methods"] == ["read", "readline", "readlines", "__iter__"]
    assert checks["errors_methods"] == ["write", "writelines", "flush"]
    assert checks["file_wrapper_callable"] is True
    assert checks["non_str_cgi_keys"] == []
    assert cgi_keys(env) - REQUIRED_CGI - set(http) <= {"CONTENT_LENGTH", "CONTENT_TYPE"}
    assert REQUIRED_CGI <= cgi_keys(env)


def test_environ_content_length_and_type(serve_app):
    server = serve_app(APP)
    body = b"hello world"
    raw = (
        b"POST /submit?k=v HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 11\r\n\r\n" + body
    )
    report, _, _ = exchange(server, raw)
    env = report["environ"]
    assert env["REQUEST_METHOD"] == "POST"
    # SERVER_NAME/PORT come from the listening socket, not from the Host header.
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["HTTP_HOST"] == "x"
    assert env["CONTENT_LENGTH"] == "11"
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert "HTTP_CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_TYPE" not in env
    assert env["wsgi.input_terminated"] is True
    assert report["body"] == "hello world"


def test_environ_chunked_body_has_no_content_length(serve_app):
    server = serve_app(APP)
    raw = (
        b"POST /chunked HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    report, _, _ = exchange(server, raw)
    env = report["environ"]
    assert "CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["CONTENT_TYPE"] == "application/octet-stream"
    assert env["wsgi.input_terminated"] is True
    assert report["body"] == "hello world"


def test_environ_keys_with_template_defaults_follow_each_request(serve_app):
    """REQUEST_METHOD, QUERY_STRING and SERVER_PROTOCOL start from the listener's template
    (GET, empty, HTTP/1.1) and are set only when a request differs: on one connection,
    requests that differ and requests that do not must each see their own values."""
    server = serve_app(APP)
    sock = server.connect()
    requests = [
        (b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "x=1", "HTTP/1.1"),
        (b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", "POST", "", "HTTP/1.1"),
        (b"GET /c HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", "GET", "", "HTTP/1.0"),
        (b"DELETE /d?q HTTP/1.1\r\nHost: h\r\n\r\n", "DELETE", "q", "HTTP/1.1"),
        (b"GET /e HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "", "HTTP/1.1"),
    ]
    for raw, method, query, protocol in requests:
        report, _, _ = exchange(server, raw, sock)
        env = report["environ"]
        assert (env["REQUEST_METHOD"], env["QUERY_STRING"], env["SERVER_PROTOCOL"]) == (
            method, query, protocol), raw
        assert env["SERVER_PORT"] == str(server.port)
        assert env["SCRIPT_NAME"] == ""
        assert env["wsgi.url_scheme"] == "http"


def test_environ_http10_protocol(serve_app):
    server = serve_app(APP)
    sock = server.connect()
    sock.sendall(b"GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
    raw = read_until_close(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.")
    assert b" 200 " in head.split(b"\r\n")[0]
    env = json.loads(body)["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["PATH_INFO"] == "/old"


def test_environ_does_not_leak_process_environment(server_factory):
    env = conftest.server_env()
    env.update({"HTTP_FOO": "bar", "PATH_INFO": "/leak", "MYAPP_LEAK_CANARY": "1",
                "QUERY_STRING": "leaked=1", "CONTENT_LENGTH": "99"})
    server = server_factory(APP, env=env)
    report, _, _ = exchange(server, b"GET /real HTTP/1.1\r\nHost: x\r\n\r\n")
    seen = report["environ"]
    assert "HTTP_FOO" not in seen
    assert "MYAPP_LEAK_CANARY" not in seen
    assert seen["PATH_INFO"] == "/real"
    assert seen.get("QUERY_STRING", "") == ""
    assert seen.get("CONTENT_LENGTH", "") == ""
    leaked = sorted(k for k in env if k not in REQUIRED_CGI | {"CONTENT_LENGTH"} and k in seen)
    assert leaked == []
    assert {k for k in seen if k.startswith("HTTP_")} == {"HTTP_HOST"}


def test_environ_multithread_false_by_default(serve_app):
    server = serve_app(APP)
    report, _, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert report["environ"]["wsgi.multithread"] is False


def test_environ_multithread_true_with_threads(serve_app):
    server = serve_app(APP, "--threads", "4")
    report, _, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert report["environ"]["wsgi.multithread"] is True
    assert report["environ"]["wsgi.multiprocess"] is False


def test_environ_remote_port_per_connection(serve_app):
    server = serve_app(APP)
    for _ in range(2):
        sock = server.connect()
        report, _, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", sock)
        assert report["environ"]["REMOTE_PORT"] == str(sock.getsockname()[1])
        sock.close()


def test_environ_remote_address_on_every_request_of_a_connection(serve_app):
    """The peer's strs are made once per connection and handed to its last request: every
    request, keep-alive ones and the closing one, sees the connection's own address."""
    server = serve_app(APP)
    sock = server.connect()
    host, port = sock.getsockname()[:2]
    requests = [b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
    for raw in requests:
        report, _, _ = exchange(server, raw, sock)
        assert (report["environ"]["REMOTE_ADDR"], report["environ"]["REMOTE_PORT"]) == (host, str(port))
    sock.close()
    # A connection that closes after its only request, then a new one: each its own port.
    for _ in range(2):
        sock = server.connect()
        report, _, _ = exchange(server, requests[2], sock)
        assert report["environ"]["REMOTE_PORT"] == str(sock.getsockname()[1])
        sock.close()


def test_environ_changed_by_the_app_is_fresh_again_at_every_request_of_a_connection(serve_app):
    """From a connection's second request its environ is copied from a template of its own:
    what an app does to its environ must never reach the next request."""
    server = serve_app("wsgi_apps:environ_spoiling_app")
    sock = server.connect()
    host, port = sock.getsockname()[:2]
    for index in range(5):
        report, _, _ = exchange(server, f"GET /{index} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), sock)
        assert report == {"REMOTE_ADDR": host, "REMOTE_PORT": str(port), "X_SPOILED": None,
                          "SERVER_NAME": report["SERVER_NAME"]}, (index, report)
        assert report["SERVER_NAME"], index
    sock.close()
    # Another connection has its own port from its first request to its last.
    sock = server.connect()
    for index in range(3):
        report, _, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", sock)
        assert report["REMOTE_PORT"] == str(sock.getsockname()[1]), index
    sock.close()


def test_environ_connections_alike_each_see_their_own_port_and_fields(serve_app):
    """Connections from one client that send the same fields share one template: each request
    still sees its own connection's port, what one app spoils never reaches another
    connection's request, and a connection with other fields sees only its own."""
    server = serve_app("wsgi_apps:environ_spoiling_app")
    socks = [server.connect() for _ in range(3)]
    host = socks[0].getsockname()[0]
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Same: 1\r\n\r\n"
    for round_ in range(3):
        for sock in socks:
            report, _, _ = exchange(server, raw, sock)
            assert report == {"REMOTE_ADDR": host, "REMOTE_PORT": str(sock.getsockname()[1]),
                              "X_SPOILED": None, "SERVER_NAME": report["SERVER_NAME"]}, round_
            assert report["SERVER_NAME"], round_
    other = server.connect()
    for _ in range(3):
        report, _, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: y\r\n\r\n", other)
        assert report["REMOTE_PORT"] == str(other.getsockname()[1])
    for sock in [*socks, other]:
        sock.close()

    server = serve_app(APP)
    socks = [server.connect() for _ in range(2)]
    for _ in range(3):
        for sock in socks:
            report, _, _ = exchange(server, raw, sock)
            assert header_keys(report["environ"]) == {"HTTP_HOST": "x", "HTTP_X_SAME": "1"}
            assert report["environ"]["REMOTE_PORT"] == str(sock.getsockname()[1])
    other = server.connect()
    for _ in range(3):
        report, _, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: y\r\nX-Other: 2\r\n\r\n", other)
        assert header_keys(report["environ"]) == {"HTTP_HOST": "y", "HTTP_X_OTHER": "2"}
        assert report["environ"]["REMOTE_PORT"] == str(other.getsockname()[1])
    for sock in socks:
        report, _, _ = exchange(server, raw, sock)
        assert header_keys(report["environ"]) == {"HTTP_HOST": "x", "HTTP_X_SAME": "1"}
        sock.close()
    other.close()


def header_keys(environ):
    """The keys request header fields make."""
    return {k: v for k, v in environ.items()
            if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")}


def test_environ_header_fields_follow_each_request_of_a_connection(serve_app):
    """A connection's requests repeat most of their fields, and from its second request on
    the repeated ones come from the connection's own template: a field a request did not
    send must never show, a changed value must show changed, and forwarding headers (the
    default trusts loopback) apply to their own request only."""
    server = serve_app(APP)
    sock = server.connect()
    requests = [
        ([("Host", "x"), ("X-A", "1"), ("Cookie", "c=1")], {}),
        # The second request makes the template (forwarding headers stay out of it).
        ([("Host", "x"), ("X-A", "1"), ("X-B", "2"), ("Cookie", "c=1"),
          ("X-Forwarded-For", "198.51.100.7")], {"REMOTE_ADDR": "198.51.100.7"}),
        ([("Host", "x"), ("X-A", "1")], {"REMOTE_ADDR": "127.0.0.1"}),
        ([("Host", "y"), ("X-B", "3"), ("Cookie", "a=1"), ("Cookie", "b=2")], {}),
        ([("Host", "x"), ("X-A", "1"), ("X-B", "2"), ("Cookie", "c=1"),
          ("Content-Type", "text/plain")], {}),
        ([("Host", "x"), ("X-A", "1"), ("X-B", "2"), ("Cookie", "c=1")], {"REMOTE_ADDR": "127.0.0.1"}),
        ([("Host", "x"), ("x-a", "caf\xe9"), ("X-B", "")], {}),
    ]
    joined = {"HTTP_COOKIE": "; ", }
    for index, (fields, expected_cgi) in enumerate(requests):
        raw = f"GET /{index} HTTP/1.1\r\n".encode()
        raw += b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in fields) + b"\r\n"
        report, _, _ = exchange(server, raw, sock)
        expected = {}
        for name, value in fields:
            key = name.upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
            expected[key] = expected[key] + joined.get(key, ",") + value if key in expected else value
        assert header_keys(report["environ"]) == expected, (index, report["environ"])
        for key, value in expected_cgi.items():
            assert report["environ"][key] == value, (index, key)
        assert report["environ"]["PATH_INFO"] == f"/{index}"
    sock.close()


def test_environ_a_request_with_more_fields_than_a_template_keeps_makes_none(serve_app):
    server = serve_app(APP)
    sock = server.connect()
    many = "".join(f"X-F{n}: {n}\r\n" for n in range(70))
    exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", sock)
    report, _, _ = exchange(server, f"GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode(), sock)
    assert len(header_keys(report["environ"])) == 71
    for _ in range(2):
        report, _, _ = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-F3: 3\r\n\r\n", sock)
        assert header_keys(report["environ"]) == {"HTTP_HOST": "x", "HTTP_X_F3": "3"}
    sock.close()


def test_environ_non_ascii_header_value_never_emptied(serve_app):
    server = serve_app(APP)
    raw = (b"GET / HTTP/1.1\r\nHost: x\r\n"
           b"X-Latin: caf\xe9 \xff\x80 end\r\nX-Multi: \xe9\r\nX-Multi: \xe8\r\n\r\n")
    report, _, _ = exchange(server, raw)
    env = report["environ"]
    assert env["HTTP_X_LATIN"] == "caf\xe9 \xff\x80 end"
    assert env["HTTP_X_MULTI"] == "\xe9,\xe8"


def test_environ_keep_alive_requests_get_fresh_environ(serve_app):
    server = serve_app(APP)
    sock = server.connect()
    first, _, _ = exchange(server, b"GET /one?a=1 HTTP/1.1\r\nHost: x\r\nX-Only-First: 1\r\n\r\n", sock)
    second, _, _ = exchange(server, b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n", sock)
    assert first["environ"]["HTTP_X_ONLY_FIRST"] == "1"
    assert "HTTP_X_ONLY_FIRST" not in second["environ"]
    assert second["environ"]["PATH_INFO"] == "/two"
    assert second["environ"].get("QUERY_STRING", "") == ""
    assert first["environ"]["REMOTE_PORT"] == second["environ"]["REMOTE_PORT"]


def test_wsgi_errors_go_to_error_log(serve_app):
    server = serve_app("wsgi_apps:errors_app")
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    response = ResponseReader(sock).read()
    assert response.status == 200 and response.body == b"logged"
    for text in ("errors line one", "errors line two", "errors line three"):
        server.wait_for_log(rf"(?m)\[WARNING\] \[wsgi\.errors\] {text}$")
