"""Type stubs for the Rust extension module ``tidegate._tidegate``."""

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, final

__all__ = [
    "ClientDisconnected",
    "FileWrapper",
    "__version__",
    "check_access_log_format",
    "check_bind",
    "check_proxy",
    "log",
    "run_cgi",
    "serve",
    "supervise",
]

__version__: str

class ClientDisconnected(OSError):
    """The client closed its connection before the request body was complete."""

@final
class FileWrapper:
    """``wsgi.file_wrapper``: sent with sendfile(2) when it wraps a real file."""

    def __new__(cls, filelike: Any, blksize: int = 8192) -> "FileWrapper": ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...
    @property
    def filelike(self) -> Any: ...
    @property
    def blksize(self) -> int: ...

def serve(
    app: Callable[..., Any],
    binds: List[str],
    threads: int,
    access_log: Optional[str],
    log_level: str,
    protocol: str = "http",
    proxy: Optional[Dict[str, Any]] = None,
    log_format: str = "text",
    access_log_format: Optional[str] = None,
) -> None:
    """Serve ``app`` until a signal handler raises; re-raises that exception."""

def supervise(
    loader: Callable[[], Callable[..., Any]],
    *,
    binds: List[str],
    threads: int,
    workers: int,
    access_log: Optional[str],
    log_level: str,
    timeout: float,
    graceful_timeout: float,
    max_requests: int,
    max_requests_jitter: int,
    max_rss: int,
    reload: bool,
    pid_file: Optional[str],
    backlog: int,
    umask: Optional[int],
    hooks: Dict[str, Optional[Callable[..., Any]]],
    limits: Optional[Dict[str, float]] = None,
    protocol: str = "http",
    static_files: Optional[List[Tuple[str, str]]] = None,
    static_cache_control: Optional[str] = None,
    proxy: Optional[Dict[str, Any]] = None,
    tls: Optional[Dict[str, Optional[str]]] = None,
    http: str = "auto",
    log_format: str = "text",
    access_log_format: Optional[str] = None,
    metrics_bind: Optional[str] = None,
) -> int:
    """Run the supervisor and its workers; return the exit status."""

def run_cgi(app: Callable[..., Any]) -> bool:
    """Run ``app`` once as a CGI script; return whether the response went out complete."""

def check_bind(address: str) -> None:
    """Raise ValueError naming the problem if ``address`` is not a valid bind address."""

def check_proxy(proxy: Dict[str, Any], protocol: str = "http") -> None:
    """Raise ValueError naming the option if the proxy settings are invalid for ``protocol``."""

def check_access_log_format(format: str) -> None:
    """Raise ValueError naming the bad atom if ``format`` is not a valid access log format."""

def log(level: str, message: str) -> None:
    """Write ``message`` to the error log at ``level``, in the log's format."""
