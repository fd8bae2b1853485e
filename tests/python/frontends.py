"""Front servers for the gateway tests: nginx (fastcgi_pass, uwsgi_pass) and lighttpd (CGI),
from Debian's packages, started on loopback in a temporary directory and stopped by PID.

``require(binary)`` skips the test, with the reason, only when the binary is not installed
(``make system-deps`` installs both). Every process started here is recorded and stopped by
its PID; nothing is ever killed by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

NGINX = "/usr/sbin/nginx"
LIGHTTPD = "/usr/sbin/lighttpd"


def require(binary: str) -> str:
    """The path of ``binary``, or skip the test saying why."""
    if os.path.exists(binary) and os.access(binary, os.X_OK):
        return binary
    found = shutil.which(os.path.basename(binary))
    if found:
        return found
    pytest.skip(f"{binary} is not installed (make system-deps installs it with apt-get as root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"front server exited ({process.returncode}):\n{_read(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"front server never listened on {port}:\n{_read(log)}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class FrontServer:
    """A front server process started by the tests."""

    def __init__(self, args, directory: Path, port: int, error_log: Path):
        self.directory = directory
        self.port = port
        self.error_log = error_log
        with open(directory / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr, cwd=str(directory),
            )
        self.pid = self.process.pid
        wait_port(port, self.process, directory / "stderr.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return _read(self.error_log) + _read(self.directory / "stderr.log")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(10)


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    proxy_temp_path {dir}/proxy;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 64m;
    keepalive_timeout 30s;
    upstream app {{
        server {upstream};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
{location}
        }}
    }}
}}
"""

# What the README tells users to write (kept in sync by hand: the test runs this).
FASTCGI_LOCATION = """
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $document_uri;
            fastcgi_keep_conn on;
            fastcgi_pass app;
"""

UWSGI_LOCATION = """
            include /etc/nginx/uwsgi_params;
            uwsgi_pass app;
"""


def start_nginx(directory: Path, protocol: str, upstream: str) -> FrontServer:
    """nginx on a free loopback port passing every request to ``upstream``
    (``127.0.0.1:PORT`` or ``unix:PATH``) with fastcgi_pass or uwsgi_pass."""
    nginx = require(NGINX)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    location = FASTCGI_LOCATION if protocol == "fastcgi" else UWSGI_LOCATION
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, upstream=upstream, location=location))
    return FrontServer([nginx, "-c", str(conf), "-p", str(directory)], directory, port,
                       directory / "error.log")


LIGHTTPD_CONF = """
server.document-root = "{docroot}"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{dir}/lighttpd.pid"
server.errorlog = "{dir}/error.log"
server.modules = ("mod_cgi", "mod_alias")
alias.url = ("/cgi-bin/" => "{docroot}/cgi-bin/")
$HTTP["url"] =~ "^/cgi-bin/" {{
    cgi.assign = ("" => "")
}}
"""


def start_lighttpd(directory: Path, docroot: Path) -> FrontServer:
    """lighttpd on a free loopback port running the executables in ``docroot/cgi-bin`` as
    CGI scripts (``-D``: in the foreground, so its PID is ours to stop)."""
    lighttpd = require(LIGHTTPD)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "lighttpd.conf"
    conf.write_text(LIGHTTPD_CONF.format(dir=directory, port=port, docroot=docroot))
    return FrontServer([lighttpd, "-D", "-f", str(conf)], directory, port, directory / "error.log")
