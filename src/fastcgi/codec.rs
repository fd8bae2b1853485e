//! The FastCGI 1.0 wire format: records, name-value pairs, and the bodies of the
//! records a responder reads and writes.
//!
//! Pure functions over byte buffers, with no I/O, so they can be unit-tested and fuzzed on
//! their own (`fuzz/`). The only dependency is `bytes`. No crate on crates.io was both
//! maintained and a plain codec (the ones found either drive their own server loop or
//! were unmaintained), so the format is implemented here from the specification.
//!
//! A record is an 8-byte header (version 1, type, request id, content length, padding
//! length, reserved) followed by the content and the padding. Parameters travel as
//! name-value pairs whose lengths take 1 byte below 128 and 4 bytes (high bit set) above.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The only protocol version.
pub const VERSION: u8 = 1;
/// Length of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest content of one record.
pub const MAX_CONTENT: usize = 0xffff;

/// Starts a request (web server to application).
pub const BEGIN_REQUEST: u8 = 1;
/// Aborts a request.
pub const ABORT_REQUEST: u8 = 2;
/// Ends a request (application to web server).
pub const END_REQUEST: u8 = 3;
/// A piece of the parameter stream; an empty one ends it.
pub const PARAMS: u8 = 4;
/// A piece of the request body; an empty one ends it.
pub const STDIN: u8 = 5;
/// A piece of the response; an empty one ends it.
pub const STDOUT: u8 = 6;
/// A piece of the error stream.
pub const STDERR: u8 = 7;
/// The filter role's extra data stream (not used by responders).
pub const DATA: u8 = 8;
/// A management query for the application's limits.
pub const GET_VALUES: u8 = 9;
/// The answer to [`GET_VALUES`].
pub const GET_VALUES_RESULT: u8 = 10;
/// The answer to a management record of a type the application does not know.
pub const UNKNOWN_TYPE: u8 = 11;

/// The responder role, the only one a WSGI application plays.
pub const ROLE_RESPONDER: u16 = 1;
/// `BEGIN_REQUEST` flag: keep the connection open after the request.
pub const FLAG_KEEP_CONN: u8 = 1;

/// `END_REQUEST` protocol status: the request was served.
pub const REQUEST_COMPLETE: u8 = 0;
/// `END_REQUEST` protocol status: a second concurrent request on one connection.
pub const CANT_MPX_CONN: u8 = 1;
/// `END_REQUEST` protocol status: a role other than responder.
pub const UNKNOWN_ROLE: u8 = 3;

/// A malformed record or parameter block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One record, padding removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record type.
    pub kind: u8,
    /// The request id; 0 for management records.
    pub request_id: u16,
    /// The content.
    pub content: Bytes,
}

/// Takes one whole record off the front of `buf`. `Ok(None)`: more bytes are needed.
pub fn decode_record(buf: &mut BytesMut) -> Result<Option<Record>, CodecError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(CodecError(format!(
            "record of FastCGI version {} (only 1 exists)",
            buf[0]
        )));
    }
    let kind = buf[1];
    let request_id = u16::from_be_bytes([buf[2], buf[3]]);
    let content_len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    let padding = usize::from(buf[6]);
    if buf.len() < HEADER_LEN + content_len + padding {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let content = buf.split_to(content_len).freeze();
    buf.advance(padding);
    Ok(Some(Record {
        kind,
        request_id,
        content,
    }))
}

/// Appends a record header.
pub fn encode_header(out: &mut BytesMut, kind: u8, request_id: u16, content_len: u16) {
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u16(request_id);
    out.put_u16(content_len);
    out.put_u8(0); // no padding: it is optional, and nginx and Apache accept none
    out.put_u8(0);
}

/// Appends `data` as records of a stream (`STDOUT`, `STDERR`), split at the record size
/// limit. Empty `data` appends the empty record that ends the stream.
pub fn encode_stream(out: &mut BytesMut, kind: u8, request_id: u16, data: &[u8]) {
    if data.is_empty() {
        encode_header(out, kind, request_id, 0);
        return;
    }
    for piece in data.chunks(MAX_CONTENT) {
        encode_header(out, kind, request_id, piece.len() as u16);
        out.put_slice(piece);
    }
}

/// Appends an `END_REQUEST` record.
pub fn encode_end_request(out: &mut BytesMut, request_id: u16, app_status: u32, status: u8) {
    encode_header(out, END_REQUEST, request_id, 8);
    out.put_u32(app_status);
    out.put_u8(status);
    out.put_slice(&[0; 3]);
}

