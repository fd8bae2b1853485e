//! Building the WSGI `environ` dict for a request.
//!
//! The keys that never change for a server (`wsgi.version`, `wsgi.errors`, `SCRIPT_NAME`
//! ...) live in a template dict that is copied per request: CPython copies a dict with at
//! most a third of deleted entries with one memcpy of its table (see `grow_table`). Each
//! listener has its own copy with its address keys set, and from its second request each
//! connection has one with its peer's keys and the header fields its requests repeat
//! ([`PeerEnviron`]), shared by the connections whose templates are equal
//! ([`SharedPeerTemplates`]). Per-request keys are then set from the request:
//! from the head the HTTP engine parsed ([`EnvironTemplate::build`]), or from the CGI
//! meta-variables a front server passed ([`EnvironTemplate::build_cgi`]). The HTTP engine
//! takes nothing from the process environment, so a variable named `HTTP_HOST` in the
//! server's environment can never pose as a client header; for CGI the process environment
//! *is* the request, as the front server set it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::gateway::{CgiRequest, ListenerInfo, Peer, Protocol, RequestHead};
use crate::http::fields::HeaderFields;
use crate::proxy::forwarded::{resolve, server_view, ForwardingHeaders};
use crate::proxy::ProxyConfig;

/// The constant part of every environ of one server.
pub struct EnvironTemplate {
    template: Py<PyDict>,
    proxy: std::sync::Arc<ProxyConfig>,
    /// Connection templates, shared by the connections whose templates are equal.
    peer_templates: SharedPeerTemplates,
}

/// How many entries a dict must reach for CPython to grow its table to 64 slots: a table of
/// 32 slots holds 21 entries, and the insert that finds it full resizes it to
/// `3 × 21 = 63` rounded up to a power of two. 64 slots hold 42 keys: the template's and a
/// request's own with its headers. A copy keeps the template's table size, so per-request
/// inserts rarely resize the dict (growing it from the default size cost ~800 instructions
/// per request: a new table, every key moved, the old table freed).
const GROWN_AT_ENTRIES: usize = 22;

/// Gives `dict` a table of 64 slots (see [`GROWN_AT_ENTRIES`]) by inserting filler keys
/// until CPython grows it, then deleting them.
///
/// Not `_PyDict_NewPresized`: since CPython 3.11 a dict whose keys are all `str` stores
/// 16-byte entries instead of 24 and looks keys up faster, but a presized dict is made for
/// any keys. Its 64-slot table took 1,112 bytes, past glibc's per-thread cache (1,032): each
/// request's copy went to malloc's slow path (~550 instructions with its free). Grown by
/// inserts, the table keeps the `str`-only layout (776 bytes).
///
/// The deleted fillers leave dummy entries behind. `PyDict_Copy` clones the table as it is
/// (one `memcpy`) only while at most a third of its entries are dummies, so the dict
/// should already hold at least two thirds of [`GROWN_AT_ENTRIES`] keys.
fn grow_table(dict: &Bound<'_, PyDict>) -> PyResult<()> {
    let py = dict.py();
    let mut fillers = Vec::new();
    while dict.len() < GROWN_AT_ENTRIES {
        // Not a key any request sets: a NUL cannot come from a header name.
        let filler = PyString::new(py, &format!("\0tidegate-filler-{}", fillers.len()));
        dict.set_item(&filler, py.None())?;
        fillers.push(filler);
    }
    for filler in fillers {
        dict.del_item(filler)?;
    }
    Ok(())
}

/// What the template needs to know about the server.
pub struct TemplateOptions<'py> {
    /// `wsgi.multithread`: more than one Python thread runs the app.
    pub multithread: bool,
    /// `wsgi.multiprocess`: more than one process runs the app.
    pub multiprocess: bool,
    /// `wsgi.run_once`: the process serves one request and exits (CGI).
    pub run_once: bool,
    /// The shared `wsgi.errors` stream.
    pub errors: Bound<'py, PyAny>,
    /// The `wsgi.file_wrapper` callable.
    pub file_wrapper: Bound<'py, PyAny>,
    /// Trusted proxies and root path (HTTP requests only).
    pub proxy: std::sync::Arc<ProxyConfig>,
}

impl EnvironTemplate {
    /// Builds the template dict.
    pub fn new(py: Python<'_>, options: TemplateOptions<'_>) -> PyResult<Self> {
        let dict = PyDict::new(py);
        dict.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        // The common case; a listener with another scheme overrides it per request.
        dict.set_item("wsgi.url_scheme", "http")?;
        dict.set_item("wsgi.errors", options.errors)?;
        dict.set_item("wsgi.multithread", options.multithread)?;
        dict.set_item("wsgi.multiprocess", options.multiprocess)?;
        dict.set_item("wsgi.run_once", options.run_once)?;
        dict.set_item("wsgi.file_wrapper", options.file_wrapper)?;
        // Our wsgi.input returns b"" at the end of the body, so apps may read to EOF.
        dict.set_item("wsgi.input_terminated", true)?;
        dict.set_item("SCRIPT_NAME", "")?;
        dict.set_item(
            "SERVER_SOFTWARE",
            concat!("tidegate/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(EnvironTemplate {
            template: dict.unbind(),
            proxy: options.proxy,
            peer_templates: SharedPeerTemplates::default(),
        })
    }

