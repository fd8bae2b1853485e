"""Options from a TOML file (``--config``, ``pyproject.toml``) and ``TIDEGATE_*`` variables,
with the real ``tidegate`` command: what they set is seen by served requests, the
precedence is command line > environment > file > default, ``--print-config`` shows it as
TOML, and every bad key or value is an exit status 2 naming the key and where it was."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conftest
from conftest import APPS_DIR, Server, read_response, tidegate_command

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

RUN_TIMEOUT = 20


def clean_env(**variables: str) -> dict:
    """The test server environment without any TIDEGATE_* the caller may have, plus these."""
    env = {k: v for k, v in conftest.server_env().items() if not k.startswith("TIDEGATE_")}
    env.update(variables)
    return env


def run_cli(*args, cwd=APPS_DIR, env=None):
    return subprocess.run(
        tidegate_command(*args), cwd=str(cwd), env=env or clean_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )


def print_config(*args, cwd=APPS_DIR, env=None) -> dict:
    """Run ``tidegate --print-config ARGS``; return {key: (value, source comment)} for
    each line, after checking the whole output parses as TOML with those values."""
    result = run_cli("--print-config", *args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    document = tomllib.loads(result.stdout)
    lines = {}
    for line in result.stdout.splitlines():
        match = re.fullmatch(r"([a-z][a-z0-9-]*) = (.*?)  # (.*)", line)
        if match:
            key = match.group(1)
            lines[key] = (document[key], match.group(3))
    assert set(lines) == set(document), result.stdout
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, host: str = "127.0.0.1", request_line: str = ""):
    with socket.create_connection((host, port), timeout=10) as sock:
        line = request_line or f"GET {path} HTTP/1.1"
        sock.sendall(f"{line}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return read_response(sock)


@pytest.fixture
def start():
    """Start ``tidegate ARGS`` (no --bind or APP added: they come from the configuration)."""
    started = []

    def start(*args: str, cwd: Path = APPS_DIR, env=None) -> Server:
        server = Server(tidegate_command(*args), cwd, env or clean_env())
        started.append(server)
        return server.wait_listening()

    yield start
    for server in started:
        server.stop()
        assert "panicked" not in server.log, server.log


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- values reach the server --------------------------------------------------------------


def test_file_sets_app_bind_and_threads(start, tmp_path):
    port = free_port()
    config = write_config(tmp_path / "tidegate.toml", f"""
app = "cli_apps"
bind = ["127.0.0.1:{port}"]
threads = 2
""")
    server = start("--config", str(config))
    assert server.port == port
    assert get(port, "/where").body.split()[:2] == [b"127.0.0.1", str(port).encode()]
    assert get(port, "/multithread").body == b"True"


def test_environment_overrides_file_and_command_line_overrides_environment(start, tmp_path):
    file_port, env_port = free_port(), free_port()
    config = write_config(tmp_path / "tidegate.toml", f"""
app = "cli_apps:app"
bind = "127.0.0.1:{file_port}"
threads = 1
""")
    env = clean_env(TIDEGATE_THREADS="2", TIDEGATE_BIND=f"127.0.0.1:{env_port}",
                    TIDEGATE_APP="cli_apps")
    server = start("--config", str(config), env=env)
    assert server.port == env_port
    assert get(env_port, "/multithread").body == b"True"  # threads 2 from the environment
    assert get(env_port, "/").body == b"hello from cli_apps.application"
    server.stop()

    server = start("--config", str(config), "--threads", "1", "--bind", "127.0.0.1:0",
                   "cli_apps:app", env=env)
    assert server.port not in (file_port, env_port)
    assert get(server.port, "/multithread").body == b"this is cli_apps.app, not application"
    server.stop()

    cli_port = free_port()
    server = start("--config", str(config), "--threads", "1", "--bind", f"127.0.0.1:{cli_port}",
                   env=env)
    assert get(cli_port, "/multithread").body == b"False"  # --threads 1 beats TIDEGATE_THREADS


def test_pyproject_tool_table_in_the_working_directory(start, tmp_path):
    port = free_port()
    write_config(tmp_path / "pyproject.toml", f"""
[project]
name = "someproject"

