//! Writing a CGI response head (RFC 3875 section 6): `Status: NNN Reason`, the app's
//! header fields, `Content-Length` when known, and a blank line, all ending in CRLF.
//!
//! The CGI gateway writes it to stdout and the FastCGI gateway inside `FCGI_STDOUT`
//! records; the front server turns it into an HTTP status line and adds what belongs to
//! its connection with the client (`Date`, `Server`, framing, keep-alive).

use crate::gateway::ResponseHead;

/// Appends the CGI head of `head` to `out`.
///
/// `Content-Length` comes last, after the app's own fields, written with that spelling:
/// the bridge keeps the length aside (it checks the body against it), not its position.
pub fn encode_head(out: &mut Vec<u8>, head: &ResponseHead) {
    encode_head_after(out, b"Status: ", head);
}

/// Appends the head with an HTTP status line (`HTTP/1.1 200 OK`) instead of `Status:`,
/// the form uwsgi's front servers read first; the fields are the same as for CGI.
pub fn encode_http_head(out: &mut Vec<u8>, head: &ResponseHead) {
    encode_head_after(out, b"HTTP/1.1 ", head);
}

fn encode_head_after(out: &mut Vec<u8>, status_prefix: &[u8], head: &ResponseHead) {
    out.reserve(
        32 + head
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.extend_from_slice(status_prefix);
    out.extend_from_slice(&head.status_line);
    out.extend_from_slice(b"\r\n");
    for (name, value) in &head.headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(length) = head.content_length {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(length.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn status_headers_length_and_blank_line() {
        let head = ResponseHead {
            status: 200,
            status_line: Bytes::from_static(b"200 Fine"),
            headers: vec![
                (
                    Bytes::from_static(b"Content-Type"),
                    Bytes::from_static(b"text/plain"),
                ),
                (
                    Bytes::from_static(b"X-Name"),
                    Bytes::from_static(b"caf\xe9"),
                ),
            ],
            content_length: Some(5),
            close_connection: false,
        };
        let mut out = Vec::new();
        encode_head(&mut out, &head);
        assert_eq!(
            out,
            b"Status: 200 Fine\r\nContent-Type: text/plain\r\nX-Name: caf\xe9\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn no_length_when_unknown() {
        let head = ResponseHead {
            status: 302,
            status_line: Bytes::from_static(b"302 Found"),
            headers: vec![(Bytes::from_static(b"Location"), Bytes::from_static(b"/x"))],
            content_length: None,
            close_connection: true,
        };
        let mut out = Vec::new();
        encode_head(&mut out, &head);
        assert_eq!(out, b"Status: 302 Found\r\nLocation: /x\r\n\r\n");
        let mut out = Vec::new();
        encode_http_head(&mut out, &head);
        assert_eq!(out, b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n");
    }
}
