"""The ``tidegate`` command line and the APP loader, run as real processes."""

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import conftest
from conftest import APPS_DIR, LISTENING, Server, read_response, tidegate_command

import tidegate

RUN_TIMEOUT = 20


def run_cli(*args, cwd=APPS_DIR, env=None):
    """Run tidegate to completion (for the cases that must exit by themselves)."""
    return subprocess.run(
        tidegate_command(*args),
        cwd=str(cwd),
        env=env or conftest.server_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def http_get(host, port, path="/", headers=""):
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        return read_response(sock)


def get_body(server, path="/"):
    response = http_get(server.host, server.port, path)
    assert response.status == 200, (response.status, response.body)
    return response.body


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host, port, process, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "tidegate exited early"
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port}")


def assert_clean_exit_message(stderr):
    assert "panicked" not in stderr, stderr
    assert "RUST_BACKTRACE" not in stderr, stderr


@pytest.fixture
def custom_servers():
    """Servers started with a command line the harness cannot build; stopped at the end."""
    started = []

    def start(args, cwd=APPS_DIR, env=None, wait=True):
        server = Server(args, cwd, env or conftest.server_env())
        started.append(server)
        if wait:
            server.wait_listening()
        return server

    yield start
    for server in started:
        server.stop()
        assert "panicked" not in server.log, server.log


# --- help, version, bad options -----------------------------------------------------------