/// Appends the `UNKNOWN_TYPE` answer to a management record of type `kind`.
pub fn encode_unknown_type(out: &mut BytesMut, kind: u8) {
    encode_header(out, UNKNOWN_TYPE, 0, 8);
    out.put_u8(kind);
    out.put_slice(&[0; 7]);
}

/// The content of a `BEGIN_REQUEST` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginRequest {
    /// The role asked for.
    pub role: u16,
    /// Whether the web server keeps the connection for more requests.
    pub keep_conn: bool,
}

/// Parses a `BEGIN_REQUEST` body (8 bytes: role, flags, 5 reserved).
pub fn parse_begin_request(content: &[u8]) -> Result<BeginRequest, CodecError> {
    if content.len() != 8 {
        return Err(CodecError(format!(
            "BEGIN_REQUEST body of {} bytes (expected 8)",
            content.len()
        )));
    }
    Ok(BeginRequest {
        role: u16::from_be_bytes([content[0], content[1]]),
        keep_conn: content[2] & FLAG_KEEP_CONN != 0,
    })
}

fn read_length(data: &mut &[u8]) -> Result<usize, CodecError> {
    let Some(&first) = data.first() else {
        return Err(CodecError("name-value pair cut short".into()));
    };
    if first < 0x80 {
        *data = &data[1..];
        return Ok(usize::from(first));
    }
    if data.len() < 4 {
        return Err(CodecError("name-value pair length cut short".into()));
    }
    let length = u32::from_be_bytes([first & 0x7f, data[1], data[2], data[3]]);
    *data = &data[4..];
    Ok(length as usize)
}

/// Parses a whole parameter stream (the contents of every `PARAMS` record of a request,
/// joined: a pair may straddle two records) into name-value pairs.
pub fn parse_pairs(stream: &Bytes) -> Result<Vec<(Bytes, Bytes)>, CodecError> {
    let mut pairs = Vec::new();
    let mut rest: &[u8] = stream;
    while !rest.is_empty() {
        let name_len = read_length(&mut rest)?;
        let value_len = read_length(&mut rest)?;
        let total = name_len
            .checked_add(value_len)
            .filter(|&t| t <= rest.len())
            .ok_or_else(|| CodecError("name-value pair longer than its stream".into()))?;
        let start = stream.len() - rest.len();
        pairs.push((
            stream.slice(start..start + name_len),
            stream.slice(start + name_len..start + total),
        ));
        rest = &rest[total..];
    }
    Ok(pairs)
}

/// Appends one name-value pair.
pub fn encode_pair(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    for length in [name.len(), value.len()] {
        if length < 0x80 {
            out.put_u8(length as u8);
        } else {
            out.put_u32(length as u32 | 0x8000_0000);
        }
    }
    out.put_slice(name);
    out.put_slice(value);
}

/// The application's answers to `GET_VALUES`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `FCGI_MAX_CONNS`: connections the application accepts at once.
    pub max_conns: u32,
    /// `FCGI_MAX_REQS`: requests it serves at once.
    pub max_reqs: u32,
}

