//! The error log (stderr, through `tracing`); the access log is in [`crate::access_log`].
//!
//! The error log reads like gunicorn's, so people and log shippers that know it need no
//! new parser: `[2026-11-21 07:10:19 +0000] [1234] [INFO] Listening at: ...`. With
//! `--log-format json` each event is instead one JSON object on one line (`timestamp`,
//! `level`, `pid`, `message`, and the event's other fields), tracebacks included, for log
//! pipelines. The level and format can change between servers in one process (the Python
//! API), so they are atomics checked per event rather than a filter fixed at start.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

pub use crate::access_log::{AccessEntry, AccessLog};

/// How error log lines (and access log lines) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// gunicorn's readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

/// 0 text, 1 json.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the error log's format for the events logged from now on.
pub fn set_format(format: LogFormat) {
    FORMAT.store(u8::from(format == LogFormat::Json), Ordering::Relaxed);
}

/// The error log's format.
pub fn format() -> LogFormat {
    if FORMAT.load(Ordering::Relaxed) == 1 {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// 0 debug, 1 info, 2 warning, 3 error, 4 critical.
static THRESHOLD: AtomicU8 = AtomicU8::new(1);
static INSTALLED: OnceLock<()> = OnceLock::new();

/// Sets the log level by name (debug, info, warning, error, critical) and installs the
/// error log on first use.
pub fn init(level: &str) -> Result<(), String> {
    let threshold = match level {
        "debug" => 0,
        "info" => 1,
        "warning" => 2,
        "error" => 3,
        "critical" => 4,
        other => return Err(format!("unknown log level {other:?}")),
    };
    THRESHOLD.store(threshold, Ordering::Relaxed);
    INSTALLED.get_or_init(|| {
        // Another subscriber may already be installed by an embedding program; then
        // events go there instead, which is what that program asked for.
        let _ = tracing_subscriber::registry().with(ErrorLog).try_init();
    });
    Ok(())
}

fn rank(level: &Level) -> u8 {
    match *level {
        Level::TRACE | Level::DEBUG => 0,
        Level::INFO => 1,
        Level::WARN => 2,
        Level::ERROR => 3,
    }
}

/// Whether an event is logged at `threshold`. Below INFO only tidegate's own events are:
/// the crates under it (h2 above all) trace every frame, HPACK field and window update at
/// DEBUG and TRACE, which would bury `--log-level debug` under a hundred lines a request.
fn admits(threshold: u8, metadata: &Metadata<'_>) -> bool {
    let rank = rank(metadata.level());
    if rank == 0 && !is_own(metadata.target()) {
        return false;
    }
    // "critical" keeps only errors.
    rank >= threshold.min(3)
}

/// Whether `target` (a module path) is in this crate.
fn is_own(target: &str) -> bool {
    let crate_name = env!("CARGO_CRATE_NAME");
    target
        .strip_prefix(crate_name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// The error log layer: one formatted line (or block, for tracebacks) per event.
struct ErrorLog;

impl<S: Subscriber> Layer<S> for ErrorLog {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The level can change at run time: decide per event.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        admits(THRESHOLD.load(Ordering::Relaxed), metadata)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = FieldVisitor::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            Level::TRACE | Level::DEBUG => "DEBUG",
            Level::INFO => "INFO",
            Level::WARN => "WARNING",
            Level::ERROR => "ERROR",
        };
        let now = SystemTime::now();
        let mut line = String::with_capacity(fields.message.len() + 64);
        match format() {
            LogFormat::Text => {
                let _ = write!(
                    line,
                    "[{}] [{}] [{}] {}",
                    format_time(now, TimeStyle::ErrorLog),
                    std::process::id(),
                    level,
                    fields.message
                );
                for (name, value) in &fields.others {
                    let _ = write!(line, " {name}={}", value.as_text());
                }
            }
            LogFormat::Json => {
                line.push_str("{\"timestamp\":");
                json_string(&mut line, &format_time(now, TimeStyle::Iso));
                let _ = write!(
                    line,
                    ",\"level\":\"{level}\",\"pid\":{},\"message\":",
                    std::process::id()
                );
                json_string(&mut line, &fields.message);
                let target = event.metadata().target();
                if !target.starts_with("_tidegate") && !target.starts_with("tidegate") {
                    line.push_str(",\"logger\":");
                    json_string(&mut line, target);
                }
                for (name, value) in &fields.others {
                    line.push(',');
                    json_string(&mut line, name);
                    line.push(':');
                    value.push_json(&mut line);
                }
                line.push('}');
            }
        }
        line.push('\n');
        let mut stderr = io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
        let _ = stderr.flush();
    }
}

/// A field value, kept typed so JSON lines carry numbers as numbers.
enum FieldValue {
    Text(String),
    Debug(String),
    Raw(String),
}

impl FieldValue {
    fn as_text(&self) -> String {
        match self {
            FieldValue::Text(text) => format!("{text:?}"),
            FieldValue::Debug(text) | FieldValue::Raw(text) => text.clone(),
        }
    }

    fn push_json(&self, out: &mut String) {
        match self {
            FieldValue::Text(text) | FieldValue::Debug(text) => json_string(out, text),
            FieldValue::Raw(text) => out.push_str(text),
        }
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: String,
    others: Vec<(&'static str, FieldValue)>,
}

impl Visit for FieldVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.others
                .push((field.name(), FieldValue::Debug(format!("{value:?}"))));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.others
                .push((field.name(), FieldValue::Text(value.to_string())));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.others
            .push((field.name(), FieldValue::Raw(value.to_string())));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.others
            .push((field.name(), FieldValue::Raw(value.to_string())));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.others
            .push((field.name(), FieldValue::Raw(value.to_string())));
    }
}

/// Appends `text` as a JSON string (quotes, backslashes and control characters escaped,
/// so a traceback stays on one line).
pub fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How a timestamp is written.
#[derive(Clone, Copy)]
pub enum TimeStyle {
    /// `2026-11-21 07:10:19 +0000`
    ErrorLog,
    /// `21/Nov/2026:07:10:19 +0000` (Common Log Format)
    AccessLog,
    /// `2026-11-21T07:10:19.042Z` (RFC 3339, UTC, milliseconds)
    Iso,
}

/// Formats a UTC timestamp.
pub fn format_time(time: SystemTime, style: TimeStyle) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    match style {
        TimeStyle::Iso => {
            let millis = time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_millis());
            format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
        }
        TimeStyle::ErrorLog => {
            format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} +0000")
        }
        TimeStyle::AccessLog => {
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let name = MONTHS[(month - 1) as usize];
            format!("{day:02}/{name}/{year:04}:{hour:02}:{minute:02}:{second:02} +0000")
        }
    }
}

