"""Server CPU per request, per thread, with context switches: for comparing two builds.

    python bench/cpu_probe.py --rounds 3 \
        base=/tmp/base:.venv/bin/python new=python:.venv/bin/python bjoern=bjoern:/path/python

Each contender is ``LABEL=KIND:PYTHON``: ``KIND`` is ``bjoern``, ``python`` (tidegate as
the given interpreter imports it) or a directory put first on PYTHONPATH (a copy of
``python/`` holding another build's extension). Rounds interleave (A B C A B C). Each run:
start the server (tidegate: one worker, ``--threads 1`` unless ``--threads`` says otherwise),
warm up with wrk, then read every thread's utime+stime and context switches
(``/proc/PID/task/TID``) around one ``wrk -t1 -c50 -dDs`` run. Prints µs of server CPU
per request (whole tree, and per thread name), voluntary and involuntary context switches
per request, and req/s. ``--app echo`` POSTs a ``--body-size`` body (10 KiB by default, as
the post scenario does).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import procs  # noqa: E402  (the harness's /proc and process helpers)
import run  # noqa: E402
import scenarios  # noqa: E402

HOST = "127.0.0.1"


def threads_of_tree(root: int) -> Dict[str, Tuple[int, int, int]]:
    """{thread name: (cpu ticks, voluntary, involuntary switches)} summed over the tree."""
    out: Dict[str, List[int]] = {}
    for pid in procs.process_tree(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                with open(f"{base}/stat") as f:
                    data = f.read()
                with open(f"{base}/status") as f:
                    status = f.read()
            except OSError:
                continue
            name = data[data.index("(") + 1:data.rindex(")")]
            fields = data[data.rindex(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])
            vol = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
            invol = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
            key = name if pid != root or name != "python" else "main"
            acc = out.setdefault(key, [0, 0, 0])
            acc[0] += ticks
            acc[1] += vol
            acc[2] += invol
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def command(kind: str, python: str, port: int, app: str,
            threads: int = 1) -> Tuple[List[str], Dict[str, str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("VIRTUAL_ENV", None)
    if kind == "bjoern":
        return [python, os.path.join(HERE, "bjoern_runner.py"), HOST, str(port), app], env
    if kind != "python":
        env["PYTHONPATH"] = kind
    return [python, "-m", "tidegate", "--bind", f"{HOST}:{port}", "--threads", str(threads),
            "--log-level", "warning", "--chdir", HERE, f"bench_apps:{app}"], env


def wait_ready(proc: subprocess.Popen, port: int, timeout: float) -> None:
    """Until the server accepts a connection; fails if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            socket.create_connection((HOST, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not listening on {port} after {timeout}s")


def wrk(port: int, seconds: int, connections: int, lua: Optional[str],
        headers: Sequence[str] = ()) -> Dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    for header in headers:
        cmd += ["-H", header]
    if lua:
        cmd += ["-s", lua]
    result, _ = scenarios.run_wrk(cmd + [f"http://{HOST}:{port}/"], seconds)
    return result


def measure(kind: str, python: str, args: argparse.Namespace) -> Dict[str, float]:
    port = run.free_port()
    cmd, env = command(kind, python, port, args.app, args.threads)
    log_path = f"/tmp/cpu_probe_{os.getpid()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, port, 30)
        wrk(port, args.warmup, args.connections, args.lua, args.header)
        before = threads_of_tree(proc.pid)
        data = wrk(port, args.duration, args.connections, args.lua, args.header)
        after = threads_of_tree(proc.pid)
    finally:
        procs.stop(proc)
    requests = max(int(data["requests"]), 1)
    result = {"rps": data["rps"], "requests": requests}
    total = vol = invol = 0
    for name, (ticks, v, i) in after.items():
        t0, v0, i0 = before.get(name, (0, 0, 0))
        result[f"us:{name}"] = (ticks - t0) / procs.CLK_TCK / requests * 1e6
        total += ticks - t0
        vol += v - v0
        invol += i - i0
    result["us_per_req"] = total / procs.CLK_TCK / requests * 1e6
    result["vcsw_per_req"] = vol / requests
    result["icsw_per_req"] = invol / requests
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("contenders", nargs="+", help="LABEL=KIND:PYTHON")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--app", default="hello")
    parser.add_argument("--threads", type=int, default=1, help="tidegate --threads (default 1)")
    parser.add_argument("--body-size", type=int, default=10 * 1024,
                        help="bytes POSTed per request with --app echo (default 10240)")
    parser.add_argument("--header", action="append", default=[],
                        help="a header for wrk -H, e.g. 'Connection: close' (repeatable)")
    args = parser.parse_args()
    args.lua = None
    if args.app == "echo":
        lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        with lua:
            lua.write('wrk.method = "POST"\n'
                      f'wrk.body = string.rep("x", {args.body_size})\n'
                      'wrk.headers["Content-Type"] = "application/octet-stream"\n')
        args.lua = lua.name
    contenders = []
    for spec in args.contenders:
        label, _, rest = spec.partition("=")
        kind, _, python = rest.partition(":")
        contenders.append((label, kind, os.path.abspath(python) if "/" in python else python))
    results: Dict[str, List[Dict[str, float]]] = {label: [] for label, _, _ in contenders}
    for rnd in range(args.rounds):
        for label, kind, python in contenders:
            r = measure(kind, python, args)
            results[label].append(r)
            threads = "  ".join(f"{k[3:]}={v:.1f}" for k, v in sorted(r.items())
                                if k.startswith("us:") and v > 0.05)
            print(f"round {rnd + 1} {label:>10}: {r['us_per_req']:5.2f} us/req  "
                  f"{r['rps']:8.0f} req/s  vcsw/req {r['vcsw_per_req']:.2f}  "
                  f"icsw/req {r['icsw_per_req']:.3f}  [{threads}]", flush=True)
    if args.lua:
        os.unlink(args.lua)
    print("medians:")
    for label, rs in results.items():
        print(f"  {label:>10}: {statistics.median(r['us_per_req'] for r in rs):5.2f} us/req  "
              f"{statistics.median(r['rps'] for r in rs):8.0f} req/s  "
              f"vcsw/req {statistics.median(r['vcsw_per_req'] for r in rs):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
