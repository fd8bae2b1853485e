//! Writing a response head and framing the body for HTTP/1.x.

use bytes::{BufMut, BytesMut};

use crate::gateway::{Protocol, ResponseHead};
use crate::http::date::with_http_date;

/// How the body of a response is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body is sent (HEAD, 1xx, 204, 304).
    NoBody,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 clients).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 clients, length unknown).
    CloseDelimited,
}

/// Whether a status may carry a body (RFC 9110: never 1xx, 204, 304).
pub fn status_allows_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204 && status != 304
}

/// Chooses the framing for a response to a request with `protocol`. A HEAD response is
/// framed as the GET response would be; the engine then sends no body.
pub fn choose_framing(head: &ResponseHead, protocol: Protocol) -> ResponseFraming {
    if !status_allows_body(head.status) {
        ResponseFraming::NoBody
    } else if let Some(length) = head.content_length {
        ResponseFraming::Length(length)
    } else if protocol == Protocol::Http11 {
        ResponseFraming::Chunked
    } else {
        ResponseFraming::CloseDelimited
    }
}

/// Writes the status line and header fields. `keep_alive` is whether the connection stays
/// open afterwards.
pub fn encode_head(
    out: &mut BytesMut,
    head: &ResponseHead,
    framing: ResponseFraming,
    protocol: Protocol,
    keep_alive: bool,
) {
    out.reserve(
        128 + head
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(&head.status_line);
    out.put_slice(b"\r\n");
    let mut has_date = false;
    let mut has_server = false;
    for (name, value) in &head.headers {
        has_date |= name.eq_ignore_ascii_case(b"date");
        has_server |= name.eq_ignore_ascii_case(b"server");
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    if !has_server {
        out.put_slice(b"Server: tidegate\r\n");
    }
    if !has_date {
        out.put_slice(b"Date: ");
        with_http_date(|date| out.put_slice(date));
        out.put_slice(b"\r\n");
    }
    match framing {
        ResponseFraming::Length(length) => {
            out.put_slice(b"Content-Length: ");
            out.put_slice(itoa_u64(length).as_bytes());
            out.put_slice(b"\r\n");
        }
        ResponseFraming::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        ResponseFraming::NoBody => {
            // A 304 may say how long the body would have been; 1xx and 204 may not.
            if head.status == 304 {
                if let Some(length) = head.content_length {
                    out.put_slice(b"Content-Length: ");
                    out.put_slice(itoa_u64(length).as_bytes());
                    out.put_slice(b"\r\n");
                }
            }
        }
        ResponseFraming::CloseDelimited => {}
    }
    if !keep_alive {
        out.put_slice(b"Connection: close\r\n");
    } else if protocol == Protocol::Http10 {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
}

/// The line that starts a chunk of `len` bytes.
pub fn chunk_header(out: &mut BytesMut, len: usize) {
    out.put_slice(format!("{len:X}\r\n").as_bytes());
}

/// The last chunk of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn itoa_u64(value: u64) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn head(status: u16, line: &'static [u8], length: Option<u64>) -> ResponseHead {
        ResponseHead {
            status,
            status_line: Bytes::from_static(line),
            headers: vec![(
                Bytes::from_static(b"X-Name"),
                Bytes::from_static(b"caf\xe9"),
            )],
            content_length: length,
            close_connection: false,
        }
    }

    fn text(out: &BytesMut) -> String {
        out.iter().map(|&b| char::from(b)).collect()
    }

    #[test]
    fn encodes_status_headers_and_length() {
        let mut out = BytesMut::new();
        let h = head(200, b"200 Fine", Some(5));
        encode_head(
            &mut out,
            &h,
            ResponseFraming::Length(5),
            Protocol::Http11,
            true,
        );
        let text = text(&out);
        assert!(text
            .starts_with("HTTP/1.1 200 Fine\r\nX-Name: caf\u{e9}\r\nServer: tidegate\r\nDate: "));
        assert!(text.ends_with("Content-Length: 5\r\n\r\n"));
    }

    #[test]
    fn framing_choices() {
        let streamed = head(200, b"200 OK", None);
        assert_eq!(
            choose_framing(&streamed, Protocol::Http11),
            ResponseFraming::Chunked
        );
        assert_eq!(
            choose_framing(&streamed, Protocol::Http10),
            ResponseFraming::CloseDelimited
        );
        assert_eq!(
            choose_framing(&head(204, b"204 No Content", Some(3)), Protocol::Http11),
            ResponseFraming::NoBody
        );
        assert_eq!(
            choose_framing(&head(304, b"304 Not Modified", None), Protocol::Http11),
            ResponseFraming::NoBody
        );
    }

    #[test]
    fn connection_header_follows_keep_alive() {
        let mut out = BytesMut::new();
        encode_head(
            &mut out,
            &head(200, b"200 OK", Some(0)),
            ResponseFraming::Length(0),
            Protocol::Http10,
            true,
        );
        assert!(text(&out).contains("Connection: keep-alive\r\n"));
        let mut out = BytesMut::new();
        encode_head(
            &mut out,
            &head(200, b"200 OK", Some(0)),
            ResponseFraming::Length(0),
            Protocol::Http11,
            false,
        );
        assert!(text(&out).contains("Connection: close\r\n"));
    }
}
