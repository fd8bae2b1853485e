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
//! - [`server`]: listening sockets, the Python threads, start and graceful stop;
//! - [`logging`] and [`access_log`]: the error log and the access log;
//! - [`metrics`]: Prometheus counters in shared memory, served by the supervisor.
//!
//! Python threads run the app and hold the GIL only while they do; the tokio runtime does
//! every socket read and write without it.

#![deny(missing_docs)]

pub mod access_log;
pub mod cgi;
pub mod fastcgi;
pub mod gateway;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod uwsgi;
pub mod wsgi;

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
    app, binds, threads, access_log, log_level, protocol = "http", log_format = "text",
    access_log_format = None
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
    limits = None, protocol = "http", log_format = "text", access_log_format = None,
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
    let config = server::supervisor::SupervisorConfig {
        server: server::ServerConfig {
            protocol: server::WireProtocol::parse(protocol).map_err(PyValueError::new_err)?,
            binds,
            threads,
            access_log,
            log_level,
            graceful_timeout: seconds(graceful_timeout, "graceful_timeout")?,
            bind_options: server::bind::BindOptions { backlog, umask },
            limits: http_limits(limits)?,
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
    m.add_function(wrap_pyfunction!(check_access_log_format, m)?)?;
    m.add_function(wrap_pyfunction!(log, m)?)?;
    m.add_function(wrap_pyfunction!(run_cgi, m)?)?;
    Ok(())
}
