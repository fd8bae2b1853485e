"""Flask and Django applications served end to end, spoken to with ``requests``.

Frameworks are run raw (not through wsgiref.validate): werkzeug legitimately calls
``wsgi.input.read()`` without a size when ``wsgi.input_terminated`` is set, which the
validator forbids.
"""

import hashlib
import os
import re

import pytest

import conftest
from conftest import APPS_DIR, Server, tidegate_command

requests = pytest.importorskip("requests")
pytest.importorskip("flask")
pytest.importorskip("django")


@pytest.fixture
def http():
    with requests.Session() as session:
        session.trust_env = False  # never a proxy: loopback only
        yield session


def upload_payload(size):
    return os.urandom(size)


# --- Flask ----------------------------------------------------------------------------------


def _module_server(app):
    """One server for all the tests of a framework (they only read its log)."""
    server = Server(tidegate_command("--bind", "127.0.0.1:0", "--threads", "2", app),
                    APPS_DIR, conftest.server_env())
    try:
        server.wait_listening()
        yield server
    finally:
        server.stop()
        assert "panicked" not in server.log, server.log
        assert "AssertionError" not in server.log, server.log


@pytest.fixture(scope="module")
def flask_server():
    yield from _module_server("flask_app:app")


def test_flask_view(flask_server, http):
    response = http.get(flask_server.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello from Flask"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Length"] == str(len("Hello from Flask"))
    assert response.headers["Server"]
    assert response.headers["Date"]


def test_flask_non_ascii_path(flask_server, http):
    response = http.get(flask_server.url + "/hello/caf\u00e9", timeout=10)
    assert response.status_code == 200
    assert response.content == "Hello, caf\u00e9!".encode()


def test_flask_json(flask_server, http):
    response = http.get(flask_server.url + "/json?a=1&a=2&b=%E2%98%83", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "message": "hi",
        "items": [1, 2, 3],
        "unicode": "\u00e9\u2603",
        "args": {"a": ["1", "2"], "b": ["\u2603"]},
    }


def test_flask_json_post(flask_server, http):
    payload = {"x": [1, 2, {"y": "z"}], "text": "\u00e9" * 1000}
    response = http.post(flask_server.url + "/echo-json", json=payload, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["received"] == payload
    assert body["length"] > 1000


def test_flask_form_post(flask_server, http):
    response = http.post(
        flask_server.url + "/form", data={"name": "Ada Lovelace", "colour": "bl\u00fc & red"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.text == "name=Ada Lovelace colour=bl\u00fc & red"


def test_flask_file_upload(flask_server, http):
    data = upload_payload(1_500_000)
    response = http.post(
        flask_server.url + "/upload",
        files={"file": ("data.bin", data, "application/octet-stream")},
        data={"note": "binary"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json() == {
        "filename": "data.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "binary",
    }


def test_flask_chunked_upload(flask_server, http):
    """A request body without Content-Length (chunked) reaches the form parser whole."""
    data = upload_payload(200_000)
    boundary = "tidegateboundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()

    def pieces():
        for start in range(0, len(body), 16384):
            yield body[start:start + 16384]

    response = http.post(
        flask_server.url + "/upload", data=pieces(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=30,
    )
    assert response.status_code == 200
    result = response.json()
    assert result["size"] == len(data)
    assert result["sha256"] == hashlib.sha256(data).hexdigest()


def test_flask_streamed_response(flask_server, http):
    response = http.get(flask_server.url + "/stream", stream=True, timeout=10)
    assert response.status_code == 200
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.headers
    assert response.content == b"".join(f"line {i}\n".encode() for i in range(5))


def test_flask_session_cookie(flask_server, http):
    assert http.get(flask_server.url + "/session/get", timeout=10).text == "<nothing>"
    assert http.get(flask_server.url + "/session/set/s\u00e9ssion", timeout=10).text == "stored"
    assert "session" in http.cookies
    assert http.get(flask_server.url + "/session/get", timeout=10).text == "s\u00e9ssion"


def test_flask_404_and_handled_error(flask_server, http):
    assert http.get(flask_server.url + "/nope", timeout=10).status_code == 404
    response = http.get(flask_server.url + "/fail", timeout=10)
    assert response.status_code == 500
    assert "flask view failed" not in response.text
    # Flask logs the exception itself; the server does not see an app fault.
    flask_server.wait_for_log(r"Exception on /fail \[GET\]")
    flask_server.wait_for_log(r"RuntimeError: flask view failed")
    assert "Error handling request GET /fail" not in flask_server.log
    assert http.get(flask_server.url + "/", timeout=10).text == "Hello from Flask"


# --- Django ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_server():
    yield from _module_server("djangoproj.wsgi")


CSRF_INPUT = re.compile(r'<input type="hidden" name="csrfmiddlewaretoken" value="([^"]+)"')


def test_django_view(django_server, http):
    response = http.get(django_server.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello from Django"
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Content-Length"] == str(len("Hello from Django"))


def test_django_path_and_query(django_server, http):
    response = http.get(django_server.url + "/echo/caf\u00e9/?q=%E2%98%83&x=1", timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "word": "caf\u00e9",
        "path": "/echo/caf\u00e9/",
        "query": {"q": "\u2603", "x": "1"},
    }


def test_django_404(django_server, http):
    response = http.get(django_server.url + "/no/such/page/", timeout=10)
    assert response.status_code == 404


def test_django_form_with_csrf(django_server, http):
    page = http.get(django_server.url + "/form/", timeout=10)
    assert page.status_code == 200
    assert "csrftoken" in http.cookies
    match = CSRF_INPUT.search(page.text)
    assert match, page.text
    response = http.post(
        django_server.url + "/form/",
        data={"csrfmiddlewaretoken": match.group(1), "name": "Grace"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.text == "Thanks, Grace!"
    # The token may also come in the X-CSRFToken header.
    response = http.post(
        django_server.url + "/form/", data={"name": "Hopper"},
        headers={"X-CSRFToken": http.cookies["csrftoken"]}, timeout=10,
    )
    assert response.status_code == 200
    assert response.text == "Thanks, Hopper!"


def test_django_form_without_csrf_is_forbidden(django_server, http):
    response = http.post(django_server.url + "/form/", data={"name": "Mallory"}, timeout=10)
    assert response.status_code == 403
    assert "Thanks" not in response.text
    # A cookie without the matching form token is refused too.
    http.get(django_server.url + "/form/", timeout=10)
    assert "csrftoken" in http.cookies
    response = http.post(django_server.url + "/form/", data={"name": "Mallory"}, timeout=10)
    assert response.status_code == 403
    response = http.post(
        django_server.url + "/form/",
        data={"name": "Mallory", "csrfmiddlewaretoken": "x" * 64}, timeout=10,
    )
    assert response.status_code == 403


def test_django_file_upload(django_server, http):
    # Larger than FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): Django streams it to a temporary file.
    data = upload_payload(3_000_000)
    response = http.post(
        django_server.url + "/upload/",
        files={"file": ("big.bin", data, "application/octet-stream")},
        data={"note": "n\u00f6te"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json() == {
        "name": "big.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "n\u00f6te",
    }


def test_django_streaming_response(django_server, http):
    response = http.get(django_server.url + "/stream/", stream=True, timeout=10)
    assert response.status_code == 200
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.headers
    assert response.content == b"".join(f"row {i}\n".encode() for i in range(5))


def test_django_keeps_connection_alive(django_server, http):
    for _ in range(5):
        assert http.get(django_server.url + "/", timeout=10).text == "Hello from Django"
    assert "Error handling request" not in django_server.log
