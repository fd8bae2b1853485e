"""The process model (issue 4): supervisor, workers, signals, budgets, hooks, systemd and
nginx. Every test runs real ``tidegate`` processes on loopback under a small, bounded load
(a few client threads doing sequential requests with http.client) and stops only the
processes it started, by PID.

The load clients alternate between two habits: even-numbered ones keep one HTTP/1.1
connection alive across requests (what nginx's upstream keepalive and browsers do), odd
ones open a fresh connection per request. A request "fails" when it raises or answers
anything but 200; there is no retry.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

import conftest
from conftest import APPS_DIR, Server, tidegate_command, wait_until

APP = "process_apps:app"
PROCESS_APPS = APPS_DIR / "process_apps.py"
DOCS_EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
pytestmark = pytest.mark.timeout(45)


# --------------------------------------------------------------------------- helpers


class Result:
    __slots__ = ("client", "start", "end", "status", "body", "error")

    def __init__(self, client, start, end, status=None, body=None, error=None):
        self.client, self.start, self.end = client, start, end
        self.status, self.body, self.error = status, body, error

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    def __repr__(self) -> str:
        what = self.error or f"{self.status} {self.body!r}"
        return f"<client {self.client} {self.start:.3f}-{self.end:.3f} {what}>"


class Load:
    """``clients`` threads doing sequential GETs of ``path`` until :meth:`stop`."""

    def __init__(self, host: str, port: int, path: str = "/", clients: int = 4,
                 timeout: float = 10.0):
        self.host, self.port, self.path, self.timeout = host, port, path, timeout
        self.results: List[Result] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(clients)]
        self.clients = clients

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> List[Result]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.results

    def _run(self, index: int) -> None:
        keepalive = index % 2 == 0
        conn: Optional[http.client.HTTPConnection] = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            start = time.monotonic()
            try:
                headers = {} if keepalive else {"Connection": "close"}
                conn.request("GET", self.path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                self.results.append(Result(index, start, time.monotonic(), response.status, body))
            except Exception as error:  # noqa: BLE001 - every failure is counted
                self.results.append(Result(index, start, time.monotonic(), error=repr(error)))
                conn.close()
                conn = None
                continue
            if not keepalive:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def failures(self) -> List[Result]:
        return [r for r in self.results if not r.ok]

    def successes(self) -> List[Result]:
        return [r for r in self.results if r.ok]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` more requests succeeded."""
        target = len(self.successes()) + count
        deadline = time.monotonic() + timeout
        while len(self.successes()) < target:
            assert time.monotonic() < deadline, f"load stalled: {self.results[-5:]}"
            time.sleep(0.02)


def get(server: Server, path: str = "/", timeout: float = 10.0):
    """One GET on a fresh connection: (status, parsed JSON body or raw bytes)."""
    return get_tcp(server.host, server.port, path, timeout)


