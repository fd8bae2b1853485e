//! Validation of what an application passes to `start_response`.
//!
//! PEP 3333 lets a server check status and headers when `start_response` is called, and
//! that is the only place where the app still gets the error as an exception it can see.
//! Everything that could split a response (CR, LF, NUL), that cannot be latin-1, or that is
//! not a token where HTTP needs one is refused here, so the HTTP engine can write heads
//! byte for byte without re-checking.

use std::borrow::Cow;

use bytes::Bytes;

/// A validated status: the code and the whole line (`200 OK`) as latin-1 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The three-digit code.
    pub code: u16,
    /// `NNN Reason`, exactly as the app gave it.
    pub line: Bytes,
}

/// The status lines apps send most, spelled as the standard spells them: a status that
/// matches one shares a static buffer instead of allocating a copy per response.
const COMMON_STATUS_LINES: [&[u8]; 9] = [
    b"200 OK",
    b"404 Not Found",
    b"302 Found",
    b"301 Moved Permanently",
    b"304 Not Modified",
    b"201 Created",
    b"204 No Content",
    b"400 Bad Request",
    b"500 Internal Server Error",
];

/// Encodes `text` as latin-1, or `None` if a character is above U+00FF.
pub fn latin1(text: &str) -> Option<Vec<u8>> {
    if text.is_ascii() {
        return Some(text.as_bytes().to_vec());
    }
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// Checks a status string: three digits (100 to 999), a space, and a reason phrase of
/// printable latin-1 characters (may be empty).
pub fn parse_status(status: &str) -> Result<Status, String> {
    let encoded;
    // ASCII is its own latin-1 encoding.
    let bytes = if status.is_ascii() {
        status.as_bytes()
    } else {
        encoded =
            latin1(status).ok_or_else(|| format!("invalid status {status:?}: not latin-1 text"))?;
        encoded.as_slice()
    };
    if bytes.len() < 4 || !bytes[..3].iter().all(u8::is_ascii_digit) || bytes[3] != b' ' {
        return Err(format!(
            "invalid status {status:?}: expected three digits, a space and a reason phrase, like '200 OK'"
        ));
    }
    let code = u16::from(bytes[0] - b'0') * 100
        + u16::from(bytes[1] - b'0') * 10
        + u16::from(bytes[2] - b'0');
    if code < 100 {
        return Err(format!(
            "invalid status {status:?}: the code must be 100 to 999"
        ));
    }
    if let Some(bad) = bytes[4..].iter().find(|&&b| is_forbidden_in_value(b)) {
        return Err(format!(
            "invalid status {status:?}: control character {bad:#04x} in the reason phrase"
        ));
    }
    let line = match COMMON_STATUS_LINES.iter().find(|common| **common == bytes) {
        Some(common) => Bytes::from_static(common),
        None => Bytes::copy_from_slice(bytes),
    };
    Ok(Status { code, line })
}

/// Whether `byte` may appear in an HTTP token (RFC 9110 `tchar`).
pub fn is_token_byte(byte: u8) -> bool {
    TOKEN_BYTES[usize::from(byte)]
}

/// `is_token_byte` as a table: header names are checked on every `start_response`, and a
/// lookup per byte is several times cheaper than the range match.
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = matches!(byte as u8,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' |
            b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z');
        byte += 1;
    }
    table
};

/// Control characters other than horizontal tab (and DEL) are refused in field values: CR
/// and LF would split the response, NUL and the rest are refused by clients and proxies.
fn is_forbidden_in_value(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// Checks a response header name: a non-empty token.
pub fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("invalid header name '': empty".to_string());
    }
    if let Some(bad) = name.bytes().find(|&b| !is_token_byte(b)) {
        return Err(format!(
            "invalid header name {name:?}: character {:?} is not allowed in a header name",
            char::from(bad)
        ));
    }
    Ok(())
}

/// Why a response header value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFault {
    /// A control character (the byte) that could split or corrupt the response.
    Control(u8),
    /// A character above U+00FF.
    NotLatin1,
}

impl ValueFault {
    /// The message for the app, naming the header and quoting its value.
    pub fn describe(self, name: &str, value: &str) -> String {
        match self {
            ValueFault::Control(bad) => format!(
                "invalid value for header {name:?}: control character {bad:#04x} (header injection refused)"
            ),
            ValueFault::NotLatin1 => {
                format!("invalid value for header {name:?}: {value:?} is not latin-1 text")
            }
        }
    }
}

