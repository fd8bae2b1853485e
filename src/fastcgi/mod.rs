//! The FastCGI gateway: tidegate as a FastCGI responder behind a front server (nginx's
//! `fastcgi_pass`, Apache's `mod_proxy_fcgi`, lighttpd's `mod_fastcgi`).
//!
//! [`codec`] is the wire format (records, name-value pairs), pure and fuzzed; [`conn`] runs
//! one connection on the server's tokio runtime: it reads a request's `PARAMS` into CGI
//! variables, hands them to the bridge with `STDIN` streamed into `wsgi.input`, and writes
//! the response as `STDOUT` records and an `END_REQUEST`. One request at a time per
//! connection (`FCGI_MPXS_CONNS` is 0, as for every FastCGI server nginx talks to);
//! connections are kept between requests when the front server sets `FCGI_KEEP_CONN`.

pub mod codec;
pub mod conn;
