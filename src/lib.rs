//! # tidegate
//!
//! A WSGI server (PEP 3333) whose engine is written in Rust and driven from Python.
//!
//! The crate is the extension module `tidegate._tidegate`. Its parts, each in its own
//! module:
//!
//! - [`gateway`]: the contract between an engine and the WSGI bridge (the request as an
//!   HTTP head or as CGI variables, body source, response sink), so the HTTP/1.1 server
//!   and the CGI, FastCGI and uwsgi gateways share one bridge;
//! - [`wsgi`]: the bridge, PEP 3333 complete and strict: environ, `wsgi.input`,
//!   `start_response`/`write`/`exc_info`, `close()`, `wsgi.file_wrapper`, and clear errors
//!   for apps that break the rules;
//! - [`http`]: the HTTP/1.1 engine on tokio (keep-alive, pipelining, chunked bodies,
//!   `100-continue`, sendfile);
//! - [`cgi`]: the CGI gateway, one request per process over environment, stdin and stdout;
//! - [`fastcgi`] and [`uwsgi`]: the long-lived gateways behind a front server (nginx's
//!   `fastcgi_pass` and `uwsgi_pass`), each a codec and a connection loop on the same
//!   runtime as the HTTP engine;
//! - [`proxy`]: running behind proxies (trusted peers, forwarding headers, the PROXY
//!   protocol, the root path);
//! - [`server`]: listening sockets, the Python threads, start and graceful stop;
//! - [`static_files`]: `--static` files answered by the engine without the app;
//! - [`logging`] and [`access_log`]: the error log and the access log;
//! - [`metrics`]: Prometheus counters in shared memory, served by the supervisor.
//!
//! Python threads hold the GIL only while they run the app; every socket read and write is
//! done by the tokio runtime without it. With `--threads 1` the Python thread drives that
//! runtime itself between requests ([`server::driver`]); with more threads an I/O thread
//! drives it and hands requests to a pool ([`server::pool`]).

#![deny(missing_docs)]

/// The allocator of the engine's Rust code (Python objects keep CPython's own). A request
/// makes about fourteen Rust allocations, many freed on another thread than the one that
/// made them; glibc's malloc spent ~2,800 instructions per hello request on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod access_log;
pub mod cgi;
pub mod fastcgi;
pub mod gateway;
pub mod http;
pub mod http2;
pub mod logging;
pub mod metrics;
pub mod overdue;
pub mod proxy;
pub mod server;
pub mod static_files;
pub mod tls;
pub mod uwsgi;
pub mod whole_body;
pub mod wsgi;

#[cfg(test)]
mod test_support;

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use wsgi::file_wrapper::FileWrapper;
use wsgi::input::ClientDisconnected;

/// How long a stop waits for in-flight requests (gunicorn's graceful_timeout).
const GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);

fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be a number of seconds >= 0")))
}

