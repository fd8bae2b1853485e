//! Validators and conditional requests (RFC 9110 sections 8.8 and 13).
//!
//! The ETag is strong, `"SIZE-MTIME"` in hex (nanosecond mtime), with `-br`/`-gzip` for a
//! precompressed representation. Strong because `If-Range` only works with strong
//! validators (RFC 9110 section 13.1.5): a client resuming a download must be able to use
//! it. Size and mtime change whenever a file is rewritten by normal means; a rewrite that
//! keeps both to the nanosecond would go unnoticed, the same trade nginx makes.

use std::time::{SystemTime, UNIX_EPOCH};

/// The ETag of a representation `len` bytes long modified at `modified`; `coding` tells
/// the precompressed ones apart (they must not share the identity file's strong ETag).
pub fn etag(len: u64, modified: SystemTime, coding: Option<&str>) -> String {
    let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = since.as_secs() as u128 * 1_000_000_000 + u128::from(since.subsec_nanos());
    match coding {
        Some(coding) => format!("\"{len:x}-{nanos:x}-{coding}\""),
        None => format!("\"{len:x}-{nanos:x}\""),
    }
}

/// `modified` truncated to whole seconds, the precision of an HTTP date.
pub fn to_http_seconds(modified: SystemTime) -> SystemTime {
    let secs = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// One entity-tag of a list: whether it was weak, and its quoted form.
fn entity_tags(list: &[u8]) -> Vec<(bool, &[u8])> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return tags;
        }
        let weak = rest.starts_with(b"W/");
        if weak {
            rest = &rest[2..];
        }
        if rest.first() != Some(&b'"') {
            // Not an entity-tag: the field is malformed; what came before still counts,
            // the rest is skipped up to the next comma.
            match rest.iter().position(|&b| b == b',') {
                Some(comma) => rest = &rest[comma..],
                None => return tags,
            }
            continue;
        }
        match rest[1..].iter().position(|&b| b == b'"') {
            Some(end) => {
                tags.push((weak, &rest[..end + 2]));
                rest = &rest[end + 2..];
            }
            None => return tags,
        }
    }
}

/// `If-None-Match` against the current ETag, with the weak comparison the RFC asks for
/// here; `*` matches any existing representation.
pub fn none_match_fails(if_none_match: &[u8], etag: &str) -> bool {
    if if_none_match.iter().all(|&b| matches!(b, b' ' | b'\t')) {
        return false;
    }
    if trim(if_none_match) == b"*" {
        return true;
    }
    entity_tags(if_none_match)
        .iter()
        .any(|(_, tag)| *tag == etag.as_bytes())
}

/// `If-Modified-Since`: true when the representation has not changed since the date (an
/// invalid date is ignored, as the RFC says).
pub fn not_modified_since(if_modified_since: &[u8], modified: SystemTime) -> bool {
    let Some(since) = http_date(if_modified_since) else {
        return false;
    };
    to_http_seconds(modified) <= since
}

/// `If-Range`: whether the `Range` field applies. An entity-tag must match strongly (a weak
/// one never does); a date must equal `Last-Modified` exactly.
pub fn if_range_holds(if_range: &[u8], etag: &str, modified: SystemTime) -> bool {
    let value = trim(if_range);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return matches!(entity_tags(value).as_slice(), [(false, tag)] if *tag == etag.as_bytes());
    }
    http_date(value) == Some(to_http_seconds(modified))
}

fn http_date(value: &[u8]) -> Option<SystemTime> {
    std::str::from_utf8(trim(value))
        .ok()
        .and_then(|text| httpdate::parse_http_date(text).ok())
}

fn trim(value: &[u8]) -> &[u8] {
    crate::wsgi::head::trim_ows(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TAG: &str = "\"1f-5\"";

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn etags_depend_on_size_mtime_and_coding() {
        assert_eq!(etag(31, at(0, 5), None), TAG);
        assert_eq!(etag(31, at(1, 0), None), "\"1f-3b9aca00\"");
        assert_ne!(etag(31, at(0, 5), None), etag(31, at(0, 6), None));
        assert_eq!(etag(31, at(0, 5), Some("br")), "\"1f-5-br\"");
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        assert!(none_match_fails(TAG.as_bytes(), TAG));
        assert!(none_match_fails(b"\"x\", W/\"1f-5\"", TAG));
        assert!(none_match_fails(b" * ", TAG));
        assert!(!none_match_fails(b"\"1f-6\"", TAG));
        assert!(!none_match_fails(b"1f-5", TAG));
        assert!(!none_match_fails(b"", TAG));
        assert!(none_match_fails(b"junk, \"1f-5\"", TAG));
        assert!(none_match_fails(b"\"a,b\", \"1f-5\"", TAG));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        let modified = at(1_445_412_480, 700_000_000); // Wed, 21 Oct 2015 07:28:00.7 GMT
        assert!(not_modified_since(
            b"Wed, 21 Oct 2015 07:28:00 GMT",
            modified
        ));
        assert!(not_modified_since(
            b"Wed, 21 Oct 2015 07:29:00 GMT",
            modified
        ));
        assert!(!not_modified_since(
            b"Wed, 21 Oct 2015 07:27:59 GMT",
            modified
        ));
        assert!(!not_modified_since(b"yesterday", modified));
    }

    #[test]
    fn if_range_needs_a_strong_match_or_the_exact_date() {
        let modified = at(1_445_412_480, 0);
        assert!(if_range_holds(TAG.as_bytes(), TAG, modified));
        assert!(!if_range_holds(b"W/\"1f-5\"", TAG, modified));
        assert!(!if_range_holds(b"\"other\"", TAG, modified));
        assert!(if_range_holds(
            b"Wed, 21 Oct 2015 07:28:00 GMT",
            TAG,
            modified
        ));
        assert!(!if_range_holds(
            b"Wed, 21 Oct 2015 07:29:00 GMT",
            TAG,
            modified
        ));
        assert!(!if_range_holds(b"garbage", TAG, modified));
    }
}
