//! The contract between a gateway engine and the WSGI bridge.
//!
//! An engine (the HTTP/1.1 server, or one of the CGI, FastCGI and uwsgi gateways) parses
//! requests its own way and hands the bridge three things: the request in one of two
//! [`RequestForm`]s, a [`BodySource`] that yields the request body, and a [`ResponseSink`]
//! that takes the response. The HTTP engine parses the request itself and hands over a
//! [`RequestHead`]; the gateways behind a front server receive the request already turned
//! into CGI meta-variables (RFC 3875) and hand those over as a [`CgiRequest`]. The bridge
//! (`crate::wsgi`) knows nothing of sockets or framing; the engine knows nothing of Python.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use pyo3::Python;

use crate::whole_body::WholeBody;

/// The protocol version a request was made with, reported as `SERVER_PROTOCOL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
    /// `HTTP/2` (over TLS by ALPN, or cleartext h2c with prior knowledge).
    Http2,
}

impl Protocol {
    /// The version as it appears on a request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

/// Where the server received a request: what `SERVER_NAME`, `SERVER_PORT` and
/// `wsgi.url_scheme` report. Shared by every connection of one listener.
#[derive(Debug)]
pub struct ListenerInfo {
    /// `SERVER_NAME`: the listening address's host (an IP, or `localhost` for unix sockets).
    pub server_name: String,
    /// `SERVER_PORT`: the listening port as text.
    pub server_port: String,
    /// `wsgi.url_scheme`.
    pub url_scheme: &'static str,
    /// How the listener is shown in logs, e.g. `http://127.0.0.1:8000`.
    pub display: String,
    /// The environ template of this listener's requests, made on the first one.
    pub environ: crate::wsgi::environ::ListenerEnviron,
}

/// The peer of a connection.
#[derive(Clone, Debug)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A client on a unix socket (no address).
    Unix,
}

/// The parsed head of one request, as the client sent it.
#[derive(Debug)]
pub struct RequestHead {
    /// The method token, e.g. `GET`.
    pub method: Bytes,
    /// The request target exactly as sent (`RAW_URI`).
    pub target: Bytes,
    /// The protocol version of the request line.
    pub protocol: Protocol,
    /// Header fields in the order received, names as sent, values as raw bytes.
    pub headers: crate::http::fields::HeaderFields,
    /// The peer that sent the request.
    pub peer: Peer,
    /// The peer's `REMOTE_ADDR` and `REMOTE_PORT`, shared by the requests of a connection.
    pub peer_environ: Arc<crate::wsgi::environ::PeerEnviron>,
    /// The listener the request arrived on.
    pub listener: Arc<ListenerInfo>,
}

impl RequestHead {
    /// Whether this is a HEAD request (its response carries no body).
    pub fn is_head(&self) -> bool {
        self.method.as_ref() == b"HEAD"
    }
}

/// A request as a front server describes it: CGI meta-variables (RFC 3875) such as
/// `REQUEST_METHOD`, `PATH_INFO`, `SERVER_NAME` and `HTTP_*`, names and values as the raw
/// bytes the front server sent, in the order it sent them. The CGI gateway reads them from
/// the process environment, FastCGI from `FCGI_PARAMS`, uwsgi from its key/value block.
#[derive(Debug, Default)]
pub struct CgiRequest {
    /// The variables in the order received. A name sent twice keeps its last value, as
    /// when the variables are put into a dict.
    pub vars: Vec<(Bytes, Bytes)>,
}

impl CgiRequest {
    /// A request from literal pairs, for tests.
    #[cfg(test)]
    pub(crate) fn from_static(vars: &[(&'static str, &'static str)]) -> Self {
        CgiRequest {
            vars: vars
                .iter()
                .map(|(n, v)| {
                    (
                        Bytes::from_static(n.as_bytes()),
                        Bytes::from_static(v.as_bytes()),
                    )
                })
                .collect(),
        }
    }

