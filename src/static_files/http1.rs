//! Writing a [`StaticResponse`] on an HTTP/1.x connection.

use std::io;
use std::time::Duration;

use bytes::Bytes;

use crate::gateway::{Protocol, ResponseHead};
use crate::http::conn::Socket;
use crate::http::response::{encode_head, status_allows_body, ResponseFraming};
use crate::http::writer::OutQueue;
use crate::logging::AccessEntry;
use crate::static_files::{StaticBody, StaticResponse};

/// Writes `response` (the head, then the body: sendfile(2) for a file on a plain socket, read and write under TLS). Returns the
/// body bytes sent, for the access log. `keep_alive` is whether the connection stays open.
/// `access`, the request's access log record, keeps the response fields its format names
/// (`%({name}o)s`), as the app's responses do.
pub async fn write_response<S: Socket>(
    stream: &mut S,
    out: &mut OutQueue,
    response: StaticResponse,
    protocol: Protocol,
    keep_alive: bool,
    timeout: Duration,
    access: Option<&mut AccessEntry>,
) -> io::Result<u64> {
    let framing = match response.content_length {
        Some(length) if status_allows_body(response.status) => ResponseFraming::Length(length),
        _ => ResponseFraming::NoBody,
    };
    let head = ResponseHead {
        status: response.status,
        status_line: Bytes::from(format!("{} {}", response.status, response.reason)),
        headers: response.headers,
        content_length: response.content_length,
        close_connection: !keep_alive,
    };
    if let Some(access) = access {
        access.capture_response(&head);
    }
    encode_head(out.staging(), &head, framing, protocol, keep_alive);
    let sent = match response.body {
        StaticBody::Empty => 0,
        StaticBody::Text(text) => {
            let len = text.len() as u64;
            out.push(text);
            len
        }
        StaticBody::File { file, offset, len } => {
            out.flush(stream, timeout).await?;
            let sent = stream.send_file(&file, offset, len, timeout).await?;
            if sent < len {
                // The file shrank since it was measured: the length announced is a lie now,
                // so the connection must end here.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "static file shorter than announced",
                ));
            }
            sent
        }
    };
    out.flush(stream, timeout).await?;
    Ok(sent)
}