    /// A fresh environ for `head`, with `input` as `wsgi.input`.
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        head: &RequestHead,
        input: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let listener = self.listener_template(py, &head.listener)?;
        let (environ, copied) = match &head.peer {
            Peer::Tcp(addr) => head.peer_environ.environ(py, addr, &listener)?,
            Peer::Unix => {
                let environ = listener.copy()?;
                environ.set_item(pyo3::intern!(py, "REMOTE_ADDR"), pyo3::intern!(py, ""))?;
                (environ, Copied::Plain)
            }
        };
        // The header fields first: a connection's template is this environ as it is once
        // they are set (see [`PeerEnviron`]), before anything else of the request is.
        // Forwarding headers count only from a trusted peer; from any other they are
        // dropped, so the app cannot be fooled by a client writing them itself.
        let trusted = self.proxy.allow.allows_peer(&head.peer);
        let repeated = repeated_fields(&head.headers);
        let mut forwarding = ForwardingHeaders::default();
        let mut forwarding_fields: Vec<(HeaderKey, &[u8])> = Vec::new();
        let mut request_host = None;
        // The fields the connection's template has: a field set there with the same value is
        // not set again, one this request lacks is deleted.
        let kept: &[KeptField] = match copied {
            Copied::Template(template) => &template.fields,
            Copied::Plain | Copied::MakeTemplate => &[],
        };
        let mut seen_kept = 0u64;
        let mut to_keep: Vec<KeptField> = Vec::new();
        for (index, (name, value)) in head.headers.iter().enumerate() {
            let Some(key) = environ_key(name) else {
                continue;
            };
            let value: &[u8] = match repeated.iter().find(|field| field.first == index) {
                Some(field) => &field.joined,
                None if repeated.iter().any(|field| field.later.contains(&index)) => continue,
                None => value,
            };
            if ForwardingHeaders::is_forwarding_key(key.as_str()) {
                if trusted {
                    forwarding.record(key.as_str(), value);
                    forwarding_fields.push((key, value));
                }
                continue;
            }
            if key == HeaderKey::Common(HOST) {
                request_host = Some(value);
            }
            if let Some(at) = kept.iter().position(|field| field.key == key) {
                seen_kept |= 1 << at;
                if *kept[at].value == *value {
                    continue;
                }
            }
            environ.set_item(key.py_str(py), latin1_str(py, value))?;
            if matches!(copied, Copied::MakeTemplate) {
                to_keep.push(KeptField {
                    key,
                    value: value.into(),
                });
            }
        }
        for (at, field) in kept.iter().enumerate() {
            if seen_kept & (1 << at) == 0 {
                environ.del_item(field.key.py_str(py))?;
            }
        }
        // A template must know every field it holds: one request with more fields than a
        // mask has bits makes none.
        if matches!(copied, Copied::MakeTemplate) && to_keep.len() <= MAX_KEPT_FIELDS {
            if let Peer::Tcp(addr) = &head.peer {
                let made = PeerTemplate {
                    listener: listener.clone().unbind(),
                    peer_ip: addr.ip(),
                    dict: environ.copy()?.unbind(),
                    fields: to_keep,
                };
                head.peer_environ
                    .keep_template(py, self.peer_templates.share(made));
            }
        }
        for (key, value) in forwarding_fields {
            environ.set_item(key.py_str(py), latin1_str(py, value))?;
        }
        if *head.method != *b"GET" {
            environ.set_item(
                pyo3::intern!(py, "REQUEST_METHOD"),
                method_str(py, &head.method),
            )?;
        }
        let (path, query) = split_target(&head.target);
        let decoded_path = percent_decode(path);
        // --root-path: SCRIPT_NAME (in the listener's template) is the prefix, PATH_INFO
        // what follows it.
        let path_info = crate::proxy::root_path::split(&self.proxy.root_path, &decoded_path);
        let raw_uri = latin1_str(py, &head.target);
        // The common target `/path` with no query and no escapes is its own PATH_INFO: one
        // str serves both keys.
        let path_info = if *path_info == *head.target {
            raw_uri.clone()
        } else {
            latin1_str(py, path_info)
        };
        environ.set_item(pyo3::intern!(py, "PATH_INFO"), path_info)?;
        if !query.is_empty() {
            environ.set_item(pyo3::intern!(py, "QUERY_STRING"), latin1_str(py, query))?;
        }
        environ.set_item(pyo3::intern!(py, "RAW_URI"), raw_uri)?;
        match head.protocol {
            Protocol::Http11 => {}
            Protocol::Http10 => environ.set_item(
                pyo3::intern!(py, "SERVER_PROTOCOL"),
                pyo3::intern!(py, "HTTP/1.0"),
            )?,
            Protocol::Http2 => environ.set_item(
                pyo3::intern!(py, "SERVER_PROTOCOL"),
                pyo3::intern!(py, "HTTP/2"),
            )?,
        }
        // With no forwarding header there is nothing to apply (and no Host to decode).
        if trusted && !forwarding.is_empty() {
            self.apply_forwarding(py, &environ, &forwarding, request_host, head)?;
        }
        environ.set_item(pyo3::intern!(py, "wsgi.input"), input)?;
        Ok(environ)
    }

    /// The template of `listener`'s requests (see [`ListenerEnviron`]).
    fn listener_template<'py>(
        &self,
        py: Python<'py>,
        listener: &ListenerInfo,
    ) -> PyResult<Bound<'py, PyDict>> {
        let made = listener.environ.0.get_or_try_init(py, || {
            Ok::<_, PyErr>(ListenerTemplate {
                server: self.template.clone_ref(py),
                dict: self.new_listener_template(py, listener)?.unbind(),
            })
        })?;
        if made.server.as_ptr() == self.template.as_ptr() {
            Ok(made.dict.bind(py).clone())
        } else {
            self.new_listener_template(py, listener)
        }
    }

    fn new_listener_template<'py>(
        &self,
        py: Python<'py>,
        listener: &ListenerInfo,
    ) -> PyResult<Bound<'py, PyDict>> {
        let dict = self.template.bind(py).copy()?;
        // The keys a request may set again are the interned strs it sets them with, so
        // that the dict finds them by identity.
        let root = self.proxy.root_path.as_str();
        dict.set_item(pyo3::intern!(py, "wsgi.url_scheme"), listener.url_scheme)?;
        dict.set_item(pyo3::intern!(py, "SCRIPT_NAME"), root)?;
        dict.set_item(pyo3::intern!(py, "SERVER_NAME"), &listener.server_name)?;
        dict.set_item(pyo3::intern!(py, "SERVER_PORT"), &listener.server_port)?;
        dict.set_item(pyo3::intern!(py, "REQUEST_METHOD"), "GET")?;
        dict.set_item(pyo3::intern!(py, "SERVER_PROTOCOL"), "HTTP/1.1")?;
        dict.set_item(pyo3::intern!(py, "QUERY_STRING"), "")?;
        // Set by every request: placeholders here make them replacements of a value, not
        // new entries, and count towards the two thirds `grow_table` needs.
        for key in [
            pyo3::intern!(py, "PATH_INFO"),
            pyo3::intern!(py, "RAW_URI"),
            pyo3::intern!(py, "REMOTE_ADDR"),
            pyo3::intern!(py, "wsgi.input"),
        ] {
            dict.set_item(key, pyo3::intern!(py, ""))?;
        }
        grow_table(&dict)?;
        Ok(dict)
    }

    /// Applies what trusted proxies say (`crate::proxy::forwarded`) over what the
    /// connection says: `REMOTE_ADDR`/`REMOTE_PORT`, `wsgi.url_scheme`, `HTTP_HOST`,
    /// `SERVER_NAME` and `SERVER_PORT`.
    fn apply_forwarding(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        headers: &ForwardingHeaders<'_>,
        request_host: Option<&[u8]>,
        head: &RequestHead,
    ) -> PyResult<()> {
        let forwarding = resolve(headers, &self.proxy.allow);
        if let Some(client) = forwarding.client {
            let mut text = StackText::new();
            let _ = write!(text, "{}", client.ip);
            environ.set_item(pyo3::intern!(py, "REMOTE_ADDR"), text.as_py(py))?;
            match client.port {
                Some(port) => {
                    let mut text = StackText::new();
                    let _ = write!(text, "{port}");
                    environ.set_item(pyo3::intern!(py, "REMOTE_PORT"), text.as_py(py))?;
                }
                // The proxy's own port would be wrong next to the client's address.
                None => {
                    if environ.contains(pyo3::intern!(py, "REMOTE_PORT"))? {
                        environ.del_item(pyo3::intern!(py, "REMOTE_PORT"))?;
                    }
                }
            }
        }
        let request_host = request_host.and_then(|h| std::str::from_utf8(h).ok());
        if let Some(view) = server_view(&forwarding, head.listener.url_scheme, request_host) {
            environ.set_item(pyo3::intern!(py, "wsgi.url_scheme"), view.scheme)?;
            if let Some(host) = view.http_host {
                environ.set_item(pyo3::intern!(py, "HTTP_HOST"), host)?;
            }
            if let Some(name) = view.server_name {
                environ.set_item(pyo3::intern!(py, "SERVER_NAME"), name)?;
            }
            let mut text = StackText::new();
            let _ = write!(text, "{}", view.server_port);
            environ.set_item(pyo3::intern!(py, "SERVER_PORT"), text.as_py(py))?;
        }
        Ok(())
    }
}