    /// The value of `name` (the last one if it was sent twice).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v.as_ref())
    }

    /// `REQUEST_METHOD`, empty when absent.
    pub fn method(&self) -> &[u8] {
        self.get("REQUEST_METHOD").unwrap_or_default()
    }

    /// Whether this is a HEAD request (its response carries no body).
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// Whether the front server says the client used TLS: `HTTPS` is `on`, `yes` or `1`
    /// (what Apache, nginx and lighttpd send; `wsgiref.util.guess_scheme` reads the same).
    pub fn is_https(&self) -> bool {
        self.get("HTTPS").is_some_and(|value| {
            [&b"on"[..], b"yes", b"1"]
                .iter()
                .any(|token| value.eq_ignore_ascii_case(token))
        })
    }

    /// `CONTENT_LENGTH`: `Ok(None)` when absent or empty, `Err` when it is not a number.
    pub fn content_length(&self) -> Result<Option<u64>, String> {
        match self.get("CONTENT_LENGTH") {
            None | Some(b"") => Ok(None),
            Some(value) => crate::wsgi::head::parse_content_length(value)
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "CONTENT_LENGTH {:?} is not a number of bytes",
                        String::from_utf8_lossy(value)
                    )
                }),
        }
    }

    /// The request as `METHOD URI` for log lines: `REQUEST_URI` when the front server sent
    /// it, else `SCRIPT_NAME`, `PATH_INFO` and `QUERY_STRING` put back together.
    pub fn label(&self) -> String {
        let method = String::from_utf8_lossy(self.method());
        if let Some(uri) = self.get("REQUEST_URI") {
            return format!("{method} {}", String::from_utf8_lossy(uri));
        }
        let mut uri = Vec::new();
        uri.extend_from_slice(self.get("SCRIPT_NAME").unwrap_or_default());
        uri.extend_from_slice(self.get("PATH_INFO").unwrap_or_default());
        if let Some(query) = self.get("QUERY_STRING").filter(|q| !q.is_empty()) {
            uri.push(b'?');
            uri.extend_from_slice(query);
        }
        format!("{method} {}", String::from_utf8_lossy(&uri))
    }
}

/// A request in the form its engine received it.
#[derive(Debug)]
pub enum RequestForm {
    /// Parsed from HTTP by tidegate's own engine.
    Http(RequestHead),
    /// Described by a front server with CGI meta-variables (CGI, FastCGI, uwsgi).
    Cgi(CgiRequest),
}

impl RequestForm {
    /// The request as `METHOD TARGET`, for log lines.
    pub fn label(&self) -> String {
        match self {
            RequestForm::Http(head) => format!(
                "{} {}",
                String::from_utf8_lossy(&head.method),
                String::from_utf8_lossy(&head.target)
            ),
            RequestForm::Cgi(request) => request.label(),
        }
    }

    /// The request's label for the timeout watchdog, formatted only if it is logged.
    pub fn lazy_label(&self) -> crate::server::monitor::RequestLabel {
        use crate::server::monitor::RequestLabel;
        match self {
            RequestForm::Http(head) => RequestLabel::Http {
                method: head.method.clone(),
                target: head.target.clone(),
            },
            RequestForm::Cgi(request) => RequestLabel::Text(request.label()),
        }
    }
}

/// Why reading the request body failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The client closed the connection before the body was complete.
    Disconnected,
    /// The body's framing was invalid (for example a bad chunk size line).
    Malformed(String),
    /// The body grew past `--limit-request-body` (the limit in bytes).
    TooLarge(u64),
    /// The client sent no body bytes for `--body-timeout`.
    TimedOut,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Disconnected => {
                f.write_str("client disconnected before the request body was complete")
            }
            BodyError::Malformed(why) => write!(f, "invalid request body: {why}"),
            BodyError::TooLarge(limit) => {
                write!(
                    f,
                    "request body larger than --limit-request-body ({limit} bytes)"
                )
            }
            BodyError::TimedOut => {
                f.write_str("the client sent no request body bytes within --body-timeout")
            }
        }
    }
}

/// Yields the request body, piece by piece, to `wsgi.input`.
pub trait BodySource: Send + Sync {
    /// The next piece of the body, or `Ok(None)` at its end. May block until the client
    /// sends more; the caller has released the GIL.
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError>;
}

/// The client is gone; nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// A validated response head, ready for the engine to frame.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The status line as the app gave it, e.g. `200 OK` (latin-1 bytes, validated).
    pub status_line: Bytes,
    /// The app's headers, validated, with Content-Length and hop-by-hop headers removed.
    pub headers: Vec<(Bytes, Bytes)>,
    /// The body length, when the app declared it or the bridge computed it.
    pub content_length: Option<u64>,
    /// The app asked for the connection to be closed (`Connection: close`).
    pub close_connection: bool,
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseEnd {
    /// Every byte the head promised was sent.
    Complete,
    /// The response could not be completed (app error after the head was sent, or a body
    /// shorter than its Content-Length): the engine must not reuse the connection.
    Aborted,
}

