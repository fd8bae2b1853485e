//! The HTTP/1.1 engine: our own connection loop over tokio, with httparse for heads.
//!
//! hyper's HTTP/1 server was the first choice, but it cannot hand the socket to
//! sendfile(2) in the middle of a response (`wsgi.file_wrapper`), and measured as costly per
//! request as bjoern's whole request. The engine here is small: [`request`] parses and
//! vets heads, [`chunked`] and [`body`] read bodies, [`response`] and [`writer`] frame and
//! write responses, [`conn`] runs a connection, [`sink`] links it to the Python thread.

pub mod body;
pub mod chunked;
pub mod conn;
pub mod date;
pub mod request;
pub mod response;
pub mod sink;
pub mod writer;

use std::sync::Arc;

use tokio::sync::watch;

use crate::gateway::{Exchange, ListenerInfo};
use crate::logging::AccessLog;

/// What every connection of one listener shares.
pub struct ConnContext {
    /// The listener's address, for the environ.
    pub listener: Arc<ListenerInfo>,
    /// Becomes true when the server stops: idle connections close, busy ones finish.
    pub shutdown: watch::Receiver<bool>,
    /// The access log, when enabled.
    pub access_log: Option<Arc<AccessLog>>,
    /// Hands requests to the Python threads.
    pub dispatcher: crossbeam_channel::Sender<Exchange>,
    /// Requests in flight, for backpressure on accept.
    pub capacity: Arc<crate::server::capacity::Capacity>,
}

impl ConnContext {
    /// Queues a request for the Python threads; false once they have stopped.
    pub fn dispatch(&self, exchange: Exchange) -> bool {
        self.capacity.acquire();
        let sent = self.dispatcher.send(exchange).is_ok();
        if !sent {
            self.capacity.release();
        }
        sent
    }
}