/// The environ template of one listener, made from the server's template on the first
/// request: the listener's `SERVER_NAME`, `SERVER_PORT` and `wsgi.url_scheme`, the
/// `--root-path` as `SCRIPT_NAME`, and the commonest request values (`GET`, `HTTP/1.1`, an
/// empty `QUERY_STRING`), which a request sets again only when its own differ. Each key set
/// per request cost ~200 instructions; these five were set on nearly every one.
pub struct ListenerEnviron(PyOnceLock<ListenerTemplate>);

/// A listener's template and the server template it was made from.
struct ListenerTemplate {
    /// The server template (kept alive, so that its address names it): a request built by
    /// another template (another server in the same process) must not use this one.
    server: Py<PyDict>,
    dict: Py<PyDict>,
}

impl Default for ListenerEnviron {
    fn default() -> Self {
        ListenerEnviron(PyOnceLock::new())
    }
}

impl std::fmt::Debug for ListenerEnviron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerEnviron")
    }
}

/// What the environ of one connection's requests shares: its `REMOTE_ADDR` and
/// `REMOTE_PORT` as Python strs, and from its second request on, a template of its own.
///
/// A keep-alive connection's peer does not change, and its requests mostly repeat their
/// header fields (`Host`, a browser's `User-Agent`, `Accept-*`, cookies): formatting the
/// peer's two strs cost ~900 instructions per request, setting them ~400 more, and each
/// header field ~300 (a str for its value, a dict insert). A connection's first request
/// sets everything in its copy of the listener's template. Its second makes the
/// connection's template: the listener's with the peer's keys and that request's header
/// fields set (nothing else of the request). Each later request copies it, skips the
/// fields it repeats with the same value, sets the others, and deletes the template's
/// fields it did not send. A connection that serves one request (`Connection: close`)
/// pays nothing for a template it would not reuse. Connections whose templates would be
/// equal share one ([`SharedPeerTemplates`]), and each request sets its own `REMOTE_PORT`.
pub struct PeerEnviron {
    strings: PeerStrings,
    /// A request of this connection has been built.
    served: AtomicBool,
    template: PyOnceLock<Arc<PeerTemplate>>,
}

/// A connection's template: the listener's, which it was copied from (kept alive, so
/// that its address names it), with the peer's keys and one request's header fields set.
struct PeerTemplate {
    listener: Py<PyDict>,
    /// The peer's address, whose `REMOTE_ADDR` `dict` holds. Its `REMOTE_PORT` is the
    /// connection's that made it: every request sets its own.
    peer_ip: IpAddr,
    dict: Py<PyDict>,
    /// The header fields set in `dict`, at most [`MAX_KEPT_FIELDS`].
    fields: Vec<KeptField>,
}