/// Takes a response from the bridge. Methods are called on the Python thread running the
/// app, with the GIL held; an implementation that may block releases it with `py.detach`.
pub trait ResponseSink: Send + Sync {
    /// Sends the response head. Called once, before any body.
    fn send_head(&mut self, py: Python<'_>, head: ResponseHead) -> Result<(), Disconnected>;
    /// Sends a piece of the body (never empty).
    fn send_chunk(&mut self, py: Python<'_>, chunk: Bytes) -> Result<(), Disconnected>;
    /// Sends `len` bytes of `file` from `offset`, with sendfile(2) where the engine can.
    fn send_file(
        &mut self,
        py: Python<'_>,
        file: File,
        offset: u64,
        len: u64,
    ) -> Result<(), Disconnected>;
    /// Ends the response.
    fn finish(&mut self, py: Python<'_>, end: ResponseEnd);
    /// Sends a complete response whose body is known up front. Engines may override this
    /// to hand everything over at once.
    fn send_complete(
        &mut self,
        py: Python<'_>,
        head: ResponseHead,
        body: WholeBody,
    ) -> Result<(), Disconnected> {
        self.send_head(py, head)?;
        if self.wants_body() {
            for chunk in body.into_pieces() {
                if !chunk.is_empty() {
                    self.send_chunk(py, chunk)?;
                }
            }
        }
        self.finish(py, ResponseEnd::Complete);
        Ok(())
    }
    /// False when the body would be discarded (a HEAD request): the bridge then stops
    /// iterating the app's body once the head is sent.
    fn wants_body(&self) -> bool;
}

/// The request body as the engine hands it to the bridge.
pub enum RequestBody {
    /// No body (no Content-Length, or zero).
    Empty,
    /// The whole body, already received.
    Complete(Bytes),
    /// A body still arriving, read from the source as the app asks for it.
    Stream(Box<dyn BodySource>),
}

/// One request handed from an engine to the bridge.
pub struct Exchange {
    /// The request: an HTTP head or CGI variables.
    pub head: RequestForm,
    /// The request body.
    pub body: RequestBody,
    /// Where the response goes.
    pub sink: Box<dyn ResponseSink>,
    /// Fired by the worker's watchdog if the request runs past `--timeout`: the engine
    /// then answers 504 (or cuts the connection if the response had started).
    pub on_overdue: Option<crate::overdue::OnOverdue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(vars: &[(&'static str, &'static str)]) -> CgiRequest {
        CgiRequest::from_static(vars)
    }

    #[test]
    fn the_last_value_of_a_repeated_variable_wins() {
        let r = request(&[("A", "1"), ("REQUEST_METHOD", "HEAD"), ("A", "2")]);
        assert_eq!(r.get("A"), Some(&b"2"[..]));
        assert_eq!(r.get("B"), None);
        assert!(r.is_head());
    }

    #[test]
    fn https_flags() {
        for on in ["on", "ON", "1", "yes"] {
            assert!(request(&[("HTTPS", on)]).is_https(), "{on}");
        }
        for off in ["off", "", "0", "true"] {
            assert!(!request(&[("HTTPS", off)]).is_https(), "{off}");
        }
        assert!(!request(&[]).is_https());
    }

    #[test]
    fn content_lengths() {
        assert_eq!(request(&[]).content_length(), Ok(None));
        assert_eq!(
            request(&[("CONTENT_LENGTH", "")]).content_length(),
            Ok(None)
        );
        assert_eq!(
            request(&[("CONTENT_LENGTH", "12")]).content_length(),
            Ok(Some(12))
        );
        assert!(request(&[("CONTENT_LENGTH", "abc")])
            .content_length()
            .is_err());
        assert!(request(&[("CONTENT_LENGTH", "-1")])
            .content_length()
            .is_err());
    }

    #[test]
    fn labels() {
        let r = request(&[("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/a?b")]);
        assert_eq!(r.label(), "GET /a?b");
        let r = request(&[
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", "/app.cgi"),
            ("PATH_INFO", "/x"),
            ("QUERY_STRING", "q=1"),
        ]);
        assert_eq!(r.label(), "POST /app.cgi/x?q=1");
    }
}