/// Reads HTTP limits from a dict with the option names (`limit_request_line`, ...,
/// `write_timeout` in seconds); missing keys keep their defaults, unknown keys are errors.
fn http_limits(values: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<http::HttpLimits> {
    let mut limits = http::HttpLimits::default();
    let Some(values) = values else {
        return Ok(limits);
    };
    for (key, value) in values.iter() {
        let key: String = key.extract()?;
        match key.as_str() {
            "limit_request_line" => limits.request_line = value.extract()?,
            "limit_request_fields" => limits.fields = value.extract()?,
            "limit_request_field_size" => limits.field_size = value.extract()?,
            "limit_request_body" => limits.body = value.extract()?,
            "keep_alive" => limits.keep_alive = seconds(value.extract()?, &key)?,
            "header_timeout" => limits.header_timeout = seconds(value.extract()?, &key)?,
            "body_timeout" => limits.body_timeout = seconds(value.extract()?, &key)?,
            "write_timeout" => limits.write_timeout = seconds(value.extract()?, &key)?,
            "max_connections" => limits.max_connections = value.extract()?,
            // Read by http2_settings.
            "http2_max_concurrent_streams" | "http2_initial_window_size" => {}
            other => return Err(PyValueError::new_err(format!("unknown limit {other:?}"))),
        }
    }
    if limits.fields == 0 {
        return Err(PyValueError::new_err(
            "limit_request_fields must be at least 1",
        ));
    }
    Ok(limits)
}

/// The `--static` mounts, checked (ValueError naming the option), or none.
fn static_site(
    mounts: Option<Vec<(String, std::path::PathBuf)>>,
    cache_control: Option<String>,
) -> PyResult<Option<std::sync::Arc<static_files::StaticSite>>> {
    match mounts {
        Some(mounts) if !mounts.is_empty() => {
            static_files::StaticSite::new(&mounts, cache_control.as_deref())
                .map(|site| Some(std::sync::Arc::new(site)))
                .map_err(PyValueError::new_err)
        }
        _ => Ok(None),
    }
}

/// Reads the proxy settings from a dict (`forwarded_allow_ips`, `proxy_protocol`,
/// `root_path`); missing keys keep their defaults, unknown keys and bad values are errors
/// naming the option. `--proxy-protocol` and `--root-path` are for HTTP listeners only.
fn proxy_config(
    values: Option<&Bound<'_, pyo3::types::PyDict>>,
    protocol: server::WireProtocol,
) -> PyResult<std::sync::Arc<proxy::ProxyConfig>> {
    let mut allow_ips = proxy::allow::DEFAULT_ALLOW.to_string();
    let mut proxy_protocol = false;
    let mut root_path = String::new();
    for (key, value) in values.into_iter().flat_map(|v| v.iter()) {
        let key: String = key.extract()?;
        match key.as_str() {
            "forwarded_allow_ips" => allow_ips = value.extract()?,
            "proxy_protocol" => proxy_protocol = value.extract()?,
            "root_path" => root_path = value.extract()?,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown proxy option {other:?}"
                )))
            }
        }
    }
    let config = proxy::ProxyConfig::new(&allow_ips, proxy_protocol, &root_path)
        .map_err(PyValueError::new_err)?;
    if protocol != server::WireProtocol::Http {
        if proxy_protocol {
            return Err(PyValueError::new_err(
                "--proxy-protocol: applies to --protocol http only (a FastCGI or uwsgi front \
                 server passes the client's address in REMOTE_ADDR)",
            ));
        }
        if !config.root_path.is_empty() {
            return Err(PyValueError::new_err(
                "--root-path: applies to --protocol http only (a FastCGI or uwsgi front server \
                 sets SCRIPT_NAME itself)",
            ));
        }
    }
    Ok(std::sync::Arc::new(config))
}

/// Reads `--http` and the HTTP/2 bounds (`http2_*` keys of the limits dict).
fn http2_settings(
    http: &str,
    values: Option<&Bound<'_, pyo3::types::PyDict>>,
) -> PyResult<http2::Http2Settings> {
    let mut settings = http2::Http2Settings {
        versions: http2::HttpVersions::parse(http).map_err(PyValueError::new_err)?,
        ..Default::default()
    };
    if let Some(values) = values {
        if let Some(value) = values.get_item("http2_max_concurrent_streams")? {
            settings.max_concurrent_streams = value.extract()?;
        }
        if let Some(value) = values.get_item("http2_initial_window_size")? {
            settings.initial_window_size = value.extract()?;
        }
    }
    settings.validate().map_err(PyValueError::new_err)?;
    Ok(settings)
}

/// Reads the TLS options from a dict with `certfile`, `keyfile`, `ca_certs` and
/// `cert_reqs` (`None`: no TLS).
fn tls_settings(
    values: Option<&Bound<'_, pyo3::types::PyDict>>,
) -> PyResult<Option<tls::TlsSettings>> {
    let Some(values) = values else {
        return Ok(None);
    };
    let path = |key: &str| -> PyResult<Option<std::path::PathBuf>> {
        match values.get_item(key)? {
            Some(value) if !value.is_none() => Ok(Some(value.extract()?)),
            _ => Ok(None),
        }
    };
    let (certfile, keyfile) = match (path("certfile")?, path("keyfile")?) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => {
            return Err(PyValueError::new_err(
                "--certfile and --keyfile go together",
            ))
        }
    };
    let client_auth = match values.get_item("cert_reqs")? {
        Some(value) if !value.is_none() => {
            let text: String = value.str()?.extract()?;
            tls::ClientAuth::parse(&text).map_err(PyValueError::new_err)?
        }
        _ => tls::ClientAuth::None,
    };
    Ok(Some(tls::TlsSettings {
        certfile,
        keyfile,
        ca_certs: path("ca_certs")?,
        client_auth,
    }))
}

