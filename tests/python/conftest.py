"""Test harness: start the real ``tidegate`` command on a free loopback port.

``start_server("module:attr", *options)`` runs ``python -m tidegate --bind 127.0.0.1:0``
with the apps folder as working directory, waits for the ``Listening at:`` line, and
returns a :class:`Server` with the port and the collected error log. The fixture
``server_factory`` stops every server it started (by PID) at the end of the test and,
unless the test says otherwise, fails the test if the log shows a validator assertion or
a Rust panic.

``serve_app`` is parametrised twice for well-behaved apps: once raw and once wrapped in
``wsgiref.validate.validator`` (see ``apps/validated.py``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

APPS_DIR = Path(__file__).parent / "apps"
LISTENING = re.compile(r"Listening at: ((?:https?|fastcgi|uwsgi)://\S+?|unix:\S+)(?:\s|$)")
START_TIMEOUT = 20.0


class Server:
    """A running ``tidegate`` process started by the tests."""

    def __init__(self, args: List[str], cwd: Path, env: dict):
        self.args = args
        self.process = subprocess.Popen(
            args,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.pid = self.process.pid
        self._stderr: List[str] = []
        self._stdout: List[str] = []
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._clients: List[socket.socket] = []
        self.url: Optional[str] = None
        self.host = "127.0.0.1"
        self.port: Optional[int] = None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stdout, self._stdout, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream, lines: List[str], watch: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._lock:
                lines.append(line)
            if watch and self.url is None:
                match = LISTENING.search(line)
                if match:
                    self.url = match.group(1)
                    if "://" in self.url:
                        hostport = self.url.split("://", 1)[1]
                        host, _, port = hostport.rpartition(":")
                        self.host = host.strip("[]")
                        self.port = int(port)
                    self._listening.set()
        stream.close()

    def wait_listening(self, timeout: float = START_TIMEOUT) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._listening.wait(0.05):
                return self
            if self.process.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"tidegate did not start: {self.args}\n--- log ---\n{self.log}")

    @property
    def log(self) -> str:
        """Everything the server wrote to stderr so far (the error log)."""
        with self._lock:
            return "".join(self._stderr)

    @property
    def stdout(self) -> str:
        """Everything the server wrote to stdout so far (the access log goes there)."""
        with self._lock:
            return "".join(self._stdout)

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match:
        """Wait until the error log matches ``pattern`` (a regex) and return the match."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"log never matched {pattern!r}:\n{self.log}")
            time.sleep(0.02)

    def worker_pids(self, count: int = 1, timeout: float = 10.0) -> List[int]:
        """PIDs of the worker processes (the supervisor's children), once there are at
        least ``count`` of them and each has said it is ready."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(f"/proc/{self.pid}/task/{self.pid}/children") as children:
                    pids = [int(pid) for pid in children.read().split()]
            except OSError:
                pids = []
            ready = [pid for pid in pids if f"Worker {pid} is ready" in self.log]
            if len(ready) >= count:
                return ready
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} ready worker(s), have {ready}:\n{self.log}")
            time.sleep(0.02)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A raw TCP connection to the server (closed by :meth:`stop` if still open:
        an unclosed socket is a ResourceWarning, and warnings are errors)."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._clients.append(sock)
        return sock

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server (by its PID) and wait for it; kill it if it does not exit."""
        for sock in self._clients:
            sock.close()
        self._clients.clear()
        if self.process.poll() is None:
            os.kill(self.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout)
        for reader in self._readers:
            reader.join(2)
        return self.process.returncode


def tidegate_command(*args: str) -> List[str]:
    """The command line that runs tidegate from the installed package."""
    return [sys.executable, "-m", "tidegate", *args]


def server_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # Tests must not depend on the developer's PYTHONPATH tricks beyond the apps folder.
    env["PYTHONPATH"] = str(APPS_DIR)
    return env


@pytest.fixture
def server_factory(request) -> Callable[..., Server]:
    """Start tidegate servers; all are stopped after the test and their logs checked."""
    started: List[Server] = []

    def start(app: str, *options: str, bind: str = "127.0.0.1:0", cwd: Path = APPS_DIR,
              wait: bool = True, env: Optional[dict] = None) -> Server:
        args = tidegate_command("--bind", bind, *options, app) if bind else tidegate_command(*options, app)
        server = Server(args, cwd, env or server_env())
        started.append(server)
        if wait:
            server.wait_listening()
        return server

    yield start

    allow = request.node.get_closest_marker("allow_log")
    for server in started:
        server.stop()
        log = server.log
        assert "panicked" not in log, f"Rust panic in server log:\n{log}"
        if allow is None:
            assert "AssertionError" not in log, f"wsgiref.validate assertion in server log:\n{log}"


@pytest.fixture(params=["raw", "validated"])
def serve_app(request, server_factory) -> Callable[..., Server]:
    """Start a well-behaved app twice: raw, and wrapped in wsgiref.validate.validator."""

    def start(app: str, *options: str, **kwargs) -> Server:
        if request.param == "validated":
            app = f"validated:wrap({app!r})"
        return server_factory(app, *options, **kwargs)

    start.validated = request.param == "validated"  # type: ignore[attr-defined]
    return start


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "allow_log: the test expects AssertionError text in the server log"
    )


def wait_until(predicate: Callable[[], object], timeout: float, what: str, log: object = "") -> object:
    """Polls ``predicate`` until it returns something true (and returns that), or fails after
    ``timeout`` seconds naming ``what``, with ``log`` (a string, or a callable giving one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log() if callable(log) else log}")
        time.sleep(0.02)


def http_request(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)


def read_until_close(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read everything until the server closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class ResponseReader:
    """Read successive HTTP/1.x responses from one raw socket with http.client's parser.

    One buffered file is shared across responses, so pipelined responses that arrive in
    one packet are not lost between calls.
    """

    def __init__(self, sock: socket.socket, timeout: float = 10.0):
        sock.settimeout(timeout)
        self.file = _Unclosable(sock.makefile("rb"))

    def makefile(self, *args, **kwargs):  # http.client.HTTPResponse asks its "socket" for this
        return self.file

    def read(self, method: str = "GET"):
        """The next response, with its body read into ``.body``."""
        import http.client

        response = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        response.begin()
        response.body = response.read()  # type: ignore[attr-defined]
        return response


class _Unclosable:
    """A buffered file that http.client may "close" after each response without losing
    the bytes of the next pipelined response."""

    def __init__(self, file):
        self._file = file

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self._file, name)


def read_response(sock: socket.socket, method: str = "GET", timeout: float = 10.0):
    """Read one response from a raw socket (use :class:`ResponseReader` for several)."""
    return ResponseReader(sock, timeout).read(method)
