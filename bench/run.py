#!/usr/bin/env python3
"""Compare tidegate with bjoern, Granian, gunicorn and nginx on loopback (bench/README.md).

Every scenario of bench/scenarios.py, for every server it names, in interleaved rounds
(round 1: each server once per scenario; round 2: again ...). A server is started fresh on
a free 127.0.0.1 port for each run, checked with one request, warmed up, measured with
wrk (-t1) while the CPU time of its whole process tree is read from /proc before and
after, and stopped by PID. Writes a markdown table of medians, ratios and the issue-6
targets, the raw figures (JSON) and a PNG chart.

Run it through bench/run.sh (`make bench`), which installs everything; run directly it
uses whatever the current interpreter has installed.
"""

import argparse
import datetime
import http.client
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import procs  # noqa: E402
import report  # noqa: E402
import targets  # noqa: E402
from scenarios import (BIG_FILE_NAME, CheckFailed, Scenario, WrkFailed, check,  # noqa: E402
                       run_wrk, scenarios, wrk_command, write_lua)
from servers import HERE, SERVERS, Context, Server, unavailable_reasons  # noqa: E402


class ServerFailed(Exception):
    pass


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: str, lines: int = 4) -> str:
    try:
        with open(path, errors="replace") as f:
            text = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-400:]


def wait_ready(proc: subprocess.Popen, sc: Scenario, port: int, log_path: str,
               args: argparse.Namespace) -> List[str]:
    """Until the server answers the scenario's request correctly; its notes."""
    deadline = time.monotonic() + args.start_timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"exited with status {proc.returncode} before serving: "
                               f"{log_tail(log_path)}")
        try:
            return check(sc, port, args.file_size)
        except CheckFailed as error:
            raise ServerFailed(f"wrong answer: {error}") from None
        except (OSError, http.client.HTTPException) as error:
            last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.1)
    raise ServerFailed(f"not answering after {args.start_timeout:.0f} s ({last_error}): "
                       f"{log_tail(log_path)}")


def measure(server: Server, sc: Scenario, rnd: int, args: argparse.Namespace, ctx: Context,
            lua: Optional[str], log_dir: str) -> dict:
    run = {"scenario": sc.key, "server": server.name, "round": rnd, "ok": False,
           "reason": "", "notes": [], "data": {}}
    waited = procs.wait_idle(args.settle) if args.settle > 0 else 0.0
    port = free_port()
    log_path = os.path.join(log_dir, f"{sc.key}-{server.name}-r{rnd}.log")
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               BENCH_FILE=os.path.join(ctx.data_dir, BIG_FILE_NAME))
    env.pop("VIRTUAL_ENV", None)
    try:
        argv = server.argv(ctx, port, sc.app)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
    except OSError as error:
        run["reason"] = f"cannot start: {error}"
        return run
    try:
        run["notes"] = wait_ready(proc, sc, port, log_path, args)
        data: Dict[str, float] = {"idle_wait_s": waited}
        if sc.kind == "memory":
            time.sleep(args.idle)
            data.update(procs.memory(proc.pid))
        else:
            if args.warmup > 0:
                run_wrk(wrk_command(sc, port, args.warmup, lua, latency=False), args.warmup)
            cmd = wrk_command(sc, port, args.seconds, lua, latency=sc.latency)
            cpu0, busy0 = procs.tree_cpu_seconds(proc.pid), procs.system_busy_seconds()
            result, _ = run_wrk(cmd, args.seconds)
            cpu1, busy1 = procs.tree_cpu_seconds(proc.pid), procs.system_busy_seconds()
            data.update(result)
            data["server_cpu_s"] = cpu1 - cpu0
            data["cpu_us_per_req"] = (cpu1 - cpu0) / max(result["requests"], 1) * 1e6
            other = (busy1 - busy0) - data["server_cpu_s"] - data["wrk_cpu_s"]
            data["other_cores"] = max(other, 0.0) / data["elapsed_s"]
            data["wrk_cores"] = data["wrk_cpu_s"] / data["elapsed_s"]
            data["server_cores"] = data["server_cpu_s"] / data["elapsed_s"]
        if proc.poll() is not None:
            raise ServerFailed(f"exited with status {proc.returncode} during the run: "
                               f"{log_tail(log_path)}")
        run["ok"] = True
        run["data"] = data
    except (ServerFailed, WrkFailed) as error:
        run["reason"] = str(error)
    finally:
        procs.stop(proc)
    return run


