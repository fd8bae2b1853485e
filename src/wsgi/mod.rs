//! The WSGI bridge: PEP 3333 on top of any engine.
//!
//! The bridge sees a request head, a body source and a response sink
//! ([`crate::gateway`]); it builds the environ, calls the application and turns what the
//! application returns into response events. It holds no socket and knows no framing, so
//! the HTTP/1.1 engine, and later the CGI, FastCGI and uwsgi gateways, share it.

pub mod app;
pub mod environ;
pub mod errors;
pub mod file_wrapper;
pub mod head;
pub mod input;
pub mod known;
pub mod responder;

pub use app::{Bridge, BridgeOptions, RequestHooks};
