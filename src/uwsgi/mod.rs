//! The uwsgi gateway: tidegate behind nginx's `uwsgi_pass` (the binary protocol of uWSGI).
//!
//! [`codec`] is the wire format, pure and fuzzed; [`conn`] runs one connection: a 4-byte
//! packet header and a block of CGI variables, then the request body as raw bytes
//! (`CONTENT_LENGTH` of them), then the response as plain HTTP/1.1 without chunking. One
//! request per connection, as nginx uses it: the end of the response is the end of the
//! connection, or its `Content-Length`.

pub mod codec;
pub mod conn;
