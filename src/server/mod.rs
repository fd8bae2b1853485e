//! The server: listening sockets, the I/O runtime, the Python threads, and a lifecycle
//! that finishes in-flight requests before it stops.
//!
//! [`run`] is called on a Python thread (normally the main one). It starts everything,
//! then waits with the GIL released, waking a few times a second to let Python run its
//! signal handlers: SIGINT (and SIGTERM, which the CLI maps to it) raise there, and the
//! server then stops accepting, lets running requests finish, and returns the exception.

pub mod bind;
pub mod pool;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use tokio::sync::{watch, Notify};

use crate::gateway::{ListenerInfo, Peer};
use crate::http::conn::{serve_connection, Socket};
use crate::http::ConnContext;
use crate::logging::AccessLog;
use crate::wsgi::{Bridge, BridgeOptions};
use bind::Listener;
use pool::WorkerPool;

/// How often the waiting thread lets Python handle signals.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// What the listeners speak: HTTP to clients, or a gateway protocol to a front server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireProtocol {
    /// HTTP/1.1 (the default).
    Http,
    /// FastCGI, responder role (`crate::fastcgi`).
    FastCgi,
    /// uwsgi, nginx's `uwsgi_pass` (`crate::uwsgi`).
    Uwsgi,
}

impl WireProtocol {
    /// Parses `http`, `fastcgi` or `uwsgi`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "http" => Ok(WireProtocol::Http),
            "fastcgi" => Ok(WireProtocol::FastCgi),
            "uwsgi" => Ok(WireProtocol::Uwsgi),
            other => Err(format!(
                "unknown protocol {other:?}: expected http, fastcgi or uwsgi"
            )),
        }
    }

    /// The scheme shown in `Listening at:` log lines.
    fn scheme(self) -> &'static str {
        match self {
            WireProtocol::Http => "http",
            WireProtocol::FastCgi => "fastcgi",
            WireProtocol::Uwsgi => "uwsgi",
        }
    }
}

/// What `serve` was asked to do.
pub struct ServerConfig {
    /// What the listeners speak.
    pub protocol: WireProtocol,
    /// `--bind` values.
    pub binds: Vec<String>,
    /// Python threads running the app.
    pub threads: usize,
    /// `-` for stdout, a path, or `None` for no access log.
    pub access_log: Option<String>,
    /// Error log level name.
    pub log_level: String,
    /// How long a stop waits for in-flight requests.
    pub graceful_timeout: Duration,
}

/// Counts open connections so a stop can wait for them.
#[derive(Default)]
struct ConnectionCount {
    open: AtomicUsize,
    closed: Notify,
}

struct ConnectionGuard(Arc<ConnectionCount>);