def test_help():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tidegate")
    for option in ("--bind", "--threads", "--chdir", "--pythonpath", "--log-level",
                   "--access-log", "--version", "APP"):
        assert option in result.stdout, option


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", tidegate.__version__)
    assert result.stdout == f"tidegate {tidegate.__version__}\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--no-such-option", "cli_apps"], "unrecognized arguments: --no-such-option"),
        ([], "the following arguments are required: APP"),
        (["--threads", "0", "cli_apps"], "--threads"),
        (["--threads", "-3", "cli_apps"], "--threads"),
        (["--threads", "many", "cli_apps"], "--threads"),
        (["--log-level", "loud", "cli_apps"], "--log-level"),
        (["--chdir", "/nonexistent/tidegate-dir", "cli_apps"], "/nonexistent/tidegate-dir"),
    ],
)
def test_bad_option_exits_2(args, expected):
    result = run_cli(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("usage: tidegate"), result.stderr
    assert "tidegate: error:" in result.stderr
    assert expected in result.stderr, result.stderr
    assert "Listening at" not in result.stderr


@pytest.mark.parametrize(
    "bind",
    ["127.0.0.1:notaport", "127.0.0.1:70000", "127.0.0.1:-1", "[::1:8000", "unix:", "nonsense:"],
)
def test_bad_bind_exits_2_naming_it(bind):
    result = run_cli("--bind", bind, "cli_apps")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "tidegate: error: argument -b/--bind:" in result.stderr, result.stderr
    assert bind in result.stderr, result.stderr
    assert "Listening at" not in result.stderr
    assert_clean_exit_message(result.stderr)


# --- loading the APP ------------------------------------------------------------------------


@pytest.fixture(params=["workers", "preload"])
def load_mode(request):
    """APP loading happens in each worker by default, in the supervisor with --preload."""
    return request.param


def run_load(mode, app, early=False):
    """Run tidegate on an APP that cannot load; return (result, the error text). ``early``:
    the problem is caught before anything starts, in both modes."""
    options = ["--preload"] if mode == "preload" else []
    result = run_cli("--bind", "127.0.0.1:0", *options, app)
    assert result.returncode == 4, (result.returncode, result.stderr)
    assert "panicked" not in result.stderr
    assert result.stderr.count("tidegate: error:") == 1, result.stderr
    error = result.stderr[result.stderr.index("tidegate: error:"):]
    if mode == "preload" or early:
        # Caught before anything starts: the error is all there is.
        assert result.stderr.startswith("tidegate: error:"), result.stderr
        assert "Listening at" not in result.stderr
    else:
        # The worker reports the error; the supervisor says why it stops.
        assert "could not load the application; stopping" in result.stderr, result.stderr
    return result, error


def test_missing_module_exits_4_before_starting(load_mode):
    # A module that is nowhere on sys.path is caught before the supervisor starts.
    result, error = run_load(load_mode, "tidegate_no_such_module:app", early=True)
    assert "tidegate_no_such_module" in error
    assert "Traceback" not in result.stderr  # a naming problem, not a crash


def test_module_raising_at_import_exits_4_with_traceback(load_mode):
    result, error = run_load(load_mode, "broken_import:application")
    assert "broken_import" in error.splitlines()[0]
    source = (APPS_DIR / "broken_import.py").read_text().splitlines()
    line_number = next(i for i, line in enumerate(source, 1) if line.startswith("raise "))
    assert "Traceback (most recent call last):" in error
    assert f'broken_import.py", line {line_number}' in error, error
    assert source[line_number - 1].strip() in error
    assert "RuntimeError: broken_import fails at import time" in error


def test_missing_dependency_inside_module_shows_traceback(load_mode):
    result, error = run_load(load_mode, "broken_dependency")
    assert "Traceback (most recent call last):" in error
    assert "broken_dependency.py\", line 3" in error
    assert "No module named 'tidegate_test_missing_dependency'" in error


@pytest.mark.parametrize(
    "app, expected",
    [
        ("cli_apps:no_such_attribute", ["no_such_attribute"]),
        ("cli_apps:application.nope", ["nope"]),
        ("factory_app", ["application", "app"]),  # neither default name exists
        ("cli_apps:NOT_CALLABLE", ["not callable"]),
        ("factory_app:not_an_app_factory()", ["not callable"]),
        ("factory_app:nope()", ["nope"]),
        ("factory_app:create(", ["create("]),
        (":app", ["no module"]),
    ],
)
def test_bad_app_attribute_exits_4(load_mode, app, expected):
    result, error = run_load(load_mode, app, early=app.startswith(":"))
    for word in expected:
        assert word in error, (word, error)
    assert "Traceback" not in error  # naming problems need no traceback


def test_failing_factory_exits_4_with_traceback(load_mode):
    result, error = run_load(load_mode, "factory_app:failing_factory()")
    assert "Traceback (most recent call last):" in error
    assert "RuntimeError: the factory fails on purpose" in error


@pytest.mark.parametrize(
    "app",
    [
        "factory_app:create(print('SIDE-EFFECT'))",
        "factory_app:create(__import__('os').getcwd())",
        "factory_app:create(greeting=NAME)",
        "factory_app:create(n=[x for x in range(3)])",
    ],
)
def test_non_literal_factory_arguments_are_rejected(load_mode, app):
    result, error = run_load(load_mode, app)
    assert "literal" in error, error
    assert "SIDE-EFFECT" not in result.stdout  # the print() was never called


@pytest.mark.parametrize(
    "app, body",
    [
        ("cli_apps", b"hello from cli_apps.application"),  # application before app
        ("cli_only_app", b"hello from cli_only_app.app"),
        ("cli_apps:app", b"this is cli_apps.app, not application"),
        ("factory_app:create()", b"default*1"),
        ("factory_app:create('x', n=2)", b"x*2"),
        ('factory_app:create("h\\u00e9", 3, flag=True, items=[1, (2, 3)], d={"k": None})',
         "h\u00e9*3 d={'k': None} flag=True items=[1, (2, 3)]".encode()),
    ],
)
def test_app_forms(server_factory, app, body):
    server = server_factory(app)
    assert get_body(server) == body


def test_chdir_makes_app_importable(server_factory, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "chdir_only_module.py").write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    body = os.getcwd().encode()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [body]\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Without --chdir the module is not found...
    result = run_cli("--bind", "127.0.0.1:0", "chdir_only_module", cwd=elsewhere)
    assert result.returncode == 4, result.stderr
    assert "chdir_only_module" in result.stderr
    # ...with it, it is, and the app runs in that directory.
    server = server_factory("chdir_only_module", "--chdir", str(project), cwd=elsewhere)
    assert get_body(server) == str(project).encode()


def test_pythonpath_makes_app_importable(server_factory, tmp_path):
    first, second, third = (tmp_path / name for name in ("first", "second", "third"))
    for folder in (first, second, third):
        folder.mkdir()
    (second / "pythonpath_module.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'from pythonpath_module']\n"
    )
    (third / "pythonpath_other.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'from pythonpath_other']\n"
    )
    server = server_factory("pythonpath_module", "--pythonpath", f"{first},{second}", cwd=tmp_path)
    assert get_body(server) == b"from pythonpath_module"
    server = server_factory(
        "pythonpath_other", "--pythonpath", str(first), "--pythonpath", str(third), cwd=tmp_path
    )
    assert get_body(server) == b"from pythonpath_other"


# --- binding --------------------------------------------------------------------------------


def test_port_in_use_exits_1(server_factory):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = server_factory("cli_apps", bind=f"127.0.0.1:{port}", wait=False)
        returncode = server.process.wait(RUN_TIMEOUT)
        for reader in server._readers:
            reader.join(5)
    log = server.log
    assert returncode == 1, (returncode, log)
    assert f"tidegate: error: could not bind 127.0.0.1:{port}" in log, log
    assert "in use" in log.lower(), log
    assert "Traceback" not in log
    assert_clean_exit_message(log)


def _listening_urls(server, count):
    server.wait_for_log(r"(?s)(Listening at: .*){%d}" % count)
    return [match.group(1) for match in LISTENING.finditer(server.log)]


def test_two_ipv4_binds_both_serve(server_factory):
    server = server_factory("cli_apps", "--bind", "127.0.0.2:0", bind="127.0.0.1:0")
    urls = _listening_urls(server, 2)
    assert len(urls) == 2, server.log
    seen = set()
    for url in urls:
        host, _, port = url[len("http://"):].rpartition(":")
        response = http_get(host, int(port), "/where")
        assert response.status == 200
        name, server_port, remote = response.body.decode().split(" ")
        assert (name, server_port) == (host, port)
        assert remote.startswith("127.")
        seen.add(host)
    assert seen == {"127.0.0.1", "127.0.0.2"}


def _ipv6_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback")
def test_ipv4_and_ipv6_binds_both_serve(server_factory):
    server = server_factory("cli_apps", "--bind", "[::1]:0", bind="127.0.0.1:0")
    urls = _listening_urls(server, 2)
    assert len(urls) == 2, server.log
    v4 = [u for u in urls if u.startswith("http://127.0.0.1:")]
    v6 = [u for u in urls if u.startswith("http://[::1]:")]
    assert len(v4) == 1 and len(v6) == 1, urls
    port4 = int(v4[0].rpartition(":")[2])
    port6 = int(v6[0].rpartition(":")[2])
    response = http_get("127.0.0.1", port4, "/where")
    assert response.body == f"127.0.0.1 {port4} 127.0.0.1".encode()
    response = http_get("::1", port6, "/where")
    assert response.status == 200
    name, port, remote = response.body.decode().split(" ")
    assert port == str(port6)
    assert remote == "::1"


def test_unix_socket_bind_serves(server_factory, tmp_path):
    path = tmp_path / "tg.sock"
    server = server_factory("cli_apps", bind=f"unix:{path}")
    assert server.url == f"unix:{path}", server.log
    assert path.is_socket()
    for _ in range(2):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reader = conftest.ResponseReader(sock)
            for _ in range(2):  # keep-alive on a unix socket too
                response = reader.read()
                assert response.status == 200
                assert response.body == b"hello from cli_apps.application"


# --- ways to start it -----------------------------------------------------------------------


def test_python_dash_m(server_factory):
    server = server_factory("cli_apps")
    assert server.args[:3] == [sys.executable, "-m", "tidegate"]
    assert get_body(server) == b"hello from cli_apps.application"
    assert re.search(rf"\[INFO\] Listening at: http://127\.0\.0\.1:{server.port} \({server.pid}\)", server.log)


def test_console_script(custom_servers):
    script = Path(sys.executable).parent / "tidegate"
    assert script.exists(), script
    server = custom_servers([str(script), "--bind", "127.0.0.1:0", "cli_apps"])
    assert get_body(server) == b"hello from cli_apps.application"
    assert server.stop() == 0


def test_console_script_version():
    script = Path(sys.executable).parent / "tidegate"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=RUN_TIMEOUT)
    assert result.returncode == 0
    assert result.stdout == f"tidegate {tidegate.__version__}\n"