/// Sets the error log's format and the access log's format (`--log-format`,
/// `--access-logformat`), before anything is logged.
fn set_log_formats(log_format: &str, access_log_format: Option<&str>) -> PyResult<()> {
    let format = logging::LogFormat::parse(log_format).map_err(PyValueError::new_err)?;
    access_log::set_format(access_log_format, format).map_err(PyValueError::new_err)?;
    logging::set_format(format);
    Ok(())
}

/// Serves `app` on `binds` in this process until interrupted (see `tidegate.serve`).
#[pyfunction]
#[pyo3(signature = (
    app, binds, threads, access_log, log_level, protocol = "http", proxy = None,
    log_format = "text", access_log_format = None
))]
#[allow(clippy::too_many_arguments)]
fn serve(
    py: Python<'_>,
    app: Py<PyAny>,
    binds: Vec<String>,
    threads: usize,
    access_log: Option<String>,
    log_level: String,
    protocol: &str,
    proxy: Option<&Bound<'_, pyo3::types::PyDict>>,
    log_format: &str,
    access_log_format: Option<&str>,
) -> PyResult<()> {
    set_log_formats(log_format, access_log_format)?;
    if threads == 0 {
        return Err(PyValueError::new_err("threads must be at least 1"));
    }
    let protocol = server::WireProtocol::parse(protocol).map_err(PyValueError::new_err)?;
    server::serve(
        py,
        app,
        server::ServerConfig {
            protocol,
            binds,
            threads,
            access_log,
            log_level,
            graceful_timeout: GRACEFUL_TIMEOUT,
            bind_options: Default::default(),
            limits: Default::default(),
            static_files: None,
            proxy: proxy_config(proxy, protocol)?,
            tls: None,
            http2: Default::default(),
        },
    )
}

/// Runs the supervisor and its worker processes (the `tidegate` command). `loader` is
/// called in each worker to get the app (it returns the preloaded app with `--preload`).
/// Returns the exit status.
#[pyfunction]
#[pyo3(signature = (
    loader, *, binds, threads, workers, access_log, log_level, timeout, graceful_timeout,
    max_requests, max_requests_jitter, max_rss, reload, pid_file, backlog, umask, hooks,
    limits = None, protocol = "http", static_files = None, static_cache_control = None,
    proxy = None, tls = None, http = "auto", log_format = "text", access_log_format = None,
    metrics_bind = None
))]
#[allow(clippy::too_many_arguments)]
fn supervise(
    py: Python<'_>,
    loader: Py<PyAny>,
    binds: Vec<String>,
    threads: usize,
    workers: usize,
    access_log: Option<String>,
    log_level: String,
    timeout: f64,
    graceful_timeout: f64,
    max_requests: u64,
    max_requests_jitter: u64,
    max_rss: u64,
    reload: bool,
    pid_file: Option<std::path::PathBuf>,
    backlog: i32,
    umask: Option<u32>,
    hooks: std::collections::HashMap<String, Option<Py<PyAny>>>,
    limits: Option<&Bound<'_, pyo3::types::PyDict>>,
    protocol: &str,
    static_files: Option<Vec<(String, std::path::PathBuf)>>,
    static_cache_control: Option<String>,
    proxy: Option<&Bound<'_, pyo3::types::PyDict>>,
    tls: Option<&Bound<'_, pyo3::types::PyDict>>,
    http: &str,
    log_format: &str,
    access_log_format: Option<&str>,
    metrics_bind: Option<String>,
) -> PyResult<i32> {
    set_log_formats(log_format, access_log_format)?;
    if threads == 0 || workers == 0 {
        return Err(PyValueError::new_err(
            "threads and workers must be at least 1",
        ));
    }
    let mut hooks = hooks;
    let mut take = |name: &str| hooks.remove(name).flatten();
    let process_hooks = server::supervisor::ProcessHooks {
        post_fork: take("post_fork"),
        worker_exit: take("worker_exit"),
        pre_request: take("pre_request"),
        post_request: take("post_request"),
    };
    let timeout = seconds(timeout, "timeout")?;
    let protocol = server::WireProtocol::parse(protocol).map_err(PyValueError::new_err)?;
    let config = server::supervisor::SupervisorConfig {
        server: server::ServerConfig {
            protocol,
            binds,
            threads,
            access_log,
            log_level,
            graceful_timeout: seconds(graceful_timeout, "graceful_timeout")?,
            bind_options: server::bind::BindOptions { backlog, umask },
            limits: http_limits(limits)?,
            static_files: static_site(static_files, static_cache_control)?,
            proxy: proxy_config(proxy, protocol)?,
            tls: tls_settings(tls)?,
            http2: http2_settings(http, limits)?,
        },
        workers,
        timeout: (!timeout.is_zero()).then_some(timeout),
        max_requests,
        max_requests_jitter,
        max_rss_mib: max_rss,
        reload,
        pid_file,
        metrics_bind,
    };
    server::supervisor::run(py, loader, process_hooks, config)
}