/// Appends the `GET_VALUES_RESULT` record answering the query `content`: the variables it
/// asks for that the application knows, with their values; unknown ones are left out, as
/// the specification says.
pub fn encode_get_values_result(
    out: &mut BytesMut,
    content: &Bytes,
    limits: Limits,
) -> Result<(), CodecError> {
    let mut body = BytesMut::new();
    let mut answered: Vec<Bytes> = Vec::new();
    for (name, _) in parse_pairs(content)? {
        // Each variable once, however often it is asked for: the answer stays a few
        // dozen bytes, far below the record size limit.
        if answered.contains(&name) {
            continue;
        }
        let value = match name.as_ref() {
            b"FCGI_MAX_CONNS" => limits.max_conns.to_string(),
            b"FCGI_MAX_REQS" => limits.max_reqs.to_string(),
            // One request at a time per connection.
            b"FCGI_MPXS_CONNS" => "0".to_string(),
            _ => continue,
        };
        encode_pair(&mut body, &name, value.as_bytes());
        answered.push(name);
    }
    encode_header(out, GET_VALUES_RESULT, 0, body.len() as u16);
    out.put_slice(&body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
        let mut out = vec![VERSION, kind];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        out.push(padding);
        out.push(0);
        out.extend_from_slice(content);
        out.extend(std::iter::repeat_n(0xAA, usize::from(padding)));
        out
    }

    #[test]
    fn records_decode_whole_with_padding_removed() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&record(STDIN, 7, b"hello", 3));
        buf.extend_from_slice(&record(STDIN, 7, b"", 0));
        let first = decode_record(&mut buf).unwrap().unwrap();
        assert_eq!(first.kind, STDIN);
        assert_eq!(first.request_id, 7);
        assert_eq!(&first.content[..], b"hello");
        let second = decode_record(&mut buf).unwrap().unwrap();
        assert!(second.content.is_empty());
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_records_wait_for_more() {
        let whole = record(PARAMS, 1, b"abcdef", 2);
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(decode_record(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn other_versions_are_refused() {
        let mut bad = record(STDIN, 1, b"", 0);
        bad[0] = 2;
        assert!(decode_record(&mut BytesMut::from(&bad[..])).is_err());
    }

    #[test]
    fn pairs_with_short_and_long_lengths() {
        let long_value = vec![b'v'; 300];
        let mut stream = BytesMut::new();
        encode_pair(&mut stream, b"REQUEST_METHOD", b"GET");
        encode_pair(&mut stream, b"HTTP_X_LONG", &long_value);
        encode_pair(&mut stream, b"EMPTY", b"");
        // The long length is four bytes with the high bit set.
        assert_eq!(stream[2 + 14 + 3 + 1], 0x80);
        let pairs = parse_pairs(&stream.freeze()).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(&pairs[0].0[..], b"REQUEST_METHOD");
        assert_eq!(&pairs[0].1[..], b"GET");
        assert_eq!(pairs[1].1.len(), 300);
        assert_eq!(&pairs[2].0[..], b"EMPTY");
        assert!(pairs[2].1.is_empty());
    }

    #[test]
    fn truncated_pairs_are_errors() {
        let mut stream = BytesMut::new();
        encode_pair(&mut stream, b"NAME", b"value");
        let whole = stream.freeze();
        for cut in 1..whole.len() {
            assert!(parse_pairs(&whole.slice(..cut)).is_err(), "cut at {cut}");
        }
        // A 4-byte length near 2^31 must not overflow or allocate.
        let huge = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]);
        assert!(parse_pairs(&huge).is_err());
    }

    #[test]
    fn begin_request_body() {
        let begin = parse_begin_request(&[0, 1, 1, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(begin.role, ROLE_RESPONDER);
        assert!(begin.keep_conn);
        let begin = parse_begin_request(&[0, 2, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(begin.role, 2);
        assert!(!begin.keep_conn);
        assert!(parse_begin_request(&[0, 1]).is_err());
    }

    #[test]
    fn streams_split_at_the_record_limit() {
        let data = vec![7u8; MAX_CONTENT + 10];
        let mut out = BytesMut::new();
        encode_stream(&mut out, STDOUT, 3, &data);
        encode_stream(&mut out, STDOUT, 3, b"");
        let mut sizes = Vec::new();
        while let Some(record) = decode_record(&mut out).unwrap() {
            assert_eq!((record.kind, record.request_id), (STDOUT, 3));
            sizes.push(record.content.len());
        }
        assert_eq!(sizes, [MAX_CONTENT, 10, 0]);
    }

    #[test]
    fn end_request_and_unknown_type() {
        let mut out = BytesMut::new();
        encode_end_request(&mut out, 9, 1, UNKNOWN_ROLE);
        encode_unknown_type(&mut out, 42);
        let end = decode_record(&mut out).unwrap().unwrap();
        assert_eq!((end.kind, end.request_id), (END_REQUEST, 9));
        assert_eq!(&end.content[..], &[0, 0, 0, 1, UNKNOWN_ROLE, 0, 0, 0]);
        let unknown = decode_record(&mut out).unwrap().unwrap();
        assert_eq!(unknown.kind, UNKNOWN_TYPE);
        assert_eq!(unknown.content[0], 42);
    }

    #[test]
    fn get_values_answers_what_it_knows() {
        let mut query = BytesMut::new();
        encode_pair(&mut query, b"FCGI_MAX_CONNS", b"");
        encode_pair(&mut query, b"FCGI_UNHEARD_OF", b"");
        encode_pair(&mut query, b"FCGI_MPXS_CONNS", b"");
        for _ in 0..5000 {
            encode_pair(&mut query, b"FCGI_MAX_CONNS", b"");
        }
        let mut out = BytesMut::new();
        encode_get_values_result(
            &mut out,
            &query.freeze(),
            Limits {
                max_conns: 64,
                max_reqs: 4,
            },
        )
        .unwrap();
        let result = decode_record(&mut out).unwrap().unwrap();
        assert_eq!(result.kind, GET_VALUES_RESULT);
        let pairs = parse_pairs(&result.content).unwrap();
        let pairs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        assert_eq!(
            pairs,
            [
                (&b"FCGI_MAX_CONNS"[..], &b"64"[..]),
                (b"FCGI_MPXS_CONNS", b"0")
            ]
        );
    }
}