def test_threads_run_requests_concurrently(server_factory):
    server = server_factory("cli_apps", "--threads", "2")
    assert get_body(server, "/multithread") == b"True"
    results = []

    def call():
        results.append(http_get(server.host, server.port, "/sleep?0.5").status)

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - started
    assert results == [200, 200]
    assert elapsed < 0.95, f"two 0.5 s requests on 2 threads took {elapsed:.2f} s"


def test_single_thread_is_not_multithread(server_factory):
    server = server_factory("cli_apps")
    assert get_body(server, "/multithread") == b"False"


# --- access log -------------------------------------------------------------------------------

ACCESS_LINE = (
    r'(?P<ip>[0-9.]+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)"'
)


def _wait_for_lines(read, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = read().splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def _make_logged_requests(server):
    first = http_get(server.host, server.port, "/?q=1&r=two",
                     "Referer: http://ref.example/page\r\nUser-Agent: test-agent/1.0\r\n")
    assert first.status == 200
    second = http_get(server.host, server.port, "/missing")
    assert second.status == 404
    third = http_get(server.host, server.port, "/sleep?0.2")
    assert third.status == 200


def _check_access_lines(lines):
    assert len(lines) == 3, lines
    parsed = [re.fullmatch(ACCESS_LINE, line) for line in lines]
    assert all(parsed), lines
    first, second, third = parsed
    assert first["ip"] == "127.0.0.1"
    assert first["request"] == "GET /?q=1&r=two HTTP/1.1"
    assert first["status"] == "200"
    assert first["bytes"] == str(len(b"hello from cli_apps.application"))
    assert first["referer"] == "http://ref.example/page"
    assert first["agent"] == "test-agent/1.0"
    assert second["request"] == "GET /missing HTTP/1.1"
    assert second["status"] == "404"
    assert second["bytes"] == str(len(b"not found: /missing"))
    assert second["referer"] == "-" and second["agent"] == "-"
    assert third["request"] == "GET /sleep?0.2 HTTP/1.1"
    assert third["bytes"] == "5"


def test_access_log_to_stdout(server_factory):
    server = server_factory("cli_apps", "--access-log")
    _make_logged_requests(server)
    _check_access_lines(_wait_for_lines(lambda: server.stdout, 3))
    time.sleep(0.1)
    assert len(server.stdout.splitlines()) == 3
    assert '"GET /missing HTTP/1.1"' not in server.log  # not on the error log


def test_access_logfile(server_factory, tmp_path):
    logfile = tmp_path / "access.log"
    server = server_factory("cli_apps", "--access-logfile", str(logfile))
    _make_logged_requests(server)
    _check_access_lines(
        _wait_for_lines(lambda: logfile.read_text() if logfile.exists() else "", 3)
    )
    assert server.stdout == ""


def test_no_access_log_by_default(server_factory):
    server = server_factory("cli_apps")
    _make_logged_requests(server)
    time.sleep(0.2)
    assert server.stdout == ""
    assert "GET /missing HTTP/1.1" not in server.log


# --- log level --------------------------------------------------------------------------------


def test_log_level_warning_hides_info(server_factory):
    port = free_port()
    server = server_factory("cli_apps", "--log-level", "warning", bind=f"127.0.0.1:{port}",
                            wait=False)
    server.port = port
    wait_for_port("127.0.0.1", port, server.process)
    assert get_body(server) == b"hello from cli_apps.application"
    assert get_body(server, "/warn") == b"warned"
    server.wait_for_log(r"\[WARNING\] \[wsgi\.errors\] a line for wsgi\.errors")
    assert "Listening at" not in server.log
    assert "[INFO]" not in server.log
    assert server.stop() == 0


def test_log_level_error_hides_warnings(server_factory):
    port = free_port()
    server = server_factory("cli_apps", "--log-level", "ERROR", bind=f"127.0.0.1:{port}",
                            wait=False)
    server.port = port
    wait_for_port("127.0.0.1", port, server.process)
    assert get_body(server, "/warn") == b"warned"
    time.sleep(0.2)
    assert "wsgi.errors" not in server.log
    assert "[INFO]" not in server.log and "[WARNING]" not in server.log


def test_default_log_level_shows_wsgi_errors(server_factory):
    server = server_factory("cli_apps")
    assert get_body(server, "/warn") == b"warned"
    server.wait_for_log(
        rf"\[\d{{4}}-\d{{2}}-\d{{2}} \d{{2}}:\d{{2}}:\d{{2}} [+-]\d{{4}}\] \[{server.worker_pids()[0]}\] "
        r"\[WARNING\] \[wsgi\.errors\] a line for wsgi\.errors\n"
    )


# --- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_with_exit_0(server_factory, sig):
    server = server_factory("cli_apps")
    assert get_body(server) == b"hello from cli_apps.application"
    assert server.stop(sig) == 0
    assert "Traceback" not in server.log


def test_sigterm_lets_request_in_flight_finish(server_factory):
    """SIGTERM is the graceful stop (SIGINT and SIGQUIT are the quick one)."""
    sig = signal.SIGTERM
    server = server_factory("cli_apps")
    result = {}

    def client():
        try:
            result["response"] = http_get(server.host, server.port, "/sleep?1")
        except Exception as error:  # noqa: BLE001 - reported below
            result["error"] = error

    thread = threading.Thread(target=client)
    thread.start()
    server.wait_for_log(r"\[wsgi\.errors\] sleeping")
    started = time.monotonic()
    returncode = server.stop(sig)
    thread.join(10)
    assert "error" not in result, result
    response = result["response"]
    assert response.status == 200
    assert response.body == b"slept"
    assert returncode == 0, server.log
    assert time.monotonic() - started < 8
    # Stopped means stopped: nothing listens any more.
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=2).close()


def test_sigint_is_a_quick_stop(server_factory):
    """SIGINT does not wait for a request in flight (gunicorn's quick shutdown)."""
    server = server_factory("cli_apps")
    thread = threading.Thread(target=lambda: _ignore_errors(http_get, server.host, server.port, "/sleep?3"))
    thread.start()
    server.wait_for_log(r"\[wsgi\.errors\] sleeping")
    started = time.monotonic()
    assert server.stop(signal.SIGINT) == 0, server.log
    assert time.monotonic() - started < 2.5, "the quick stop waited for the request"
    thread.join(10)
    assert "Shutting down (quick)" in server.log


def _ignore_errors(function, *args):
    try:
        function(*args)
    except Exception:  # noqa: BLE001 - the request is cut on purpose
        pass