impl PeerTemplate {
    /// Whether `self` and `other` make the same environ but for `REMOTE_PORT`.
    fn same_as(&self, other: &PeerTemplate) -> bool {
        self.listener.as_ptr() == other.listener.as_ptr()
            && self.peer_ip == other.peer_ip
            && self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.key == b.key && a.value == b.value)
    }
}

/// How many connection templates [`SharedPeerTemplates`] keeps.
const SHARED_PEER_TEMPLATES: usize = 64;

/// The connection templates of a server, shared by its connections whose templates are
/// equal: one client's connections send the same header fields from the same address.
///
/// A template of its own per connection cost each connection its own dict and table (~13
/// cache lines) read for every request. With a few hundred connections these no longer
/// stayed in the core's cache between two requests of one connection, and a request read
/// them from memory (see BENCHMARKS.md, "Fewer cache lines per connection"). Shared, a
/// template stays warm; a request sets its own `REMOTE_PORT` in its copy.
///
/// The last [`SHARED_PEER_TEMPLATES`] templates made are kept; each is looked up once per
/// connection, when the connection's second request makes its template.
#[derive(Default)]
struct SharedPeerTemplates(std::sync::Mutex<std::collections::VecDeque<Arc<PeerTemplate>>>);

impl SharedPeerTemplates {
    /// The kept template equal to `made`, or `made`, now kept.
    fn share(&self, made: PeerTemplate) -> Arc<PeerTemplate> {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(same) = kept.iter().find(|template| template.same_as(&made)) {
            return Arc::clone(same);
        }
        let made = Arc::new(made);
        if kept.len() == SHARED_PEER_TEMPLATES {
            kept.pop_front();
        }
        kept.push_back(Arc::clone(&made));
        made
    }
}

/// A header field set in a connection's template.
struct KeptField {
    key: HeaderKey,
    /// The value as the request sent it (repeated lines joined).
    value: Box<[u8]>,
}

/// How many header fields a connection's template keeps (one bit each in a `u64`).
const MAX_KEPT_FIELDS: usize = 64;

/// Where a request's environ was copied from.
enum Copied<'a> {
    /// The listener's template (the peer's keys set).
    Plain,
    /// The listener's template, for the request that makes the connection's.
    MakeTemplate,
    /// The connection's template.
    Template(&'a PeerTemplate),
}

impl Default for PeerEnviron {
    fn default() -> Self {
        PeerEnviron {
            strings: PeerStrings::default(),
            served: AtomicBool::new(false),
            template: PyOnceLock::new(),
        }
    }
}

impl std::fmt::Debug for PeerEnviron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerEnviron")
    }
}

impl PeerEnviron {
    /// A new environ for a request from `addr` (the connection's peer, always the same for
    /// one `PeerEnviron`) on `listener`'s template, and where it was copied from.
    fn environ<'py>(
        &self,
        py: Python<'py>,
        addr: &SocketAddr,
        listener: &Bound<'py, PyDict>,
    ) -> PyResult<(Bound<'py, PyDict>, Copied<'_>)> {
        if let Some(made) = self.template.get(py) {
            // Made from another listener template only if the server's was remade.
            if made.listener.as_ptr() == listener.as_ptr() {
                let environ = made.dict.bind(py).copy()?;
                // The template may be another connection's (see [`SharedPeerTemplates`]),
                // whose port it holds.
                let [_, remote_port] = self.strings.get(py, addr);
                environ.set_item(pyo3::intern!(py, "REMOTE_PORT"), remote_port)?;
                return Ok((environ, Copied::Template(made)));
            }
            return Ok((self.with_peer(py, addr, listener)?, Copied::Plain));
        }
        let copied = if self.served.swap(true, Ordering::Relaxed) {
            Copied::MakeTemplate
        } else {
            Copied::Plain
        };
        Ok((self.with_peer(py, addr, listener)?, copied))
    }

    /// A copy of `listener` with the peer's keys set.
    fn with_peer<'py>(
        &self,
        py: Python<'py>,
        addr: &SocketAddr,
        listener: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let environ = listener.copy()?;
        let [remote_addr, remote_port] = self.strings.get(py, addr);
        environ.set_item(pyo3::intern!(py, "REMOTE_ADDR"), remote_addr)?;
        environ.set_item(pyo3::intern!(py, "REMOTE_PORT"), remote_port)?;
        Ok(environ)
    }

    /// Keeps `made` as the connection's template (unless another request of it made one
    /// meanwhile).
    fn keep_template(&self, py: Python<'_>, made: Arc<PeerTemplate>) {
        let _ = self.template.set(py, made);
    }
}

/// `REMOTE_ADDR` and `REMOTE_PORT` of one connection as Python strs, made for its first
/// request and shared by the rest.
///
/// A std `OnceLock`, not a `PyOnceLock`: the latter's first initialisation went through
/// `once_cell`'s waiter queue (a handle on the current thread, ~500 instructions), paid
/// once per connection. A `PyOnceLock` guards against an initialiser that releases the GIL
/// while another thread waits for it holding the GIL. Here every caller holds the GIL (the
/// `py` of `get`) and the initialiser makes two strs without releasing it, so no second
/// thread can be inside `get` meanwhile (HTTP/2 streams of one connection included).
#[derive(Default)]
struct PeerStrings(std::sync::OnceLock<[Py<PyString>; 2]>);