impl ConnectionCount {
    fn enter(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(Arc::clone(self))
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// Serves `app` until a Python signal handler raises; returns that exception.
pub fn run(py: Python<'_>, app: Py<PyAny>, config: ServerConfig) -> PyResult<()> {
    crate::logging::init(&config.log_level).map_err(PyValueError::new_err)?;
    let addresses = config
        .binds
        .iter()
        .map(|b| {
            bind::parse_bind(b)
                .map_err(|e| PyValueError::new_err(format!("invalid bind address {e}")))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let mut listeners = Vec::with_capacity(addresses.len());
    for address in &addresses {
        let opened = py
            .detach(|| bind::open(address))
            .map_err(PyOSError::new_err)?;
        listeners.push(opened);
    }
    let access_log = match &config.access_log {
        Some(target) => Some(Arc::new(AccessLog::open(target).map_err(|e| {
            PyOSError::new_err(format!("could not open access log {target:?}: {e}"))
        })?)),
        None => None,
    };

    let bridge = Arc::new(Bridge::new(
        py,
        app,
        BridgeOptions {
            multithread: config.threads > 1,
            multiprocess: false,
            run_once: false,
        },
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tidegate-io")
        .enable_all()
        .build()
        .map_err(|e| PyOSError::new_err(format!("could not start the I/O runtime: {e}")))?;
    let pool = WorkerPool::start(bridge, config.threads)
        .map_err(|e| PyOSError::new_err(format!("could not start Python threads: {e}")))?;

    tracing::info!("Starting tidegate {}", env!("CARGO_PKG_VERSION"));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let connections = Arc::new(ConnectionCount::default());
    let mut unix_paths = Vec::new();
    for (listener, mut info) in listeners {
        if config.protocol != WireProtocol::Http {
            if let Some(address) = info.display.strip_prefix("http://") {
                info.display = format!("{}://{address}", config.protocol.scheme());
            }
        }
        tracing::info!("Listening at: {} ({})", info.display, std::process::id());
        if let Listener::Unix(_, path) = &listener {
            unix_paths.push(path.clone());
        }
        let ctx = Arc::new(ConnContext {
            listener: Arc::new(info),
            shutdown: shutdown_rx.clone(),
            access_log: access_log.clone(),
            dispatcher: pool.sender(),
        });
        runtime.spawn(accept_loop(
            listener,
            ctx,
            Arc::clone(&connections),
            config.protocol,
        ));
    }
    tracing::info!(
        "Using {} Python thread{}",
        config.threads,
        if config.threads == 1 { "" } else { "s" }
    );

    let interrupt = loop {
        py.detach(|| std::thread::sleep(SIGNAL_POLL));
        if let Err(error) = py.check_signals() {
            break error;
        }
    };

    tracing::info!("Shutting down: {}", interrupt.value(py));
    let _ = shutdown_tx.send(true);
    let started = Instant::now();
    let drained = py.detach(|| {
        runtime.block_on(async {
            tokio::time::timeout(config.graceful_timeout, connections.wait_idle())
                .await
                .is_ok()
        })
    });
    if !drained {
        tracing::warn!(
            "Graceful timeout ({}s) reached with {} connection(s) still open; closing them",
            config.graceful_timeout.as_secs(),
            connections.open.load(Ordering::SeqCst)
        );
    }
    let left = config.graceful_timeout.saturating_sub(started.elapsed());
    let busy = pool.stop(py, left.max(Duration::from_millis(100)));
    if busy > 0 {
        tracing::warn!("{busy} Python thread(s) still running a request at exit");
    }
    py.detach(|| runtime.shutdown_timeout(Duration::from_secs(1)));
    for path in unix_paths {
        let _ = std::fs::remove_file(path);
    }
    Err(interrupt)
}

async fn accept_loop(
    listener: Listener,
    ctx: Arc<ConnContext>,
    connections: Arc<ConnectionCount>,
    protocol: WireProtocol,
) {
    match listener {
        Listener::Tcp(std_listener) => {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(listener) => listener,
                Err(error) => {
                    return tracing::error!(
                        "Could not use listener {}: {error}",
                        ctx.listener.display
                    )
                }
            };
            let (listener, info) = (&listener, &ctx.listener);
            serve_accepted(&ctx, &connections, protocol, move || async move {
                let (stream, peer) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let server = server_address(info, stream.local_addr().ok());
                Ok((stream, Peer::Tcp(peer), server))
            })
            .await;
        }
        Listener::Unix(std_listener, _) => {
            let listener = match tokio::net::UnixListener::from_std(std_listener) {
                Ok(listener) => listener,
                Err(error) => {
                    return tracing::error!(
                        "Could not use listener {}: {error}",
                        ctx.listener.display
                    )
                }
            };
            let (listener, info) = (&listener, &ctx.listener);
            serve_accepted(&ctx, &connections, protocol, move || async move {
                let (stream, _) = listener.accept().await?;
                Ok((stream, Peer::Unix, Arc::clone(info)))
            })
            .await;
        }
    }
}

/// Accepts connections with `accept` and serves each in its own task, until shutdown.
/// Returning drops the listener, so new connections are refused from then on.
async fn serve_accepted<S, F, Fut>(
    ctx: &Arc<ConnContext>,
    connections: &Arc<ConnectionCount>,
    protocol: WireProtocol,
    mut accept: F,
) where
    S: Socket,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<(S, Peer, Arc<ListenerInfo>)>>,
{
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok((stream, peer, server)) => {
                    let guard = connections.enter();
                    let ctx = Arc::clone(ctx);
                    tokio::spawn(async move {
                        match protocol {
                            WireProtocol::Http => serve_connection(stream, peer, server, ctx).await,
                            WireProtocol::FastCgi => crate::fastcgi::conn::serve_connection(stream, ctx).await,
                            WireProtocol::Uwsgi => crate::uwsgi::conn::serve_connection(stream, ctx).await,
                        }
                        drop(guard);
                    });
                }
                Err(error) => accept_failed(&ctx.listener, error).await,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// The server address a connection reports: the listener's, unless the listener is bound
/// to a wildcard address (0.0.0.0, ::), where the address the client reached says more.
fn server_address(
    listener: &Arc<ListenerInfo>,
    local: Option<std::net::SocketAddr>,
) -> Arc<ListenerInfo> {
    match local {
        Some(local) if listener.server_name == "0.0.0.0" || listener.server_name == "::" => {
            Arc::new(ListenerInfo {
                server_name: local.ip().to_canonical().to_string(),
                server_port: listener.server_port.clone(),
                url_scheme: listener.url_scheme,
                display: listener.display.clone(),
            })
        }
        _ => Arc::clone(listener),
    }
}

/// accept() failures are usually transient (out of file descriptors, a connection reset
/// before it was accepted): log and pause briefly instead of spinning.
async fn accept_failed(listener: &ListenerInfo, error: std::io::Error) {
    tracing::error!("accept() failed on {}: {error}", listener.display);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