thread_local! {
    /// The last second formatted for the access log on this thread, and its text: a busy
    /// server writes many lines per second, and formatting a date each time is wasted.
    static ACCESS_TIME: std::cell::RefCell<(u64, String)> =
        const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// Appends `time` in the access log's style (`21/Nov/2026:07:10:19 +0000`).
pub fn push_access_time(out: &mut String, time: SystemTime) {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    ACCESS_TIME.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, format_time(time, TimeStyle::AccessLog));
        }
        out.push_str(&cache.1);
    });
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn debug_events_of_other_crates_are_left_out() {
        struct Probe;
        impl<S: Subscriber> Layer<S> for Probe {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                SEEN.with(|seen| {
                    let admitted = admits(0, event.metadata());
                    seen.borrow_mut()
                        .push((event.metadata().target().to_string(), admitted));
                });
            }
        }
        thread_local! {
            static SEEN: std::cell::RefCell<Vec<(String, bool)>> = Default::default();
        }
        let subscriber = tracing_subscriber::registry().with(Probe);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("ours");
            tracing::debug!(target: "h2::codec::framed_write", "send frame");
            tracing::trace!(target: "h2::proto", "poll");
            tracing::info!(target: "h2::proto", "an h2 info");
            tracing::debug!(target: "_tidegate_other", "a crate with a longer name");
        });
        let seen = SEEN.with(|seen| seen.take());
        let admitted: Vec<_> = seen.iter().map(|(_, admitted)| *admitted).collect();
        assert_eq!(admitted, [true, false, false, true, false], "{seen:?}");
    }

    #[test]
    fn calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_245_019);
        assert_eq!(
            format_time(t, TimeStyle::ErrorLog),
            "2026-11-21 07:10:19 +0000"
        );
        assert_eq!(
            format_time(t, TimeStyle::AccessLog),
            "21/Nov/2026:07:10:19 +0000"
        );
    }

    #[test]
    fn json_strings_stay_on_one_line() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn iso_timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_245_019_042);
        assert_eq!(format_time(t, TimeStyle::Iso), "2026-11-21T07:10:19.042Z");
        let mut out = String::new();
        push_access_time(&mut out, t);
        push_access_time(&mut out, t);
        assert_eq!(out, "21/Nov/2026:07:10:19 +000021/Nov/2026:07:10:19 +0000");
    }
}