impl PeerStrings {
    /// The strs for `addr` (the connection's peer, always the same for one `PeerEnviron`).
    fn get<'py>(&self, py: Python<'py>, addr: &SocketAddr) -> [Bound<'py, PyString>; 2] {
        let [host, port] = self.0.get_or_init(|| {
            let ip = match addr.ip() {
                IpAddr::V6(v6) => v6.to_canonical(),
                v4 => v4,
            };
            let mut text = StackText::new();
            match ip {
                // IPv4 skips core::fmt, whose machinery costs more than the digits.
                IpAddr::V4(v4) => {
                    for (index, octet) in v4.octets().into_iter().enumerate() {
                        if index > 0 {
                            text.push_byte(b'.');
                        }
                        text.push_decimal(octet.into());
                    }
                }
                IpAddr::V6(_) => {
                    let _ = write!(text, "{ip}");
                }
            }
            let mut port = StackText::new();
            port.push_decimal(addr.port());
            [text.as_py(py).unbind(), port.as_py(py).unbind()]
        });
        [host.bind(py).clone(), port.bind(py).clone()]
    }
}

/// A short ASCII text formatted on the stack (an IP address or a port).
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }

    /// Appends one ASCII byte (dropped if the buffer is full, which no caller reaches).
    fn push_byte(&mut self, byte: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// Appends `value` in decimal.
    fn push_decimal(&mut self, value: u16) {
        let mut digits = [0u8; 5];
        let mut start = digits.len();
        let mut rest = value;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &digit in &digits[start..] {
            self.push_byte(digit);
        }
    }

    fn as_py<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        latin1_str(py, &self.buf[..self.len])
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Request headers most clients, browsers and proxies send, lower-case, with their
/// environ keys: a common header's key is a static str here and its Python str is made
/// once ([`HeaderKey::py_str`]); any other costs a `String` and a new Python str per
/// request.
static COMMON_HEADERS: [(&str, &str); 32] = [
    ("host", "HTTP_HOST"),
    ("user-agent", "HTTP_USER_AGENT"),
    ("accept", "HTTP_ACCEPT"),
    ("accept-encoding", "HTTP_ACCEPT_ENCODING"),
    ("accept-language", "HTTP_ACCEPT_LANGUAGE"),
    ("connection", "HTTP_CONNECTION"),
    ("cookie", "HTTP_COOKIE"),
    ("content-type", "CONTENT_TYPE"),
    ("content-length", "CONTENT_LENGTH"),
    ("referer", "HTTP_REFERER"),
    ("cache-control", "HTTP_CACHE_CONTROL"),
    ("authorization", "HTTP_AUTHORIZATION"),
    ("origin", "HTTP_ORIGIN"),
    ("pragma", "HTTP_PRAGMA"),
    ("if-none-match", "HTTP_IF_NONE_MATCH"),
    ("if-modified-since", "HTTP_IF_MODIFIED_SINCE"),
    ("range", "HTTP_RANGE"),
    (
        "upgrade-insecure-requests",
        "HTTP_UPGRADE_INSECURE_REQUESTS",
    ),
    ("sec-fetch-dest", "HTTP_SEC_FETCH_DEST"),
    ("sec-fetch-mode", "HTTP_SEC_FETCH_MODE"),
    ("sec-fetch-site", "HTTP_SEC_FETCH_SITE"),
    ("sec-fetch-user", "HTTP_SEC_FETCH_USER"),
    ("sec-ch-ua", "HTTP_SEC_CH_UA"),
    ("sec-ch-ua-mobile", "HTTP_SEC_CH_UA_MOBILE"),
    ("sec-ch-ua-platform", "HTTP_SEC_CH_UA_PLATFORM"),
    ("priority", "HTTP_PRIORITY"),
    ("dnt", "HTTP_DNT"),
    ("x-requested-with", "HTTP_X_REQUESTED_WITH"),
    ("x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
    ("x-forwarded-proto", "HTTP_X_FORWARDED_PROTO"),
    ("x-forwarded-host", "HTTP_X_FORWARDED_HOST"),
    ("x-real-ip", "HTTP_X_REAL_IP"),
];

/// `host`'s index in [`COMMON_HEADERS`].
const HOST: usize = 0;

/// The longest name in [`COMMON_HEADERS`] (`upgrade-insecure-requests`).
const LONGEST_COMMON: usize = 25;

/// For each name length, a bit per [`COMMON_HEADERS`] entry of that length: a header is
/// compared with the one to five names as long as it, not with the whole table (a linear
/// scan cost ~60 instructions per header). Made at compile time, where an entry longer
/// than [`LONGEST_COMMON`] or a 33rd entry (a bit past the `u32`) fails the build.
static COMMON_BY_LENGTH: [u32; LONGEST_COMMON + 1] = {
    let mut masks = [0u32; LONGEST_COMMON + 1];
    let mut index = 0;
    while index < COMMON_HEADERS.len() {
        masks[COMMON_HEADERS[index].0.len()] |= 1 << index;
        index += 1;
    }
    masks
};

/// The Python strs of [`COMMON_HEADERS`]' keys, made on first use.
static COMMON_KEY_STRS: [PyOnceLock<Py<PyString>>; COMMON_HEADERS.len()] =
    [const { PyOnceLock::new() }; COMMON_HEADERS.len()];

/// The environ key of a request header (see [`environ_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderKey {
    /// The key of the [`COMMON_HEADERS`] entry at this index: found without comparing
    /// text, and its Python str made once.
    Common(usize),
    /// Any other header's key: `HTTP_` and the name in upper case, `-` as `_`.
    Other(String),
}

impl HeaderKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderKey::Common(index) => COMMON_HEADERS[*index].1,
            HeaderKey::Other(key) => key,
        }
    }

    /// The key as a Python str: a common key's shared one, or a new one.
    fn py_str<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        match self {
            HeaderKey::Common(index) => COMMON_KEY_STRS[*index]
                .get_or_init(py, || {
                    PyString::intern(py, COMMON_HEADERS[*index].1).unbind()
                })
                .bind(py)
                .clone(),
            HeaderKey::Other(key) => PyString::new(py, key),
        }
    }
}

