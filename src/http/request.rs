//! Parsing a request head and deciding how its body is framed.
//!
//! httparse reads the request line and header fields; the rules that decide where a body
//! ends are ours and strict, because a server and a proxy that disagree on them are how
//! requests get smuggled: Content-Length must be plain digits and single, Transfer-Encoding
//! may only be `chunked` and never comes with Content-Length or on HTTP/1.0.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::gateway::Protocol;
use crate::http::fields::{FieldSpans, HeaderFields};
use crate::wsgi::head::{parse_content_length, trim_ows};

use crate::http::HttpLimits;

/// Header slots parsed on the stack; a larger --limit-request-fields uses the heap.
const STACK_HEADERS: usize = 100;

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// A request head parsed from the connection buffer.
#[derive(Debug)]
pub struct ParsedHead {
    /// The method token.
    pub method: Bytes,
    /// The request target as sent.
    pub target: Bytes,
    /// HTTP/1.0 or HTTP/1.1.
    pub protocol: Protocol,
    /// Header fields (name, value) as sent.
    pub headers: HeaderFields,
    /// Where the body ends.
    pub framing: BodyFraming,
    /// The client allows the connection to stay open after this request.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// A request refused before the app sees it: the status to answer with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 400, 417, 431, 501 or 505.
    pub status: u16,
    /// What was wrong, for the log.
    pub detail: String,
}

impl Rejection {
    fn new(status: u16, detail: impl Into<String>) -> Self {
        Rejection {
            status,
            detail: detail.into(),
        }
    }
}

/// Parses a complete head from the front of `buf`, removing it. `Ok(None)`: more bytes
/// needed. Limits are checked as bytes arrive, so an oversized head is refused early.
pub fn parse_head(
    buf: &mut BytesMut,
    limits: &HttpLimits,
) -> Result<Option<ParsedHead>, Rejection> {
    check_request_line(buf, limits.request_line)?;
    // Uninitialised slots: httparse writes the ones it fills. Initialising 100 empty headers
    // (400 stores, not a memset: an empty header holds dangling non-null pointers) cost more
    // than parsing a short head.
    let mut stack =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap;
    let fields: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] =
        if limits.fields <= STACK_HEADERS {
            &mut stack[..limits.fields]
        } else {
            heap = Vec::with_capacity(limits.fields);
            heap.resize_with(limits.fields, std::mem::MaybeUninit::uninit);
            &mut heap
        };
    let mut request = httparse::Request::new(&mut []);
    let consumed = match request.parse_with_uninit_headers(buf, fields) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes() {
                return Err(Rejection::new(
                    431,
                    format!("request head larger than {} bytes", limits.max_head_bytes()),
                ));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(
                431,
                format!("more than {} header fields", limits.fields),
            ))
        }
        Err(httparse::Error::Version) => {
            return Err(Rejection::new(505, "unsupported HTTP version"))
        }
        Err(error) => {
            return Err(Rejection::new(
                400,
                format!("malformed request head: {error}"),
            ))
        }
    };
    if limits.field_size > 0 {
        if let Some(field) = request
            .headers
            .iter()
            .find(|h| h.name.len() + 2 + h.value.len() > limits.field_size)
        {
            return Err(Rejection::new(
                431,
                format!(
                    "header field {:?} longer than {} bytes",
                    field.name, limits.field_size
                ),
            ));
        }
    }
    // httparse tolerates bare LF line endings; a proxy in front may not, and a
    // disagreement over where a line ends is a smuggling vector.
    if has_bare_lf(&buf[..consumed]) {
        return Err(Rejection::new(400, "bare LF line ending in request head"));
    }
    let protocol = match request.version {
        Some(0) => Protocol::Http10,
        _ => Protocol::Http11,
    };
    // Record where each piece lies in the buffer, then take the head out as one Bytes
    // that the pieces share.
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let at = s.as_ptr() as usize - base;
        at..at + s.len()
    };
    let method = span(request.method.unwrap_or("").as_bytes());
    let target = span(request.path.unwrap_or("").as_bytes());
    let mut spans = FieldSpans::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        spans.push(span(field.name.as_bytes()), span(field.value));
    }
    let head = buf.split_to(consumed).freeze();
    let piece = |range: Range<usize>| head.slice(range);
    let method = piece(method);
    let target = piece(target);
    if target.is_empty() {
        return Err(Rejection::new(400, "empty request target"));
    }
    check_target_form(&method, &target)?;
    let headers = HeaderFields::new(head, spans);
    let rules = HeadRules::read(&headers, protocol)?;
    if let BodyFraming::Length(length) = rules.framing {
        if limits.body > 0 && length > limits.body {
            return Err(Rejection::new(
                413,
                format!(
                    "request body of {length} bytes is over --limit-request-body {}",
                    limits.body
                ),
            ));
        }
    }
    Ok(Some(ParsedHead {
        method,
        target,
        protocol,
        headers,
        framing: rules.framing,
        keep_alive: rules.keep_alive,
        expect_continue: rules.expect_continue,
    }))
}

