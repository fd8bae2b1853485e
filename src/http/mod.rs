//! The HTTP/1.1 engine: our own connection loop over tokio, with httparse for heads.
//!
//! hyper's HTTP/1 server was the first choice, but it cannot hand the socket to
//! sendfile(2) in the middle of a response (`wsgi.file_wrapper`), and measured as costly per
//! request as bjoern's whole request. The engine here is small: [`request`] parses and
//! vets heads, [`chunked`] and [`body`] read bodies, [`response`] and [`writer`] frame and
//! write responses, [`conn`] runs a connection, [`sink`] links it to the Python thread.

pub mod body;
pub mod buffers;
pub mod chunked;
pub mod conn;
pub mod date;
pub mod fields;
pub mod handoff;
pub mod request;
pub mod response;
pub mod sink;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::gateway::{Exchange, ListenerInfo};
use crate::logging::AccessLog;

/// Limits and timeouts of the HTTP engine (gunicorn's names and defaults where it has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `--limit-request-line`: longest request line in bytes (0: none); longer is a 414.
    pub request_line: usize,
    /// `--limit-request-fields`: most header fields; more is a 431.
    pub fields: usize,
    /// `--limit-request-field-size`: longest header field line in bytes (0: none); a 431.
    pub field_size: usize,
    /// `--limit-request-body`: largest request body in bytes (0: none); larger is a 413.
    pub body: u64,
    /// `--keep-alive`: how long an idle keep-alive connection is kept.
    pub keep_alive: Duration,
    /// `--header-timeout`: how long a request head may take to arrive (slowloris).
    pub header_timeout: Duration,
    /// `--body-timeout`: how long the body may stall while the app waits for it.
    pub body_timeout: Duration,
    /// `--write-timeout`: how long a response write may make no progress.
    pub write_timeout: Duration,
    /// `--max-connections`: open connections per process; more wait in the backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
            body: 0,
            keep_alive: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

impl HttpLimits {
    /// The most bytes a request head may take before it is refused: room for the request
    /// line and every field at their limits, or 1 MiB where a limit is off.
    pub fn max_head_bytes(&self) -> usize {
        const UNLIMITED_CAP: usize = 1 << 20;
        if self.request_line == 0 || self.field_size == 0 {
            return UNLIMITED_CAP;
        }
        (self.request_line + 2 + self.fields * (self.field_size + 2) + 2).min(UNLIMITED_CAP * 4)
    }
}

/// What every connection of one listener shares.
pub struct ConnContext {
    /// The listener's address, for the environ.
    pub listener: Arc<ListenerInfo>,
    /// Becomes true when the server stops: idle connections close, busy ones finish.
    pub shutdown: watch::Receiver<bool>,
    /// The same stop, for waits repeated between requests (see [`crate::server::stop`]).
    pub stop_notice: Arc<crate::server::stop::StopNotice>,
    /// The access log, when enabled.
    pub access_log: Option<Arc<AccessLog>>,
    /// Hands requests to the Python threads.
    pub dispatcher: Dispatcher,
    /// Limits and timeouts.
    pub limits: HttpLimits,
    /// What the connections speak (HTTP, FastCGI or uwsgi).
    pub protocol: crate::server::WireProtocol,
    /// Requests in flight, for backpressure on accept.
    pub capacity: Arc<crate::server::capacity::Capacity>,
    /// `--static` mounts, answered before the app is involved.
    pub static_files: Option<Arc<crate::static_files::StaticSite>>,
    /// `--forwarded-allow-ips`, `--proxy-protocol`, `--root-path`.
    pub proxy: Arc<crate::proxy::ProxyConfig>,
    /// TLS for every connection of this listener, when `--certfile` is given.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Which HTTP versions are spoken, and the HTTP/2 bounds.
    pub http2: crate::http2::Http2Settings,
}

/// Where requests go to be run.
#[derive(Clone)]
pub enum Dispatcher {
    /// The queue of a pool of Python threads (`--threads` above 1).
    Pool(crossbeam_channel::Sender<Box<Exchange>>),
    /// The queue of the `--threads 1` driver, whose Python thread drives the runtime.
    Driver(Arc<crate::server::driver::Shared>),
}

impl ConnContext {
    /// Whether the server is stopping: the `shutdown` watch, read only once the stop
    /// notice is set. The engine sets the watch before it stops the notice, so this lags
    /// the watch by that moment at most, and a connection then sees the stop through its
    /// stop wait; the watch's value takes its lock, ~50 instructions twice a request.
    pub fn stopping(&self) -> bool {
        self.stop_notice.is_stopped() && *self.shutdown.borrow()
    }

    /// Queues a request for the Python threads; false once they have stopped.
    pub fn dispatch(&self, exchange: Box<Exchange>) -> bool {
        self.capacity.acquire();
        let sent = match &self.dispatcher {
            Dispatcher::Pool(sender) => sender.send(exchange).is_ok(),
            Dispatcher::Driver(driver) => driver.dispatch(exchange),
        };
        if sent {
            crate::metrics::request_dispatched();
        } else {
            self.capacity.release();
        }
        sent
    }
}