def describe(run: dict, sc: Scenario) -> str:
    if not run["ok"]:
        return f"failed: {run['reason']}"
    d = run["data"]
    if sc.kind == "memory":
        return (f"worker RSS {d['worker_rss_mib']:.1f} MiB, tree RSS {d['tree_rss_mib']:.1f} MiB, "
                f"PSS {d['tree_pss_mib']:.1f} MiB, {d['processes']:.0f} process(es)")
    head = f"{d['rps']:>9,.0f} req/s" if sc.metric == "rps" else f"{d['mbps']:>9,.1f} MB/s"
    p99 = f"p99 {d['p99_ms']:.2f} ms  " if sc.latency else ""
    return (f"{head}  {d['cpu_us_per_req']:7.1f} µs/req  {p99}"
            f"(server {d['server_cores']:.2f}, wrk {d['wrk_cores']:.2f}, other "
            f"{d['other_cores']:.2f} cores; errors {d['socket_errors']:.0f}, non-2xx "
            f"{d['non2xx']:.0f}; waited {d['idle_wait_s']:.0f} s for idle)")


# --- facts for the report ----------------------------------------------------------------


def versions(ctx: Context) -> Dict[str, str]:
    found = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    for dist in ("tidegate", "bjoern", "granian", "gunicorn"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    if found["tidegate"] != "not installed":
        found["tidegate"] += f" ({tidegate_source()})"
    for name, cmd in (("wrk", ["wrk", "-v"]), ("nginx", [ctx.nginx_bin or "nginx", "-v"])):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
            text = (out.stdout + out.stderr).strip().splitlines()[0]
            found[name] = text.split(" [")[0].replace("nginx version: ", "")
        except (OSError, IndexError, subprocess.SubprocessError):
            found[name] = "?"
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


def read_install_status(path: Optional[str]) -> Dict[str, str]:
    status: Dict[str, str] = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "\t" in line:
                    name, reason = line.rstrip("\n").split("\t", 1)
                    status[name] = reason
    return status


# --- command line -------------------------------------------------------------------------


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    keys = [sc.key for sc in scenarios(0)]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    try:
        p.add_argument("--rounds", type=int, default=int(_env_number("BENCH_ROUNDS", 3)),
                       help="interleaved rounds (env BENCH_ROUNDS, default 3)")
        p.add_argument("--seconds", type=float, default=_env_number("BENCH_SECONDS", 5),
                       help="seconds per measured wrk run (env BENCH_SECONDS, default 5)")
        p.add_argument("--warmup", type=float, default=_env_number("BENCH_WARMUP", 1),
                       help="warm-up seconds before each run, 0 for none (env BENCH_WARMUP, "
                       "default 1)")
        p.add_argument("--settle", type=float, default=_env_number("BENCH_SETTLE", 5),
                       help="before each run, wait up to S s for the machine to be idle "
                       "(env BENCH_SETTLE, default 5; 0: do not wait)")
        p.add_argument("--file-mb", type=int, default=int(_env_number("BENCH_FILE_MB", 100)),
                       help="size of the file scenario's file in MiB (env BENCH_FILE_MB, "
                       "default 100)")
    except ValueError as error:
        p.error(f"a BENCH_* environment variable is not a number: {error}")
    p.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS") or ",".join(keys),
                   help=f"comma-separated subset (env BENCH_SCENARIOS; default all: "
                   f"{','.join(keys)})")
    p.add_argument("--servers", default=os.environ.get("BENCH_SERVERS") or "",
                   help="comma-separated subset of servers (env BENCH_SERVERS; default: every "
                   f"server each scenario names; known: {','.join(SERVERS)})")
    p.add_argument("--idle", type=float, default=1.0,
                   help="memory scenario: seconds between the check request and reading RSS")
    p.add_argument("--start-timeout", type=float, default=30, help="seconds to wait for a start")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs the servers")
    p.add_argument("--out", default=os.path.join(HERE, "results", "comparison.md"),
                   help="markdown report path; .json (raw figures) and .png (chart) go beside it")
    p.add_argument("--install-status", help="TSV of components run.sh could not install")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.file_mb < 1:
        p.error("--rounds, --seconds and --file-mb must be positive")
    if args.warmup < 0 or args.settle < 0:
        p.error("--warmup and --settle must be 0 or more")
    if args.seconds > 120:
        p.error("--seconds is capped at 120")
    args.scenario_keys = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenario_keys if s not in keys]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(keys)}")
    args.server_names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in args.server_names if s not in SERVERS]
    if unknown:
        p.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    args.file_size = args.file_mb << 20
    return args


