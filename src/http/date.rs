//! The `Date` header value, formatted once per second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Calls `f` with the current HTTP date, e.g. `Sat, 21 Nov 2026 07:10:19 GMT`.
pub fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let text = httpdate::fmt_http_date(now);
            let len = text.len().min(29);
            cache.1[..len].copy_from_slice(&text.as_bytes()[..len]);
            cache.0 = second;
        }
        f(&cache.1)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_an_imf_fixdate() {
        let date = super::with_http_date(|d| String::from_utf8(d.to_vec()).unwrap());
        assert_eq!(date.len(), 29);
        assert!(date.ends_with(" GMT"));
        assert!(httpdate::parse_http_date(&date).is_ok());
    }
}