def get_tcp(host: str, port: int, path: str = "/", timeout: float = 10.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body


def requests_on_every_worker(server: Server, tag: str, workers: int) -> int:
    """Sends requests with ``tag`` in their targets, each on a fresh connection, until every
    one of ``workers`` workers has answered one; returns how many were sent. Sequential
    connections on a shared listening socket mostly go to the worker that accepted last
    (the kernel wakes the latest waiter), so each round keeps one worker busy with a slow
    request: a worker with no free thread takes no connection, and the next request must go
    to another."""
    pids, sent = set(), 0
    for round_ in range(20):
        slow = {}
        thread = threading.Thread(
            target=lambda: slow.update(get(server, f"/sleep?s=0.4&tag={tag}-slow-{round_}")[1])
        )
        thread.start()
        time.sleep(0.15)  # the slow request is in a worker
        _, body = get(server, f"/{tag}-{round_}")
        thread.join()
        sent += 2
        pids.update({body["pid"], slow["pid"]})
        if len(pids) == workers:
            return sent
    raise AssertionError(f"only workers {sorted(pids)} answered {sent} requests")


def get_unix(path: str, url: str = "/", timeout: float = 10.0):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        response = conftest.read_response(sock)
    return response.status, json.loads(response.body)


def distinct_pids(server: Server, count: int, rounds: int = 20) -> dict:
    """Requests on fresh connections until ``count`` different workers answered:
    {pid: response body}. As in ``requests_on_every_worker``, each round keeps one worker
    busy with a slow request, so the next connection must go to another (sequential
    connections mostly go to the worker that accepted last)."""
    seen = {}
    for _ in range(rounds):
        slow = {}
        thread = threading.Thread(target=lambda: slow.update(body=get(server, "/sleep?s=0.4")))
        thread.start()
        time.sleep(0.15)  # the slow request is in a worker
        status, body = get(server)
        thread.join()
        assert status == 200, body
        assert slow["body"][0] == 200, slow
        for answer in (body, slow["body"][1]):
            seen[answer["pid"]] = answer
        if len(seen) >= count:
            return seen
    raise AssertionError(f"only saw workers {sorted(seen)} in {rounds} rounds")


def children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hang_line() -> int:
    """The line number of ``time.sleep`` in process_apps.hang."""
    for number, line in enumerate(PROCESS_APPS.read_text().splitlines(), 1):
        if "HANG-LINE" in line:
            return number
    raise AssertionError("HANG-LINE marker missing from process_apps.py")


def write_module(path: Path, text: str) -> None:
    """Write a Python module and move its mtime at least 2 s past the previous one, so a
    rewrite within the same second is still seen as a change (by --reload and by the
    .pyc check)."""
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(text)
    mtime = max(time.time(), before + 2)
    os.utime(path, (mtime, mtime))


VERSIONED_APP = '''\
import os, json
VERSION = {version!r}

def app(environ, start_response):
    body = json.dumps({{"version": VERSION, "pid": os.getpid()}}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def env_without_bytecode() -> dict:
    env = conftest.server_env()
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture
def processes():
    """Other processes a test starts (nginx, a wrapped tidegate): killed by PID at the end."""
    started: List[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


# --------------------------------------------------------------------------- issue 4 tests


def test_hup_under_load_switches_to_new_code_without_failures(server_factory, tmp_path):
    versions = ["one", "two, longer", "three, longer still"]
    module = tmp_path / "hup_app.py"
    write_module(module, VERSIONED_APP.format(version=versions[0]))
    server = server_factory("hup_app:app", "-w", "2", "--chdir", str(tmp_path),
                            "--pythonpath", str(tmp_path), env=env_without_bytecode())
    workers = set(server.worker_pids(2))
    first_workers = set(workers)
    reloaded_at = []
    with Load(server.host, server.port, clients=4) as load:
        load.wait_for(40)
        for number, version in enumerate(versions[1:], 1):
            write_module(module, VERSIONED_APP.format(version=version))
            hup_at = time.monotonic()
            os.kill(server.pid, signal.SIGHUP)
            wait_until(lambda: server.log.count("Reload complete") == number, 10,
                       f"reload {number}", lambda: server.log)
            reloaded_at.append((hup_at, time.monotonic()))
            # The old workers drain and exit while the load goes on.
            for pid in workers:
                server.wait_for_log(rf"Worker {pid} exited \(exit status 0\)", timeout=10)
            workers = set(children(server.pid))
            load.wait_for(40)
    results = load.stop()
    assert not load.failures(), f"failed requests during HUP: {load.failures()[:10]}\n{server.log}"
    seen = [(r, versions.index(json.loads(r.body)["version"])) for r in results]
    assert seen[0][1] == 0
    for number, (hup_at, complete_at) in enumerate(reloaded_at, 1):
        # Nothing answered with this code before the HUP; everything started once the
        # reload was complete (plus a margin) runs it or newer.
        assert min(r.end for r, v in seen if v >= number) > hup_at
        stale = [r for r, v in seen if v < number and r.start > complete_at + 0.5]
        assert not stale, (number, stale[:5])
    assert {v for _, v in seen} == {0, 1, 2}
    last_pids = {json.loads(r.body)["pid"] for r, v in seen if v == 2}
    assert not last_pids & first_workers
    assert server.stop() == 0


def test_kill_9_of_one_worker_is_replaced_fast_and_loses_only_its_in_flight_requests(server_factory):
    server = server_factory(APP, "-w", "2")
    victim, survivor = server.worker_pids(2)[:2]
    clients = 4
    with Load(server.host, server.port, path="/sleep?s=0.02", clients=clients) as load:
        load.wait_for(40)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        server.wait_for_log(rf"Worker {victim} exited unexpectedly", timeout=2)
        # The replacement: a new child of the supervisor that says it is ready.
        replacement = wait_until(
            lambda: [p for p in children(server.pid) if p not in (victim, survivor)
                     and f"Worker {p} is ready" in server.log],
            timeout=2, what="a ready replacement worker", log=lambda: server.log)[0]
        ready_after = time.monotonic() - killed_at
        load.wait_for(60)
    load.stop()
    log = server.log
    assert ready_after < 1.0, f"replacement ready {ready_after:.2f}s after kill -9\n{log}"
    assert f"Booting worker with pid: {replacement}" in log
    assert re.search(rf"Worker {victim} exited unexpectedly \(signal 9 \(SIGKILL\)\)", log), log
    failures = load.failures()
    assert len(failures) <= clients, failures
    assert len({f.client for f in failures}) == len(failures), f"a client failed twice: {failures}"
    for failure in failures:
        # In flight on the victim: sent before the kill (or on a connection the victim
        # held), failed right after it.
        assert failure.start < killed_at + 0.1 and failure.end < killed_at + 0.5, (killed_at, failure)
    served_by = {json.loads(r.body)["pid"] for r in load.successes() if r.start > killed_at + 0.5}
    assert victim not in served_by and replacement in served_by


def test_hung_request_is_logged_with_its_stack_answered_504_and_others_served(server_factory):
    server = server_factory(APP, "-w", "2", "--timeout", "2", "--graceful-timeout", "3")
    server.worker_pids(2)
    outcome = {}

    def hung_client():
        start = time.monotonic()
        try:
            outcome["response"] = get(server, "/hang", timeout=15)
        except Exception as error:  # noqa: BLE001
            outcome["response"] = repr(error)
        outcome["after"] = time.monotonic() - start

    started = time.monotonic()
    thread = threading.Thread(target=hung_client)
    thread.start()
    with Load(server.host, server.port, clients=2, timeout=10) as load:
        match = server.wait_for_log(r"WORKER TIMEOUT \(pid (\d+)\)[^\n]*\n(?:[^\[][^\n]*\n)*", timeout=4.5)
        logged_after = time.monotonic() - started
        thread.join(10)
        load.wait_for(30)
    load.stop()
    assert logged_after <= 4.0, f"WORKER TIMEOUT logged after {logged_after:.1f}s"
    entry = match.group(0)
    assert "GET /hang" in entry, entry
    assert re.search(rf'File "[^"]*process_apps\.py", line {hang_line()}, in hang\n\s+time\.sleep\(3600\)', entry), entry
    assert re.search(r'File "[^"]*process_apps\.py", line \d+, in app', entry), entry
    assert outcome["response"][0] == 504, outcome
    assert outcome["after"] < 5, outcome
    stuck = int(match.group(1))
    # The stuck worker is replaced.
    wait_until(lambda: stuck not in children(server.pid) and len(
        [p for p in children(server.pid) if f"Worker {p} is ready" in server.log]) >= 2,
        timeout=6, what="the stuck worker's replacement", log=lambda: server.log)
    assert not load.failures(), f"other requests failed: {load.failures()[:10]}\n{server.log}"
    assert get(server)[0] == 200


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_request_that_hangs_late_on_a_keep_alive_connection_is_answered_504(
        server_factory, threads):
    """A connection's requests share one overdue signal, each with its own number: the
    fourth request of a keep-alive connection that hangs gets the 504, after three that
    were answered on the same connection."""
    server = server_factory(APP, "--timeout", "2", "--threads", threads)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=15)
    try:
        for _ in range(3):
            conn.request("GET", "/sleep?s=0.01")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
        started = time.monotonic()
        conn.request("GET", "/hang")
        response = conn.getresponse()
        response.read()
        took = time.monotonic() - started
    finally:
        conn.close()
    assert response.status == 504
    assert took < 6, f"the 504 came after {took:.1f}s"
    server.wait_for_log(r"WORKER TIMEOUT \(pid \d+\)[^\n]*GET /hang", timeout=5)
    # The worker is replaced and the server goes on serving.
    wait_until(lambda: get(server)[0] == 200, timeout=10, what="a request after the 504")


@pytest.mark.parametrize("threads", ["1", "2"])
def test_io_goes_on_while_the_app_runs_a_slow_request(server_factory, threads):
    """With one Python thread, that thread also drives the I/O between requests; while it
    runs a slow request the standby thread must take the I/O over, so a static file, the
    head of a request queued behind, and the queued request itself (once the slow one ends)
    are all served on time."""
    server = server_factory(APP, "--threads", threads, "--static", f"/files={APPS_DIR}")
    server.worker_pids(1)
    outcome = {}
    # Connections already open: a busy worker accepts no new ones (they are left to other
    # workers), but those it holds must be served.
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/files/process_apps.py")
    conn.getresponse().read()
    queued = http.client.HTTPConnection(server.host, server.port, timeout=10)
    queued.connect()

    def slow():
        outcome["slow"] = get(server, "/sleep?s=1.5", timeout=10)[0]

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)  # the slow request runs
    started = time.monotonic()
    conn.request("GET", "/files/process_apps.py")
    response = conn.getresponse()
    body = response.read()
    static_took = time.monotonic() - started
    conn.close()
    queued.request("GET", "/queued")
    queued_status = queued.getresponse().status
    queued_took = time.monotonic() - started
    queued.close()
    thread.join(10)
    assert response.status == 200 and b"def app" in body, (response.status, body[:100])
    assert static_took < 0.5, f"a static file took {static_took:.2f}s while the app was busy"
    assert outcome["slow"] == 200 and queued_status == 200, outcome
    # The queued request ran right after the slow one (which had ~1.3 s to go).
    assert queued_took < 2.5, f"the queued request took {queued_took:.2f}s"


def test_request_arriving_behind_a_hung_one_is_served_by_the_replacement(server_factory):
    """One worker, one thread: a request that comes in while the only thread is hung must
    not be taken by the hung worker (it would never run); the replacement serves it."""
    server = server_factory(APP, "--timeout", "2", "--graceful-timeout", "3")
    server.worker_pids(1)
    outcome = {}

    def client(path):
        start = time.monotonic()
        try:
            outcome[path] = get(server, path, timeout=15)[0]
        except Exception as error:  # noqa: BLE001
            outcome[path] = repr(error)
        outcome[path + " took"] = round(time.monotonic() - start, 2)

    threads = [threading.Thread(target=client, args=(path,)) for path in ("/hang", "/second")]
    threads[0].start()
    time.sleep(0.5)  # /hang is running
    threads[1].start()
    for thread in threads:
        thread.join(15)
    assert outcome["/hang"] == 504, outcome
    assert outcome["/second"] == 200, f"{outcome}\n{server.log}"
    assert outcome["/second took"] < 4, outcome


def test_term_lets_the_running_request_finish_refuses_new_connections_and_exits_0(server_factory):
    server = server_factory(APP)
    server.worker_pids(1)
    outcome = {}

    def slow_client():
        outcome["response"] = get(server, "/sleep?s=2", timeout=10)

    thread = threading.Thread(target=slow_client)
    thread.start()
    server.wait_for_log(r"Worker \d+ is ready")
    time.sleep(0.5)  # the request is running
    term_at = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    server.wait_for_log(r"Shutting down \(graceful\)", timeout=2)
    time.sleep(0.2)
    # The listening socket is closed: a new connection is refused, not queued for no one.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    thread.join(10)
    assert outcome["response"][0] == 200, outcome
    assert outcome["response"][1]["path"] == "/sleep"
    code = server.process.wait(10)
    assert code == 0, server.log
    assert time.monotonic() - term_at < 5


@pytest.mark.parametrize("threads", [1, 4])
def test_term_closes_idle_keep_alive_connections_at_once(server_factory, threads):
    """An idle keep-alive connection learns of the stop while it waits for its next request
    (each connection keeps one wait on the stop signal for its whole life): the server closes
    it within the short linger and exits, instead of keeping it for the keep-alive time."""
    server = server_factory(APP, "--keep-alive", "30", "--threads", str(threads))
    server.worker_pids(1)
    idle = []
    for _ in range(3):  # several requests each, so the waits are not a connection's first
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        for _ in range(3):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        idle.append(conn)
    term_at = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    for conn in idle:
        conn.sock.settimeout(10)
        assert conn.sock.recv(1) == b"", "the server should close an idle connection"
    closed_after = time.monotonic() - term_at
    assert server.process.wait(10) == 0, server.log
    assert closed_after < 5, f"idle connections closed {closed_after:.1f}s after SIGTERM"
    for conn in idle:
        conn.close()


def test_max_requests_with_jitter_recycles_workers_without_failures(server_factory):
    server = server_factory(APP, "-w", "2", "--max-requests", "50", "--max-requests-jitter", "10")
    server.worker_pids(2)
    with Load(server.host, server.port, clients=4) as load:
        # Many retirements: each is a chance for a keep-alive client to send its next
        # request just as the retiring worker closes the connection.
        wait_until(lambda: len(re.findall(r"retiring: served \d+ requests", server.log)) >= 40,
                   timeout=20, what="40 retirements", log=lambda: server.log)
        load.wait_for(20)
    load.stop()
    assert not load.failures(), f"failed requests: {load.failures()[:10]}\n{server.log}"
    counts = [int(n) for n in re.findall(r"retiring: served (\d+) requests", server.log)]
    assert all(50 <= n <= 60 for n in counts), counts
    pids = {json.loads(r.body)["pid"] for r in load.results}
    assert len(pids) >= 10


def socket_activate_binary() -> str:
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed (Debian package systemd; "
                    "run make system-deps as root)")
    return activate


def socket_activated(activate: str, address: str, tidegate_args: List[str], env: dict,
                     cwd: Path = APPS_DIR) -> Server:
    """``systemd-socket-activate -l ADDRESS python -m tidegate ARGS``; it passes on only
    the variables named with -E."""
    command = [activate, "-l", address]
    for name in ("PATH", "PYTHONPATH", "PYTHONUNBUFFERED", "NOTIFY_SOCKET"):
        if name in env:
            command += ["-E", f"{name}={env[name]}"]
    return Server(command + tidegate_command(*tidegate_args), cwd, env)


def test_systemd_socket_activation(processes):
    activate = socket_activate_binary()
    port = free_port()
    server = socket_activated(activate, f"127.0.0.1:{port}", ["-w", "2", APP], conftest.server_env())
    processes.append(server.process)
    server.wait_for_log(rf"Listening on 127\.0\.0\.1:{port} as 3")
    # Like systemd, systemd-socket-activate starts the service on the first connection:
    # that very request must be served.
    status, body = get_tcp("127.0.0.1", port, "/first", timeout=15)
    assert (status, body["path"]) == (200, "/first")
    server.wait_listening()
    server.worker_pids(2)
    log = server.log.split("Execing", 1)[1]
    # It serves on the socket it was given and opened none of its own (the default bind
    # is 127.0.0.1:8000), and says so.
    listening = re.findall(r"Listening at: (.*)", log)
    assert len(listening) == 1 and f"http://127.0.0.1:{port}" in listening[0], log
    assert get(server)[0] == 200
    assert re.search(r"socket activation", log, re.I), f"the log does not say socket activation:\n{log}"
    assert server.stop() == 0, server.log


def unit_setting(path: Path, key: str) -> str:
    values = re.findall(rf"^{key}=(.*)$", path.read_text(), re.M)
    assert len(values) == 1, f"{key}= in {path}: {values}"
    return values[0].strip()


def test_systemd_units_of_the_guide(tmp_path, processes):
    """docs/examples/tidegate@.socket + tidegate@.service (instance app1), run by
    systemd-socket-activate: the socket is a unix socket, the service is Type=notify."""
    activate = socket_activate_binary()
    socket_unit, service_unit = DOCS_EXAMPLES / "tidegate@.socket", DOCS_EXAMPLES / "tidegate@.service"
    listen = unit_setting(socket_unit, "ListenStream").replace("%i", "app1")
    assert listen == "/run/tidegate/app1.sock", "nginx-tidegate.conf expects this path"
    sock = tmp_path / "app1.sock"
    assert unit_setting(service_unit, "Type") == "notify"
    assert unit_setting(service_unit, "KillMode") == "mixed"
    exec_start = unit_setting(service_unit, "ExecStart").split()
    assert exec_start[0].endswith("/tidegate") and exec_start[-1] == "myproject.wsgi:application"
    options = exec_start[1:-1]
    graceful = float(options[options.index("--graceful-timeout") + 1])
    stop_timeout = float(unit_setting(service_unit, "TimeoutStopSec"))
    assert stop_timeout > graceful + 1, "systemd would kill tidegate before its graceful stop ends"

    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(10)
        env = conftest.server_env()
        env["NOTIFY_SOCKET"] = str(notify_path)
        server = socket_activated(activate, str(sock), options + [APP], env)
        processes.append(server.process)
        server.wait_for_log(rf"Listening on {re.escape(str(sock))} as 3")
        status, body = get_unix(str(sock), "/first", timeout=15)
        assert (status, body["path"]) == (200, "/first")
        assert notify.recv(4096).decode().split("\n") == ["READY=1", f"MAINPID={server.pid}"]
        server.wait_listening()
        server.worker_pids(4)
        assert f"unix:{sock}" in server.log and "socket activation" in server.log, server.log
        for _ in range(8):
            status, body = get_unix(str(sock))
            assert status == 200 and body["multiprocess"] and body["multithread"]
        # ExecReload
        os.kill(server.pid, signal.SIGHUP)
        assert notify.recv(4096).decode() == "RELOADING=1"
        assert notify.recv(4096).decode() == "READY=1"
        assert get_unix(str(sock))[0] == 200
        assert server.stop() == 0, server.log
        assert notify.recv(4096).decode() == "STOPPING=1"
    assert sock.exists(), "the socket file belongs to systemd: tidegate must not remove it"
    # --access-logfile - : the access log went to standard output (the journal).
    assert '"GET /first HTTP/1.1" 200' in server.stdout


KUBERNETES = DOCS_EXAMPLES / "kubernetes.yaml"


def test_kubernetes_deployment_of_the_guide(server_factory):
    text = KUBERNETES.read_text()
    (args,) = re.findall(r"^\s+args: (\[.*\])$", text, re.M)
    args = json.loads(args)
    assert re.findall(r'^\s+command: (\[.*\])$', text, re.M)[0] == '["tidegate"]'
    grace_period = int(re.search(r"terminationGracePeriodSeconds: (\d+)", text).group(1))
    pre_stop = json.loads(re.search(r"preStop:\s+exec:\s+command: (\[.*\])", text).group(1))
    assert pre_stop[0] == "sleep"
    graceful = float(args[args.index("--graceful-timeout") + 1])
    # Kubernetes counts preStop in the grace period; tidegate kills stragglers at +1 s.
    assert grace_period >= float(pre_stop[1]) + graceful + 1
    readiness = re.search(r"readinessProbe:\s+httpGet:\s+path: (\S+)\s+port: http", text).group(1)
    port = int(re.search(r"containerPort: (\d+)", text).group(1))
    bind = args.index("--bind")
    assert args[bind + 1] == f"0.0.0.0:{port}"
    assert args[-1] == "myproject.wsgi:application"
    # The container's command line, on loopback with the test's app.
    options = args[:bind] + args[bind + 2:-1]
    server = server_factory(APP, *options)
    workers = int(args[args.index("--workers") + 1])
    server.worker_pids(workers)
    status, body = get(server, readiness)
    assert status == 200 and body["path"] == readiness
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(r=get(server, "/sleep?s=1")))
    thread.start()
    time.sleep(0.3)
    os.kill(server.pid, signal.SIGTERM)  # what the kubelet sends after preStop
    thread.join(10)
    assert outcome["r"][0] == 200
    assert server.process.wait(10) == 0
    assert '"GET /sleep?s=1 HTTP/1.1" 200' in server.stdout


NGINX_SITE = DOCS_EXAMPLES / "nginx-tidegate.conf"


def render_nginx_site(tmp_path: Path, port: int) -> str:
    """docs/examples/nginx-tidegate.conf with its production paths and port swapped for
    the test's (each must be present, so the documented file is the one tested)."""
    text = NGINX_SITE.read_text()
    for old, new in (("/run/tidegate/", f"{tmp_path}/"), ("listen 80;", f"listen 127.0.0.1:{port};")):
        assert old in text, f"{old!r} missing from {NGINX_SITE}"
        text = text.replace(old, new)
    return text


def test_two_instances_behind_nginx_reload_and_restart_without_failures(server_factory, tmp_path, processes):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx is not installed (Debian package nginx; make system-deps)")
    port = free_port()
    (tmp_path / "site.conf").write_text(render_nginx_site(tmp_path, port))
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}worker_processes 1;\nerror_log {tmp_path}/error.log info;\npid {tmp_path}/nginx.pid;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"  access_log off;\n"
        + "".join(f"  {kind}_temp_path {tmp_path}/{kind}_temp;\n"
                  for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {tmp_path}/site.conf;\n}}\n")
    sock_a, sock_b = tmp_path / "app1.sock", tmp_path / "app2.sock"
    a = server_factory(APP, "-w", "2", bind=f"unix:{sock_a}")
    b = server_factory(APP, "-w", "2", bind=f"unix:{sock_b}")
    a.worker_pids(2)
    b.worker_pids(2)
    proxy = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
         "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    processes.append(proxy)

    def nginx_up():
        assert proxy.poll() is None, proxy.stderr.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_until(nginx_up, timeout=10, what="nginx")
    with Load("127.0.0.1", port, path="/sleep?s=0.005", clients=4) as load:
        load.wait_for(40)
        # A: graceful reload.
        os.kill(a.pid, signal.SIGHUP)
        a.wait_for_log(r"Reload complete", timeout=10)
        load.wait_for(40)
        # B: stopped, then started again on the same socket.
        assert b.stop(signal.SIGTERM) == 0, b.log
        assert not sock_b.exists()
        load.wait_for(40)
        b2 = server_factory(APP, "-w", "2", bind=f"unix:{sock_b}")
        b2.worker_pids(2)
        load.wait_for(40)
        b2_pids = set(b2.worker_pids(2))
        wait_until(lambda: any(json.loads(r.body)["pid"] in b2_pids for r in load.successes()),
                   timeout=10, what="the restarted instance to serve through nginx")
    load.stop()
    assert not load.failures(), (
        f"failed requests through nginx: {load.failures()[:10]}\n"
        f"nginx error.log:\n{(tmp_path / 'error.log').read_text()[-3000:]}\n"
        f"A:\n{a.log}\nB:\n{b.log}")


# --------------------------------------------------------------------------- more signals and options


def test_ttin_adds_and_ttou_removes_a_worker(server_factory):
    server = server_factory(APP, "-w", "2")
    server.worker_pids(2)
    os.kill(server.pid, signal.SIGTTIN)
    server.worker_pids(3)
    server.wait_for_log(r"Handling signal SIGTTIN: 3 workers")
    wait_until(lambda: len(children(server.pid)) == 3, 5, "3 workers", lambda: server.log)
    os.kill(server.pid, signal.SIGTTOU)
    server.wait_for_log(r"Handling signal SIGTTOU: 2 workers")
    wait_until(lambda: len(children(server.pid)) == 2, 5, "2 workers", lambda: server.log)
    os.kill(server.pid, signal.SIGTTOU)
    server.wait_for_log(r"Handling signal SIGTTOU: 1 workers")
    wait_until(lambda: len(children(server.pid)) == 1, 5, "1 worker", lambda: server.log)
    time.sleep(0.5)  # and it stays at one
    assert len(children(server.pid)) == 1
    assert get(server)[0] == 200


def test_usr1_reopens_the_access_log(server_factory, tmp_path):
    access = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    server = server_factory(APP, "-w", "2", "--access-logfile", str(access))
    workers = set(server.worker_pids(2))
    assert requests_on_every_worker(server, "before", 2) > 0
    wait_until(lambda: access.exists() and "before-" in access.read_text(), 5, "access log lines")
    os.rename(access, rotated)
    os.kill(server.pid, signal.SIGUSR1)
    server.wait_for_log(r"Handling signal SIGUSR1")
    time.sleep(0.5)  # workers look at the request every 50 ms
    sent = requests_on_every_worker(server, "after", 2)
    wait_until(lambda: access.exists() and access.read_text().count("after-") == sent,
               5, "every 'after' request in the new access log",
               lambda: f"new: {access.read_text() if access.exists() else None}\nold: {rotated.read_text()}")
    assert "after-" not in rotated.read_text()
    assert "before-" not in access.read_text()
    assert set(server.worker_pids(2)) == workers  # the same workers reopened their files


def test_pid_file_is_written_and_removed_at_exit(server_factory, tmp_path):
    pid_file = tmp_path / "tidegate.pid"
    server = server_factory(APP, "-w", "2", "--pid", str(pid_file))
    server.worker_pids(2)
    assert pid_file.read_text().strip() == str(server.pid)
    assert server.stop() == 0
    assert not pid_file.exists()


def test_umask_007_makes_the_unix_socket_0770(server_factory, tmp_path):
    path = tmp_path / "app.sock"
    server_factory(APP, "--umask", "007", bind=f"unix:{path}").worker_pids(1)
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o770, oct(stat.S_IMODE(mode))
    status, body = get_unix(str(path))
    assert status == 200
    # --umask is for the socket file only: the supervisor's own umask is unchanged.
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) != 0


def test_preload_imports_once_in_the_supervisor(server_factory):
    server = server_factory(APP, "-w", "2", "--preload")
    server.worker_pids(2)
    for pid, body in distinct_pids(server, 2).items():
        assert pid != server.pid
        assert body["import_pid"] == server.pid, body


def test_without_preload_each_worker_imports(server_factory):
    server = server_factory(APP, "-w", "2")
    server.worker_pids(2)
    for pid, body in distinct_pids(server, 2).items():
        assert body["import_pid"] == pid, body


@pytest.mark.parametrize("workers, threads, multiprocess, multithread",
                         [("1", "1", False, False), ("2", "1", True, False), ("2", "2", True, True)])
def test_wsgi_multiprocess_and_multithread_tell_the_truth(server_factory, workers, threads,
                                                         multiprocess, multithread):
    server = server_factory(APP, "-w", workers, "--threads", threads)
    server.worker_pids(int(workers))
    status, body = get(server)
    assert (body["multiprocess"], body["multithread"]) == (multiprocess, multithread)


HOOKS = '''\
import os

EVENTS = {events!r}

def _log(*words):
    with open(EVENTS, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\\n")

def post_fork(worker):
    _log("post_fork", os.getpid(), worker.pid, worker.age)

def pre_request(worker, environ):
    _log("pre_request", os.getpid(), worker.pid, environ["PATH_INFO"])

def post_request(worker, environ, status):
    _log("post_request", os.getpid(), worker.pid, environ["PATH_INFO"], status)

def worker_exit(worker):
    _log("worker_exit", os.getpid(), worker.pid)
'''

HOOKED_APP = '''\
import os
from hooks_file import _log  # noqa: E402 - the events file is shared

_log("import", os.getpid())

def app(environ, start_response):
    _log("app", os.getpid(), environ["PATH_INFO"])
    start_response("201 Created", [("Content-Length", "2")])
    return [b"ok"]
'''


def test_hooks_are_called_with_gunicorns_meanings(server_factory, tmp_path):
    events = tmp_path / "events.txt"
    hooks = tmp_path / "hooks_file.py"
    hooks.write_text(HOOKS.format(events=str(events)))
    (tmp_path / "hooked_app.py").write_text(HOOKED_APP)
    server = server_factory("hooked_app:app", "--hooks", str(hooks), "--chdir", str(tmp_path))
    (worker,) = server.worker_pids(1)
    status, _ = get(server, "/one")
    assert status == 201
    assert server.stop() == 0
    lines = [line.split() for line in events.read_text().splitlines()]
    w = str(worker)
    assert lines == [
        # post_fork: in the new worker, before it loads the app.
        ["post_fork", w, w, "1"],
        ["import", w],
        # pre_request before the app, post_request after the response, with its status code.
        ["pre_request", w, w, "/one"],
        ["app", w, "/one"],
        ["post_request", w, w, "/one", "201"],  # the status code sent
        # worker_exit: in the worker, once it stopped serving.
        ["worker_exit", w, w],
    ], events.read_text()


def test_max_rss_retires_the_worker(server_factory):
    server = server_factory(APP, "--max-rss", "1")
    (first,) = server.worker_pids(1)
    server.wait_for_log(rf"Worker {first} retiring: resident memory \d+ MiB is over --max-rss 1 MiB")
    server.wait_for_log(rf"Worker {first} exited \(exit status 0\)")
    wait_until(lambda: [p for p in children(server.pid) if p != first and f"Worker {p} is ready" in server.log],
               5, "a replacement", lambda: server.log)
    assert get(server)[0] == 200


def test_reload_restarts_workers_when_the_app_file_changes(server_factory, tmp_path):
    module = tmp_path / "reload_app.py"
    write_module(module, VERSIONED_APP.format(version="one"))
    server = server_factory("reload_app:app", "--reload", "--chdir", str(tmp_path),
                            env=env_without_bytecode())
    (first,) = server.worker_pids(1)
    assert get(server)[1]["version"] == "one"
    time.sleep(1.2)  # the watcher takes its first snapshot
    write_module(module, VERSIONED_APP.format(version="two, longer"))
    server.wait_for_log(r"reload_app\.py changed \(--reload\)", timeout=5)
    body = wait_until(lambda: (lambda b: b if b["version"] != "one" else None)(get(server)[1]),
                      5, "the new code", lambda: server.log)
    assert body["version"] == "two, longer" and body["pid"] != first


CRASHING_HOOKS = '''\
import os

COUNTER = {counter!r}

def post_fork(worker):
    with open(COUNTER, "a") as f:
        f.write("x")
    with open(COUNTER) as f:
        if len(f.read()) <= 2:
            os._exit(1)
'''


def test_worker_crashing_at_start_is_restarted_with_back_off(server_factory, tmp_path):
    hooks = tmp_path / "crash_hooks.py"
    hooks.write_text(CRASHING_HOOKS.format(counter=str(tmp_path / "starts")))
    server = server_factory(APP, "--hooks", str(hooks))
    first = server.wait_for_log(
        r"Worker (\d+) exited while starting \(exit status 1\); 1 failure in a row, next start in 1s")
    t1 = time.monotonic()
    second = server.wait_for_log(
        r"Worker (\d+) exited while starting \(exit status 1\); 2 failures in a row, next start in 2s",
        timeout=5)
    t2 = time.monotonic()
    assert t2 - t1 >= 0.8, "no back-off after the first failure"
    assert first.group(1) != second.group(1)
    (worker,) = server.worker_pids(1, timeout=6)
    assert time.monotonic() - t2 >= 1.8, "no back-off after the second failure"
    assert get(server)[0] == 200
    assert (tmp_path / "starts").read_text() == "xxx"


SLOW_START_APP = '''\
import time
time.sleep(1)  # a slow import: READY must wait for it

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
'''


def test_sd_notify_ready_and_stopping(server_factory, tmp_path):
    (tmp_path / "slow_start.py").write_text(SLOW_START_APP)
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(10)
        env = conftest.server_env()
        env["NOTIFY_SOCKET"] = str(path)
        started = time.monotonic()
        server = server_factory("slow_start:app", "-w", "2", "--chdir", str(tmp_path), env=env)
        message = notify.recv(4096).decode()
        # READY only once the workers serve (they take 1 s to import the app).
        assert time.monotonic() - started >= 1.0
        assert message.split("\n") == ["READY=1", f"MAINPID={server.pid}"], message
        server.worker_pids(2, timeout=1)
        assert get(server)[0] == 200
        os.kill(server.pid, signal.SIGTERM)
        assert notify.recv(4096).decode() == "STOPPING=1"
        assert server.process.wait(10) == 0


@pytest.mark.parametrize("example", ["tidegate@.socket", "tidegate@.service", "nginx-tidegate.conf",
                                     "kubernetes.yaml"])
def test_the_guide_shows_the_tested_examples(example):
    """docs/deployment.md shows each file of docs/examples/ as it is (the tests run those)."""
    guide = (DOCS_EXAMPLES.parent / "deployment.md").read_text()
    assert (DOCS_EXAMPLES / example).read_text() in guide, f"docs/deployment.md does not show {example} as it is"
