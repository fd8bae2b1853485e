"""The CGI gateway (``tidegate.run_cgi`` and ``tidegate --protocol cgi``).

Differential: each app runs under tidegate and under ``wsgiref.handlers.CGIHandler`` with
the same environment and stdin, and stdout must be equal byte for byte, except for the
differences the README lists (each has a test here that shows it on purpose). Real: a
Flask app behind lighttpd (Debian's package) through a one-line CGI script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import conftest
from frontends import LIGHTTPD, require, start_lighttpd

APPS = conftest.APPS_DIR

BASE_ENV = {
    "GATEWAY_INTERFACE": "CGI/1.1",
    "SERVER_SOFTWARE": "TestServer/1.0",
    "SERVER_NAME": "example.org",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "192.0.2.7",
    "REMOTE_PORT": "40000",
    "SCRIPT_NAME": "/app.cgi",
    "REQUEST_METHOD": "GET",
    "QUERY_STRING": "",
    "HTTP_HOST": "example.org",
}


def cgi_env(**overrides):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(APPS), **BASE_ENV}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _bytes_env(env):
    return {os.fsencode(k): v if isinstance(v, bytes) else os.fsencode(v) for k, v in env.items()}


def run(gateway: str, app: str, env=None, stdin: bytes = b""):
    """Run ``app`` (a name in cgi_apps) once as a CGI script; return the CompletedProcess."""
    if gateway == "tidegate":
        code = f"import tidegate, cgi_apps; tidegate.run_cgi(cgi_apps.{app})"
        args = [sys.executable, "-c", code]
    elif gateway == "tidegate-cli":
        args = [sys.executable, "-m", "tidegate", "--protocol", "cgi", f"cgi_apps:{app}"]
    else:
        code = f"import wsgiref.handlers, cgi_apps; wsgiref.handlers.CGIHandler().run(cgi_apps.{app})"
        args = [sys.executable, "-c", code]
    return subprocess.run(args, input=stdin, env=_bytes_env(env or cgi_env()), cwd=str(APPS),
                          capture_output=True, timeout=30)


def strip_added_length(ours: bytes, theirs: bytes) -> bytes:
    """Documented difference: tidegate sends Content-Length whenever it knows the body's
    length (several-item lists, file_wrapper); wsgiref only for one-item bodies. Remove it
    from ``ours`` when wsgiref has none, after checking it is right."""
    head, sep, body = ours.partition(b"\r\n\r\n")
    if b"\r\ncontent-length:" in theirs.partition(b"\r\n\r\n")[0].lower():
        return ours
    lines = head.split(b"\r\n")
    if lines[-1].startswith(b"Content-Length: "):
        assert int(lines[-1].split(b": ")[1]) == len(body), ours
        head = b"\r\n".join(lines[:-1])
    return head + sep + body


@pytest.fixture(params=["tidegate", "tidegate-cli"])
def gateway(request):
    return request.param


SAME = ["hello", "generator", "write_app", "exc_info_app",
        "environ_app"]


@pytest.mark.parametrize("app", SAME)
def test_stdout_equals_wsgiref(gateway, app):
    ours, theirs = run(gateway, app), run("wsgiref", app)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    assert ours.stdout.startswith(b"Status: ")
    assert ours.stderr == b""


def test_a_declared_content_length_goes_after_the_other_fields(gateway):
    """Documented difference: the bridge keeps the length aside (it checks the body against
    it), so it is written last, as ``Content-Length``; wsgiref keeps the app's position."""
    ours, theirs = run(gateway, "declared"), run("wsgiref", "declared")
    assert ours.stdout == (b"Status: 200 OK\r\nContent-Type: text/plain\r\nX-After: 1\r\n"
                           b"Content-Length: 5\r\n\r\nhello")
    assert theirs.stdout == (b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                             b"X-After: 1\r\n\r\nhello")


