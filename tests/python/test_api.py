"""The Python API: ``tidegate.serve(app, bind=[...], threads=N)`` run from a script."""

import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import conftest
from conftest import Server, read_response

import tidegate

SCRIPT = textwrap.dedent(
    '''
    import sys
    import tidegate


    def app(environ, start_response):
        body = repr((environ["wsgi.multithread"], environ["PATH_INFO"],
                     environ["SERVER_PORT"])).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]


    if __name__ == "__main__":
        bind = sys.argv[1]
        access = sys.argv[2] == "access" if len(sys.argv) > 2 else False
        try:
            tidegate.serve(app, bind=[bind], threads=2, access_log=access)
        except KeyboardInterrupt:
            print("serve ended with KeyboardInterrupt", flush=True)
            sys.exit(0)
        print("serve returned", flush=True)
    '''
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return read_response(sock)


@pytest.fixture
def script_server(tmp_path):
    started = []
    path = tmp_path / "serve_script.py"
    path.write_text(SCRIPT)

    def start(*args):
        server = Server([sys.executable, str(path), *args], tmp_path, conftest.server_env())
        started.append(server)
        return server.wait_listening()

    yield start
    for server in started:
        server.stop(signal.SIGINT)
        assert "panicked" not in server.log, server.log


def test_serve_from_a_script(script_server):
    port = free_port()
    server = script_server(f"127.0.0.1:{port}")
    assert server.port == port
    for path in ("/", "/a/b"):
        response = get(port, path)
        assert response.status == 200
        assert response.body == repr((True, path, str(port))).encode()
    assert server.stop(signal.SIGINT) == 0, server.log
    assert "serve ended with KeyboardInterrupt" in server.stdout
    assert "serve returned" not in server.stdout


def test_serve_with_access_log(script_server):
    server = script_server("127.0.0.1:0", "access")
    response = get(server.port, "/logged")
    assert response.status == 200
    lines = []
    for _ in range(250):
        lines = [line for line in server.stdout.splitlines() if '"GET /logged HTTP/1.1"' in line]
        if lines:
            break
        time.sleep(0.02)
    assert len(lines) == 1, server.stdout
    assert lines[0].startswith("127.0.0.1 - - [")
    assert '"GET /logged HTTP/1.1" 200 ' in lines[0]


BAD_CALLS = {
    "threads=0": ("ValueError", "tidegate.serve(app, bind=['127.0.0.1:0'], threads=0)"),
    "threads=-2": ("ValueError", "tidegate.serve(app, bind=['127.0.0.1:0'], threads=-2)"),
    "threads=True": ("ValueError", "tidegate.serve(app, bind=['127.0.0.1:0'], threads=True)"),
    "threads='2'": ("ValueError", "tidegate.serve(app, bind=['127.0.0.1:0'], threads='2')"),
    "threads=1.5": ("ValueError", "tidegate.serve(app, bind=['127.0.0.1:0'], threads=1.5)"),
    "bind=[]": ("ValueError", "tidegate.serve(app, bind=[], threads=1)"),
    "bind=()": ("ValueError", "tidegate.serve(app, bind=(), threads=1)"),
    "bind=nonsense": ("ValueError", "tidegate.serve(app, bind=['127.0.0.1:notaport'])"),
    "log_level": ("ValueError", "tidegate.serve(app, bind=['127.0.0.1:0'], log_level='loud')"),
    "app=42": ("TypeError", "tidegate.serve(42, bind=['127.0.0.1:0'])"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_arguments_raise_before_serving(tmp_path, case):
    expected, call = BAD_CALLS[case]
    script = tmp_path / "bad_call.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import signal
            import tidegate

            signal.alarm(10)  # if serve() starts serving instead of raising, die


            def app(environ, start_response):
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"x"]


            try:
                {call}
            except Exception as error:
                print("raised", type(error).__name__, error)
            else:
                print("returned")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=20,
        env=conftest.server_env(), cwd=str(tmp_path),
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.startswith(f"raised {expected} "), (result.stdout, result.stderr)
    assert "Listening at" not in result.stderr


def test_public_names():
    assert isinstance(tidegate.__version__, str)
    assert issubclass(tidegate.ClientDisconnected, OSError)
    assert callable(tidegate.serve)
    assert tidegate.FileWrapper is not None
    assert set(tidegate.__all__) >= {"serve", "ClientDisconnected", "FileWrapper", "__version__"}
