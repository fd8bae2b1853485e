//! The `Date` header value, formatted once per second per thread.

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

thread_local! {
    static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// The current Unix time in whole seconds, from the kernel's coarse clock: the value of
/// its last tick (a few milliseconds old at most), read from the vDSO without the
/// timestamp counter `SystemTime::now` reads (~20 ns per response on this machine's TSC
/// clock, several times that where the clock is virtualised). A `Date` has whole seconds.
fn unix_seconds() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call to fill.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    if status == 0 {
        u64::try_from(now.tv_sec).unwrap_or(0)
    } else {
        std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// Calls `f` with the current HTTP date, e.g. `Sat, 21 Nov 2026 07:10:19 GMT`.
pub fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let second = unix_seconds();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
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
        let parsed = httpdate::parse_http_date(&date).unwrap();
        // The coarse clock is at most a tick behind the precise one.
        let skew = std::time::SystemTime::now()
            .duration_since(parsed)
            .expect("the Date is not in the future");
        assert!(skew < std::time::Duration::from_secs(2), "{skew:?}");
    }
}