def test_no_content_length_on_a_204(gateway):
    """Documented difference: RFC 9110 forbids Content-Length on 204; wsgiref sends 0."""
    ours, theirs = run(gateway, "empty"), run("wsgiref", "empty")
    assert ours.stdout == b"Status: 204 No Content\r\n\r\n"
    assert theirs.stdout == b"Status: 204 No Content\r\nContent-Length: 0\r\n\r\n"


def test_a_generator_of_empty_items_is_an_empty_body_of_known_length(gateway):
    """Documented difference: PEP 3333 has the head wait for the first non-empty item, so
    tidegate sends it at the end, knowing the body is empty; wsgiref sends it at the first
    (empty) item, without a length."""
    ours, theirs = run(gateway, "empty_generator"), run("wsgiref", "empty_generator")
    assert ours.stdout == b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    assert theirs.stdout == b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"


def test_several_items_get_a_content_length(gateway):
    ours, theirs = run(gateway, "several"), run("wsgiref", "several")
    assert b"Content-Length: 13\r\n\r\n" in ours.stdout
    assert b"Content-Length" not in theirs.stdout
    assert strip_added_length(ours.stdout, theirs.stdout) == theirs.stdout


def test_request_variables_are_latin1_and_the_rest_as_os_environ(gateway):
    """PATH_INFO, QUERY_STRING and HTTP_* carry request bytes: latin-1 bytes-as-str; other
    variables decode as os.environ does (UTF-8 here), exactly like wsgiref."""
    env = cgi_env(PATH_INFO=b"/caf\xc3\xa9/\xff", QUERY_STRING=b"q=%C3%A9", HTTP_X_NAME=b"\xe9t\xe9",
                  DOCUMENT_ROOT="/srv/d\u00e9j\u00e0", SSL_CLIENT_S_DN=b"CN=\xc3\xa9",
                  REDIRECT_HTTP_X=b"\xe9", CUSTOM_VAR="plain")
    ours, theirs = run(gateway, "environ_app", env), run("wsgiref", "environ_app", env)
    assert ours.stdout == theirs.stdout
    cgi = json.loads(ours.stdout.partition(b"\r\n\r\n")[2])["cgi"]
    assert cgi["PATH_INFO"] == "/caf\u00c3\u00a9/\u00ff"
    assert cgi["HTTP_X_NAME"] == "\u00e9t\u00e9"
    assert cgi["DOCUMENT_ROOT"] == "/srv/d\u00e9j\u00e0"
    assert cgi["CUSTOM_VAR"] == "plain"


@pytest.mark.parametrize("https, scheme", [("on", "https"), ("1", "https"), ("off", "http"), (None, "http")])
def test_flags_and_scheme(gateway, https, scheme):
    env = cgi_env(HTTPS=https)
    ours, theirs = run(gateway, "environ_app", env), run("wsgiref", "environ_app", env)
    assert ours.stdout == theirs.stdout
    flags = json.loads(ours.stdout.partition(b"\r\n\r\n")[2])["flags"]
    assert flags == {"wsgi.url_scheme": scheme, "wsgi.run_once": True, "wsgi.multithread": False,
                     "wsgi.multiprocess": True, "wsgi.version": [1, 0]}


def test_request_body(gateway):
    body = b"line one\nline two\x00\xff"
    env = cgi_env(REQUEST_METHOD="POST", CONTENT_LENGTH=str(len(body)), CONTENT_TYPE="application/x-thing")
    ours, theirs = run(gateway, "echo", env, body), run("wsgiref", "echo", env, body)
    assert ours.stdout == theirs.stdout
    assert ours.stdout.endswith(b"first=line one\n|rest=line two\x00\xff")


def test_input_stops_at_content_length(gateway):
    """Documented difference: wsgiref's wsgi.input is all of stdin."""
    env = cgi_env(REQUEST_METHOD="POST", CONTENT_LENGTH="3")
    ours, theirs = run(gateway, "read_everything", env, b"abcdef"), run("wsgiref", "read_everything", env, b"abcdef")
    assert ours.stdout.endswith(b"\r\n\r\nabc")
    assert theirs.stdout.endswith(b"\r\n\r\nabcdef")


