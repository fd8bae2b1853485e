#!/usr/bin/env python3
"""Benchmark tidegate against its peers with wrk on loopback (see bench/README.md).

For each server and round: start it on a free 127.0.0.1 port, wait until it serves the app,
warm up, run ``wrk --latency`` for a fixed duration, read the CPU time of the server's whole
process tree (master, workers, all their threads) before and after, and stop it by PID.
Rounds are interleaved (A B C A B C) and the report gives medians.

Run it through ``bench/run.sh`` (it installs everything); run directly it uses whatever the
current interpreter has installed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"  # the only address this harness ever starts a server on or sends to
CLK_TCK = os.sysconf("SC_CLK_TCK")
EXPECTED_BODY = b"Hello, World!"


# --- the servers ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    description: str
    module: str  # Python distribution/module that must be importable
    command: Callable[[str, int, str], List[str]]  # (python, port, app) -> argv


def _servers() -> List[Server]:
    return [
        Server(
            "tidegate",
            "tidegate, 1 process, --threads 1",
            "tidegate",
            lambda py, port, app: [py, "-m", "tidegate", "--bind", f"{HOST}:{port}",
                                   "--threads", "1", "--chdir", HERE, f"bench_apps:{app}"],
        ),
        Server(
            "bjoern",
            "bjoern, 1 process",
            "bjoern",
            lambda py, port, app: [py, os.path.join(HERE, "bjoern_runner.py"), HOST, str(port),
                                   app],
        ),
        Server(
            "granian-bt1",
            "Granian --interface wsgi --blocking-threads 1 (1 worker)",
            "granian",
            lambda py, port, app: [py, "-m", "granian", "--interface", "wsgi", "--host", HOST,
                                   "--port", str(port), "--blocking-threads", "1",
                                   "--working-dir", HERE, f"bench_apps:{app}"],
        ),
        Server(
            "granian",
            "Granian --interface wsgi, defaults (1 worker)",
            "granian",
            lambda py, port, app: [py, "-m", "granian", "--interface", "wsgi", "--host", HOST,
                                   "--port", str(port), "--working-dir", HERE, f"bench_apps:{app}"],
        ),
        Server(
            "gunicorn-sync",
            "gunicorn sync, 2 workers",
            "gunicorn",
            lambda py, port, app: [py, "-m", "gunicorn", "-k", "sync", "-w", "2", "-b",
                                   f"{HOST}:{port}", "--chdir", HERE, f"bench_apps:{app}"],
        ),
        Server(
            "gunicorn-gthread",
            "gunicorn gthread, 1 worker, 8 threads",
            "gunicorn",
            lambda py, port, app: [py, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads",
                                   "8", "-b", f"{HOST}:{port}", "--chdir", HERE,
                                   f"bench_apps:{app}"],
        ),
    ]


SERVERS = {s.name: s for s in _servers()}
BJOERN_REF = "bjoern"
GRANIAN_REFS = ("granian-bt1", "granian")  # the first one measured is the reference


# --- /proc helpers -----------------------------------------------------------------------


def _stat_fields(pid: int) -> Optional[List[str]]:
    """Fields of /proc/PID/stat from field 3 (state) on; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def _start_time(pid: int) -> Optional[int]:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22: starttime


def process_tree(root: int) -> Dict[int, int]:
    """{pid: starttime} for root and all its descendants."""
    children: Dict[int, List[int]] = {}
    starts: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))  # field 4: ppid
        starts[int(entry)] = int(fields[19])
    tree: Dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in starts and pid not in tree:
            tree[pid] = starts[pid]
            todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of root and every descendant, all threads included.

    /proc/PID/stat's utime and stime already sum every thread of the process (live and
    exited); cutime and cstime add children that have exited and been reaped, so a worker
    that dies during the run is not lost.
    """
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already inside user/nice
    return (sum(values[:8]) - idle) / CLK_TCK


def wait_idle(limit: float, threshold: float = 0.2) -> float:
    """Wait, at most limit seconds, until the machine is idle: under threshold cores busy
    over one second. Returns the seconds waited (other jobs on a shared machine add noise).
    """
    start = time.monotonic()
    while True:
        before = system_busy_seconds()
        time.sleep(1.0)
        waited = time.monotonic() - start
        if system_busy_seconds() - before < threshold or waited >= limit:
            return waited


# --- starting, checking and stopping a server -----------------------------------------------


class ServerFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(port: int, timeout: float = 2.0) -> bytes:
    """One GET / with Connection: close; the raw response."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nConnection: close\r\n\r\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def log_tail(path: str, lines: int = 4) -> str:
    try:
        with open(path, errors="replace") as f:
            text = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-400:]


