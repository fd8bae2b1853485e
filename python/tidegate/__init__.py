"""tidegate: a WSGI server (PEP 3333) whose engine is written in Rust.

Serve an application from Python::

    import tidegate
    tidegate.serve(app, bind=["127.0.0.1:8000"], threads=4)

or from the command line: ``tidegate myproject.wsgi:application``. Behind a front server,
``tidegate.run_cgi(app)`` is a CGI script, and ``tidegate --protocol fastcgi`` or
``--protocol uwsgi`` serves nginx's ``fastcgi_pass`` or ``uwsgi_pass``.
"""

from __future__ import annotations

# typing is imported for type checkers only: importing it costs more than all of tidegate,
# and a CGI script pays for every import on every request.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional, Union

from tidegate._tidegate import ClientDisconnected, FileWrapper, __version__
from tidegate._tidegate import run_cgi as _run_cgi
from tidegate._tidegate import serve as _serve

__all__ = ["ClientDisconnected", "FileWrapper", "__version__", "run_cgi", "serve"]

#: Where the server listens when no bind is given (gunicorn's default).
DEFAULT_BIND = "127.0.0.1:8000"

#: Log levels accepted by ``log_level`` and ``--log-level``.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: What the listeners of ``serve`` can speak (``--protocol``); ``cgi`` runs one request.
PROTOCOLS = ("http", "cgi", "fastcgi", "uwsgi")


def serve(
    app: Callable[..., Any],
    bind: Union[str, Iterable[str], None] = None,
    threads: int = 1,
    *,
    access_log: Union[bool, str, None] = False,
    log_level: str = "info",
    protocol: str = "http",
) -> None:
    """Serve the WSGI application ``app`` until the process is interrupted.

    ``bind`` is one address or a list of them: ``HOST:PORT``, ``[::1]:PORT`` or
    ``unix:PATH`` (default ``127.0.0.1:8000``). ``threads`` is the number of Python threads
    running the application. ``access_log`` is ``False`` (none), ``True`` or ``"-"``
    (standard output) or a file path. ``protocol`` is ``"http"``, or ``"fastcgi"`` or
    ``"uwsgi"`` to serve a front server (nginx's ``fastcgi_pass``, ``uwsgi_pass``). Returns
    after SIGINT (KeyboardInterrupt is re-raised
    once in-flight requests have finished) or when a signal handler raises.
    """
    if not callable(app):
        raise TypeError(f"app must be a WSGI callable, got {type(app).__name__}")
    if bind is None:
        binds = [DEFAULT_BIND]
    elif isinstance(bind, str):
        binds = [bind]
    else:
        binds = list(bind)
    if not binds:
        raise ValueError("bind must name at least one address")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    if protocol not in ("http", "fastcgi", "uwsgi"):
        raise ValueError(f"protocol must be http, fastcgi or uwsgi, got {protocol!r}")
    access_target: Optional[str]
    if access_log is True:
        access_target = "-"
    elif access_log is False or access_log is None:
        access_target = None
    else:
        access_target = str(access_log)
    _serve(app, binds, threads, access_target, log_level.lower(), protocol)


def run_cgi(app: Callable[..., Any]) -> None:
    """Run the WSGI application ``app`` once as a CGI script (PEP 3333, RFC 3875).

    The request comes from the process environment and standard input, the response goes
    to standard output as ``Status:``, header fields and body; errors go to standard error.
    Returns when the response is complete. Raises ``SystemExit(1)`` when the response had to
    stop after its head was sent (the app failed mid-body, or standard output closed), so
    the exit status tells the front server the response is cut.
    """
    if not callable(app):
        raise TypeError(f"app must be a WSGI callable, got {type(app).__name__}")
    if not _run_cgi(app):
        raise SystemExit(1)
