"""What one CGI request costs: tidegate's CGI gateway against wsgiref.handlers.CGIHandler.

A CGI front server starts a process per request, so the cost is the whole process: the
interpreter starting, the imports, the request, the exit. Each contender is a small CGI
script run the way a front server runs it (a fresh process with the request in its
environment and the body on stdin), on the same app (bench_apps.hello, or an echo of a
64 KiB POST body), ROUNDS times, interleaved so that machine noise hits all alike.

    .venv/bin/python bench/cgi.py [--rounds N] [--out bench/results/cgi.md]

Reports the median and mean wall time per request and the CPU time (user + system of the
child processes) per request. Runs only local processes; nothing touches the network.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

ECHO_APP = '''
def echo(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

SCRIPTS = {
    "wsgiref CGIHandler": "from wsgiref.handlers import CGIHandler\nfrom {module} import {app}\nCGIHandler().run({app})\n",
    "tidegate.run_cgi": "import tidegate\nfrom {module} import {app}\ntidegate.run_cgi({app})\n",
}
CLI = "tidegate --protocol cgi"


def cgi_env(extra):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "bench", "SERVER_NAME": "localhost",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "SCRIPT_NAME": "/app.cgi", "PATH_INFO": "/", "QUERY_STRING": "", "REQUEST_METHOD": "GET",
    }
    env.update(extra)
    return env


def run_once(args, env, stdin, cwd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(args, input=stdin, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=60)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0 or not result.stdout.startswith(b"Status: 200 OK\r\n"):
        raise SystemExit(f"{args}: exit {result.returncode}\n{result.stdout[:200]!r}\n{result.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--out", default=str(BENCH / "results" / "cgi.md"))
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tidegate-cgi-bench-"))
    (workdir / "echo_app.py").write_text(ECHO_APP)
    body = os.urandom(64 * 1024)
    cases = [
        ("GET hello", "bench_apps", "hello", cgi_env({}), b""),
        ("POST 64 KiB echo", "echo_app", "echo",
         cgi_env({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body))}), body),
    ]
    lines = [
        "| request | gateway | median ms | mean ms | CPU ms |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for label, module, app, env, stdin in cases:
        env = dict(env, PYTHONPATH=f"{BENCH}:{workdir}")
        contenders = {}
        for name, template in SCRIPTS.items():
            script = workdir / f"{name.split()[0]}_{app}.py"
            script.write_text(template.format(module=module, app=app))
            contenders[name] = [sys.executable, str(script)]
        contenders[CLI] = [sys.executable, "-m", "tidegate", "--protocol", "cgi", f"{module}:{app}"]
        outputs = {}
        for name, args in contenders.items():  # warm the page cache and __pycache__
            outputs[name] = run_once(args, env, stdin, workdir)[2].partition(b"\r\n\r\n")[2]
        assert len(set(outputs.values())) == 1, "the gateways answered different bodies"
        samples = {name: ([], []) for name in contenders}
        for _ in range(options.rounds):
            for name, args in contenders.items():
                wall, cpu, _ = run_once(args, env, stdin, workdir)
                samples[name][0].append(wall)
                samples[name][1].append(cpu)
        for name, (walls, cpus) in samples.items():
            median = statistics.median(walls) * 1000
            summary[(label, name)] = median
            lines.append(f"| {label} | {name} | {median:.1f} | {statistics.mean(walls) * 1000:.1f} "
                         f"| {statistics.mean(cpus) * 1000:.1f} |")
    report = "\n".join(lines)
    header = (f"CPython {sys.version.split()[0]}, {options.rounds} interleaved runs per contender, "
              f"{os.cpu_count()} cores\n\n")
    print(header + report)
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + report + "\n")


if __name__ == "__main__":
    main()