impl EnvironTemplate {
    /// A fresh environ for a request described by CGI meta-variables, with `input` as
    /// `wsgi.input`. Every variable the front server passed becomes a key, decoded the way
    /// `wsgiref.handlers` decodes `os.environ` (see [`cgi_value`]); the template's
    /// `SCRIPT_NAME` (`""`) and `SERVER_SOFTWARE` stay only when the front server sent none.
    /// `wsgi.url_scheme` is `https` when `HTTPS` is on.
    pub fn build_cgi<'py>(
        &self,
        py: Python<'py>,
        request: &CgiRequest,
        input: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let environ = self.template.bind(py).copy()?;
        for (name, value) in &request.vars {
            environ.set_item(native_str(py, name)?, cgi_value(py, name, value)?)?;
        }
        if request.is_https() {
            environ.set_item(pyo3::intern!(py, "wsgi.url_scheme"), "https")?;
        }
        environ.set_item(pyo3::intern!(py, "wsgi.input"), input)?;
        Ok(environ)
    }
}

/// Whether a CGI variable carries bytes of the HTTP request, so that PEP 3333 wants it as
/// latin-1 "bytes-as-str". The same set as `wsgiref.handlers`: the request variables of
/// RFC 3875, `HTTP_*`, `SSL_*`, and `REDIRECT_` versions of those (Apache's after an
/// internal redirect).
pub fn carries_request_bytes(name: &[u8]) -> bool {
    const REQUEST_VARIABLES: [&[u8]; 10] = [
        b"SCRIPT_NAME",
        b"PATH_INFO",
        b"QUERY_STRING",
        b"REQUEST_METHOD",
        b"AUTH_TYPE",
        b"CONTENT_TYPE",
        b"CONTENT_LENGTH",
        b"HTTPS",
        b"REMOTE_USER",
        b"REMOTE_IDENT",
    ];
    REQUEST_VARIABLES.contains(&name)
        || name.starts_with(b"HTTP_")
        || name.starts_with(b"SSL_")
        || name
            .strip_prefix(b"REDIRECT_")
            .is_some_and(carries_request_bytes)
}

/// A CGI variable's value as `wsgiref.handlers.CGIHandler` would give it: latin-1
/// "bytes-as-str" for the variables that carry request bytes; for the others (`PATH`,
/// `DOCUMENT_ROOT`, `SERVER_NAME` ...) what `os.environ` holds, i.e. the bytes decoded with
/// the filesystem encoding and `surrogateescape`. The two differ only for non-ASCII bytes.
pub fn cgi_value<'py>(
    py: Python<'py>,
    name: &[u8],
    value: &[u8],
) -> PyResult<Bound<'py, PyString>> {
    if carries_request_bytes(name) {
        Ok(latin1_str(py, value))
    } else {
        native_str(py, value)
    }
}

/// Bytes as `os.environ` decodes them (`os.fsdecode`): ASCII directly, anything else
/// through Python so that the filesystem encoding and `surrogateescape` apply exactly.
fn native_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    if bytes.is_ascii() {
        // ASCII is valid UTF-8.
        return Ok(PyString::new(
            py,
            std::str::from_utf8(bytes).unwrap_or_default(),
        ));
    }
    let decoded = py.import(pyo3::intern!(py, "os"))?.call_method1(
        pyo3::intern!(py, "fsdecode"),
        (pyo3::types::PyBytes::new(py, bytes),),
    )?;
    Ok(decoded.cast_into::<PyString>()?)
}

/// The method as a str, shared for the common ones.
fn method_str<'py>(py: Python<'py>, method: &[u8]) -> Bound<'py, PyString> {
    match method {
        b"GET" => pyo3::intern!(py, "GET").clone(),
        b"POST" => pyo3::intern!(py, "POST").clone(),
        b"HEAD" => pyo3::intern!(py, "HEAD").clone(),
        b"PUT" => pyo3::intern!(py, "PUT").clone(),
        b"DELETE" => pyo3::intern!(py, "DELETE").clone(),
        b"PATCH" => pyo3::intern!(py, "PATCH").clone(),
        b"OPTIONS" => pyo3::intern!(py, "OPTIONS").clone(),
        other => latin1_str(py, other),
    }
}

/// Decodes bytes as latin-1 into a str: every byte becomes the code point of its value,
/// which is how PEP 3333 carries bytes in native strings.
pub fn latin1_str<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // CPython's own latin-1 decoder: one pass that finds the widest byte and copies, where
    // checking UTF-8 and ASCII here and decoding UTF-8 again in CPython made three.
    // SAFETY: the GIL is held (`py`); the pointer and length describe a live slice that
    // CPython copies; the result is a new reference to a str, or NULL (out of memory only),
    // on which `from_owned_ptr` panics as `PyString::new` would.
    unsafe {
        Bound::from_owned_ptr(
            py,
            pyo3::ffi::PyUnicode_DecodeLatin1(
                bytes.as_ptr().cast(),
                bytes.len() as pyo3::ffi::Py_ssize_t,
                std::ptr::null(),
            ),
        )
        .cast_into_unchecked()
    }
}

