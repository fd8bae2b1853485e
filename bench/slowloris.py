#!/usr/bin/env python3
"""Slowloris run (issue 5): 1,000 connections trickle their request heads, one byte every
100 ms, for 20 s, while a normal client sends sequential requests; its p99 latency must
stay under 100 ms. One worker, default settings except --header-timeout 30 (so the
trickling connections are not cut before the 20 s are over). Loopback only; bounded.

    python bench/slowloris.py [--connections 1000] [--seconds 20] [--python .venv/bin/python]
"""

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEAD = b"GET /hello HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"a" * 400 + b"\r\n\r\n"


def trickle(port, count, seconds, stop, opened):
    sockets = []
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setblocking(False)
            sockets.append(sock)
        except OSError:
            break
    opened[0] = len(sockets)
    sent = 0
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline and sent < len(HEAD) - 4:
        for sock in sockets:
            try:
                sock.send(HEAD[sent:sent + 1])
            except OSError:
                pass
        sent += 1
        time.sleep(0.1)
    for sock in sockets:
        sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--python", default=str(HERE.parent / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen(
        [args.python, "-m", "tidegate", "--bind", f"127.0.0.1:{port}", "--header-timeout", "30",
         "--log-level", "warning", "--chdir", str(HERE), "soak_app:app"],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.1)
        stop, opened = threading.Event(), [0]
        attacker = threading.Thread(target=trickle, args=(port, args.connections, args.seconds, stop, opened))
        attacker.start()
        time.sleep(2)  # let the slow connections open
        latencies, failures = [], 0
        end = time.monotonic() + args.seconds - 3
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while not data.endswith(b"Hello, World!"):
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if not data.startswith(b"HTTP/1.1 200"):
                        failures += 1
            except OSError:
                failures += 1
            latencies.append(time.monotonic() - start)
            time.sleep(0.01)
        stop.set()
        attacker.join(30)
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(f"slow connections opened: {opened[0]} (trickling for {args.seconds:.0f} s)")
        print(f"normal client: {len(latencies)} requests, {failures} failed, p50 {p50:.2f} ms, p99 {p99:.2f} ms (limit 100 ms)")
        ok = opened[0] >= args.connections and failures == 0 and p99 < 100
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
