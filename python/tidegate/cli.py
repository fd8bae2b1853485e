"""The ``tidegate`` command line: parse options, load the app, hand both to the Rust engine.

Option names follow gunicorn's where gunicorn has one, so a team can switch by changing the
command name. Errors a user can make (a bad option, an app that does not import, a port in
use) end in one message naming the problem and a non-zero exit status:

* 2: a bad option (argparse's convention);
* 4: the application could not be loaded (gunicorn's APP_LOAD_ERROR);
* 1: the server could not start (for example, the address is in use).
"""

from __future__ import annotations

import os
import sys

# argparse, signal and typing are imported where needed: a CGI script runs this module once per
# request, and argparse's import alone costs more than the rest of tidegate.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import List, Optional, Sequence

from tidegate import DEFAULT_BIND, LOG_LEVELS, PROTOCOLS, __version__, run_cgi, serve
from tidegate._tidegate import check_bind
from tidegate.loader import AppLoadError, load_app

EXIT_SERVER_ERROR = 1
EXIT_APP_LOAD_ERROR = 4


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``tidegate [OPTIONS] APP``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="tidegate",
        description="Serve a WSGI application (PEP 3333) with tidegate's Rust engine.",
        epilog=(
            "APP is MODULE:NAME, MODULE (uses 'application', then 'app') or "
            "MODULE:FACTORY(ARGS) with literal ARGS, e.g. myproject.wsgi:application."
        ),
    )
    parser.add_argument("app", metavar="APP", help="the WSGI application to serve")
    # A CGI script whose first line is "#!/usr/bin/env -S tidegate --protocol cgi APP" is
    # run as that command with the script's path appended: accept and ignore it.
    parser.add_argument("cgi_script", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument(
        "--protocol",
        default="http",
        choices=PROTOCOLS,
        help=(
            "what to speak: http (default); fastcgi or uwsgi to serve a front server "
            "(nginx fastcgi_pass/uwsgi_pass) on the --bind addresses; cgi to answer one "
            "request as a CGI script (environment, stdin, stdout) and exit"
        ),
    )
    parser.add_argument(
        "-b",
        "--bind",
        action="append",
        metavar="ADDRESS",
        help=(
            "address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH; "
            f"repeat to listen on several (default {DEFAULT_BIND})"
        ),
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        metavar="N",
        help="number of Python threads running the application (default 1)",
    )
    parser.add_argument(
        "--chdir", metavar="DIR", help="change to DIR before loading the app (added to sys.path)"
    )
    parser.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIRS",
        help="directories (comma-separated, repeatable) to add to sys.path before loading the app",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=LOG_LEVELS,
        help="error log level (default info)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="write an access log line per request to standard output",
    )
    parser.add_argument(
        "--access-logfile",
        metavar="FILE",
        help="write the access log to FILE ('-' for standard output); implies --access-log",
    )
    parser.add_argument("--version", action="version", version=f"tidegate {__version__}")
    return parser


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _python_paths(values: Sequence[str]) -> List[str]:
    paths = []
    for value in values:
        paths.extend(part for part in value.split(",") if part)
    return paths


def _cgi_options(args: Sequence[str]) -> Optional[argparse.Namespace]:
    """The options of a plain CGI invocation, read without argparse, or None for anything
    else (which argparse then parses, errors included): ``--protocol cgi``, ``--chdir DIR``
    and ``--pythonpath DIRS`` (as ``--opt value`` or ``--opt=value``), APP, and the script
    path a shebang line appends."""
    names = {"--protocol": "protocol", "--chdir": "chdir", "--pythonpath": "pythonpath"}
    values: dict = {"protocol": None, "chdir": None, "pythonpath": []}
    positional = []
    arguments = iter(args)
    for arg in arguments:
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, equals, value = arg.partition("=")
        if name not in names:
            return None
        if not equals:
            value = next(arguments, "-")
            if value.startswith("-"):
                return None
        if name == "--pythonpath":
            values["pythonpath"].append(value)
        else:
            values[names[name]] = value
    if values["protocol"] != "cgi" or not 1 <= len(positional) <= 2:
        return None
    from types import SimpleNamespace

    options = SimpleNamespace(
        app=positional[0], cgi_script=positional[1] if len(positional) == 2 else None,
        bind=None, threads=1, log_level="info", access_log=False, access_logfile=None, **values,
    )
    return options  # type: ignore[return-value]


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the command line; exits the process with the status described in the module doc."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = _cgi_options(args)
    if options is None:
        options = build_parser().parse_args(args)

    if options.cgi_script is not None and options.protocol != "cgi":
        build_parser().error(f"unrecognized arguments: {options.cgi_script}")
    binds = options.bind or [DEFAULT_BIND]
    for bind in binds:
        try:
            check_bind(bind)
        except ValueError as error:
            build_parser().error(f"argument -b/--bind: {error}")

    if options.chdir:
        try:
            os.chdir(options.chdir)
        except OSError as error:
            build_parser().error(
                f"argument --chdir: cannot change to {options.chdir!r}: {error.strerror}"
            )
    # Like gunicorn: the working directory comes first on sys.path, then --pythonpath.
    for path in reversed(_python_paths(options.pythonpath)):
        sys.path.insert(0, os.path.abspath(path))
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)

    try:
        app = load_app(options.app)
    except AppLoadError as error:
        print(f"tidegate: error: {error}", file=sys.stderr)
        sys.exit(EXIT_APP_LOAD_ERROR)

    if options.protocol == "cgi":
        # One request; run_cgi raises SystemExit(1) if the response had to be cut.
        run_cgi(app)
        return

    access_log = options.access_logfile or ("-" if options.access_log else None)

    import signal

    # SIGTERM asks for a graceful stop, like SIGINT: the engine polls for signals, stops
    # accepting, finishes in-flight requests and returns.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        serve(
            app,
            binds,
            options.threads,
            access_log=access_log,
            log_level=options.log_level,
            protocol=options.protocol,
        )
    except KeyboardInterrupt:
        sys.exit(0)
    except OSError as error:
        print(f"tidegate: error: {error}", file=sys.stderr)
        sys.exit(EXIT_SERVER_ERROR)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    import signal

    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")
