//! The server: listening sockets, processes, and a lifecycle that drops no request.
//!
//! Two ways to run:
//! - [`serve`]: one process (the Python API `tidegate.serve`). It waits with the GIL
//!   released, waking a few times a second to let Python run its signal handlers; when one
//!   raises (SIGINT's KeyboardInterrupt), it stops gracefully and returns the exception.
//! - [`supervisor::run`]: the command line's process model, a supervisor that owns the
//!   listening sockets and forks worker processes ([`worker`]), each running an
//!   [`engine::Engine`].

pub mod accept;
pub mod bind;
pub mod capacity;
pub mod control;
pub mod driver;
pub mod engine;
pub mod monitor;
pub mod pool;
pub mod stop;
pub mod supervisor;
pub mod systemd;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::gateway::ListenerInfo;
use bind::{BindOptions, Listener};
use engine::{Engine, EngineOptions, StopMode};

/// How often a waiting main thread lets Python handle signals.
pub const SIGNAL_POLL: Duration = Duration::from_millis(50);

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

/// Shows the protocol in the listeners' log names (`fastcgi://127.0.0.1:9000`).
pub fn label_listeners(listeners: &mut [(Listener, ListenerInfo)], protocol: WireProtocol) {
    if protocol == WireProtocol::Http {
        return;
    }
    for (_, info) in listeners {
        if let Some(address) = info.display.strip_prefix("http://") {
            info.display = format!("{}://{address}", protocol.scheme());
        }
    }
}

/// What every mode shares: where to listen, how to serve, how to log.
#[derive(Clone)]
pub struct ServerConfig {
    /// What the listeners speak.
    pub protocol: WireProtocol,
    /// `--bind` values.
    pub binds: Vec<String>,
    /// Python threads running the app, per process.
    pub threads: usize,
    /// `-` for stdout, a path, or `None` for no access log.
    pub access_log: Option<String>,
    /// Error log level name.
    pub log_level: String,
    /// How long a stop waits for in-flight requests.
    pub graceful_timeout: Duration,
    /// Listening socket options.
    pub bind_options: BindOptions,
    /// HTTP limits and timeouts.
    pub limits: crate::http::HttpLimits,
    /// `--static` mounts answered by the engine, if any.
    pub static_files: Option<Arc<crate::static_files::StaticSite>>,
    /// Trusted proxies, PROXY protocol, root path (HTTP only).
    pub proxy: Arc<crate::proxy::ProxyConfig>,
    /// `--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs`: TLS on every listener.
    pub tls: Option<crate::tls::TlsSettings>,
    /// `--http` and the HTTP/2 bounds.
    pub http2: crate::http2::Http2Settings,
}

impl ServerConfig {
    /// Reads the TLS files into a configuration (`None` without TLS). The error names the
    /// file and the problem.
    pub fn load_tls(&self) -> PyResult<Option<Arc<rustls::ServerConfig>>> {
        let Some(settings) = &self.tls else {
            return Ok(None);
        };
        crate::tls::load(settings, self.http2.versions.alpn())
            .map(Some)
            .map_err(PyOSError::new_err)
    }
}

/// Raises the open-file limit to its hard maximum: every connection is a descriptor, and
/// the common default soft limit (1024) would cap a worker far below `--max-connections`.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one is
        // always permitted.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
}

/// Caps glibc's malloc arenas at 2 unless `MALLOC_ARENA_MAX` says otherwise. The I/O
/// thread allocates the buffers the Python threads free (and the other way round); with
/// an arena per thread, that traffic fragments memory and a worker's RSS creeps up under a
/// long mixed load (measured by `bench/soak.py`: +23% over 1M requests with the default
/// arenas, +7% with two). Called before the process starts any thread.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; called before threads start.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    }
}

/// Opens every `--bind` address. Errors name the address and the reason.
pub fn open_listeners(
    py: Python<'_>,
    config: &ServerConfig,
) -> PyResult<Vec<(Listener, ListenerInfo)>> {
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
        let options = config.bind_options;
        let opened = py
            .detach(|| bind::open(address, options))
            .map_err(PyOSError::new_err)?;
        listeners.push(opened);
    }
    Ok(listeners)
}

/// Unix socket paths to remove when the server stops.
pub fn socket_paths(listeners: &[(Listener, ListenerInfo)]) -> Vec<std::path::PathBuf> {
    listeners
        .iter()
        .filter_map(|(listener, _)| match listener {
            Listener::Unix(_, Some(path)) => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Serves `app` in this process until a Python signal handler raises; returns that
/// exception after a graceful stop.
pub fn serve(py: Python<'_>, app: Py<PyAny>, config: ServerConfig) -> PyResult<()> {
    crate::logging::init(&config.log_level).map_err(PyValueError::new_err)?;
    raise_open_file_limit();
    limit_malloc_arenas();
    let tls = config.load_tls()?;
    let mut listeners = open_listeners(py, &config)?;
    label_listeners(&mut listeners, config.protocol);
    crate::tls::label_listeners(&mut listeners, tls.is_some());
    let unix_paths = socket_paths(&listeners);
    tracing::info!("Starting tidegate {}", env!("CARGO_PKG_VERSION"));
    for (_, info) in &listeners {
        tracing::info!("Listening at: {} ({})", info.display, std::process::id());
    }
    let engine = Engine::start(
        py,
        app,
        listeners
            .into_iter()
            .map(|(l, i)| (l, Arc::new(i)))
            .collect(),
        EngineOptions {
            threads: config.threads,
            multiprocess: false,
            monitor: None,
            hooks: Default::default(),
            access_log: config.access_log.clone(),
            limits: config.limits,
            protocol: config.protocol,
            static_files: config.static_files.clone(),
            proxy: Arc::clone(&config.proxy),
            tls,
            http2: config.http2,
        },
    )?;
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
    engine.stop(py, StopMode::Graceful(config.graceful_timeout));
    for path in unix_paths {
        let _ = std::fs::remove_file(path);
    }
    Err(interrupt)
}