[tool.tidegate]
app = "cli_apps"
bind = ["127.0.0.1:{port}"]
threads = 2
""")
    server = start(cwd=tmp_path)
    assert server.port == port
    assert get(port, "/multithread").body == b"True"


def test_pyproject_is_looked_for_after_chdir(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    write_config(project / "pyproject.toml", '[tool.tidegate]\napp = "cli_apps"\nworkers = 3\n')
    lines = print_config("--chdir", str(project), cwd=tmp_path)
    where = f"from {project / 'pyproject.toml'} [tool.tidegate]"
    assert lines["workers"] == (3, where)
    assert lines["app"] == ("cli_apps", where)
    # --config wins over pyproject.toml.
    other = write_config(tmp_path / "other.toml", "workers = 5\n")
    lines = print_config("--chdir", str(project), "--config", str(other), cwd=tmp_path)
    assert lines["workers"] == (5, f"from {other}")
    assert "app" not in lines


def test_a_pyproject_without_the_table_is_ignored():
    # The repository's own pyproject.toml has no [tool.tidegate].
    root = Path(__file__).resolve().parents[2]
    assert (root / "pyproject.toml").is_file()
    lines = print_config("cli_apps", cwd=root)
    assert lines["workers"] == (1, "default")


def test_underscores_and_booleans_in_the_file(start, tmp_path):
    config = write_config(tmp_path / "tidegate.toml", """
app = "cli_apps"
bind = "127.0.0.1:0"
limit_request_line = 64
access_log = true
""")
    server = start("--config", str(config))
    assert get(server.port, "/").status == 200
    assert get(server.port, "/", request_line=f"GET /{'x' * 100} HTTP/1.1").status == 414
    deadline = time.monotonic() + 5
    while '"GET / HTTP/1.1" 200' not in server.stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"GET / HTTP/1.1" 200' in server.stdout, server.stdout


# --- list and boolean syntax of the variables ---------------------------------------------


def test_environment_list_is_comma_separated(start):
    first, second = free_port(), free_port()
    env = clean_env(TIDEGATE_BIND=f"127.0.0.1:{first}, 127.0.0.1:{second}")
    server = start("cli_apps", env=env)
    for port in (first, second):
        assert get(port, "/").status == 200, server.log


def test_environment_list_as_a_toml_array_keeps_commas(tmp_path):
    env = clean_env(TIDEGATE_PYTHONPATH='["a,b", "c"]',
                    TIDEGATE_BIND=f'["unix:{tmp_path}/x,y.sock"]')
    lines = print_config("cli_apps", env=env)
    assert lines["pythonpath"] == (["a,b", "c"], "from TIDEGATE_PYTHONPATH")
    assert lines["bind"] == ([f"unix:{tmp_path}/x,y.sock"], "from TIDEGATE_BIND")


@pytest.mark.parametrize("word, value", [
    ("true", True), ("1", True), ("yes", True), ("YES", True),
    ("false", False), ("0", False), ("no", False), ("False", False),
])
def test_environment_booleans(word, value):
    lines = print_config("cli_apps", env=clean_env(TIDEGATE_ACCESS_LOG=word, TIDEGATE_PRELOAD=word))
    assert lines["access-log"] == (value, "from TIDEGATE_ACCESS_LOG")
    assert lines["preload"] == (value, "from TIDEGATE_PRELOAD")


def test_environment_boolean_reaches_the_server(start):
    server = start("--bind", "127.0.0.1:0", "cli_apps", env=clean_env(TIDEGATE_ACCESS_LOG="yes"))
    assert get(server.port, "/").status == 200
    deadline = time.monotonic() + 5
    while '"GET / HTTP/1.1" 200' not in server.stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"GET / HTTP/1.1" 200' in server.stdout, server.stdout


def test_an_empty_variable_counts_as_unset():
    lines = print_config("cli_apps", env=clean_env(TIDEGATE_WORKERS=""))
    assert lines["workers"] == (1, "default")


# --- --print-config -------------------------------------------------------------------------


def test_print_config_names_each_source_and_reads_back(tmp_path):
    config = write_config(tmp_path / "tidegate.toml", """