/// Splits a request target into the path and the query string (without `?`).
///
/// An absolute-form target (`http://host/path?q`) gives its path; `*` and an
/// authority-form target (for CONNECT) have no path.
pub fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let (path_part, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &b""[..]),
    };
    if path_part.first() == Some(&b'/') {
        return (path_part, query);
    }
    // absolute-form: scheme "://" authority path
    if let Some(scheme_end) = find(path_part, b"://") {
        let rest = &path_part[scheme_end + 3..];
        return match rest.iter().position(|&b| b == b'/') {
            Some(slash) => (&rest[slash..], query),
            None => (&b"/"[..], query),
        };
    }
    (&b""[..], query)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'%') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(hi), Some(lo)) = (hex_value(input[i + 1]), hex_value(input[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The environ key of a request header `name` (a token, as the parsers leave it), or
/// `None` for a name with `_` (dropped, so that `X_Forwarded_For` cannot pose as
/// `X-Forwarded-For`).
pub fn environ_key(name: &[u8]) -> Option<HeaderKey> {
    let mut candidates = COMMON_BY_LENGTH.get(name.len()).copied().unwrap_or(0);
    while candidates != 0 {
        let index = candidates.trailing_zeros() as usize;
        // No common name has `_`, and `_` folded matches none of their bytes.
        if folded_equals(name, COMMON_HEADERS[index].0.as_bytes()) {
            return Some(HeaderKey::Common(index));
        }
        candidates &= candidates - 1;
    }
    if name.contains(&b'_') {
        return None;
    }
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.iter().map(|&b| match b {
        b'-' => '_',
        other => char::from(other.to_ascii_uppercase()),
    }));
    Some(HeaderKey::Other(key))
}

/// Whether the token `name` is `lower` (as long, only `a`-`z` and `-`) without case,
/// compared eight bytes at a time. Setting bit 5 (`| 0x20`) folds `A`-`Z` onto `a`-`z`; the
/// only other byte it folds onto one of `lower`'s is CR onto `-`, and CR is no token byte.
/// `eq_ignore_ascii_case` went byte by byte, ~80 instructions for a browser's typical
/// header name compared with the table's names of its length.
fn folded_equals(name: &[u8], lower: &[u8]) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let load = |bytes: &[u8], at: usize| {
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
    };
    let length = name.len();
    if length != lower.len() {
        return false;
    }
    if length < 8 {
        return name
            .iter()
            .zip(lower)
            .all(|(&byte, &low)| byte | 0x20 == low);
    }
    let mut at = 0;
    while at + 8 < length {
        if load(name, at) | FOLD != load(lower, at) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes, overlapping the words before when the length is no multiple.
    load(name, length - 8) | FOLD == load(lower, length - 8)
}

/// A header field the request names more than once: its values are joined into one
/// environ value, cookies with `; ` (RFC 6265), everything else with `,`.
#[derive(Debug, PartialEq, Eq)]
pub struct RepeatedField {
    /// The index of its first line, where the joined value goes.
    pub first: usize,
    /// The indexes of its other lines, which add nothing more.
    pub later: Vec<usize>,
    /// The values joined in order.
    pub joined: Vec<u8>,
}

/// The fields `headers` names more than once (names compared without case). Empty, and
/// found without allocating, in the usual request where no name repeats.
pub fn repeated_fields(headers: &HeaderFields) -> Vec<RepeatedField> {
    if !may_repeat(headers) {
        return Vec::new();
    }
    let same = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
    let mut repeated: Vec<RepeatedField> = Vec::new();
    for (first, (name, value)) in headers.iter().enumerate() {
        if (0..first).any(|earlier| same(headers.name(earlier), name)) {
            continue;
        }
        let later: Vec<usize> = (first + 1..headers.len())
            .filter(|&index| same(headers.name(index), name))
            .collect();
        if later.is_empty() {
            continue;
        }
        let separator: &[u8] = if name.eq_ignore_ascii_case(b"cookie") {
            b"; "
        } else {
            b","
        };
        let mut joined = value.to_vec();
        for &index in &later {
            joined.extend_from_slice(separator);
            joined.extend_from_slice(headers.value(index));
        }
        repeated.push(RepeatedField {
            first,
            later,
            joined,
        });
    }
    repeated
}

/// Whether two of `headers` may have the same name: false when no two share a signature
/// in a set of 1,024, which one pass finds. A signature hashes a name's length and its first
/// and last four bytes, without case: the twenty-odd distinct names a browser sends seldom
/// share one, two lines of one name always do.
fn may_repeat(headers: &HeaderFields) -> bool {
    if headers.len() < 2 {
        return false;
    }
    const BITS: u32 = 10;
    let mut seen = [0u64; 1 << (BITS - 6)];
    for (name, _) in headers.iter() {
        // `| 0x20` folds ASCII upper case onto lower case; other bytes only need to map
        // the same way in every name.
        let (first, last) = match name.len() {
            length @ 4.. => (word(&name[..4]), word(&name[length - 4..])),
            _ => (word(name), word(name)),
        };
        let (first, last) = (first | 0x2020_2020, last | 0x2020_2020);
        let key = (u64::from(first) | u64::from(last) << 32) ^ name.len() as u64;
        let signature = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as usize;
        let (slot, bit) = (signature / 64, 1u64 << (signature % 64));
        if seen[slot] & bit != 0 {
            return true;
        }
        seen[slot] |= bit;
    }
    false
}

/// Up to four bytes as a little-endian number (four in one load).
fn word(bytes: &[u8]) -> u32 {
    match <[u8; 4]>::try_from(bytes) {
        Ok(four) => u32::from_le_bytes(four),
        Err(_) => bytes
            .iter()
            .rev()
            .fold(0, |word, &byte| word << 8 | u32::from(byte)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_on_the_stack_match_display() {
        for value in [0u16, 7, 10, 99, 100, 255, 9999, 10000, u16::MAX] {
            let mut text = StackText::new();
            text.push_decimal(value);
            assert_eq!(&text.buf[..text.len], value.to_string().as_bytes());
        }
        let mut text = StackText::new();
        text.push_decimal(192);
        text.push_byte(b'.');
        text.push_decimal(0);
        assert_eq!(&text.buf[..text.len], b"192.0");
    }

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(split_target(b"/a/b?x=1&y"), (&b"/a/b"[..], &b"x=1&y"[..]));
        assert_eq!(split_target(b"/"), (&b"/"[..], &b""[..]));
        assert_eq!(split_target(b"/p?"), (&b"/p"[..], &b""[..]));
        assert_eq!(split_target(b"http://h:80/x?q"), (&b"/x"[..], &b"q"[..]));
        assert_eq!(split_target(b"http://h"), (&b"/"[..], &b""[..]));
        assert_eq!(split_target(b"*"), (&b""[..], &b""[..]));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(&*percent_decode(b"/a%20b"), b"/a b");
        assert_eq!(&*percent_decode(b"/a%2Fb%2f"), b"/a/b/");
        assert_eq!(&*percent_decode(b"/caf%C3%A9%e9"), b"/caf\xc3\xa9\xe9");
        assert_eq!(&*percent_decode(b"/100%"), b"/100%");
        assert_eq!(&*percent_decode(b"/%zz%4"), b"/%zz%4");
        assert_eq!(&*percent_decode(b"%41"), b"A");
    }

    #[test]
    fn common_headers_have_the_keys_any_header_would_get() {
        for (header, key) in COMMON_HEADERS {
            assert_eq!(header, header.to_ascii_lowercase());
            let plain = match header {
                "content-type" | "content-length" => header.to_ascii_uppercase().replace('-', "_"),
                _ => format!("HTTP_{}", header.to_ascii_uppercase().replace('-', "_")),
            };
            assert_eq!(key, plain, "{header}");
        }
        // Found whatever the spelling of the name.
        for (index, (header, _)) in COMMON_HEADERS.iter().enumerate() {
            for spelling in [header.to_string(), header.to_ascii_uppercase()] {
                let key = environ_key(spelling.as_bytes());
                assert_eq!(key, Some(HeaderKey::Common(index)), "{spelling}");
            }
        }
        assert_eq!(COMMON_HEADERS[HOST].0, "host");
        assert_eq!(
            environ_key(b"X-Custom"),
            Some(HeaderKey::Other("HTTP_X_CUSTOM".into()))
        );
    }

    #[test]
    fn folded_comparison_is_case_insensitive_equality_for_tokens() {
        let tchar: Vec<u8> =
            b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                .to_vec();
        for (lower, _) in COMMON_HEADERS {
            let lower = lower.as_bytes();
            assert!(folded_equals(lower, lower));
            assert!(folded_equals(&lower.to_ascii_uppercase(), lower));
            // Every token byte at every position: equal exactly when it is the same letter.
            for at in 0..lower.len() {
                for &byte in &tchar {
                    let mut name = lower.to_vec();
                    name[at] = byte;
                    assert_eq!(
                        folded_equals(&name, lower),
                        name.eq_ignore_ascii_case(lower),
                        "{:?}",
                        String::from_utf8_lossy(&name)
                    );
                }
            }
            assert!(!folded_equals(&lower[1..], lower));
        }
    }

    #[test]
    fn header_keys() {
        assert_eq!(environ_key(b"Host").unwrap().as_str(), "HTTP_HOST");
        assert_eq!(
            environ_key(b"X-Forwarded-For").unwrap().as_str(),
            "HTTP_X_FORWARDED_FOR"
        );
        assert_eq!(
            environ_key(b"content-TYPE").unwrap().as_str(),
            "CONTENT_TYPE"
        );
        assert_eq!(environ_key(b"X_Forwarded_For"), None);
    }

    #[test]
    fn request_variables_are_the_ones_wsgiref_transcodes() {
        for name in [
            "PATH_INFO",
            "QUERY_STRING",
            "HTTP_X_Y",
            "SSL_CLIENT_S_DN",
            "REDIRECT_HTTP_HOST",
            "REDIRECT_REDIRECT_PATH_INFO",
            "HTTPS",
        ] {
            assert!(carries_request_bytes(name.as_bytes()), "{name}");
        }
        for name in [
            "PATH",
            "DOCUMENT_ROOT",
            "SERVER_NAME",
            "REDIRECT_STATUS",
            "REQUEST_URI",
        ] {
            assert!(!carries_request_bytes(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn repeated_headers_are_joined() {
        let headers = HeaderFields::from_pairs(&[
            ("Accept", "a"),
            ("Cookie", "x=1"),
            ("accept", "b"),
            ("cookie", "y=2"),
            ("X_Evil", "no"),
        ]);
        assert_eq!(
            repeated_fields(&headers),
            vec![
                RepeatedField {
                    first: 0,
                    later: vec![2],
                    joined: b"a,b".to_vec()
                },
                RepeatedField {
                    first: 1,
                    later: vec![3],
                    joined: b"x=1; y=2".to_vec()
                },
            ]
        );
    }

    #[test]
    fn distinct_names_are_found_without_the_full_comparison() {
        let names = [
            "Host",
            "User-Agent",
            "Accept",
            "Accept-Language",
            "Accept-Encoding",
            "Connection",
            "Referer",
            "Cookie",
            "Upgrade-Insecure-Requests",
            "Sec-Fetch-Dest",
            "Sec-Fetch-Mode",
            "Sec-Fetch-Site",
        ];
        let with_values = |names: &[&str]| {
            let pairs: Vec<_> = names.iter().map(|name| (*name, "")).collect();
            HeaderFields::from_pairs(&pairs)
        };
        let browser = with_values(&names);
        assert!(!may_repeat(&browser));
        assert!(repeated_fields(&browser).is_empty());
        // A name twice, in any case, is always a suspect.
        let twice = with_values(&[&names[..], &["ACCEPT-language"]].concat());
        assert!(may_repeat(&twice));
        assert_eq!(repeated_fields(&twice).len(), 1);
        // Names that only share a signature (`| 0x20` maps `^` to `~`, as it maps `A` to
        // `a`) are not joined.
        let alike = HeaderFields::from_pairs(&[("X^", "1"), ("X~", "2")]);
        assert!(
            may_repeat(&alike),
            "the test needs two names with one signature"
        );
        assert!(repeated_fields(&alike).is_empty());
    }
}