def wait_ready(proc: subprocess.Popen, port: int, log_path: str, timeout: float) -> None:
    """Until the server answers GET / with the expected app; raise ServerFailed otherwise."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"exited with status {proc.returncode} before serving: "
                               f"{log_tail(log_path)}")
        try:
            response = http_get(port)
        except OSError as error:
            last_error = str(error)
            time.sleep(0.1)
            continue
        head, _, body = response.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" " or body != EXPECTED_BODY:
            raise ServerFailed(f"unexpected response {status!r} body {body[:60]!r}")
        if b"content-length: 13" not in head.lower():
            raise ServerFailed(f"response without Content-Length: 13: {head[:200]!r}")
        return
    raise ServerFailed(f"not answering after {timeout:.0f} s ({last_error}): {log_tail(log_path)}")


def _alive_and_same(pid: int, start: int) -> bool:
    return _start_time(pid) == start


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server we started, then any of its descendants still alive, by PID only."""
    tree = process_tree(proc.pid)
    for sig, grace in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if proc.poll() is not None:
            break
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.wait(timeout=5)
    # Workers of a master that died first: those recorded PIDs (checked against their start
    # time, so a reused PID is never touched) get SIGKILL.
    for pid, start in tree.items():
        if pid != proc.pid and _alive_and_same(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --- wrk -----------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(port: int, duration: int, connections: int, threads: int,
            latency: bool = True) -> Dict[str, float]:
    """Run wrk against our server on loopback; parse its report."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    if latency:
        cmd.append("--latency")
    cmd.append(f"http://{HOST}:{port}/")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ServerFailed("wrk did not finish in time") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise ServerFailed(f"wrk failed: {out.strip()[-300:]}")
    result: Dict[str, float] = {
        "wrk_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    }
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise ServerFailed(f"cannot parse wrk output: {out.strip()[-300:]}")
    result["requests"] = int(m.group(1))
    result["elapsed_s"] = _ms(m.group(2) + m.group(3)) / 1000
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else result["requests"] / result["elapsed_s"]
    m = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    result["p99_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(m.group(1)) if m else 0
    return result


# --- one measurement ----------------------------------------------------------------------


@dataclass
class Measurement:
    server: str
    round: int
    ok: bool
    reason: str = ""
    data: Dict[str, float] = field(default_factory=dict)


def measure(server: Server, rnd: int, args: argparse.Namespace, python: str,
            log_dir: str) -> Measurement:
    waited = wait_idle(args.settle) if args.settle > 0 else 0.0
    port = free_port()
    log_path = os.path.join(log_dir, f"{server.name}-r{rnd}.log")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("VIRTUAL_ENV", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(server.command(python, port, args.app), cwd=HERE, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, port, log_path, args.start_timeout)
        if args.warmup > 0:
            run_wrk(port, args.warmup, args.connections, args.wrk_threads, latency=False)
        cpu0, busy0 = tree_cpu_seconds(proc.pid), system_busy_seconds()
        data = run_wrk(port, args.duration, args.connections, args.wrk_threads)
        cpu1, busy1 = tree_cpu_seconds(proc.pid), system_busy_seconds()
        if proc.poll() is not None:
            raise ServerFailed(f"exited with status {proc.returncode} during the run: "
                               f"{log_tail(log_path)}")
        data["idle_wait_s"] = waited
        data["server_cpu_s"] = cpu1 - cpu0
        data["cpu_us_per_req"] = (cpu1 - cpu0) / max(data["requests"], 1) * 1e6
        # CPU used by everything else on the machine during the run (other jobs: noise).
        other = (busy1 - busy0) - data["server_cpu_s"] - data["wrk_cpu_s"]
        data["other_cores"] = max(other, 0.0) / data["elapsed_s"]
        data["wrk_cores"] = data["wrk_cpu_s"] / data["elapsed_s"]
        data["server_cores"] = data["server_cpu_s"] / data["elapsed_s"]
        return Measurement(server.name, rnd, True, data=data)
    except ServerFailed as error:
        return Measurement(server.name, rnd, False, reason=str(error))
    finally:
        stop_server(proc)


# --- reporting ----------------------------------------------------------------------------


def versions(python: str) -> Dict[str, str]:
    found = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    for dist in ("tidegate", "bjoern", "granian", "gunicorn"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    if found["tidegate"] != "not installed":
        found["tidegate"] += f" ({tidegate_source()})"
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
        found["wrk"] = (out.stdout + out.stderr).splitlines()[0].split(" [")[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        found["wrk"] = "?"
    return found


def tidegate_source() -> str:
    """Which sources the installed tidegate was built from: git commit and source hash."""
    parts = []
    root = os.path.dirname(HERE)
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=False)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "src",
                                    "python", "Cargo.toml", "Cargo.lock", "pyproject.toml"],
                                   capture_output=True, text=True, timeout=5, check=False)
            parts.append("git " + head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else ""))
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open(os.path.join(sys.prefix, ".tidegate-source-hash")) as f:
            parts.append("sources " + f.read().strip()[:12])
    except OSError:
        pass
    return ", ".join(parts) or "unknown sources"


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}"


def _fmt_ratio(value: Optional[float], ref: Optional[float]) -> str:
    if value is None or not ref:
        return "–"
    return f"{value / ref:.2f}×"


def report(results: List[Measurement], unavailable: Dict[str, str], order: List[str],
           args: argparse.Namespace, info: Dict[str, str], started: str, took: float) -> str:
    med: Dict[str, Dict[str, float]] = {}
    fails: Dict[str, List[str]] = {}
    for name in order:
        ok = [m.data for m in results if m.server == name and m.ok]
        fails[name] = [f"round {m.round}: {m.reason}" for m in results
                       if m.server == name and not m.ok]
        if ok:
            med[name] = {k: statistics.median(d[k] for d in ok) for k in ok[0]}
            med[name]["rounds_ok"] = len(ok)
    bj = med.get(BJOERN_REF)
    gr_name = next((n for n in GRANIAN_REFS if n in med), None)
    gr = med.get(gr_name) if gr_name else None

    lines = [
        f"# tidegate benchmark: `{args.app}` app",
        "",
        f"- date: {started} (took {took:.0f} s)",
        f"- machine: {info['machine']}",
        f"- load: `wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s --latency` "
        f"on {HOST}, after a {args.warmup:g} s warm-up; {args.rounds} round(s), interleaved, "
        f"medians shown; before each server, up to {args.settle:g} s of waiting for the machine "
        "to be idle",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "- CPU µs/req: user+system CPU of the server's whole process tree (master, workers, "
        "threads) during the measured run, divided by the requests wrk completed",
        f"- ratios: the server's value divided by bjoern's and by Granian's "
        f"(`{gr_name or 'granian'}`); higher is better for req/s, lower is better for CPU",
        "- wrk cores / other cores: CPU used by wrk and by everything else on the machine "
        "during the run (other > 0.1 means something else was competing: noisier figures)",
        "",
        "| server | req/s | p99 ms | CPU µs/req | req/s vs bjoern | CPU vs bjoern "
        "| req/s vs Granian | CPU vs Granian | wrk cores | other cores | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in order:
        desc = SERVERS[name].description
        if name in unavailable:
            lines.append(f"| {desc} | – | – | – | – | – | – | – | – | – | not available: "
                         f"{_md(unavailable[name])} |")
            continue
        m = med.get(name)
        if m is None:
            lines.append(f"| {desc} | – | – | – | – | – | – | – | – | – | not available: "
                         f"{_md('; '.join(fails[name]))} |")
            continue
        notes = []
        if m["rounds_ok"] < args.rounds:
            notes.append(f"{int(m['rounds_ok'])}/{args.rounds} rounds ok; "
                         + "; ".join(fails[name]))
        if m["socket_errors"] or m["non2xx"]:
            notes.append(f"socket errors {m['socket_errors']:.0f}, non-2xx {m['non2xx']:.0f}")
        lines.append(
            f"| {desc} | {m['rps']:,.0f} | {m['p99_ms']:.2f} | {m['cpu_us_per_req']:.1f} "
            f"| {_fmt_ratio(m['rps'], bj and bj['rps'])} "
            f"| {_fmt_ratio(m['cpu_us_per_req'], bj and bj['cpu_us_per_req'])} "
            f"| {_fmt_ratio(m['rps'], gr and gr['rps'])} "
            f"| {_fmt_ratio(m['cpu_us_per_req'], gr and gr['cpu_us_per_req'])} "
            f"| {m['wrk_cores']:.2f} | {m['other_cores']:.2f} | {_md('; '.join(notes))} |"
        )
    if args.rounds > 1:
        lines += ["", "Per round (req/s, CPU µs/req):", ""]
        for name in order:
            per = [f"{m.data['rps']:,.0f} / {m.data['cpu_us_per_req']:.1f}" if m.ok else "failed"
                   for m in results if m.server == name]
            if per:
                lines.append(f"- {name}: " + "; ".join(per))
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- main ---------------------------------------------------------------------------------


def read_install_status(path: Optional[str]) -> Dict[str, str]:
    status: Dict[str, str] = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "\t" in line:
                    name, reason = line.rstrip("\n").split("\t", 1)
                    status[name] = reason
    return status


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default 1)")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--connections", "-c", type=int, default=50, help="wrk connections (50)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--warmup", type=int, default=1,
                   help="warm-up seconds, 0 for none (default 1)")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma-separated subset, in order (default {','.join(SERVERS)})")
    p.add_argument("--app", default="hello", help="application in bench_apps (default hello)")
    p.add_argument("--settle", type=float, default=10,
                   help="before each server, wait up to S s for the machine to be idle "
                   "(0: do not wait; default 10)")
    p.add_argument("--start-timeout", type=float, default=30, help="seconds to wait for a start")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs the servers")
    p.add_argument("--out", default=os.path.join(HERE, "results", "latest.md"),
                   help="markdown report path (a .json with raw data goes beside it)")
    p.add_argument("--install-status", help="TSV of components run.sh could not install")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1 or args.wrk_threads < 1:
        p.error("rounds, duration, connections and wrk threads must be positive")
    if args.warmup < 0:
        p.error("--warmup must be 0 or more")
    if args.duration > 120:
        p.error("--duration is capped at 120 s")
    args.order = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in args.order if s not in SERVERS]
    if unknown:
        p.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found (bench/run.sh installs it)", file=sys.stderr)
        return 1
    started_at = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    log_dir = os.path.join(out_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)

    installed = read_install_status(args.install_status)
    unavailable: Dict[str, str] = {}
    for name in args.order:
        module = SERVERS[name].module
        if module in installed:
            unavailable[name] = installed[module]
        elif importlib.util.find_spec(module) is None:
            unavailable[name] = f"python module {module!r} is not installed"
    runnable = [n for n in args.order if n not in unavailable]
    per_run = args.duration + args.warmup + 4
    print(f"[bench] {len(runnable)} server(s) x {args.rounds} round(s), about "
          f"{len(runnable) * args.rounds * per_run:.0f} s; logs in {log_dir}", file=sys.stderr)
    for name, reason in unavailable.items():
        print(f"[bench] {name}: not available: {reason}", file=sys.stderr)

    results: List[Measurement] = []
    for rnd in range(1, args.rounds + 1):
        for name in runnable:
            m = measure(SERVERS[name], rnd, args, args.python, log_dir)
            results.append(m)
            if m.ok:
                d = m.data
                print(f"[bench] round {rnd} {name:17} {d['rps']:>10,.0f} req/s  "
                      f"p99 {d['p99_ms']:7.2f} ms  {d['cpu_us_per_req']:6.1f} µs/req  "
                      f"(server {d['server_cores']:.2f}, wrk {d['wrk_cores']:.2f}, "
                      f"other {d['other_cores']:.2f} cores; waited {d['idle_wait_s']:.0f} s for idle)",
                      file=sys.stderr)
            else:
                print(f"[bench] round {rnd} {name:17} failed: {m.reason}", file=sys.stderr)

    took = time.monotonic() - t0
    info = {"machine": machine(), "versions": versions(args.python)}
    text = report(results, unavailable, args.order, args, info,
                  started_at.strftime("%Y-%m-%d %H:%M UTC"), took)
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    raw = {
        "date": started_at.isoformat(), "args": {k: v for k, v in vars(args).items()},
        "info": info, "unavailable": unavailable,
        "runs": [m.__dict__ for m in results],
    }
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(raw, f, indent=1)
    print(f"[bench] wrote {args.out} ({took:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
