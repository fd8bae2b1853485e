#!/usr/bin/env python3
"""Soak run (issue 5): 1,000,000 requests of mixed kinds against one worker.

GET, POST with a Content-Length body, POST with a chunked body, a streamed response, a
64 KiB response and an app error (500), sent by wrk over keep-alive connections, while a
thread keeps opening connections that disconnect mid-request, mid-upload or before
reading the response. The worker's RSS after the first 100,000 requests is compared with
its RSS at the end (must stay within 10%), and its open file descriptors when idle must
not grow. Loopback only; bounded by a time limit; stops by itself.

    python bench/soak.py [--requests 1000000] [--python .venv/bin/python]
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker_pid(supervisor):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            children = open(f"/proc/{supervisor}/task/{supervisor}/children").read().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise SystemExit("no worker process appeared")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def run_wrk(port, seconds, connections):
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(HERE / "soak.lua"),
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True,
    )
    out = result.stdout
    found = re.search(r"(\d+) requests in", out)
    if not found:
        raise SystemExit(f"wrk failed (status {result.returncode}):\n{out}\n{result.stderr}")
    errors = re.search(r"Socket errors: (.*)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    detail = errors.group(1) if errors else "none"
    if non_2xx:
        detail += f"; non-2xx: {non_2xx.group(1)}"
    return int(found.group(1)), detail, out


def disconnecter(port, stop, counter):
    """Connections that go away at awkward moments."""
    shapes = [
        b"GET /hello HTTP/1.1\r\nHo",  # mid-head
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000,  # mid-upload
        b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n",  # before reading the response
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    i = 0
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(shapes[i % len(shapes)])
                if i % 8 == 0:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        i += 1
        counter[0] = i
        time.sleep(0.002)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--python", default=str(HERE.parent / ".venv" / "bin" / "python"))
    parser.add_argument("--time-limit", type=float, default=600, help="seconds, then stop anyway")
    args = parser.parse_args()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The error log goes to a file: a pipe nobody reads would fill up and stall the server.
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen(
        [args.python, "-m", "tidegate", "--bind", f"127.0.0.1:{port}", "--log-level", "error",
         "--chdir", str(HERE), "soak_app:app"],
        stdout=subprocess.DEVNULL, stderr=log, text=True,
    )
    started = time.monotonic()
    try:
        worker = worker_pid(server.pid)
        run_wrk(port, 2, args.connections)  # warm-up
        stop = threading.Event()
        counter = [0]
        thread = threading.Thread(target=disconnecter, args=(port, stop, counter), daemon=True)
        thread.start()
        done, marks = 0, {}
        while done < args.requests and time.monotonic() - started < args.time_limit:
            target = 100_000 if done < 100_000 else args.requests
            requests, errors, _ = run_wrk(port, 5, args.connections)
            done += requests
            if done >= 100_000 and "first" not in marks:
                time.sleep(1.5)  # let the closed connections go
                marks["first"] = (done, rss_kib(worker), fd_count(worker))
            print(f"{done:>9,} requests, worker RSS {rss_kib(worker) / 1024:.1f} MiB, "
                  f"{fd_count(worker)} fds, wrk socket errors: {errors}, disconnects: {counter[0]:,}",
                  flush=True)
        stop.set()
        thread.join(5)
        time.sleep(6)  # past --keep-alive: idle connections are gone
        end = (done, rss_kib(worker), fd_count(worker))
        first = marks["first"]
        growth = (end[1] - first[1]) / first[1]
        print()
        print(f"requests: {done:,} (+ {counter[0]:,} disconnecting clients) in {time.monotonic() - started:.0f} s")
        print(f"worker RSS after {first[0]:,}: {first[1] / 1024:.1f} MiB; at the end: {end[1] / 1024:.1f} MiB "
              f"({growth:+.1%}, limit +10%)")
        print(f"worker fds after {first[0]:,}: {first[2]}; at the end: {end[2]}")
        ok = done >= args.requests and growth <= 0.10 and end[2] <= first[2]
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.seek(0)
        errors = log.read()
        panics = [line for line in errors.splitlines() if "panicked" in line]
        if panics:
            print("server panicked:", *panics, sep="\n")


if __name__ == "__main__":
    sys.exit(main())
