//! The CGI gateway of PEP 3333: one request per process, over the process environment,
//! standard input and standard output (RFC 3875).
//!
//! A front server (Apache, lighttpd, a shared host) starts the process for each request
//! with the request in environment variables and the body on stdin, and reads the response
//! from stdout as a CGI response: a `Status:` line, the header fields, a blank line, the
//! body. [`run`] is that loop run once, on the calling Python thread, through the same
//! bridge as every other engine: the environment becomes a [`CgiRequest`], stdin a
//! [`stdio::StdinBody`], stdout a [`stdio::StdoutSink`].
//!
//! Nothing here starts a runtime or a thread: a CGI process lives for one request, and
//! whatever it sets up it pays for on every request.

pub mod response;
pub mod stdio;

use std::os::unix::ffi::OsStrExt;

use bytes::Bytes;
use pyo3::prelude::*;

use crate::gateway::{CgiRequest, Exchange, RequestBody, RequestForm};
use crate::wsgi::responder::ResponderCache;
use crate::wsgi::{Bridge, BridgeOptions};
use stdio::{Outcome, StdinBody, StdoutSink};

/// Runs `app` once as a CGI script. Returns whether the response went out complete; false
/// means it had to stop after its head was sent (the app failed, or stdout closed), which
/// the caller reports with a non-zero exit status.
pub fn run(py: Python<'_>, app: Py<PyAny>) -> PyResult<bool> {
    crate::logging::init("info").map_err(pyo3::exceptions::PyValueError::new_err)?;
    let request = CgiRequest {
        vars: std::env::vars_os()
            .map(|(name, value)| {
                (
                    Bytes::copy_from_slice(name.as_bytes()),
                    Bytes::copy_from_slice(value.as_bytes()),
                )
            })
            .collect(),
    };
    let (sink, outcome) = StdoutSink::open()
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("stdout: {e}")))?;
    let length = match check(&request) {
        Ok(length) => length,
        Err(why) => {
            tracing::info!("Bad CGI request: {why} (answered 400)");
            return Ok(sink.bad_request().is_ok());
        }
    };
    let body = match length {
        None | Some(0) => RequestBody::Empty,
        Some(length) => RequestBody::Stream(Box::new(StdinBody::new(length))),
    };
    let sink = sink.for_request(!request.is_head());
    let bridge = Bridge::new(
        py,
        app,
        BridgeOptions {
            hooks: Default::default(),
            multithread: false,
            multiprocess: true,
            run_once: true,
            // Proxy settings apply to HTTP; a CGI request is described by its front server.
            proxy: Default::default(),
        },
    )?;
    bridge.handle(
        py,
        Box::new(Exchange {
            head: RequestForm::Cgi(request),
            body,
            sink: Box::new(sink),
            on_overdue: None,
        }),
        &mut ResponderCache::default(),
    );
    Ok(outcome.get() == Outcome::Complete)
}

/// What RFC 3875 requires of the environment before an app can run: a method, and a
/// `CONTENT_LENGTH` that is a number when present. Returns the body length.
fn check(request: &CgiRequest) -> Result<Option<u64>, String> {
    if request.method().is_empty() {
        return Err("REQUEST_METHOD is not set: not started as a CGI script?".into());
    }
    request.content_length()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(vars: &[(&'static str, &'static str)]) -> CgiRequest {
        CgiRequest::from_static(vars)
    }

    #[test]
    fn a_cgi_environment_needs_a_method_and_a_numeric_length() {
        assert_eq!(check(&request(&[("REQUEST_METHOD", "GET")])), Ok(None));
        assert_eq!(
            check(&request(&[
                ("REQUEST_METHOD", "POST"),
                ("CONTENT_LENGTH", "5")
            ])),
            Ok(Some(5))
        );
        assert!(check(&request(&[("PATH_INFO", "/")])).is_err());
        assert!(check(&request(&[("REQUEST_METHOD", "")])).is_err());
        assert!(check(&request(&[
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_LENGTH", "five")
        ]))
        .is_err());
    }
}