/// The request target must have one of RFC 9112's four forms: origin (`/path?query`),
/// absolute (`http://host/path`), asterisk (`*`, OPTIONS only) or authority (`host:port`,
/// CONNECT only). Anything else is refused: an app must never see a path it cannot parse.
fn check_target_form(method: &[u8], target: &[u8]) -> Result<(), Rejection> {
    let valid = match target {
        [b'/', ..] => true,
        b"*" => method == b"OPTIONS",
        _ if method == b"CONNECT" => !target.contains(&b'/') && target.contains(&b':'),
        _ => match target.iter().position(|&b| b == b':') {
            Some(colon) => {
                let scheme = &target[..colon];
                !scheme.is_empty()
                    && scheme[0].is_ascii_alphabetic()
                    && scheme
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                    && target[colon + 1..].starts_with(b"//")
            }
            None => false,
        },
    };
    if valid {
        Ok(())
    } else {
        Err(Rejection::new(
            400,
            format!(
                "invalid request target {:?}",
                String::from_utf8_lossy(target)
            ),
        ))
    }
}

/// Refuses a request line longer than `limit` (0: no limit), complete or still arriving.
fn check_request_line(buf: &[u8], limit: usize) -> Result<(), Rejection> {
    if limit == 0 {
        return Ok(());
    }
    // Empty lines before the request line are allowed (RFC 9112 section 2.2).
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let length = match line.iter().position(|&b| b == b'\n') {
        Some(lf) => lf - usize::from(lf > 0 && line[lf - 1] == b'\r'),
        None => line.len(),
    };
    if length > limit {
        return Err(Rejection::new(
            414,
            format!("request line longer than {limit} bytes"),
        ));
    }
    Ok(())
}

/// Whether a LF appears without the CR before it.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// What the header fields say about framing and the connection.
struct HeadRules {
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
}

