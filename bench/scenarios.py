"""The scenarios of the comparison: which app, which servers, which wrk load, how a
server is checked before it is measured, and how wrk's report is read."""

import http.client
import json
import os
import re
import resource
import subprocess
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from servers import HOST

HELLO = b"Hello, World!"
POST_BODY_SIZE = 10 * 1024
STREAM_SIZE = 1024 * 1024
BIG_FILE_NAME = "big.bin"


@dataclass
class Scenario:
    key: str
    title: str
    app: str  # a callable of bench_apps
    servers: List[str]
    connections: int = 50
    kind: str = "wrk"  # "wrk": a load run; "memory": start, check, read the RSS
    metric: str = "rps"  # the headline figure: "rps" (req/s) or "mbps" (MB/s of responses)
    path: str = "/"
    method: str = "GET"
    body: bytes = b""
    wrk_headers: List[str] = field(default_factory=list)
    latency: bool = False  # wrk --latency: p99 in the report
    wrk_timeout: int = 5


def scenarios(file_size: int) -> List[Scenario]:
    everyone = ["tidegate", "bjoern", "granian-bt1", "granian"]
    gunicorns = ["gunicorn-sync", "gunicorn-gthread"]
    return [
        Scenario("hello-c50", "hello, 13-byte body, -c50", "hello",
                 ["tidegate", "tidegate-t4", "bjoern", "granian-bt1", "granian", *gunicorns,
                  "floor"], latency=True),
        Scenario("hello-c256", "hello, 13-byte body, -c256", "hello",
                 ["tidegate", "tidegate-t4", "bjoern", "granian-bt1", "granian", "floor"],
                 connections=256, latency=True),
        Scenario("json", "JSON: a 20-key dict through json.dumps, -c50", "json_app", everyone),
        Scenario("post", "POST echo of a 10 KiB body, -c50", "echo", everyone, method="POST",
                 body=b"x" * POST_BODY_SIZE),
        Scenario("stream", "1 MiB streamed in 64 KiB chunks (generator), -c50", "stream",
                 everyone, metric="mbps"),
        Scenario("file", f"wsgi.file_wrapper, {file_size >> 20} MiB file, vs nginx, -c4", "file",
                 [*everyone, "gunicorn-sync", "nginx"], connections=4, metric="mbps",
                 path="/" + BIG_FILE_NAME, wrk_timeout=20),
        Scenario("io", "I/O-bound: time.sleep(0.01), 8 threads, -c64 (ideal 800 req/s)", "sleep",
                 ["tidegate-t8", "gunicorn-gthread", "granian-bt8"], connections=64),
        Scenario("close", "Connection: close (a new connection per request), -c50", "hello",
                 [*everyone, *gunicorns, "floor"], wrk_headers=["Connection: close"]),
        Scenario("memory", "idle memory with the hello app loaded", "hello",
                 [*everyone, *gunicorns], kind="memory"),
    ]


# --- checking a server before measuring it -----------------------------------------------


class CheckFailed(Exception):
    pass


def check(scenario: Scenario, port: int, file_size: int, timeout: float = 10.0) -> List[str]:
    """One request as the scenario sends them; raises CheckFailed unless the answer is the
    app's. Returns notes about the server (e.g. that it has no wsgi.file_wrapper)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if scenario.body:
            headers["Content-Type"] = "application/octet-stream"
        conn.request(scenario.method, scenario.path, body=scenario.body or None, headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise CheckFailed(f"{scenario.method} {scenario.path} answered {response.status}")
    expected: Optional[int] = None
    if scenario.app in ("hello", "sleep"):
        if body != HELLO:
            raise CheckFailed(f"unexpected body {body[:60]!r}")
    elif scenario.app == "json_app":
        if len(json.loads(body)) != 20:
            raise CheckFailed("the JSON document does not have 20 keys")
    elif scenario.app == "echo":
        if body != scenario.body:
            raise CheckFailed(f"echo returned {len(body)} bytes, sent {len(scenario.body)}")
    elif scenario.app == "stream":
        expected = STREAM_SIZE
    elif scenario.app == "file":
        expected = file_size
    if expected is not None and len(body) != expected:
        raise CheckFailed(f"body of {len(body)} bytes, expected {expected}")
    notes = []
    if scenario.app == "file" and response.getheader("X-File-Wrapper") == "no":
        notes.append("no wsgi.file_wrapper: the app read the file in 64 KiB blocks")
    return notes


# --- wrk ------------------------------------------------------------------------------------

_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


class WrkFailed(Exception):
    pass


def write_lua(scenario: Scenario, workdir: str) -> Optional[str]:
    """A wrk script for a scenario that sends a body; None for plain GETs."""
    if not scenario.body:
        return None
    path = os.path.join(workdir, f"{scenario.key}.lua")
    with open(path, "w") as f:
        f.write(f'wrk.method = "{scenario.method}"\n'
                f'wrk.body = string.rep("x", {len(scenario.body)})\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    return path


def wrk_command(scenario: Scenario, port: int, seconds: float, lua: Optional[str],
                latency: bool) -> List[str]:
    cmd = ["wrk", "-t1", f"-c{scenario.connections}", f"-d{seconds:g}s",
           "--timeout", f"{scenario.wrk_timeout}s"]
    for header in scenario.wrk_headers:
        cmd += ["-H", header]
    if lua:
        cmd += ["-s", lua]
    if latency:
        cmd.append("--latency")
    cmd.append(f"http://{HOST}:{port}{scenario.path}")
    return cmd


def run_wrk(cmd: List[str], seconds: float) -> Tuple[Dict[str, float], str]:
    """Run wrk; its parsed report (and its CPU seconds) and its raw output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise WrkFailed("wrk did not finish in time") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise WrkFailed(f"wrk failed: {out.strip()[-300:]}")
    result = parse_wrk(out)
    result["wrk_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, out


def parse_wrk(out: str) -> Dict[str, float]:
    """The figures of wrk's report: requests, elapsed_s, bytes_read, rps, mbps, p99_ms (NaN
    without --latency), socket_errors, non2xx."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?B) read", out)
    if not m:
        raise WrkFailed(f"cannot parse wrk output: {out.strip()[-300:]}")
    result: Dict[str, float] = {
        "requests": int(m.group(1)),
        "elapsed_s": _ms(m.group(2) + m.group(3)) / 1000,
        "bytes_read": float(m.group(4)) * _SIZE_UNITS[m.group(5)],
    }
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else result["requests"] / result["elapsed_s"]
    # Everything wrk read, whole responses and the part of those cut off at the end.
    result["mbps"] = result["bytes_read"] / result["elapsed_s"] / 1e6
    m = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    result["p99_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(m.group(1)) if m else 0
    return result
