//! The `Date` header value, formatted once per second per thread, inside the `Server` and
//! `Date` lines of an HTTP/1 response head.

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

/// The `Server` line every HTTP/1 response head carries unless the app set its own.
pub const SERVER_LINE: &[u8] = b"Server: tidegate\r\n";
/// What comes before the date in the `Date` line.
const DATE_PREFIX: &[u8] = b"Date: ";
/// An IMF-fixdate is always this long (`Sat, 21 Nov 2026 07:10:19 GMT`).
const DATE_LEN: usize = 29;
/// The `Server` and `Date` lines: one copy into a response head instead of four.
const LINES_LEN: usize = SERVER_LINE.len() + DATE_PREFIX.len() + DATE_LEN + 2;
/// Where the date starts in the lines.
const DATE_AT: usize = SERVER_LINE.len() + DATE_PREFIX.len();

/// The second the lines were made for, and the lines.
struct Lines {
    second: u64,
    text: [u8; LINES_LEN],
}

thread_local! {
    static CACHE: RefCell<Lines> = const {
        RefCell::new(Lines { second: u64::MAX, text: lines_template() })
    };
}

/// The lines with the date left blank.
const fn lines_template() -> [u8; LINES_LEN] {
    let mut text = [b' '; LINES_LEN];
    let mut i = 0;
    while i < SERVER_LINE.len() {
        text[i] = SERVER_LINE[i];
        i += 1;
    }
    let mut j = 0;
    while j < DATE_PREFIX.len() {
        text[SERVER_LINE.len() + j] = DATE_PREFIX[j];
        j += 1;
    }
    text[LINES_LEN - 2] = b'\r';
    text[LINES_LEN - 1] = b'\n';
    text
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
    with_server_and_date(|lines| f(&lines[DATE_AT..DATE_AT + DATE_LEN]))
}

/// Calls `f` with the `Server` line followed by the current `Date` line, each ending in
/// CRLF; `&lines[SERVER_LINE.len()..]` is the `Date` line alone.
pub fn with_server_and_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let second = unix_seconds();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.second != second {
            let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
            let len = date.len().min(DATE_LEN);
            cache.text[DATE_AT..DATE_AT + len].copy_from_slice(&date.as_bytes()[..len]);
            cache.second = second;
        }
        f(&cache.text)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lines_hold_the_server_and_the_date() {
        let lines = super::with_server_and_date(|l| String::from_utf8(l.to_vec()).unwrap());
        let date = super::with_http_date(|d| String::from_utf8(d.to_vec()).unwrap());
        // The second may turn between the two calls.
        let now = super::with_server_and_date(|l| String::from_utf8(l.to_vec()).unwrap());
        assert!(
            lines == format!("Server: tidegate\r\nDate: {date}\r\n")
                || now == format!("Server: tidegate\r\nDate: {date}\r\n"),
            "{lines:?} {date:?}"
        );
        assert!(lines[super::SERVER_LINE.len()..].starts_with("Date: "));
    }

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
