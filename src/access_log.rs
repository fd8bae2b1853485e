//! The access log: one line per request, in a format chosen with gunicorn's atoms
//! (`--access-logformat`), or one JSON object per request (`--log-format json`).
//!
//! The format is compiled once at start-up into an [`AccessTemplate`]: a list of literal
//! pieces and atoms, plus the request and response headers the atoms need. A request
//! captures only those (cheap `Bytes` clones, no formatting), and the line is rendered on
//! the I/O runtime once the response is written, never on a Python thread. Response
//! headers are captured only when the format names one (`%({name}o)s`).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::gateway::{CgiRequest, Peer, Protocol, ResponseHead};
use crate::http::fields::HeaderFields;
use crate::logging::{format_time, json_string, LogFormat, TimeStyle};

/// gunicorn's default access log format.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// One atom of the format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// `h`: the client address.
    RemoteAddr,
    /// `l`: always `-` (identd).
    Ident,
    /// `u`: the user of HTTP Basic authentication (`REMOTE_USER` behind a front server).
    RemoteUser,
    /// `t`: the time the line is written.
    Time,
    /// `r`: the request line.
    RequestLine,
    /// `m`: the method.
    Method,
    /// `U`: the path of the request target, without the query.
    Path,
    /// `q`: the query string.
    Query,
    /// `H`: the protocol.
    Protocol,
    /// `s`: the status.
    Status,
    /// `B`: body bytes sent.
    Bytes,
    /// `b`: body bytes sent, `-` for none (Common Log Format).
    BytesClf,
    /// `T`: whole seconds taken.
    Seconds,
    /// `M`: milliseconds taken.
    Millis,
    /// `D`: microseconds taken.
    Micros,
    /// `L`: seconds taken, with six decimals.
    DecimalSeconds,
    /// `p`: the worker's pid, as `<1234>` like gunicorn.
    Pid,
    /// `f`, `a`, `{name}i`: a request header (index into the template's list), and the
    /// JSON key of `f` and `a` (`referer`, `user_agent`; others go under `request_headers`).
    RequestHeader(usize, Option<&'static str>),
    /// `{name}o`: a response header (index into the template's list).
    ResponseHeader(usize),
    /// `{NAME}e`: a variable of the server's environment, read at start-up.
    Environ(String, Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Atom(Atom),
}

/// A compiled access log format.
#[derive(Debug)]
pub struct AccessTemplate {
    pieces: Vec<Piece>,
    /// Request headers to capture: lowercase name, and its CGI variable (`HTTP_...`).
    request_headers: Vec<(Vec<u8>, String)>,
    /// Response headers to capture, lowercase.
    response_headers: Vec<Vec<u8>>,
    /// Where the `u` atom's `Authorization` header is in `request_headers`.
    authorization: Option<usize>,
    json: bool,
}

impl AccessTemplate {
    /// Compiles a gunicorn-style format (`%(h)s ...`); `json` renders the same atoms as
    /// one JSON object per line instead. An unknown atom is an error that names it.
    pub fn compile(format: &str, json: bool) -> Result<AccessTemplate, String> {
        let mut template = AccessTemplate {
            pieces: Vec::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            authorization: None,
            json,
        };
        let mut literal = String::new();
        let mut rest = format;
        while let Some(percent) = rest.find('%') {
            literal.push_str(&rest[..percent]);
            rest = &rest[percent + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let Some(inner) = rest.strip_prefix('(') else {
                return Err(format!(
                    "a '%' must start an atom like %(h)s or be doubled (%%), at {:?}",
                    excerpt(rest)
                ));
            };
            let close = inner
                .find(")s")
                .ok_or_else(|| format!("unterminated atom at %({}", excerpt(inner)))?;
            let name = &inner[..close];
            rest = &inner[close + 2..];
            let atom = template.atom(name)?;
            if !literal.is_empty() {
                template
                    .pieces
                    .push(Piece::Literal(std::mem::take(&mut literal)));
            }
            template.pieces.push(Piece::Atom(atom));
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            template.pieces.push(Piece::Literal(literal));
        }
        Ok(template)
    }

    fn atom(&mut self, name: &str) -> Result<Atom, String> {
        Ok(match name {
            "h" => Atom::RemoteAddr,
            "l" => Atom::Ident,
            "u" => {
                let index = self.request_header("authorization");
                self.authorization = Some(index);
                Atom::RemoteUser
            }
            "t" => Atom::Time,
            "r" => Atom::RequestLine,
            "m" => Atom::Method,
            "U" => Atom::Path,
            "q" => Atom::Query,
            "H" => Atom::Protocol,
            "s" => Atom::Status,
            "B" => Atom::Bytes,
            "b" => Atom::BytesClf,
            "f" => Atom::RequestHeader(self.request_header("referer"), Some("referer")),
            "a" => Atom::RequestHeader(self.request_header("user-agent"), Some("user_agent")),
            "T" => Atom::Seconds,
            "M" => Atom::Millis,
            "D" => Atom::Micros,
            "L" => Atom::DecimalSeconds,
            "p" => Atom::Pid,
            _ => {
                let braced = name
                    .strip_prefix('{')
                    .and_then(|n| n.rsplit_once('}'))
                    .filter(|(key, _)| !key.is_empty());
                match braced {
                    Some((header, "i")) => Atom::RequestHeader(self.request_header(header), None),
                    Some((header, "o")) => {
                        let header = header.to_ascii_lowercase().into_bytes();
                        let index = match self.response_headers.iter().position(|h| *h == header)
                        {
                            Some(index) => index,
                            None => {
                                self.response_headers.push(header);
                                self.response_headers.len() - 1
                            }
                        };
                        Atom::ResponseHeader(index)
                    }
                    Some((variable, "e")) => Atom::Environ(variable.to_string(), environ(variable)),
                    _ => {
                        return Err(format!(
                            "unknown atom %({name})s (known: h l u t r m U q H s B b f a T M D L p, {{header}}i, {{header}}o, {{variable}}e)"
                        ))
                    }
                }
            }
        })
    }

    fn request_header(&mut self, name: &str) -> usize {
        let lower = name.to_ascii_lowercase().into_bytes();
        if let Some(index) = self.request_headers.iter().position(|(h, _)| *h == lower) {
            return index;
        }
        let cgi = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        self.request_headers.push((lower, cgi));
        self.request_headers.len() - 1
    }

    /// Whether lines are JSON objects.
    pub fn is_json(&self) -> bool {
        self.json
    }
}

/// An environment variable of the server process, found case-insensitively like gunicorn.
fn environ(name: &str) -> Option<String> {
    std::env::vars_os()
        .find(|(key, _)| key.to_string_lossy().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.to_string_lossy().into_owned())
}

fn excerpt(text: &str) -> &str {
    let end = text.char_indices().nth(12).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// The process-wide access log format (set from the command line at start-up).
static TEMPLATE: RwLock<Option<Arc<AccessTemplate>>> = RwLock::new(None);

/// Sets the format the access logs opened from now on use.
pub fn set_format(format: Option<&str>, log_format: LogFormat) -> Result<(), String> {
    let template = AccessTemplate::compile(
        format.unwrap_or(DEFAULT_FORMAT),
        log_format == LogFormat::Json,
    )
    .map_err(|e| format!("invalid access log format: {e}"))?;
    *TEMPLATE.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(template));
    Ok(())
}

fn current_template() -> Arc<AccessTemplate> {
    let set = TEMPLATE.read().unwrap_or_else(|e| e.into_inner()).clone();
    set.unwrap_or_else(|| {
        Arc::new(AccessTemplate::compile(DEFAULT_FORMAT, false).expect("the default compiles"))
    })
}

/// Who sent the request, as the log shows it.
enum Client {
    Peer(Peer),
    /// `REMOTE_ADDR` from a front server.
    Given(Option<Bytes>),
}

/// What the access log keeps of a request until its response is written.
pub struct AccessEntry {
    template: Arc<AccessTemplate>,
    client: Client,
    method: Bytes,
    target: Bytes,
    protocol: Bytes,
    request_headers: Vec<Option<Bytes>>,
    response_headers: Vec<Option<Bytes>>,
    /// `REMOTE_USER` from a front server.
    remote_user: Option<Bytes>,
}

impl AccessEntry {
    fn blank(template: &Arc<AccessTemplate>, client: Client) -> Self {
        AccessEntry {
            template: Arc::clone(template),
            client,
            method: Bytes::new(),
            target: Bytes::new(),
            protocol: Bytes::new(),
            request_headers: Vec::with_capacity(template.request_headers.len()),
            response_headers: Vec::new(),
            remote_user: None,
        }
    }

    /// Keeps the response headers the format names (nothing if it names none).
    pub fn capture_response(&mut self, head: &ResponseHead) {
        let wanted = &self.template.response_headers;
        if wanted.is_empty() {
            return;
        }
        self.response_headers = wanted
            .iter()
            .map(|name| {
                let value = head
                    .headers
                    .iter()
                    .rev()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone());
                value.or_else(|| {
                    (name == b"content-length")
                        .then_some(head.content_length)
                        .flatten()
                        .map(|length| Bytes::from(length.to_string()))
                })
            })
            .collect();
    }

    fn remote_user(&self) -> Option<Vec<u8>> {
        if let Some(user) = &self.remote_user {
            return Some(user.to_vec());
        }
        let header = self
            .request_headers
            .get(self.template.authorization?)?
            .as_ref()?;
        let text = std::str::from_utf8(header).ok()?.trim();
        let (scheme, credentials) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = decode_base64(credentials.trim())?;
        let user = decoded.split(|&b| b == b':').next()?.to_vec();
        Some(user)
    }

    fn path_and_query(&self) -> (&[u8], Option<&[u8]>) {
        match self.target.iter().position(|&b| b == b'?') {
            Some(q) => (&self.target[..q], Some(&self.target[q + 1..])),
            None => (&self.target[..], None),
        }
    }
}

/// Standard base64 (RFC 4648), padding optional; `None` if malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0);
    for byte in text.bytes().take_while(|&b| b != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// The access log: a line per request, to standard output or a file.
pub struct AccessLog {
    target: String,
    template: Arc<AccessTemplate>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl AccessLog {
    /// Opens the access log: `-` is standard output, anything else a file appended to.
    pub fn open(target: &str) -> io::Result<Self> {
        Ok(AccessLog {
            target: target.to_string(),
            template: current_template(),
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

    /// Captures what the format needs of an HTTP request.
    pub fn entry(
        &self,
        method: &Bytes,
        target: &Bytes,
        protocol: Protocol,
        headers: &HeaderFields,
        peer: &Peer,
    ) -> AccessEntry {
        let mut entry = AccessEntry::blank(&self.template, Client::Peer(peer.clone()));
        entry.method = method.clone();
        entry.target = target.clone();
        entry.protocol = Bytes::from_static(protocol.as_str().as_bytes());
        for (name, _) in &self.template.request_headers {
            let value = headers.get(name).map(|value| headers.share(value));
            entry.request_headers.push(value);
        }
        entry
    }

    /// Captures what the format needs of a request a front server described (FastCGI,
    /// uwsgi): the client is `REMOTE_ADDR`, the target `REQUEST_URI` (else `SCRIPT_NAME`,
    /// `PATH_INFO` and `QUERY_STRING`), the protocol `SERVER_PROTOCOL`.
    pub fn entry_from_cgi(&self, request: &CgiRequest) -> AccessEntry {
        let var = |name: &str| request.get(name).map(Bytes::copy_from_slice);
        let mut entry = AccessEntry::blank(&self.template, Client::Given(var("REMOTE_ADDR")));
        entry.method = Bytes::copy_from_slice(request.method());
        entry.target = var("REQUEST_URI").unwrap_or_else(|| {
            let label = request.label();
            Bytes::from(label.split_once(' ').map_or("", |(_, uri)| uri).to_string())
        });
        entry.protocol = var("SERVER_PROTOCOL").unwrap_or_default();
        entry.remote_user = var("REMOTE_USER").filter(|u| !u.is_empty());
        for (_, cgi_name) in &self.template.request_headers {
            entry.request_headers.push(var(cgi_name));
        }
        entry
    }

    /// Writes the line of a finished request.
    pub fn write(&self, entry: &AccessEntry, status: u16, body_bytes: u64, elapsed: Duration) {
        let mut line = String::with_capacity(256);
        let facts = Facts {
            entry,
            status,
            body_bytes,
            elapsed,
        };
        if self.template.json {
            facts.render_json(&mut line);
        } else {
            facts.render_text(&mut line);
        }
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// A value of one atom.
enum Value<'a> {
    Text(&'a [u8]),
    Owned(String),
    Number(u64),
    Decimal(String),
    Missing,
}

struct Facts<'a> {
    entry: &'a AccessEntry,
    status: u16,
    body_bytes: u64,
    elapsed: Duration,
}

impl Facts<'_> {
    fn value<'s>(&'s self, atom: &'s Atom, json: bool) -> Value<'s> {
        let entry = self.entry;
        fn text_or_missing(bytes: &[u8]) -> Value<'_> {
            if bytes.is_empty() {
                Value::Missing
            } else {
                Value::Text(bytes)
            }
        }
        match atom {
            Atom::RemoteAddr => match &entry.client {
                Client::Peer(Peer::Tcp(addr)) => Value::Owned(addr.ip().to_canonical().to_string()),
                Client::Peer(Peer::Unix) => Value::Owned("unix".into()),
                Client::Given(Some(addr)) => Value::Text(addr),
                Client::Given(None) => Value::Missing,
            },
            Atom::Ident => Value::Missing,
            Atom::RemoteUser => match entry.remote_user() {
                Some(user) => Value::Owned(String::from_utf8_lossy(&user).into_owned()),
                None => Value::Missing,
            },
            Atom::Time if json => Value::Owned(format_time(SystemTime::now(), TimeStyle::Iso)),
            Atom::Time => Value::Owned(format!(
                "[{}]",
                format_time(SystemTime::now(), TimeStyle::AccessLog)
            )),
            Atom::RequestLine => {
                let mut line = Vec::with_capacity(entry.method.len() + entry.target.len() + 10);
                line.extend_from_slice(&entry.method);
                line.push(b' ');
                line.extend_from_slice(&entry.target);
                line.push(b' ');
                line.extend_from_slice(&entry.protocol);
                Value::Owned(String::from_utf8_lossy(&line).into_owned())
            }
            Atom::Method => text_or_missing(&entry.method),
            Atom::Path => text_or_missing(entry.path_and_query().0),
            Atom::Query => entry.path_and_query().1.map_or(Value::Missing, Value::Text),
            Atom::Protocol => text_or_missing(&entry.protocol),
            Atom::Status => Value::Number(u64::from(self.status)),
            Atom::Bytes => Value::Number(self.body_bytes),
            Atom::BytesClf if self.body_bytes == 0 && !json => Value::Missing,
            Atom::BytesClf => Value::Number(self.body_bytes),
            Atom::Seconds => Value::Number(self.elapsed.as_secs()),
            Atom::Millis => Value::Number(self.elapsed.as_millis() as u64),
            Atom::Micros => Value::Number(self.elapsed.as_micros() as u64),
            Atom::DecimalSeconds => Value::Decimal(format!("{:.6}", self.elapsed.as_secs_f64())),
            Atom::Pid if json => Value::Number(u64::from(std::process::id())),
            Atom::Pid => Value::Owned(format!("<{}>", std::process::id())),
            Atom::RequestHeader(index, _) => entry
                .request_headers
                .get(*index)
                .and_then(Option::as_ref)
                .map_or(Value::Missing, |v| Value::Text(v)),
            Atom::ResponseHeader(index) => entry
                .response_headers
                .get(*index)
                .and_then(Option::as_ref)
                .map_or(Value::Missing, |v| Value::Text(v)),
            Atom::Environ(_, value) => value
                .as_deref()
                .map_or(Value::Missing, |v| Value::Text(v.as_bytes())),
        }
    }

    fn render_text(&self, out: &mut String) {
        for piece in &self.entry.template.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                // The atoms of the default format that need no escaping or can be
                // escaped in place are written directly, without an intermediate String.
                Piece::Atom(Atom::RemoteAddr) if matches!(self.entry.client, Client::Peer(_)) => {
                    match &self.entry.client {
                        Client::Peer(Peer::Tcp(addr)) => {
                            let _ = write!(out, "{}", addr.ip().to_canonical());
                        }
                        _ => out.push_str("unix"),
                    }
                }
                Piece::Atom(Atom::Time) => {
                    out.push('[');
                    crate::logging::push_access_time(out, SystemTime::now());
                    out.push(']');
                }
                Piece::Atom(Atom::RequestLine) => {
                    escape_into(out, &self.entry.method);
                    out.push(' ');
                    escape_into(out, &self.entry.target);
                    out.push(' ');
                    escape_into(out, &self.entry.protocol);
                }
                Piece::Atom(atom) => match self.value(atom, false) {
                    Value::Text(bytes) => escape_into(out, bytes),
                    Value::Owned(text) => escape_into(out, text.as_bytes()),
                    Value::Number(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Value::Decimal(text) => out.push_str(&text),
                    Value::Missing => out.push('-'),
                },
            }
        }
    }

    fn render_json(&self, out: &mut String) {
        let template = &self.entry.template;
        // Every JSON line starts with its time, whether or not the format names `t`.
        out.push_str("{\"timestamp\":");
        json_string(out, &format_time(SystemTime::now(), TimeStyle::Iso));
        let mut first = false;
        let mut seen: Vec<&Atom> = vec![&Atom::Time, &Atom::Ident];
        let mut groups: [Vec<(&str, Value<'_>)>; 3] = Default::default();
        for piece in &template.pieces {
            let Piece::Atom(atom) = piece else { continue };
            if seen.contains(&atom) {
                continue;
            }
            seen.push(atom);
            let value = self.value(atom, true);
            let key = match atom {
                Atom::RemoteAddr => "remote_addr",
                Atom::Ident => "ident",
                Atom::RemoteUser => "remote_user",
                Atom::Time => "timestamp",
                Atom::RequestLine => "request",
                Atom::Method => "method",
                Atom::Path => "path",
                Atom::Query => "query",
                Atom::Protocol => "protocol",
                Atom::Status => "status",
                Atom::Bytes | Atom::BytesClf => "bytes",
                Atom::Seconds => "duration_s",
                Atom::Millis => "duration_ms",
                Atom::Micros => "duration_us",
                Atom::DecimalSeconds => "duration",
                Atom::Pid => "pid",
                Atom::RequestHeader(_, Some(key)) => key,
                Atom::RequestHeader(index, None) => {
                    let name = &template.request_headers[*index].0;
                    groups[0].push((std::str::from_utf8(name).unwrap_or("?"), value));
                    continue;
                }
                Atom::ResponseHeader(index) => {
                    let name = &template.response_headers[*index];
                    groups[1].push((std::str::from_utf8(name).unwrap_or("?"), value));
                    continue;
                }
                Atom::Environ(name, _) => {
                    groups[2].push((name, value));
                    continue;
                }
            };
            if atom == &Atom::BytesClf && seen.contains(&&Atom::Bytes) {
                continue;
            }
            json_member(out, &mut first, key, &value);
        }
        for (group, name) in groups
            .iter()
            .zip(["request_headers", "response_headers", "environ"])
        {
            if group.is_empty() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            json_string(out, name);
            out.push_str(":{");
            let mut inner_first = true;
            for (key, value) in group {
                json_member(out, &mut inner_first, key, value);
            }
            out.push('}');
        }
        out.push('}');
    }
}

fn json_member(out: &mut String, first: &mut bool, key: &str, value: &Value<'_>) {
    if !*first {
        out.push(',');
    }
    *first = false;
    json_string(out, key);
    out.push(':');
    match value {
        Value::Text(bytes) => json_string(out, &String::from_utf8_lossy(bytes)),
        Value::Owned(text) => json_string(out, text),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Decimal(text) => out.push_str(text),
        Value::Missing => out.push_str("null"),
    }
}

/// Makes a client-supplied value safe to put in one log line between quotes.
fn escape_into(out: &mut String, bytes: &[u8]) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(template: &str, json: bool, headers: &[(&'static str, &'static str)]) -> AccessEntry {
        let template = Arc::new(AccessTemplate::compile(template, json).unwrap());
        let log = AccessLog {
            target: "-".into(),
            template,
            out: Mutex::new(Box::new(io::sink())),
        };
        let headers = HeaderFields::from_pairs(headers);
        log.entry(
            &Bytes::from_static(b"GET"),
            &Bytes::from_static(b"/a/b?x=1&y=\"2\""),
            Protocol::Http11,
            &headers,
            &Peer::Tcp("[::ffff:10.1.2.3]:5000".parse().unwrap()),
        )
    }

    fn render(entry: &AccessEntry, json: bool) -> String {
        let facts = Facts {
            entry,
            status: 201,
            body_bytes: 0,
            elapsed: Duration::from_micros(1_234_567),
        };
        let mut out = String::new();
        if json {
            facts.render_json(&mut out);
        } else {
            facts.render_text(&mut out);
        }
        out
    }

    #[test]
    fn atoms_render_like_gunicorn() {
        let format = "%(h)s %(l)s %(u)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s %(T)s %(M)s %(D)s %(L)s %({x-id}i)s %({missing}i)s 100%%";
        let headers = [("Authorization", "Basic dXNlcjpwYXNz"), ("X-Id", "abc")];
        let line = render(&entry(format, false, &headers), false);
        assert_eq!(
            line,
            "10.1.2.3 - user GET /a/b x=1&y=\\\"2\\\" HTTP/1.1 201 0 - 1 1234 1234567 1.234567 abc - 100%"
        );
    }

    #[test]
    fn response_headers_are_captured_only_when_named() {
        let mut plain = entry(DEFAULT_FORMAT, false, &[]);
        let head = ResponseHead {
            status: 200,
            status_line: Bytes::from_static(b"200 OK"),
            headers: vec![(Bytes::from_static(b"X-Trace"), Bytes::from_static(b"t1"))],
            content_length: Some(5),
            close_connection: false,
        };
        plain.capture_response(&head);
        assert!(plain.response_headers.is_empty());
        let mut named = entry(
            "%({x-trace}o)s %({Content-Length}o)s %({none}o)s",
            false,
            &[],
        );
        named.capture_response(&head);
        assert_eq!(render(&named, false), "t1 5 -");
    }

    #[test]
    fn json_lines_use_the_same_atoms() {
        let line = render(
            &entry(
                "%(h)s %(s)s %(b)s %(u)s %(q)s %({x-id}i)s %(L)s",
                true,
                &[("x-id", "a\"b")],
            ),
            true,
        );
        assert!(line.starts_with(r#"{"timestamp":"20"#), "{line}");
        let rest = &line[line.find("Z\",").unwrap() + 3..];
        assert_eq!(
            rest,
            r#""remote_addr":"10.1.2.3","status":201,"bytes":0,"remote_user":null,"query":"x=1&y=\"2\"","duration":1.234567,"request_headers":{"x-id":"a\"b"}}"#
        );
        let default = render(&entry(DEFAULT_FORMAT, true, &[("User-Agent", "ua")]), true);
        let rest = &default[default.find("Z\",").unwrap() + 3..];
        assert_eq!(
            rest,
            r#""remote_addr":"10.1.2.3","remote_user":null,"request":"GET /a/b?x=1&y=\"2\" HTTP/1.1","status":201,"bytes":0,"referer":null,"user_agent":"ua"}"#
        );
    }

    #[test]
    fn bad_formats_name_the_atom() {
        let error = AccessTemplate::compile("%(h)s %(zz)s", false).unwrap_err();
        assert!(error.contains("%(zz)s"), "{error}");
        assert!(AccessTemplate::compile("%(h", false).is_err());
        assert!(AccessTemplate::compile("50% off", false).is_err());
        assert!(AccessTemplate::compile("%({}i)s", false).is_err());
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert!(decode_base64("!!").is_none());
    }
}