/// Checks a response header value and returns it as latin-1 bytes (borrowed when the text
/// is ASCII, which is its own latin-1 encoding).
pub fn check_header_value(value: &str) -> Result<Cow<'_, [u8]>, ValueFault> {
    let bytes = if value.is_ascii() {
        Cow::Borrowed(value.as_bytes())
    } else {
        Cow::Owned(latin1(value).ok_or(ValueFault::NotLatin1)?)
    };
    match bytes.iter().find(|&&b| is_forbidden_in_value(b)) {
        Some(&bad) => Err(ValueFault::Control(bad)),
        None => Ok(bytes),
    }
}

/// The header names apps send most, spelled as they usually are: a name that matches one
/// exactly shares a static buffer instead of allocating a copy.
pub fn common_header_name(name: &str) -> Option<Bytes> {
    const COMMON: [&str; 8] = [
        "Content-Type",
        "Set-Cookie",
        "Cache-Control",
        "Location",
        "Last-Modified",
        "ETag",
        "Vary",
        "Content-Encoding",
    ];
    COMMON
        .iter()
        .find(|common| **common == name)
        .map(|common| Bytes::from_static(common.as_bytes()))
}

/// Hop-by-hop headers describe one connection, which the server owns (PEP 3333 forbids
/// apps to send them). `Connection: close` is honoured; the rest are dropped.
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP_BY_HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Parses a Content-Length value: plain decimal digits only.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let trimmed = trim_ows(value);
    if trimmed.is_empty() || trimmed.len() > 19 || !trimmed.iter().all(u8::is_ascii_digit) {
        return None;
    }
    trimmed.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Strips optional whitespace (spaces and tabs) around a field value.
pub fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    &value[start..end]
}

/// Whether a comma-separated header value lists `token` (case-insensitive), as in
/// `Connection: keep-alive, close`.
pub fn has_token(value: &[u8], token: &str) -> bool {
    // The usual value is the token alone (`Connection: close`): no splitting for it.
    if value.eq_ignore_ascii_case(token.as_bytes()) {
        return true;
    }
    value
        .split(|&b| b == b',')
        .any(|part| trim_ows(part).eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table_matches_rfc_9110_tchar() {
        let tchar =
            b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for byte in 0..=255u8 {
            assert_eq!(is_token_byte(byte), tchar.contains(&byte), "{byte:#04x}");
        }
    }

    #[test]
    fn common_header_names_keep_their_spelling() {
        for name in ["Content-Type", "ETag", "Set-Cookie"] {
            assert_eq!(common_header_name(name).unwrap(), name.as_bytes());
        }
        for name in ["content-type", "X-Custom", "Etag"] {
            assert_eq!(common_header_name(name), None);
        }
    }

    #[test]
    fn accepts_ordinary_and_custom_statuses() {
        assert_eq!(parse_status("200 OK").unwrap().code, 200);
        let custom = parse_status("299 Everything Fine").unwrap();
        assert_eq!(custom.code, 299);
        assert_eq!(custom.line, &b"299 Everything Fine"[..]);
        assert_eq!(parse_status("204 ").unwrap().code, 204);
        assert_eq!(
            parse_status("200 Caf\u{e9}").unwrap().line,
            &b"200 Caf\xe9"[..]
        );
        // A common line is shared, any other spelling kept as the app wrote it.
        assert_eq!(parse_status("200 OK").unwrap().line, &b"200 OK"[..]);
        assert_eq!(parse_status("200 ok").unwrap().line, &b"200 ok"[..]);
        assert_eq!(parse_status("404 Not Found").unwrap().code, 404);
    }

    #[test]
    fn refuses_malformed_statuses() {
        for bad in [
            "1000 X",
            "OK",
            "200",
            "20 OK",
            "099 Low",
            "abc Reason",
            "200OK",
            "200 O\r\nX: y",
            "200 A\0",
            "200 \u{20ac}",
        ] {
            assert!(parse_status(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn header_names_must_be_tokens() {
        assert!(check_header_name("X-Custom_Header").is_ok());
        for bad in ["", "X Header", "X:Y", "X\r\nY", "caf\u{e9}", "a(b)"] {
            assert!(check_header_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn header_values_refuse_injection_and_non_latin1() {
        assert_eq!(check_header_value("caf\u{e9}").unwrap(), &b"caf\xe9"[..]);
        assert_eq!(check_header_value("a\tb").unwrap(), &b"a\tb"[..]);
        assert_eq!(
            check_header_value("text/plain").unwrap(),
            &b"text/plain"[..]
        );
        for bad in [
            "a\r\nSet-Cookie: x",
            "a\nb",
            "a\rb",
            "a\0b",
            "\u{20ac}",
            "a\x7fb",
        ] {
            assert!(check_header_value(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn content_length_is_plain_digits() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b" 42 "), Some(42));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"0x1",
            b"1_0",
            b"1 2",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn connection_tokens() {
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert!(is_hop_by_hop("Transfer-Encoding"));
        assert!(!is_hop_by_hop("Content-Type"));
    }
}
