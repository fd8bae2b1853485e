//! The `Range` request field (RFC 9110 section 14.2), single byte ranges only.

/// What a `Range` field asks of a representation `size` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Send the whole representation: no usable single range (absent, another unit,
    /// malformed, or several ranges, which are answered whole rather than as
    /// `multipart/byteranges`).
    Whole,
    /// Send bytes `start..=end` (206).
    Partial {
        /// The first byte.
        start: u64,
        /// The last byte, inclusive.
        end: u64,
    },
    /// No byte of the representation is in the range (416).
    Unsatisfiable,
}

/// Reads a `Range` value: `bytes=a-b`, `bytes=a-` or `bytes=-n`.
pub fn parse_range(value: &[u8], size: u64) -> RangeRequest {
    let value = crate::wsgi::head::trim_ows(value);
    let Some(unit_end) = value.iter().position(|&b| b == b'=') else {
        return RangeRequest::Whole;
    };
    if !value[..unit_end].eq_ignore_ascii_case(b"bytes") {
        return RangeRequest::Whole;
    }
    let mut specs = value[unit_end + 1..]
        .split(|&b| b == b',')
        .map(crate::wsgi::head::trim_ows)
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeRequest::Whole;
    };
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    match (digits(first), digits(last)) {
        // bytes=-n: the last n bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: size.saturating_sub(suffix),
                    end: size - 1,
                }
            }
        }
        // bytes=a- and bytes=a-b
        (Some(start), end) if last.is_empty() || end.is_some() => {
            let end = end.unwrap_or(u64::MAX);
            if end < start {
                RangeRequest::Whole // invalid, so ignored
            } else if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
        _ => RangeRequest::Whole,
    }
}

/// A non-empty run of ASCII digits; values past u64 saturate (they lie past any file).
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::*;
    use super::*;

    fn partial(start: u64, end: u64) -> RangeRequest {
        Partial { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse_range(b"bytes=0-9", 100), partial(0, 9));
        assert_eq!(parse_range(b"bytes=10-", 100), partial(10, 99));
        assert_eq!(parse_range(b"bytes=-10", 100), partial(90, 99));
        assert_eq!(parse_range(b"bytes=-1000", 100), partial(0, 99));
        assert_eq!(parse_range(b"bytes=90-1000", 100), partial(90, 99));
        assert_eq!(
            parse_range(b"Bytes = 5-5", 100),
            Whole,
            "no spaces around '='"
        );
        assert_eq!(parse_range(b"BYTES=5-5", 100), partial(5, 5));
        assert_eq!(parse_range(b"bytes= 5-5 ,", 100), partial(5, 5));
        assert_eq!(
            parse_range(b"bytes=0-99999999999999999999999", 100),
            partial(0, 99)
        );
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse_range(b"bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-5", 0), Unsatisfiable);
        assert_eq!(
            parse_range(b"bytes=99999999999999999999999-", 100),
            Unsatisfiable
        );
    }

    #[test]
    fn ignored_ranges_send_everything() {
        for value in [
            &b""[..],
            b"bytes=",
            b"bytes=5",
            b"bytes=9-5",
            b"bytes=a-b",
            b"bytes=-",
            b"bytes=1-2-3",
            b"bytes=+1-2",
            b"items=0-5",
            b"bytes=0-1,5-6",
            b"0-5",
        ] {
            assert_eq!(parse_range(value, 100), Whole, "{value:?}");
        }
    }
}