impl HeadRules {
    fn read(headers: &HeaderFields, protocol: Protocol) -> Result<Self, Rejection> {
        let mut content_length: Option<u64> = None;
        let mut transfer_encoding: Vec<&[u8]> = Vec::new();
        let mut hosts = 0;
        let mut close = false;
        let mut keep_alive_token = false;
        let mut expect_continue = false;
        for (name, value) in headers.iter() {
            // Only a name as long as one of the five below is compared with it.
            if !matches!(name.len(), 4 | 6 | 10 | 14 | 17) {
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                let length = parse_content_length(value).ok_or_else(|| {
                    Rejection::new(
                        400,
                        format!(
                            "invalid Content-Length {:?}",
                            String::from_utf8_lossy(value)
                        ),
                    )
                })?;
                if content_length.is_some() {
                    return Err(Rejection::new(400, "more than one Content-Length"));
                }
                content_length = Some(length);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                transfer_encoding.push(value);
            } else if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case(b"connection") {
                // Both tokens in one pass over the list (usually one token long).
                for token in value.split(|&b| b == b',').map(trim_ows) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case(b"expect") {
                if trim_ows(value).eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = protocol == Protocol::Http11;
                } else {
                    return Err(Rejection::new(
                        417,
                        format!(
                            "unsupported expectation {:?}",
                            String::from_utf8_lossy(value)
                        ),
                    ));
                }
            }
        }
        if protocol == Protocol::Http11 && hosts != 1 {
            return Err(Rejection::new(
                400,
                if hosts == 0 {
                    "HTTP/1.1 request without Host"
                } else {
                    "more than one Host"
                },
            ));
        }
        let framing = if transfer_encoding.is_empty() {
            match content_length {
                None | Some(0) => BodyFraming::Empty,
                Some(length) => BodyFraming::Length(length),
            }
        } else {
            if protocol == Protocol::Http10 {
                return Err(Rejection::new(
                    400,
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            if content_length.is_some() {
                return Err(Rejection::new(
                    400,
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            check_transfer_coding(&transfer_encoding)?;
            BodyFraming::Chunked
        };
        let keep_alive = match protocol {
            // (An HTTP/1 head is never HTTP/2; the arm only completes the match.)
            Protocol::Http11 | Protocol::Http2 => !close,
            Protocol::Http10 => keep_alive_token && !close,
        };
        Ok(HeadRules {
            framing,
            keep_alive,
            expect_continue: expect_continue && framing != BodyFraming::Empty,
        })
    }
}

/// The only transfer coding accepted is a single `chunked`.
fn check_transfer_coding(values: &[&[u8]]) -> Result<(), Rejection> {
    let codings: Vec<&[u8]> = values
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .collect();
    // An empty element (`Transfer-Encoding: ` or `chunked, `) names no coding; a front
    // server may read it differently, so it is refused rather than skipped.
    if codings.iter().any(|c| c.is_empty()) {
        return Err(Rejection::new(400, "empty element in Transfer-Encoding"));
    }
    if let Some(unknown) = codings.iter().find(|c| !c.eq_ignore_ascii_case(b"chunked")) {
        let known = [
            &b"gzip"[..],
            b"deflate",
            b"compress",
            b"x-gzip",
            b"identity",
        ];
        let status = if unknown.iter().all(|&b| crate::wsgi::head::is_token_byte(b))
            && !known.iter().any(|k| unknown.eq_ignore_ascii_case(k))
        {
            501
        } else {
            400
        };
        return Err(Rejection::new(
            status,
            format!(
                "unsupported Transfer-Encoding {:?}",
                String::from_utf8_lossy(unknown)
            ),
        ));
    }
    if codings.len() != 1 {
        return Err(Rejection::new(
            400,
            "Transfer-Encoding must be exactly 'chunked'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<ParsedHead>, Rejection> {
        let mut buf = BytesMut::from(raw);
        parse_head(&mut buf, &HttpLimits::default())
    }

    fn status_of(raw: &[u8]) -> u16 {
        parse(raw).expect_err("should be rejected").status
    }

    #[test]
    fn parses_a_simple_request_and_leaves_the_rest() {
        let mut buf = BytesMut::from(&b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nNEXT"[..]);
        let head = parse_head(&mut buf, &HttpLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.method.as_ref(), b"GET");
        assert_eq!(head.target.as_ref(), b"/a?b");
        assert_eq!(head.protocol, Protocol::Http11);
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.headers.value(1), b"1");
        assert_eq!(head.framing, BodyFraming::Empty);
        assert!(head.keep_alive);
        assert_eq!(buf.as_ref(), b"NEXT");
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !parse(b"GET / HTTP/1.0\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(
            parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        // The whole value taken at once, in any case, and token lists split.
        let keeps = |head: &[u8]| parse(head).unwrap().unwrap().keep_alive;
        assert!(!keeps(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n"
        ));
        assert!(!keeps(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        assert!(keeps(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(keeps(
            b"GET / HTTP/1.0\r\nConnection: upgrade, keep-alive\r\n\r\n"
        ));
        assert!(!keeps(b"GET / HTTP/1.0\r\nConnection: closed\r\n\r\n"));
    }

    #[test]
    fn framing() {
        let head = parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, BodyFraming::Length(5));
        let head = parse(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, BodyFraming::Chunked);
        let head = parse(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.expect_continue);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = HttpLimits {
            request_line: 20,
            fields: 2,
            field_size: 20,
            body: 10,
            ..HttpLimits::default()
        };
        let check = |raw: &[u8]| {
            let mut buf = BytesMut::from(raw);
            parse_head(&mut buf, &limits)
                .map(|h| h.is_some())
                .map_err(|r| r.status)
        };
        assert_eq!(check(b"GET /0123456789abcdef HTTP/1.1\r\n"), Err(414));
        assert_eq!(check(b"GET /0123456789abcdef"), Err(414));
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(true));
        assert_eq!(
            check(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n"),
            Err(431)
        );
        assert_eq!(
            check(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: 0123456789abcdef\r\n\r\n"),
            Err(431)
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"),
            Err(413)
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"),
            Ok(true)
        );
        let unlimited = HttpLimits {
            request_line: 0,
            field_size: 0,
            ..HttpLimits::default()
        };
        let mut buf = BytesMut::from(&b"GET /"[..]);
        buf.extend_from_slice(&vec![b'a'; 100_000]);
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(parse_head(&mut buf, &unlimited).unwrap().is_some());
    }

    #[test]
    fn field_limits_past_the_stack_slots_use_the_heap() {
        let limits = HttpLimits {
            fields: STACK_HEADERS + 50,
            ..HttpLimits::default()
        };
        let head_with = |count: usize| {
            let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
            for index in 1..count {
                raw.extend_from_slice(format!("X-F{index}: {index}\r\n").as_bytes());
            }
            raw.extend_from_slice(b"\r\n");
            BytesMut::from(&raw[..])
        };
        // Around the stack's limit of httparse's slots.
        for count in [STACK_HEADERS, STACK_HEADERS + 1, STACK_HEADERS + 50] {
            let mut buf = head_with(count);
            let head = parse_head(&mut buf, &limits).unwrap().unwrap();
            assert_eq!(head.headers.len(), count);
            for (index, (name, value)) in head.headers.iter().enumerate().skip(1) {
                assert_eq!(name, format!("X-F{index}").as_bytes());
                assert_eq!(value, index.to_string().as_bytes());
            }
        }
        let mut buf = head_with(STACK_HEADERS + 51);
        assert_eq!(parse_head(&mut buf, &limits).unwrap_err().status, 431);
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        assert_eq!(status_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(
            status_of(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n"),
            501
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(status_of(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
        assert_eq!(status_of(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status_of(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n"),
            417
        );
        for target in [&b"abc"[..], b"?a=1", b"x:80", b"1http://x/", b"http:/x"] {
            let mut raw = b"GET ".to_vec();
            raw.extend_from_slice(target);
            raw.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                status_of(&raw),
                400,
                "{:?}",
                String::from_utf8_lossy(target)
            );
        }
        assert!(parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .is_some());
        assert!(parse(b"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .is_some());
        assert!(parse(b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .is_some());
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n"),
            400
        );
    }
}
