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
    from typing import Any, Callable, List, Optional, Sequence

from tidegate import DEFAULT_BIND, LOG_LEVELS, PROTOCOLS, __version__, run_cgi
from tidegate._tidegate import check_access_log_format, check_bind, check_proxy, log, supervise
from tidegate.loader import AppLoadError, check_findable, load_app

EXIT_SERVER_ERROR = 1
EXIT_APP_LOAD_ERROR = 4
# --cert-reqs values: names, and gunicorn's numbers (ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED).
CERT_REQS = ("none", "optional", "required", "0", "1", "2")


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
    parser.add_argument(
        "app", metavar="APP", help="the WSGI application to serve (or app in the configuration)"
    )
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
        type=_bind_address,
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
        "-w",
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="number of worker processes (default 1)",
    )
    parser.add_argument(
        "--preload",
        action="store_true",
        help="load the app once in the supervisor before forking the workers "
        "(memory shared copy-on-write; a reload then keeps the old code)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="a request running longer than S seconds is hung: its Python stack is logged, "
        "the client gets a 504 and the worker is replaced; 0 disables (default 30)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="how long a stop or reload waits for in-flight requests (default 30)",
    )
    parser.add_argument(
        "--max-requests",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="replace a worker after it served N requests; 0 disables (default 0)",
    )
    parser.add_argument(
        "--max-requests-jitter",
        type=_non_negative_int,
        default=0,
        metavar="J",
        help="add a random 0..J to each worker's --max-requests so they do not all restart together",
    )
    parser.add_argument(
        "--max-rss",
        type=_non_negative_int,
        default=0,
        metavar="MIB",
        help="replace a worker whose resident memory exceeds MIB mebibytes; 0 disables",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="development: restart workers when a Python file of the app changes",
    )
    parser.add_argument(
        "--pid", metavar="FILE", help="write the supervisor's process id to FILE"
    )
    parser.add_argument(
        "--backlog",
        type=_positive_int,
        default=2048,
        metavar="N",
        help="connections the kernel queues before they are accepted (default 2048)",
    )
    parser.add_argument(
        "--umask",
        type=_octal,
        default=None,
        metavar="MASK",
        help="umask (octal, e.g. 007) for unix socket files",
    )
    parser.add_argument(
        "--hooks",
        metavar="MODULE_OR_FILE",
        help="a module or .py file defining post_fork, worker_exit, pre_request and/or "
        "post_request (gunicorn's server hooks)",
    )
    limits = parser.add_argument_group("limits and timeouts")
    limits.add_argument(
        "--limit-request-line", type=_non_negative_int, default=4094, metavar="BYTES",
        help="longest request line; longer is answered 414; 0 means no limit (default 4094)",
    )
    limits.add_argument(
        "--limit-request-fields", type=_positive_int, default=100, metavar="N",
        help="most header fields; more is answered 431 (default 100)",
    )
    limits.add_argument(
        "--limit-request-field-size", type=_non_negative_int, default=8190, metavar="BYTES",
        help="longest header field line; longer is answered 431; 0 means no limit (default 8190)",
    )
    limits.add_argument(
        "--limit-request-body", type=_non_negative_int, default=0, metavar="BYTES",
        help="largest request body; larger is answered 413; 0 means no limit (default 0)",
    )
    limits.add_argument(
        "--keep-alive", type=_seconds, default=5.0, metavar="S",
        help="close keep-alive connections idle this long (default 5)",
    )
    limits.add_argument(
        "--header-timeout", type=_seconds, default=10.0, metavar="S",
        help="a request head must arrive within S seconds, or 408 and close (default 10)",
    )
    limits.add_argument(
        "--body-timeout", type=_seconds, default=30.0, metavar="S",
        help="the request body may stall this long while the app waits for it (default 30)",
    )
    limits.add_argument(
        "--write-timeout", type=_seconds, default=30.0, metavar="S",
        help="close a connection whose client reads nothing of the response for S seconds (default 30)",
    )
    limits.add_argument(
        "--max-connections", type=_positive_int, default=4096, metavar="N",
        help="open connections per worker; more wait in the backlog (default 4096)",
    )
    static = parser.add_argument_group("static files (answered by the engine, never the app)")
    static.add_argument(
        "--static", action="append", default=[], type=_static_mount, metavar="URL_PREFIX=DIRECTORY",
        help="serve the files of DIRECTORY (relative to --chdir) under URL_PREFIX, e.g. "
        "/static=static; repeatable, the longest prefix wins (default: none)",
    )
    static.add_argument(
        "--static-cache-control", metavar="VALUE", default=None,
        help='Cache-Control sent with static files, e.g. "public, max-age=3600" (default: none)',
    )
    proxy = parser.add_argument_group("behind a proxy (HTTP)")
    allow_ips = proxy.add_argument(
        "--forwarded-allow-ips", default="127.0.0.1,::1", metavar="IPS",
        help="comma-separated IPs and networks (10.0.0.0/8, fd00::/8) or '*' trusted to send "
        "X-Forwarded-*/Forwarded headers and PROXY headers; from other peers those headers "
        "are removed; unix-socket peers are always trusted (default 127.0.0.1,::1)",
    )
    # A configuration file may give the list as a TOML array (tidegate.config).
    setattr(allow_ips, "tidegate_comma_separated", True)
    proxy.add_argument(
        "--proxy-protocol", action="store_true",
        help="connections from --forwarded-allow-ips start with a PROXY protocol v1/v2 header "
        "(HAProxy send-proxy) naming the client; without it they are closed (default off)",
    )
    proxy.add_argument(
        "--root-path", default="", metavar="PATH",
        help="the path the app is mounted under behind the proxy, e.g. /app: SCRIPT_NAME is "
        "PATH and PATH_INFO the rest of the request path (default: none)",
    )
    tls = parser.add_argument_group("TLS and HTTP/2")
    tls.add_argument(
        "--certfile", metavar="FILE",
        help="serve HTTPS with this PEM certificate chain (leaf first); needs --keyfile",
    )
    tls.add_argument(
        "--keyfile", metavar="FILE",
        help="the certificate's PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
    )
    tls.add_argument(
        "--ca-certs", metavar="FILE",
        help="PEM CA certificates that client certificates must chain to (see --cert-reqs)",
    )
    tls.add_argument(
        "--cert-reqs", default="none", type=str.lower, choices=CERT_REQS, metavar="REQ",
        help="client certificates: none (not asked for), optional (checked if sent) or "
        "required; 0, 1, 2 as in gunicorn (default none, also with --ca-certs)",
    )
    tls.add_argument(
        "--http", default="auto", choices=("1", "2", "auto"),
        help="HTTP versions: 1 (HTTP/1.1 only), 2 (HTTP/2 only: ALPN h2 on TLS, prior "
        "knowledge h2c on cleartext) or auto: ALPN h2 and http/1.1 on TLS, and on cleartext "
        "HTTP/2 for connections that open with its preface (default auto)",
    )
    tls.add_argument(
        "--http2-max-concurrent-streams", type=_positive_int, default=100, metavar="N",
        help="streams one HTTP/2 connection may have open at once (default 100)",
    )
    tls.add_argument(
        "--http2-initial-window-size", type=_window_size, default=1048576, metavar="BYTES",
        help="request body bytes an HTTP/2 client may send per stream ahead of the app's "
        "reads (65535 to 2147483647; default 1048576)",
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
    parser.add_argument(
        "--access-logformat",
        metavar="FORMAT",
        default=None,
        help="access log line format, with gunicorn's atoms: h l u t r m U q H s B b f a T M D L p, "
        "%%({header}i)s, %%({header}o)s, %%({variable}e)s (default gunicorn's: "
        "'%%(h)s %%(l)s %%(u)s %%(t)s \"%%(r)s\" %%(s)s %%(b)s \"%%(f)s\" \"%%(a)s\"')",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text: gunicorn's readable lines; json: one JSON object per line, for both the "
        "error log and the access log (the access log's keys are its format's atoms) "
        "(default text)",
    )
    parser.add_argument(
        "--metrics-bind",
        metavar="HOST:PORT",
        default=None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics, summed over the workers "
        "(default: off)",
    )
    parser.add_argument("--version", action="version", version=f"tidegate {__version__}")
    from tidegate.config import add_config_options

    add_config_options(parser)
    return parser


def _bind_address(text: str) -> str:
    import argparse

    try:
        check_bind(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _window_size(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 65535 <= value <= 2147483647:
        raise argparse.ArgumentTypeError(f"{value} is outside 65535..2147483647")
    return value


def _tls_options(
    parser: "argparse.ArgumentParser", options: "argparse.Namespace", base: str
) -> Optional[dict]:
    """The TLS settings for the engine, after the checks argparse cannot make alone; relative
    paths are taken from ``base``."""
    if options.certfile is None and options.keyfile is None:
        if options.ca_certs is not None:
            _option_error(parser, options, "--ca-certs", "needs --certfile and --keyfile (TLS)")
        if options.cert_reqs not in ("none", "0"):
            _option_error(parser, options, "--cert-reqs", "needs --certfile and --keyfile (TLS)")
        return None
    if options.certfile is None or options.keyfile is None:
        # Named as the one that was given (from a file, its key), the other being missing.
        given = "--keyfile" if options.certfile is None else "--certfile"
        _option_error(parser, options, given, "TLS needs both --certfile and --keyfile")
    if options.protocol != "http":
        _option_error(parser, options, "--certfile", f"TLS is for --protocol http, not {options.protocol}")
    if options.cert_reqs not in ("none", "0") and options.ca_certs is None:
        _option_error(
            parser, options, "--cert-reqs",
            f"{options.cert_reqs} needs --ca-certs to check client certificates against",
        )
    return {
        "certfile": os.path.join(base, options.certfile),
        "keyfile": os.path.join(base, options.keyfile),
        "ca_certs": os.path.join(base, options.ca_certs) if options.ca_certs else None,
        "cert_reqs": options.cert_reqs,
    }


def _seconds(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _octal(text: str) -> int:
    import argparse

    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mask like 007") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"{text!r} is not a mask between 000 and 777")
    return value


def _static_mount(text: str) -> "tuple[str, str]":
    import argparse

    prefix, equals, directory = text.partition("=")
    if not equals or not prefix or not directory:
        raise argparse.ArgumentTypeError(f"{text!r} is not URL_PREFIX=DIRECTORY, e.g. /static=static")
    if not prefix.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: the URL prefix must start with '/'")
    return prefix, directory


def _static_mounts(parser: argparse.ArgumentParser, options: argparse.Namespace) -> List[Any]:
    """The --static mounts with absolute directories (checked after --chdir)."""
    if options.static and options.protocol != "http":
        _option_error(parser, options, "--static", f"only served with --protocol http, not {options.protocol}")
    if options.static_cache_control is not None and not options.static:
        _option_error(parser, options, "--static-cache-control", "needs --static")
    mounts = []
    for prefix, directory in options.static:
        if not os.path.isdir(directory):
            problem = "is not a directory" if os.path.exists(directory) else "does not exist"
            _option_error(parser, options, "--static",
                          f"{prefix}={directory}: directory {directory!r} {problem}")
        mounts.append((prefix, os.path.abspath(directory)))
    return mounts


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
        # Options also come from TIDEGATE_* variables and a TOML file (not for CGI).
        from tidegate.config import parse_configured_args

        options = parse_configured_args(build_parser(), args)

    if options.cgi_script is not None and options.protocol != "cgi":
        build_parser().error(f"unrecognized arguments: {options.cgi_script}")
    binds = options.bind or [DEFAULT_BIND]
    for bind in binds:
        try:
            check_bind(bind)
        except ValueError as error:
            _option_error(build_parser(), options, "-b/--bind", str(error))
    proxy = None
    if options.protocol != "cgi":
        proxy = {
            "forwarded_allow_ips": options.forwarded_allow_ips,
            "proxy_protocol": options.proxy_protocol,
            "root_path": options.root_path,
        }
        try:
            check_proxy(proxy, options.protocol)
        except ValueError as error:
            _engine_error(build_parser(), options, str(error))
    # Relative certificate paths are relative to where the command runs, not --chdir.
    launch_dir = os.getcwd()

    if options.chdir:
        try:
            os.chdir(options.chdir)
        except OSError as error:
            build_parser().error(
                f"{_origin(options, 'chdir', 'argument --chdir')}: "
                f"cannot change to {options.chdir!r}: {error.strerror}"
            )
    # Like gunicorn: the working directory comes first on sys.path, then --pythonpath.
    for path in reversed(_python_paths(options.pythonpath)):
        sys.path.insert(0, os.path.abspath(path))
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)

    if options.protocol == "cgi":
        try:
            app = load_app(options.app)
        except AppLoadError as error:
            print(f"tidegate: error: {error}", file=sys.stderr)
            sys.exit(EXIT_APP_LOAD_ERROR)
        # One request; run_cgi raises SystemExit(1) if the response had to be cut.
        run_cgi(app)
        return

    import functools

    from tidegate._process import load_hooks

    parser = build_parser()
    tls = _tls_options(parser, options, launch_dir)
    if options.access_logformat is not None:
        try:
            check_access_log_format(options.access_logformat)
        except ValueError as error:
            _option_error(parser, options, "--access-logformat", str(error))
    if options.metrics_bind is not None:
        try:
            host, colon, port = options.metrics_bind.rpartition(":")
            if options.metrics_bind.startswith("unix:") or not colon or not host or not port.isdigit():
                raise ValueError(f"{options.metrics_bind!r} must be HOST:PORT (TCP)")
            check_bind(options.metrics_bind)
        except ValueError as error:
            _option_error(parser, options, "--metrics-bind", str(error))
    if options.reload and options.preload:
        parser.error("--reload cannot be used with --preload (a preloaded app cannot be re-imported)")

    static_mounts = _static_mounts(parser, options)

    try:
        hooks = load_hooks(options.hooks)
    except Exception as error:  # noqa: BLE001 - any failure in the user's hooks file
        where = _origin(options, "hooks", "argument --hooks")
        parser.error(f"{where}: cannot load {options.hooks!r}: {error}")

    if options.preload:
        try:
            app = load_app(options.app)
        except AppLoadError as error:
            print(f"tidegate: error: {error}", file=sys.stderr)
            sys.exit(EXIT_APP_LOAD_ERROR)
        loader = functools.partial(_preloaded, app)
    else:
        try:
            check_findable(options.app)
        except AppLoadError as error:
            print(f"tidegate: error: {error}", file=sys.stderr)
            sys.exit(EXIT_APP_LOAD_ERROR)
        loader = functools.partial(_load_in_worker, options.app)

    access_log = options.access_logfile or ("-" if options.access_log else None)
    try:
        code = supervise(
            loader,
            binds=binds,
            threads=options.threads,
            workers=options.workers,
            access_log=access_log,
            log_level=options.log_level,
            timeout=options.timeout,
            graceful_timeout=options.graceful_timeout,
            max_requests=options.max_requests,
            max_requests_jitter=options.max_requests_jitter,
            max_rss=options.max_rss,
            reload=options.reload,
            pid_file=options.pid,
            backlog=options.backlog,
            umask=options.umask,
            hooks=hooks,
            limits={
                "limit_request_line": options.limit_request_line,
                "limit_request_fields": options.limit_request_fields,
                "limit_request_field_size": options.limit_request_field_size,
                "limit_request_body": options.limit_request_body,
                "keep_alive": options.keep_alive,
                "header_timeout": options.header_timeout,
                "body_timeout": options.body_timeout,
                "write_timeout": options.write_timeout,
                "max_connections": options.max_connections,
                "http2_max_concurrent_streams": options.http2_max_concurrent_streams,
                "http2_initial_window_size": options.http2_initial_window_size,
            },
            protocol=options.protocol,
            static_files=static_mounts,
            static_cache_control=options.static_cache_control,
            proxy=proxy,
            tls=tls,
            http=options.http,
            log_format=options.log_format,
            access_log_format=options.access_logformat,
            metrics_bind=options.metrics_bind,
        )
    except ValueError as error:
        if not str(error).startswith("--static"):
            raise
        _engine_error(parser, options, str(error))  # a --static mount the engine refused
    except OSError as error:
        # A TLS file the engine could not use ("--certfile FILE: no such file") is named
        # as it was set: the option, or the key of a configuration file, or the variable.
        print(f"tidegate: error: {_named_as_set(options, str(error))}", file=sys.stderr)
        sys.exit(EXIT_SERVER_ERROR)
    sys.exit(code)


def _option_error(parser: "argparse.ArgumentParser", options: Any, option: str, problem: str) -> None:
    """``parser.error`` about ``option`` (``"--static"``, ``"-b/--bind"``) named as the user
    set it: ``argument --static`` on the command line, else the key and its file, or the
    variable (a value from a configuration file is checked after parsing too)."""
    dest = option.rpartition("--")[2].replace("-", "_")
    parser.error(f"{_origin(options, dest, f'argument {option}')}: {problem}")


def _engine_error(parser: "argparse.ArgumentParser", options: Any, message: str) -> None:
    """``parser.error`` for a ValueError of the engine that starts with the option it is
    about (``--root-path: "app" must start with '/'``)."""
    option, separator, problem = message.partition(": ")
    if option.startswith("--") and " " not in option and separator:
        _option_error(parser, options, option, problem)
    parser.error(f"argument {message}")


def _named_as_set(options: Any, message: str) -> str:
    """``message`` (an engine error such as ``--certfile FILE: no such file``) with its
    leading option replaced by the key and file, or the variable, that set it."""
    option, separator, rest = message.partition(" ")
    if not option.startswith("--") or not separator:
        return message
    argument = f"argument {option}"
    where = _origin(options, option[2:].replace("-", "_"), argument)
    return message if where == argument else f"{where}: {rest}"


def _origin(options: Any, dest: str, argument: str) -> str:
    """``argument``, or where a configuration file or variable set ``dest``."""
    if not hasattr(options, "_config_sources"):  # the CGI fast path reads no configuration
        return argument
    from tidegate.config import origin

    return origin(options, dest, argument)


def _preloaded(app: Callable[..., Any]) -> Callable[..., Any]:
    return app


def _load_in_worker(spec: str) -> Callable[..., Any]:
    """Runs in each worker (without --preload): a failure ends the worker with status 4,
    which the supervisor reports and, at start-up, exits with."""
    try:
        return load_app(spec)
    except AppLoadError as error:
        # Through the error log, so --log-format json keeps one JSON object per line.
        log("error", f"tidegate: error: {error}")
        raise SystemExit(EXIT_APP_LOAD_ERROR) from None
