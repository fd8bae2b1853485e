//! The error log (stderr, through `tracing`) and the access log.
//!
//! The error log reads like gunicorn's, so people and log shippers that know it need no
//! new parser: `[2026-11-21 07:10:19 +0000] [1234] [INFO] Listening at: ...`. The level can
//! change between servers in one process (the Python API), so it is an atomic checked per
//! event rather than a filter fixed at start.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::gateway::{CgiRequest, Peer, Protocol};

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

/// The error log layer: one formatted line (or block, for tracebacks) per event.
struct ErrorLog;

impl<S: Subscriber> Layer<S> for ErrorLog {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The level can change at run time: decide per event.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        let threshold = THRESHOLD.load(Ordering::Relaxed);
        let rank = rank(metadata.level());
        // "critical" keeps only errors.
        rank >= threshold.min(3)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = MessageVisitor(String::new());
        event.record(&mut message);
        let level = match *event.metadata().level() {
            Level::TRACE | Level::DEBUG => "DEBUG",
            Level::INFO => "INFO",
            Level::WARN => "WARNING",
            Level::ERROR => "ERROR",
        };
        let line = format!(
            "[{}] [{}] [{}] {}\n",
            format_time(SystemTime::now(), TimeStyle::ErrorLog),
            std::process::id(),
            level,
            message.0
        );
        let mut stderr = io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
        let _ = stderr.flush();
    }
}

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// How a timestamp is written.
#[derive(Clone, Copy)]
pub enum TimeStyle {
    /// `2026-11-21 07:10:19 +0000`
    ErrorLog,
    /// `21/Nov/2026:07:10:19 +0000` (Common Log Format)
    AccessLog,
}

/// Formats a UTC timestamp.
pub fn format_time(time: SystemTime, style: TimeStyle) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    match style {
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

/// The access log: a line per request, to standard output or a file.
pub struct AccessLog {
    target: String,
    out: Mutex<Box<dyn Write + Send>>,
}

/// What the access log records of a request, captured when it arrives.
pub struct AccessEntry {
    client: String,
    request_line: String,
    referer: String,
    user_agent: String,
}

impl AccessEntry {
    /// Captures the request's fields for the access log.
    pub fn new(
        method: &Bytes,
        target: &Bytes,
        protocol: Protocol,
        headers: &[(Bytes, Bytes)],
        peer: &Peer,
    ) -> Self {
        let field = |name: &[u8]| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map_or_else(|| "-".to_string(), |(_, v)| escape(v))
        };
        AccessEntry {
            client: match peer {
                Peer::Tcp(addr) => addr.ip().to_canonical().to_string(),
                Peer::Unix => "unix".to_string(),
            },
            request_line: format!(
                "{} {} {}",
                escape(method),
                escape(target),
                protocol.as_str()
            ),
            referer: field(b"referer"),
            user_agent: field(b"user-agent"),
        }
    }
}

impl AccessEntry {
    /// Captures the fields of a request a front server described (FastCGI, uwsgi): the
    /// client is `REMOTE_ADDR`, the request line `REQUEST_METHOD REQUEST_URI
    /// SERVER_PROTOCOL`.
    pub fn from_cgi(request: &CgiRequest) -> Self {
        let field = |name: &str| request.get(name).map_or_else(|| "-".to_string(), escape);
        let uri = match request.get("REQUEST_URI") {
            Some(uri) => escape(uri),
            None => escape(
                request
                    .label()
                    .split_once(' ')
                    .map_or("", |(_, uri)| uri)
                    .as_bytes(),
            ),
        };
        AccessEntry {
            client: field("REMOTE_ADDR"),
            request_line: format!(
                "{} {} {}",
                escape(request.method()),
                uri,
                field("SERVER_PROTOCOL")
            ),
            referer: field("HTTP_REFERER"),
            user_agent: field("HTTP_USER_AGENT"),
        }
    }
}

/// Makes a client-supplied value safe to put in one log line between quotes.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

impl AccessLog {
    /// Opens the access log: `-` is standard output, anything else a file appended to.
    pub fn open(target: &str) -> io::Result<Self> {
        Ok(AccessLog {
            target: target.to_string(),
            out: Mutex::new(Self::writer(target)?),
        })
    }

    fn writer(target: &str) -> io::Result<Box<dyn Write + Send>> {
        Ok(if target == "-" {
            Box::new(io::stdout())
        } else {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(target)?;
            Box::new(io::LineWriter::new(file))
        })
    }

    /// Opens the file again (after logrotate moved it away).
    pub fn reopen(&self) -> io::Result<()> {
        if self.target != "-" {
            let fresh = Self::writer(&self.target)?;
            *self.out.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
        Ok(())
    }

    /// Writes the line of a finished request.
    pub fn write(&self, entry: &AccessEntry, status: u16, body_bytes: u64, elapsed: Duration) {
        let line = format!(
            "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\" {:.6}\n",
            entry.client,
            format_time(SystemTime::now(), TimeStyle::AccessLog),
            entry.request_line,
            status,
            body_bytes,
            entry.referer,
            entry.user_agent,
            elapsed.as_secs_f64()
        );
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn escaping_keeps_lines_whole() {
        assert_eq!(escape(b"a\"b\nc\xe9"), "a\\\"b\\x0ac\\xe9");
    }
}