def test_a_large_body_through_stdin(gateway):
    body = os.urandom(5 * 1024 * 1024)
    env = cgi_env(REQUEST_METHOD="POST", CONTENT_LENGTH=str(len(body)))
    ours = run(gateway, "read_everything", env, body)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.endswith(b"Content-Length: %d\r\n\r\n" % len(body) + body)


def test_an_error_before_the_head_is_a_500_with_the_traceback_on_stderr(gateway):
    """Documented difference: the 500's body text (tidegate's is the same as over HTTP)."""
    ours, theirs = run(gateway, "boom_before"), run("wsgiref", "boom_before")
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout.startswith(b"Status: 500 Internal Server Error\r\n")
    assert theirs.stdout.startswith(b"Status: 500 Internal Server Error\r\n")
    assert ours.stdout == (b"Status: 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           b"Content-Length: 21\r\n\r\nInternal Server Error")
    stderr = ours.stderr.decode()
    assert "Traceback (most recent call last)" in stderr
    assert "RuntimeError: boom before the head" in stderr
    assert re.search(r"\[ERROR\] Error handling request GET /app\.cgi", stderr)


def test_an_error_after_the_head_stops_the_output_and_fails_the_exit_status(gateway):
    """Documented difference: wsgiref exits 0 after a cut response."""
    ours, theirs = run(gateway, "boom_after"), run("wsgiref", "boom_after")
    assert ours.stdout == theirs.stdout == b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial "
    assert theirs.returncode == 0
    assert ours.returncode == 1
    assert b"RuntimeError: boom after the head" in ours.stderr


@pytest.mark.parametrize("app", ["closing", "closing_boom"])
def test_close_is_always_called(gateway, app, tmp_path):
    marker = tmp_path / "marker"
    result = run(gateway, app, cgi_env(MARKER=str(marker)))
    assert marker.read_text() == "closed\n", result.stderr


def test_file_wrapper(gateway, tmp_path):
    data = os.urandom(200_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    env = cgi_env(FILE=str(path))
    ours, theirs = run(gateway, "file_app", env), run("wsgiref", "file_app", env)
    assert ours.stdout.endswith(data)
    assert strip_added_length(ours.stdout, theirs.stdout) == theirs.stdout


def test_head_has_no_body(gateway):
    """Documented difference: RFC 3875 forbids a body for HEAD; wsgiref sends it."""
    env = cgi_env(REQUEST_METHOD="HEAD")
    ours, theirs = run(gateway, "head_app", env), run("wsgiref", "head_app", env)
    assert ours.stdout == b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n"
    assert theirs.stdout == ours.stdout + b"body"


@pytest.mark.parametrize("env, why", [
    (cgi_env(REQUEST_METHOD=None), b"REQUEST_METHOD is not set"),
    (cgi_env(REQUEST_METHOD="POST", CONTENT_LENGTH="12abc"), b"CONTENT_LENGTH \"12abc\""),
    (cgi_env(REQUEST_METHOD="POST", CONTENT_LENGTH="-1"), b"CONTENT_LENGTH \"-1\""),
])
def test_a_malformed_environment_is_a_400(gateway, env, why):
    result = run(gateway, "hello", env)
    assert result.returncode == 0
    assert result.stdout == (b"Status: 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Content-Length: 11\r\n\r\nBad Request")
    assert why in result.stderr


def test_stdout_closed_early_fails_the_exit_status(tmp_path):
    """A front server that goes away: the write fails, the exit status says so."""
    code = "import tidegate, cgi_apps; tidegate.run_cgi(cgi_apps.read_everything)"
    body = b"x" * (4 * 1024 * 1024)
    env = _bytes_env(cgi_env(REQUEST_METHOD="POST", CONTENT_LENGTH=str(len(body))))
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=str(APPS))
    process.stdout.close()
    _, stderr = process.communicate(body, timeout=30)
    assert process.returncode == 1, stderr


def test_import_adds_less_than_10_ms():
    """A CGI process pays for every import on every request."""
    timings = []
    for _ in range(5):
        result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tidegate"],
                                capture_output=True, text=True, timeout=30)
        line = [l for l in result.stderr.splitlines() if l.rstrip().endswith("| tidegate")][-1]
        timings.append(int(line.split("|")[1]))
    assert min(timings) < 10_000, f"import tidegate took {timings} µs"