def make_big_file(path: str, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
    os.chmod(path, 0o644)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found (bench/run.sh installs it)", file=sys.stderr)
        return 1
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_before = procs.load_average()
    t0 = time.monotonic()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    log_dir = os.path.join(out_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)

    chosen = [sc for sc in scenarios(args.file_size) if sc.key in args.scenario_keys]
    for sc in chosen:
        if args.server_names:
            sc.servers = [s for s in sc.servers if s in args.server_names]
    chosen = [sc for sc in chosen if sc.servers]

    workdir = tempfile.mkdtemp(prefix="tidegate-bench-")
    try:
        data_dir = os.path.join(workdir, "data")
        os.makedirs(data_dir)
        # nginx's worker runs as nobody when started by root: the file must be readable.
        os.chmod(workdir, 0o755)
        os.chmod(data_dir, 0o755)
        if any(sc.key == "file" for sc in chosen):
            make_big_file(os.path.join(data_dir, BIG_FILE_NAME), args.file_size)
        ctx = Context(python=args.python, workdir=workdir, data_dir=data_dir)
        installed = read_install_status(args.install_status)
        all_names = list(dict.fromkeys(n for sc in chosen for n in sc.servers))
        missing = unavailable_reasons(all_names, ctx, installed)
        for name, reason in missing.items():
            print(f"[bench] {name}: not available: {reason}", file=sys.stderr)
        unavailable = {sc.key: {n: missing[n] for n in sc.servers if n in missing}
                       for sc in chosen}
        luas = {sc.key: write_lua(sc, workdir) for sc in chosen}
        count = sum(len([n for n in sc.servers if n not in missing]) for sc in chosen)
        per_run = args.seconds + args.warmup + 3
        print(f"[bench] {len(chosen)} scenario(s), {count} server runs x {args.rounds} round(s): "
              f"at least {count * args.rounds * per_run / 60:.0f} min; logs in {log_dir}",
              file=sys.stderr)

        runs: List[dict] = []
        for rnd in range(1, args.rounds + 1):
            for sc in chosen:
                for name in sc.servers:
                    if name in missing:
                        continue
                    run = measure(SERVERS[name], sc, rnd, args, ctx, luas[sc.key], log_dir)
                    runs.append(run)
                    print(f"[bench] round {rnd} {sc.key:10} {name:16} {describe(run, sc)}",
                          file=sys.stderr)
        info = {"machine": machine(), "versions": versions(ctx)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    took = time.monotonic() - t0
    load_after = procs.load_average()
    med = report.medians(runs)
    verdicts = targets.evaluate(med)
    base = os.path.splitext(os.path.abspath(args.out))[0]
    header = [
        f"- date: {started_at:%Y-%m-%d %H:%M} UTC; took {took / 60:.0f} min; load average "
        f"(1, 5, 15 min) {load_before} at the start, {load_after} at the end",
        f"- machine: {info['machine']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        f"- load: wrk -t1 on 127.0.0.1, {args.warmup:g} s warm-up then {args.seconds:g} s "
        f"measured per run; {args.rounds} interleaved round(s) (each round runs every server "
        "once per scenario), medians shown; each run starts the server fresh on a free port "
        f"and first waits up to {args.settle:g} s for the machine to be idle",
        "- CPU µs/req: user+system CPU of the server's whole process tree (supervisor or "
        "master, workers, all threads; /proc/PID/stat) over the measured run, divided by the "
        "requests wrk completed",
        "- MB/s: bytes wrk read (headers included) per second, 1 MB = 10^6 bytes",
        "- server / wrk / other cores: CPU used during the run by the server, by wrk and by "
        "everything else on the machine (other > 0.1: something else competed)",
    ]
    chart_path = base + ".png"
    subtitle = (f"{started_at:%Y-%m-%d %H:%M} UTC, {args.rounds} rounds x {args.seconds:g} s, "
                f"{info['machine']}")
    try:
        import chart

        chart.draw(chosen, med, chart_path, subtitle)
        header.append(f"- chart: `{os.path.basename(chart_path)}`")
    except Exception as error:  # a chart is a bonus: the table must still be written
        header.append(f"- chart: not drawn ({type(error).__name__}: {error})")
    text = report.render(chosen, runs, unavailable, verdicts, header, args.rounds)
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    raw = {"date": started_at.isoformat(), "load_before": load_before, "load_after": load_after,
           "args": {k: v for k, v in vars(args).items()}, "info": info,
           "unavailable": missing, "runs": runs,
           "targets": [{"target": v.target.text, "value": v.value, "reference": v.reference_name,
                        "reference_value": v.reference_value, "ratio": v.ratio,
                        "status": v.status} for v in verdicts]}
    with open(base + ".json", "w") as f:
        json.dump(raw, f, indent=1)
    print(f"[bench] wrote {args.out}, {base}.json and the chart ({took / 60:.1f} min)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
