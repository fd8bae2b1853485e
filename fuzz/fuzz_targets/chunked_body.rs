//! Fuzzes the chunked-body decoder.
//!
//! The first byte picks how the input is split into reads; the rest is the byte stream
//! after a request head. Properties checked besides "never panics, never loops":
//! - the decoded body is the same whether the input arrives whole or split at arbitrary
//!   points (the decoder is driven by the connection's reads, which split anywhere);
//! - a decoder that reports Done leaves the following bytes (the next pipelined request)
//!   untouched: what is left is exactly the tail of the input;
//! - differential: an independent, strict reading of RFC 9112 section 7.1 (below) agrees
//!   on where the body ends, what it holds, and whether it is valid. Lines longer than
//!   the decoder's 4096-byte cap and trailer sections over 16 KiB are left out of the
//!   comparison (the cap is a limit, not a syntax rule).
#![no_main]

use _tidegate::http::chunked::{ChunkedDecoder, Decoded};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done { body: Vec<u8>, rest: Vec<u8> },
    Incomplete,
    Error,
}

/// Feeds `data` to a decoder in pieces ending at `cuts` (sorted offsets).
fn run(data: &[u8], cuts: &[usize]) -> (Outcome, Vec<u8>) {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c <= data.len()).collect();
    ends.push(data.len());
    for end in ends {
        if end < fed {
            continue;
        }
        buf.extend_from_slice(&data[fed..end]);
        fed = end;
        // Bounded: every Data step consumes at least one byte, every other step a line.
        for _ in 0..=data.len() + 4 {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(d)) => {
                    assert!(!d.is_empty(), "empty Data chunk");
                    body.extend_from_slice(&d);
                }
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::Done) => {
                    assert!(decoder.is_done());
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&data[fed..]);
                    return (Outcome::Done { body, rest }, Vec::new());
                }
                Err(_) => return (Outcome::Error, body),
            }
        }
    }
    (Outcome::Incomplete, body)
}

// --- the reference reading ------------------------------------------------------------------

enum Line<'a> {
    Complete(&'a [u8], usize),
    Incomplete,
    Bad,
}

/// A CRLF-terminated line at `at`; a CR or LF anywhere else makes it bad.
fn line(data: &[u8], at: usize) -> Line<'_> {
    let rest = &data[at..];
    for (i, &b) in rest.iter().enumerate() {
        if b == b'\n' {
            return Line::Bad;
        }
        if b == b'\r' {
            return match rest.get(i + 1) {
                Some(b'\n') => Line::Complete(&rest[..i], at + i + 2),
                Some(_) => Line::Bad,
                None => Line::Incomplete,
            };
        }
    }
    Line::Incomplete
}

fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible bytes, SP, HTAB and obs-text: no other control byte, no DEL.
fn is_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

#[derive(Debug)]
enum Reference {
    Done {
        body: Vec<u8>,
        rest: Vec<u8>,
    },
    Incomplete,
    Error,
    /// Past the decoder's size caps: not compared.
    OverCap,
}

fn reference(data: &[u8]) -> Reference {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let (size_line, next) = match line(data, at) {
            Line::Complete(l, n) => (l, n),
            Line::Incomplete if data.len() - at > 4096 => return Reference::OverCap,
            Line::Incomplete => return Reference::Incomplete,
            Line::Bad => return Reference::Error,
        };
        if size_line.len() > 4096 {
            return Reference::OverCap;
        }
        let digits = size_line
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 || digits > 15 {
            return Reference::Error;
        }
        // chunk-ext: BWS ";" ... with no control bytes; nothing else may follow the size.
        let ext = &size_line[digits..];
        let after_bws = ext.iter().position(|&b| b != b' ' && b != b'\t');
        match after_bws {
            None if ext.is_empty() => {}
            Some(p) if ext[p] == b';' && is_text(&ext[p..]) => {}
            _ => return Reference::Error,
        }
        let size =
            u64::from_str_radix(std::str::from_utf8(&size_line[..digits]).unwrap(), 16).unwrap();
        at = next;
        if size == 0 {
            break;
        }
        if ((data.len() - at) as u64) < size {
            return Reference::Incomplete;
        }
        let end = at + size as usize;
        body.extend_from_slice(&data[at..end]);
        at = end;
        match data.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some(_) => return Reference::Error,
            None if data.len() == at || data[at] == b'\r' => return Reference::Incomplete,
            None => return Reference::Error,
        }
    }
    // Trailer section: field lines, then an empty line.
    let trailers_start = at;
    loop {
        let (field, next) = match line(data, at) {
            Line::Complete(l, n) => (l, n),
            Line::Incomplete if data.len() - at > 4096 => return Reference::OverCap,
            Line::Incomplete => return Reference::Incomplete,
            Line::Bad => return Reference::Error,
        };
        if field.len() > 4096 || next - trailers_start > 16 * 1024 {
            return Reference::OverCap;
        }
        at = next;
        if field.is_empty() {
            return Reference::Done {
                body,
                rest: data[at..].to_vec(),
            };
        }
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return Reference::Error;
        };
        let (name, value) = (&field[..colon], &field[colon + 1..]);
        // With the strict checks skipped, only what the decoder itself refuses is refused.
        let no_ctl = |s: &[u8]| s.iter().all(|&b| b >= b' ' || b == b'\t');
        let name_ok = if skip("trailer-names") {
            no_ctl(name)
        } else {
            is_token(name)
        };
        let value_ok = if skip("trailer-values") {
            no_ctl(value)
        } else {
            is_text(value)
        };
        if !name_ok || !value_ok {
            return Reference::Error;
        }
        let forbidden = [&b"content-length"[..], b"transfer-encoding", b"host"];
        if forbidden.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            return Reference::Error;
        }
    }
}

/// `TIDEGATE_FUZZ_SKIP=trailer-names,...` turns named checks off (see docs/fuzzing.md).
fn skip(check: &str) -> bool {
    static SKIP: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SKIP.get_or_init(|| {
        std::env::var("TIDEGATE_FUZZ_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    })
    .iter()
    .any(|s| s == check)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let seed = data[0];
    let data = &data[1..];
    let (whole, _) = run(data, &[]);
    let step = (seed as usize % 7) + 1;
    let cuts: Vec<usize> = (0..data.len()).step_by(step).collect();
    let (split, _) = run(data, &cuts);
    match (&whole, &split) {
        // A malformed stream may be noticed at a different read, or (cut mid-line, over
        // the line cap) before its end arrives.
        (Outcome::Error, Outcome::Error) => {}
        (Outcome::Incomplete, Outcome::Error) | (Outcome::Error, Outcome::Incomplete) => {}
        _ => assert_eq!(whole, split, "split feeding changed the result"),
    }
    if let Outcome::Done { body, rest } = &whole {
        assert!(body.len() + rest.len() <= data.len());
        assert!(data.ends_with(rest));
    }
    match (reference(data), &whole) {
        (Reference::OverCap, _) => {}
        (Reference::Done { body: rb, rest: rr }, Outcome::Done { body, rest }) => {
            assert_eq!(&rb, body, "body differs from the reference");
            assert_eq!(&rr, rest, "body ends elsewhere than the reference says");
        }
        (Reference::Incomplete | Reference::Error, Outcome::Incomplete | Outcome::Error) => {
            // Either may notice a bad stream before its line or chunk is complete.
        }
        (r, w) => panic!("reference says {r:?}, decoder says {w:?}"),
    }
});