# --- a real web server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lighttpd(tmp_path_factory):
    """lighttpd on loopback with one CGI script, a single shebang line that runs the Flask
    test app through ``tidegate --protocol cgi``."""
    require(LIGHTTPD)
    root = tmp_path_factory.mktemp("lighttpd")
    cgi_bin = root / "www" / "cgi-bin"
    cgi_bin.mkdir(parents=True)
    script = cgi_bin / "flask.cgi"
    script.write_text(f"#!/usr/bin/env -S {sys.executable} -m tidegate --protocol cgi --chdir {APPS} flask_app:app\n")
    script.chmod(0o755)
    server = start_lighttpd(root / "run", root / "www")
    yield server
    server.stop()


def test_flask_behind_lighttpd(lighttpd):
    base = lighttpd.url + "/cgi-bin/flask.cgi"
    response = requests.get(base + "/hello/World", timeout=30)
    assert response.status_code == 200, lighttpd.log
    assert response.text == "Hello, World!"
    data = requests.get(base + "/json", params={"a": "1"}, timeout=30).json()
    assert data["args"] == {"a": ["1"]} and data["unicode"] == "\u00e9\u2603"
    response = requests.post(base + "/form", data={"name": "Ada", "colour": "blue"}, timeout=30)
    assert response.text == "name=Ada colour=blue"
    response = requests.get(base + "/stream", timeout=30)
    assert response.text == "".join(f"line {i}\n" for i in range(5))
    assert requests.get(base + "/missing", timeout=30).status_code == 404


def test_upload_behind_lighttpd(lighttpd):
    data = os.urandom(2 * 1024 * 1024)
    response = requests.post(lighttpd.url + "/cgi-bin/flask.cgi/upload", timeout=60,
                             files={"file": ("blob.bin", data)}, data={"note": "n"})
    import hashlib

    assert response.json() == {"filename": "blob.bin", "size": len(data),
                               "sha256": hashlib.sha256(data).hexdigest(), "note": "n"}


def test_a_failing_view_behind_lighttpd(lighttpd):
    response = requests.get(lighttpd.url + "/cgi-bin/flask.cgi/fail", timeout=30)
    assert response.status_code == 500
    assert "RuntimeError: flask view failed" in lighttpd.log


def test_the_cli_falls_back_to_argparse_for_anything_unusual():
    """The CGI fast path reads only the plain forms; the rest gets argparse's errors."""
    for args, message in [
        (["--protocol", "cgi", "--bogus", "cgi_apps:hello"], b"unrecognized arguments: --bogus"),
        (["cgi_apps:hello", "extra"], b"unrecognized arguments: extra"),
        (["--protocol", "cgi", "--chdir", "/nonexistent/dir", "cgi_apps:hello"], b"argument --chdir"),
    ]:
        result = subprocess.run([sys.executable, "-m", "tidegate", *args], env=_bytes_env(cgi_env()),
                                cwd=str(APPS), capture_output=True, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_the_shebang_form_ignores_the_script_path(tmp_path):
    """``#!/usr/bin/env -S tidegate --protocol cgi APP`` runs with the script's path last."""
    script = tmp_path / "app.cgi"
    script.write_text(f"#!/usr/bin/env -S {sys.executable} -m tidegate --protocol cgi cgi_apps:hello\n")
    script.chmod(0o755)
    result = subprocess.run([str(script)], env=_bytes_env(cgi_env()), cwd=str(APPS),
                            capture_output=True, timeout=30)
    assert result.stdout == run("wsgiref", "hello").stdout, result.stderr