app = "cli_apps"
workers = 2
threads = 3
umask = "022"
log-level = "WARNING"
pythonpath = ["lib", "vendor"]
""")
    env = clean_env(TIDEGATE_WORKERS="4", TIDEGATE_THREADS="5", TIDEGATE_RELOAD="yes")
    result = run_cli("--print-config", "--config", str(config), "--threads", "6",
                     "--umask", "027", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "workers = 4  # from TIDEGATE_WORKERS\n" in out
    assert "threads = 6  # from the command line\n" in out
    assert "reload = true  # from TIDEGATE_RELOAD\n" in out
    assert f'app = "cli_apps"  # from {config}\n' in out
    assert f'log-level = "warning"  # from {config}\n' in out
    assert f'pythonpath = ["lib", "vendor"]  # from {config}\n' in out
    assert 'umask = "027"  # from the command line\n' in out  # as given: 0o27 is not "23"
    assert "backlog = 2048  # default\n" in out
    assert f"# configuration file: {config}\n" in out
    document = tomllib.loads(out)
    assert document["workers"] == 4 and document["max-connections"] == 4096

    # The output is itself a configuration file that gives the same configuration.
    again = write_config(tmp_path / "again.toml", out)
    reread = print_config("--config", str(again))
    assert {key: value for key, (value, _) in reread.items()} == document
    assert reread["umask"] == ("027", f"from {again}")


def test_print_config_lists_every_option_of_the_parser():
    """Generic: an option added to build_parser() is a configuration key with no other
    change, under its long name."""
    from tidegate.cli import build_parser

    result = run_cli("--print-config", "cli_apps")
    assert result.returncode == 0, result.stderr
    keys = set(re.findall(r"^#? ?([a-z][a-z0-9-]*)(?: =|:)", result.stdout, re.M))
    for action in build_parser()._actions:
        longs = [o[2:] for o in action.option_strings if o.startswith("--")]
        if not longs or action.default is argparse.SUPPRESS or longs[0] in ("config", "print-config"):
            continue
        assert longs[0] in keys, (longs[0], result.stdout)
    assert "app" in keys


def test_print_config_does_not_need_an_app():
    lines = print_config()
    assert "app" not in lines
    assert lines["threads"] == (1, "default")


# --- errors ---------------------------------------------------------------------------------


FILE_ERRORS = [
    ('workers = "four"', "key 'workers'", "'four' is not a whole number"),
    ("workers = -1", "key 'workers'", "must be at least 1, got -1"),
    ("workers = 2.5", "key 'workers'", "'2.5' is not a whole number"),
    ("workers = true", "key 'workers'", "expected a number or a string, got boolean"),
    ("bind = 5", "key 'bind'", "expected an array of strings (or one string), got integer 5"),
    ('bind = ["127.0.0.1:0", 5]', "key 'bind'", "item 2 of the array: expected a string"),
    ('bind = "127.0.0.1:70000"', "key 'bind'", "70000"),
    ('preload = "yes"', "key 'preload'", "expected true or false, got string"),
    ('log_level = "loud"', "key 'log_level'", "invalid choice: 'loud'"),
    ("wrkers = 2", "unknown key 'wrkers'", "did you mean 'workers'?"),
    ("[server]\nworkers = 2", "unknown key 'server'", ""),
    ("threads = 2\nthreads_ = 1", "unknown key 'threads_'", ""),
    ("max_requests = 1\nmax-requests = 2", "key 'max-requests'", "given twice"),
    ('protocol = "cgi"', "key 'protocol'", "only accepted on the command line"),
    ("app = ", "argument --config", "line 1"),
]


@pytest.mark.parametrize("text, key, problem", FILE_ERRORS)
def test_bad_file_value_exits_2_naming_key_and_file(tmp_path, text, key, problem):
    config = write_config(tmp_path / "tidegate.toml", text + "\n")
    result = run_cli("--config", str(config), "cli_apps")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("usage: tidegate"), result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("tidegate: error: "), result.stderr
    assert key in error and str(config) in error and problem in error, error


ENV_ERRORS = [
    ("TIDEGATE_WORKERS", "four", "'four' is not a whole number"),
    ("TIDEGATE_WORKERS", "-1", "must be at least 1, got -1"),
    ("TIDEGATE_PRELOAD", "maybe", "expected true/false, 1/0 or yes/no, got 'maybe'"),
    ("TIDEGATE_BIND", "127.0.0.1:0,nonsense:", "nonsense:"),
    ("TIDEGATE_BIND", '["127.0.0.1:0", 5]', "expected a string, got integer 5"),
    ("TIDEGATE_BIND", '["unterminated', "not a TOML array"),
    ("TIDEGATE_LOG_LEVEL", "loud", "invalid choice: 'loud'"),
    ("TIDEGATE_PROTOCOL", "cgi", "only accepted on the command line"),
    ("TIDEGATE_WRKERS", "2", "unknown environment variable TIDEGATE_WRKERS (did you mean TIDEGATE_WORKERS?)"),
    ("TIDEGATE_NO_SUCH_THING", "1", "unknown environment variable TIDEGATE_NO_SUCH_THING"),
    ("TIDEGATE_CGI_SCRIPT", "x", "unknown environment variable TIDEGATE_CGI_SCRIPT"),
]


@pytest.mark.parametrize("name, value, problem", ENV_ERRORS)
def test_bad_variable_exits_2_naming_it(name, value, problem):
    result = run_cli("cli_apps", env=clean_env(**{name: value}))
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("usage: tidegate"), result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("tidegate: error: "), result.stderr
    assert name in error and problem in error, error


def test_errors_found_after_parsing_name_the_source(tmp_path):
    """--chdir and --hooks are checked when used: the error still says where they came from."""
    result = run_cli("cli_apps", env=clean_env(TIDEGATE_CHDIR=str(tmp_path / "nowhere")))
    assert result.returncode == 2, result.stderr
    assert "tidegate: error: environment variable TIDEGATE_CHDIR: cannot change to" in result.stderr
    config = write_config(tmp_path / "tidegate.toml", 'hooks = "no_such_hooks_module"\n')
    result = run_cli("--config", str(config), "cli_apps")
    assert result.returncode == 2, result.stderr
    assert f"tidegate: error: key 'hooks' in {config}: cannot load" in result.stderr


def test_missing_config_file_exits_2(tmp_path):
    missing = tmp_path / "missing.toml"
    for args, env, origin in [
        (["--config", str(missing)], None, "argument --config"),
        ([], clean_env(TIDEGATE_CONFIG=str(missing)), "environment variable TIDEGATE_CONFIG"),
    ]:
        result = run_cli(*args, "cli_apps", env=env)
        assert result.returncode == 2, result.stderr
        assert f"tidegate: error: {origin}: cannot read {str(missing)!r}" in result.stderr


def test_broken_pyproject_exits_2_naming_it(tmp_path):
    write_config(tmp_path / "pyproject.toml", "[tool.tidegate\n")
    result = run_cli("cli_apps", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"cannot read {tmp_path / 'pyproject.toml'}" in result.stderr


def test_app_is_still_required_when_nothing_configures_it(tmp_path):
    config = write_config(tmp_path / "tidegate.toml", "workers = 2\n")
    result = run_cli("--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "the following arguments are required: APP" in result.stderr


# --- CGI ------------------------------------------------------------------------------------


CGI_ENV = {
    "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_NAME": "example.org", "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/app.cgi",
    "QUERY_STRING": "", "REMOTE_ADDR": "192.0.2.7",
}


@pytest.mark.parametrize("extra", [[], ["--log-level", "info"]], ids=["fast-path", "argparse"])
def test_cgi_ignores_variables_and_files(tmp_path, extra):
    """A CGI environment is the web server's: TIDEGATE_* there (and a pyproject.toml in
    the directory) do not change or break the script, on both CLI paths."""
    write_config(tmp_path / "pyproject.toml", "[tool.tidegate]\nbogus = 1\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(APPS_DIR),
           **CGI_ENV, "TIDEGATE_WORKERS": "not a number", "TIDEGATE_BOGUS": "1"}
    result = subprocess.run(
        tidegate_command("--protocol", "cgi", *extra, "cgi_apps:hello"), env=env,
        cwd=str(tmp_path), capture_output=True, timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"Status: 200 OK\r\n"), result.stdout
    assert result.stdout.endswith(b"\r\n\r\nHello, World!"), result.stdout


# --- the mechanism, on an option the command line does not have (yet) ------------------------


def test_any_new_option_is_configurable_with_its_own_validation(tmp_path, capsys):
    """Options added to the parser later work from a file and the environment, through
    their own type= and choices, as repeatable lists and flags."""
    from tidegate.config import add_config_options, parse_configured_args

    def even(text: str) -> int:
        value = int(text)
        if value % 2:
            raise argparse.ArgumentTypeError(f"{value} is odd")
        return value

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog="tidegate")
        p.add_argument("app", metavar="APP")
        p.add_argument("--static-size", type=even, default=2)
        p.add_argument("--static-mode", choices=["fast", "safe"], default="safe")
        p.add_argument("--static-map", action="append", metavar="URL=DIR")
        p.add_argument("--static-gzip", action="store_true")
        p.add_argument("--no-static-cache", dest="static_cache", action="store_false")
        p.add_argument("-v", "--verbose", action="count", default=0)
        add_config_options(p)
        return p

    config = write_config(tmp_path / "tidegate.toml", """