/// Runs `app` once as a CGI script (see `tidegate.run_cgi`). Returns whether the response
/// went out complete.
#[pyfunction]
fn run_cgi(py: Python<'_>, app: Py<PyAny>) -> PyResult<bool> {
    cgi::run(py, app)
}

/// Raises ValueError naming the problem if `format` is not a valid access log format
/// (`--access-logformat`): the message names the bad atom.
#[pyfunction]
fn check_access_log_format(format: &str) -> PyResult<()> {
    access_log::AccessTemplate::compile(format, false)
        .map(drop)
        .map_err(PyValueError::new_err)
}

/// Writes `message` to the error log at `level` (`debug`, `info`, `warning`, `error`), in
/// the log's format: for the Python side's own messages.
#[pyfunction]
fn log(level: &str, message: &str) -> PyResult<()> {
    match level {
        "debug" => tracing::debug!("{message}"),
        "info" => tracing::info!("{message}"),
        "warning" => tracing::warn!("{message}"),
        "error" | "critical" => tracing::error!("{message}"),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown log level {other:?}"
            )))
        }
    }
    Ok(())
}

/// Raises ValueError naming the problem if `address` is not a valid bind address.
#[pyfunction]
fn check_bind(address: &str) -> PyResult<()> {
    server::bind::parse_bind(address)
        .map(drop)
        .map_err(PyValueError::new_err)
}

/// Raises ValueError naming the option and the problem if the proxy settings (a dict as
/// `supervise` takes it) are invalid for `protocol`.
#[pyfunction]
#[pyo3(signature = (proxy, protocol = "http"))]
fn check_proxy(proxy: &Bound<'_, pyo3::types::PyDict>, protocol: &str) -> PyResult<()> {
    let protocol = server::WireProtocol::parse(protocol).map_err(PyValueError::new_err)?;
    proxy_config(Some(proxy), protocol).map(drop)
}

/// The extension module.
#[pymodule]
fn _tidegate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<FileWrapper>()?;
    m.add(
        "ClientDisconnected",
        m.py().get_type::<ClientDisconnected>(),
    )?;
    m.add_function(wrap_pyfunction!(serve, m)?)?;
    m.add_function(wrap_pyfunction!(supervise, m)?)?;
    m.add_function(wrap_pyfunction!(check_bind, m)?)?;
    m.add_function(wrap_pyfunction!(check_proxy, m)?)?;
    m.add_function(wrap_pyfunction!(check_access_log_format, m)?)?;
    m.add_function(wrap_pyfunction!(log, m)?)?;
    m.add_function(wrap_pyfunction!(run_cgi, m)?)?;
    Ok(())
}
