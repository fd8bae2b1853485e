//! Decoding a chunked request body (RFC 9112 section 7.1), strictly.
//!
//! The decoder works on the connection's read buffer and never waits itself: it returns
//! data it can take, asks for more bytes, or reports the end. Chunk sizes are plain hex,
//! every line ends in CRLF, extensions hold no control characters, and trailer fields are
//! read and discarded (none reaches the app, so none can smuggle a header in).

use bytes::{Bytes, BytesMut};

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted in all.
const MAX_TRAILERS: usize = 16 * 1024;

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The buffer holds no complete next piece; read more.
    NeedMore,
    /// The body ended (last chunk and trailers consumed).
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// A chunked-body decoder.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder { state: State::Size }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, String> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_size_line(&line)?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = if n == remaining {
                        State::DataEnd
                    } else {
                        State::Data(remaining - n)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Decoded::Done);
                    }
                    let seen = seen + line.len() + 2;
                    if seen > MAX_TRAILERS {
                        return Err("trailer section too large".into());
                    }
                    // A trailer field is a header field: a token name (no space, no
                    // obs-fold), a colon, and a value without control characters.
                    let Some(colon) = line.iter().position(|&b| b == b':') else {
                        return Err("malformed trailer field".into());
                    };
                    let name = &line[..colon];
                    if name.is_empty()
                        || !name.iter().all(|&b| crate::wsgi::head::is_token_byte(b))
                        || line[colon + 1..]
                            .iter()
                            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                    {
                        return Err("malformed trailer field".into());
                    }
                    // Fields that frame or route a message must never come late (RFC 9110
                    // section 6.5.1): a server that applied them would be smuggled into.
                    const FORBIDDEN: [&[u8]; 3] =
                        [b"content-length", b"transfer-encoding", b"host"];
                    if FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                        return Err(format!(
                            "forbidden trailer field {:?}",
                            String::from_utf8_lossy(name)
                        ));
                    }
                    self.state = State::Trailers(seen);
                }
            }
        }
    }
}

/// Takes one CRLF-terminated line (without the CRLF) from the front of `buf`.
fn take_line(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return Err("chunk line too long".into());
        }
        return Ok(None);
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err("bare LF in chunked body".into());
    }
    if lf > MAX_LINE {
        return Err("chunk line too long".into());
    }
    let line = buf.split_to(lf + 1).freeze();
    Ok(Some(line.slice(..lf - 1)))
}

/// `chunk-size [ chunk-ext ]`: hex digits, then optionally `;` extensions.
fn parse_size_line(line: &[u8]) -> Result<u64, String> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(format!(
            "invalid chunk size line {:?}",
            String::from_utf8_lossy(line)
        ));
    }
    if digits > 15 {
        return Err("chunk size too large".into());
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap_or("x"), 16)
        .map_err(|_| "invalid chunk size".to_string())?;
    let rest = &line[digits..];
    let ext = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map(|p| &rest[p..]);
    match ext {
        None if rest.is_empty() => Ok(size),
        Some(ext) if ext[0] == b';' => {
            if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err("control character in chunk extension".into());
            }
            Ok(size)
        }
        _ => Err(format!(
            "invalid chunk size line {:?}",
            String::from_utf8_lossy(line)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<u8>, String> {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::NeedMore => return Err("incomplete".into()),
                Decoded::Done => return Ok(out),
            }
        }
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        assert_eq!(
            decode_all(b"5\r\nhello\r\n6;name=v\r\n world\r\n0\r\nX-T: 1\r\n\r\n").unwrap(),
            b"hello world"
        );
        assert_eq!(decode_all(b"0\r\n\r\n").unwrap(), b"");
        assert_eq!(
            decode_all(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            b"0123456789"
        );
    }

    #[test]
    fn decodes_byte_by_byte() {
        let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &byte in input.iter() {
            buf.extend_from_slice(&[byte]);
            while let Decoded::Data(d) = decoder.decode(&mut buf).unwrap() {
                out.extend_from_slice(&d);
            }
        }
        assert!(decoder.is_done());
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn leaves_the_next_request_in_the_buffer() {
        let mut decoder = ChunkedDecoder::new();
        let mut buf = BytesMut::from(&b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"a"))
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), Decoded::Done);
        assert_eq!(buf.as_ref(), b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn refuses_malformed_bodies() {
        for bad in [
            &b"0x5\r\nhello\r\n0\r\n\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5_0\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\nContent-Length: 5\r\n\r\n",
            b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"0\r\nhost: evil\r\n\r\n",
            b"0\r\nContent-Length : 40\r\n\r\n",
            b"0\r\n Host: evil\r\n\r\n",
            b"0\r\n: x\r\n\r\n",
            b"0\r\nX-T: a\x7fb\r\n\r\n",
        ] {
            assert!(
                decode_all(bad).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
