"""The servers of the comparison: how each one is started on a loopback port with a
bench_apps application, and what it needs to be available."""

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"  # the only address the harness ever starts a server on or sends to


@dataclass
class Context:
    """What the command lines need: the interpreter that runs the Python servers and the
    run's scratch directory (nginx configuration, the floor binary, the big file)."""

    python: str
    workdir: str
    data_dir: str
    floor_bin: str = ""
    nginx_bin: str = ""


@dataclass
class Server:
    name: str
    label: str
    requires: str  # a Python module, or "floor" / "nginx" for the two programs
    argv: Callable[[Context, int, str], List[str]]  # (context, port, app name) -> argv


def _tidegate(threads: int) -> Callable[[Context, int, str], List[str]]:
    return lambda ctx, port, app: [
        ctx.python, "-m", "tidegate", "--bind", f"{HOST}:{port}", "--threads", str(threads),
        "--chdir", HERE, f"bench_apps:{app}"]


def _granian(blocking_threads: Optional[int]) -> Callable[[Context, int, str], List[str]]:
    def argv(ctx: Context, port: int, app: str) -> List[str]:
        extra = ["--blocking-threads", str(blocking_threads)] if blocking_threads else []
        return [ctx.python, "-m", "granian", "--interface", "wsgi", "--host", HOST,
                "--port", str(port), *extra, "--working-dir", HERE, f"bench_apps:{app}"]
    return argv


def _gunicorn(*options: str) -> Callable[[Context, int, str], List[str]]:
    return lambda ctx, port, app: [
        ctx.python, "-m", "gunicorn", *options, "-b", f"{HOST}:{port}", "--chdir", HERE,
        f"bench_apps:{app}"]


def _bjoern(ctx: Context, port: int, app: str) -> List[str]:
    return [ctx.python, os.path.join(HERE, "bjoern_runner.py"), HOST, str(port), app]


def _floor(ctx: Context, port: int, app: str) -> List[str]:
    return [ctx.floor_bin, HOST, str(port)]


def _nginx(ctx: Context, port: int, app: str) -> List[str]:
    """nginx, one worker process, sendfile on, serving data_dir; the configuration is
    written into the scratch directory for this port."""
    prefix = os.path.join(ctx.workdir, f"nginx-{port}")
    os.makedirs(prefix, exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {HOST}:{port};
        root {ctx.data_dir};
    }}
}}
""")
    return [ctx.nginx_bin, "-e", os.path.join(prefix, "startup.log"), "-p", prefix, "-c", conf]


SERVERS: Dict[str, Server] = {s.name: s for s in [
    Server("tidegate", "tidegate, 1 worker, --threads 1 (default)", "tidegate", _tidegate(1)),
    Server("tidegate-t4", "tidegate, 1 worker, --threads 4", "tidegate", _tidegate(4)),
    Server("tidegate-t8", "tidegate, 1 worker, --threads 8", "tidegate", _tidegate(8)),
    Server("bjoern", "bjoern (bjoern.run), 1 process", "bjoern", _bjoern),
    Server("granian-bt1", "Granian --interface wsgi --blocking-threads 1, 1 worker",
           "granian", _granian(1)),
    Server("granian", "Granian --interface wsgi, defaults, 1 worker", "granian", _granian(None)),
    Server("granian-bt8", "Granian --interface wsgi --blocking-threads 8, 1 worker",
           "granian", _granian(8)),
    Server("gunicorn-sync", "gunicorn -k sync -w 2", "gunicorn", _gunicorn("-k", "sync", "-w", "2")),
    Server("gunicorn-gthread", "gunicorn -k gthread -w 1 --threads 8", "gunicorn",
           _gunicorn("-k", "gthread", "-w", "1", "--threads", "8")),
    Server("nginx", "nginx, 1 worker process, sendfile on", "nginx", _nginx),
    Server("floor", "floor: C epoll loop answering fixed bytes (bench/floor.c)", "floor", _floor),
]}

# The references the targets of issue 6 compare tidegate with.
BJOERN = "bjoern"
GRANIANS = ("granian-bt1", "granian", "granian-bt8")  # "Granian best": the best of those run


def find_nginx() -> str:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), "")


def build_floor(workdir: str) -> str:
    """Compile bench/floor.c into workdir; returns the binary's path. Raises RuntimeError
    with the compiler's message when it cannot be built."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise RuntimeError("no C compiler (gcc) to build bench/floor.c")
    out = os.path.join(workdir, "floor")
    result = subprocess.run([cc, "-O2", "-o", out, os.path.join(HERE, "floor.c")],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError("gcc failed on bench/floor.c: " + result.stderr.strip()[-300:])
    return out


def unavailable_reasons(names: List[str], ctx: Context,
                        install_status: Dict[str, str]) -> Dict[str, str]:
    """{server: why it cannot run} for the servers that cannot; fills ctx's programs."""
    reasons: Dict[str, str] = {}
    floor_error = ""
    for name in names:
        need = SERVERS[name].requires
        if need in install_status:
            reasons[name] = install_status[need]
        elif need == "nginx":
            ctx.nginx_bin = ctx.nginx_bin or find_nginx()
            if not ctx.nginx_bin:
                reasons[name] = "nginx is not installed"
        elif need == "floor":
            if not ctx.floor_bin and not floor_error:
                try:
                    ctx.floor_bin = build_floor(ctx.workdir)
                except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                    floor_error = str(error)
            if floor_error:
                reasons[name] = floor_error
        elif importlib.util.find_spec(need) is None:
            reasons[name] = f"python module {need!r} is not installed"
    return reasons