app = "x"
static_size = 4
static-map = ["/a=a", "/b=b"]
no-static-cache = true
verbose = 2
""")
    options = parse_configured_args(parser(), ["--config", str(config)],
                                    {"TIDEGATE_STATIC_MODE": "fast", "TIDEGATE_STATIC_GZIP": "yes"})
    assert (options.app, options.static_size, options.static_mode) == ("x", 4, "fast")
    assert options.static_map == ["/a=a", "/b=b"]
    assert (options.static_gzip, options.static_cache, options.verbose) == (True, False, 2)

    options = parse_configured_args(parser(), ["--config", str(config), "--static-map", "/c=c",
                                               "-v"], {"TIDEGATE_STATIC_MAP": "/d=d"})
    assert options.static_map == ["/c=c"] and options.verbose == 1

    for environ, message in [
        ({"TIDEGATE_STATIC_SIZE": "3"}, "environment variable TIDEGATE_STATIC_SIZE: 3 is odd"),
        ({"TIDEGATE_STATIC_MODE": "slow"}, "TIDEGATE_STATIC_MODE: invalid choice: 'slow'"),
        ({"TIDEGATE_STATIC_SIZE": "x"}, "TIDEGATE_STATIC_SIZE: invalid even value: 'x'"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            parse_configured_args(parser(), ["--config", str(config)], environ)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, message
