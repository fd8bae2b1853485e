//! Writing a response head and framing the body for HTTP/1.x.

use bytes::{BufMut, BytesMut};

use crate::gateway::{Protocol, ResponseHead};
use crate::http::date::{with_server_and_date, SERVER_LINE};

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
    // The usual case in one piece: each piece costs a capacity check and a call to memcpy.
    match (has_server, has_date) {
        (false, false) => with_server_and_date(|lines| out.put_slice(lines)),
        (false, true) => out.put_slice(SERVER_LINE),
        (true, false) => with_server_and_date(|lines| out.put_slice(&lines[SERVER_LINE.len()..])),
        (true, true) => {}
    }
    match framing {
        ResponseFraming::Length(length) => put_content_length(out, length),
        ResponseFraming::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        ResponseFraming::NoBody => {
            // A 304 may say how long the body would have been; 1xx and 204 may not.
            if head.status == 304 {
                if let Some(length) = head.content_length {
                    put_content_length(out, length);
                }
            }
        }
        ResponseFraming::CloseDelimited => {}
    }
    if !keep_alive {
        out.put_slice(b"Connection: close\r\n\r\n");
    } else if protocol == Protocol::Http10 {
        out.put_slice(b"Connection: keep-alive\r\n\r\n");
    } else {
        out.put_slice(b"\r\n");
    }
}

/// The `Content-Length` line.
fn put_content_length(out: &mut BytesMut, length: u64) {
    const PREFIX: &[u8] = b"Content-Length: ";
    // The prefix, up to 20 digits and CRLF, formatted on the stack and copied once.
    let mut line = [0u8; PREFIX.len() + 20 + 2];
    line[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut end = PREFIX.len() + put_digits(&mut line[PREFIX.len()..], length, 10);
    line[end..end + 2].copy_from_slice(b"\r\n");
    end += 2;
    out.put_slice(&line[..end]);
}

/// Writes `value` in `radix` (10 or 16, upper-case) at the start of `buf` (at least 20
/// bytes long); returns how many bytes it took.
fn put_digits(buf: &mut [u8], mut value: u64, radix: u64) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut reversed = [0u8; 20];
    let mut count = 0;
    loop {
        reversed[count] = DIGITS[(value % radix) as usize];
        count += 1;
        value /= radix;
        if value == 0 {
            break;
        }
    }
    for (slot, digit) in buf.iter_mut().zip(reversed[..count].iter().rev()) {
        *slot = *digit;
    }
    count
}

/// The line that starts a chunk of `len` bytes.
pub fn chunk_header(out: &mut BytesMut, len: usize) {
    let mut line = [0u8; 22];
    let end = put_digits(&mut line, len as u64, 16);
    line[end..end + 2].copy_from_slice(b"\r\n");
    out.put_slice(&line[..end + 2]);
}

/// The last chunk of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

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
    fn content_length_and_chunk_sizes_are_exact() {
        for length in [0u64, 7, 10, 13, 65_536, 1_048_576, u64::MAX] {
            let mut out = BytesMut::new();
            put_content_length(&mut out, length);
            assert_eq!(text(&out), format!("Content-Length: {length}\r\n"));
        }
        for len in [0usize, 1, 15, 16, 255, 65_536, 1_000_000] {
            let mut out = BytesMut::new();
            chunk_header(&mut out, len);
            assert_eq!(text(&out), format!("{len:X}\r\n"));
        }
    }

    #[test]
    fn server_and_date_added_only_when_the_app_set_none() {
        for (names, server, date) in [
            (vec![], true, true),
            (vec!["Server"], false, true),
            (vec!["Date"], true, false),
            (vec!["Server", "Date"], false, false),
        ] {
            let mut h = head(200, b"200 OK", Some(0));
            for name in &names {
                h.headers
                    .push((Bytes::from(name.to_string()), Bytes::from_static(b"v")));
            }
            let mut out = BytesMut::new();
            encode_head(
                &mut out,
                &h,
                ResponseFraming::Length(0),
                Protocol::Http11,
                true,
            );
            let text = text(&out);
            let lines: Vec<&str> = text.split("\r\n").collect();
            let servers: Vec<_> = lines.iter().filter(|l| l.starts_with("Server: ")).collect();
            let dates: Vec<_> = lines.iter().filter(|l| l.starts_with("Date: ")).collect();
            // One of each, ours where the app set none.
            assert_eq!(servers.len(), 1, "{text}");
            assert_eq!(dates.len(), 1, "{text}");
            assert_eq!(*servers[0] == "Server: tidegate", server, "{text}");
            let ours = httpdate::parse_http_date(&dates[0]["Date: ".len()..]).is_ok();
            assert_eq!(ours, date, "{text}");
            assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
        }
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
