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
//! - [`logging`]: the error log and the access log.
//!
//! Python threads run the app and hold the GIL only while they do; the tokio runtime does
//! every socket read and write without it.

#![deny(missing_docs)]

pub mod cgi;
pub mod fastcgi;
pub mod gateway;
pub mod http;
pub mod logging;
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

/// Serves `app` on `binds` until interrupted (see `tidegate.serve`).
#[pyfunction]
#[pyo3(signature = (app, binds, threads, access_log, log_level, protocol = "http"))]
fn serve(
    py: Python<'_>,
    app: Py<PyAny>,
    binds: Vec<String>,
    threads: usize,
    access_log: Option<String>,
    log_level: String,
    protocol: &str,
) -> PyResult<()> {
    if threads == 0 {
        return Err(PyValueError::new_err("threads must be at least 1"));
    }
    let protocol = server::WireProtocol::parse(protocol).map_err(PyValueError::new_err)?;
    server::run(
        py,
        app,
        server::ServerConfig {
            protocol,
            binds,
            threads,
            access_log,
            log_level,
            graceful_timeout: GRACEFUL_TIMEOUT,
        },
    )
}

/// Runs `app` once as a CGI script (see `tidegate.run_cgi`). Returns whether the response
/// went out complete.
#[pyfunction]
fn run_cgi(py: Python<'_>, app: Py<PyAny>) -> PyResult<bool> {
    cgi::run(py, app)
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
    m.add_function(wrap_pyfunction!(check_bind, m)?)?;
    m.add_function(wrap_pyfunction!(run_cgi, m)?)?;
    Ok(())
}
