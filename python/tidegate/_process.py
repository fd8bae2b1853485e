"""Signal plumbing for the supervisor and its workers, called from the Rust engine.

Python owns the process's signal handlers (an application may install its own), so the
engine asks Python to set them:

* the supervisor turns every signal it acts on into a byte on a wakeup pipe that its Rust
  loop polls (``signal.set_wakeup_fd``); the Python-level handlers do nothing;
* a worker turns SIGTERM into :class:`GracefulExit` and SIGINT/SIGQUIT into
  :class:`QuickExit`, raised where the engine polls for signals; SIGUSR1 asks for the
  access log to be reopened; the supervisor's other signals are ignored.
"""

from __future__ import annotations

import signal
import sys
import types
from typing import Any, Callable, Dict, List, Optional

#: Signals the supervisor acts on.
SUPERVISOR_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)

_reopen_requested = False


class GracefulExit(BaseException):
    """SIGTERM in a worker: stop accepting, finish in-flight requests, exit."""


class QuickExit(BaseException):
    """SIGINT or SIGQUIT in a worker: exit now."""


def _ignore(signum: int, frame: Any) -> None:
    """The byte on the wakeup pipe is what matters; nothing to do here."""


def supervisor_signals(wakeup_fd: int) -> None:
    """Route the supervisor's signals to ``wakeup_fd`` (one byte per signal)."""
    for sig in SUPERVISOR_SIGNALS:
        signal.signal(sig, _ignore)
    signal.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)


def _graceful(signum: int, frame: Any) -> None:
    raise GracefulExit(signal.Signals(signum).name)


def _quick(signum: int, frame: Any) -> None:
    raise QuickExit(signal.Signals(signum).name)


def _reopen(signum: int, frame: Any) -> None:
    global _reopen_requested
    _reopen_requested = True


def worker_signals() -> None:
    """Install a worker's handlers (replacing the supervisor's, inherited by fork)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, _graceful)
    signal.signal(signal.SIGINT, _quick)
    signal.signal(signal.SIGQUIT, _quick)
    signal.signal(signal.SIGUSR1, _reopen)
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def take_reopen_request() -> bool:
    """Whether SIGUSR1 arrived since the last call."""
    global _reopen_requested
    requested, _reopen_requested = _reopen_requested, False
    return requested


def worker_info(pid: int, age: int) -> types.SimpleNamespace:
    """The ``worker`` object hooks receive: ``pid`` and ``age`` (1 for the first worker
    the supervisor started, counting up)."""
    return types.SimpleNamespace(pid=pid, age=age)


def flush_std_streams() -> None:
    """Flush Python's stdout/stderr before a worker leaves with _exit()."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream must not block exit
            pass


def load_hooks(source: Optional[str]) -> Dict[str, Optional[Callable[..., Any]]]:
    """The hook functions defined by ``source``: a module name or a ``.py`` file path."""
    names: List[str] = ["post_fork", "worker_exit", "pre_request", "post_request"]
    if not source:
        return {name: None for name in names}
    import importlib
    import importlib.util

    if source.endswith(".py"):
        spec = importlib.util.spec_from_file_location("tidegate_hooks", source)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load hooks from {source!r}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(source)
    hooks = {}
    for name in names:
        hook = getattr(module, name, None)
        if hook is not None and not callable(hook):
            raise TypeError(f"hook {name!r} in {source!r} is not callable")
        hooks[name] = hook
    return hooks


def module_mtimes() -> List[tuple]:
    """(path, mtime) of every imported module's source file, for ``--reload``. Files of the
    standard library and of installed packages are left out: they change with deploys,
    not with edits."""
    import os
    import sysconfig

    skip = tuple(
        os.path.realpath(p)
        for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    )
    result = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        real = os.path.realpath(path)
        if real.startswith(skip):
            continue
        try:
            result.append((real, os.stat(real).st_mtime))
        except OSError:
            continue
    return result
