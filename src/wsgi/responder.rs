//! `start_response` and `write()`: the response side of one WSGI call.
//!
//! A [`Responder`] is made per request. The app gets its bound `start_response` method;
//! `start_response` validates and stores the status and headers, and returns the bound
//! `write` method. Nothing goes to the client until the first non-empty piece of body (or
//! the end of an empty body), so an app may call `start_response` lazily inside a
//! generator, or again with `exc_info` to replace a response not yet sent (PEP 3333).

use bytes::Bytes;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::gateway::{Disconnected, ResponseEnd, ResponseHead, ResponseSink};
use crate::whole_body::WholeBody;
use crate::wsgi::head;
use crate::wsgi::input::ClientDisconnected;
use crate::wsgi::known::{HeaderName, KnownStrings};

/// Bodies below this size are copied into the I/O side's buffers; larger ones are shared
/// with Python without a copy (the bytes object is kept alive until written). The same
/// size as the writer's own threshold: a piece the writer copies into its staging buffer
/// anyway is copied here too (a small copy beats keeping a Python object alive across
/// threads), and a piece it sends as its own iovec is never copied at all (a 10 KiB echo
/// was copied once into a `Bytes` here only to be written from that copy).
pub const ZERO_COPY_THRESHOLD: usize = crate::http::writer::COPY_BELOW;

/// The response state of one request.
#[pyclass(module = "tidegate._tidegate")]
pub struct Responder {
    sink: Box<dyn ResponseSink>,
    /// Set by start_response, sent with the first body bytes.
    pending: Option<ResponseHead>,
    headers_sent: bool,
    /// Body bytes the declared Content-Length still allows.
    remaining: Option<u64>,
    /// PEP 3333: an iterable of len() 1 lets the server take Content-Length from its one item.
    single_chunk: bool,
    truncated: bool,
    /// The status forbids a body (1xx, 204, 304): body bytes are neither sent nor counted.
    bodiless: bool,
    finished: bool,
    /// Body bytes handed to the sink.
    pub body_bytes: u64,
    /// The status code sent (0 until the head goes out).
    status: u16,
    /// The bound `write` that `start_response` returns, when a [`ResponderCache`] lends it
    /// for the request (it is made once per kept responder instead of once per request).
    write: Option<Py<PyAny>>,
    /// The thread's [`KnownStrings`], lent for the request by its [`ResponderCache`] (a
    /// responder without one makes its own when `start_response` is called).
    known: Option<Box<KnownStrings>>,
}

/// A sink that takes nothing: a responder's between two requests (nothing can reach it,
/// the responder is kept only when nobody else holds it, but the slot must hold some
/// sink), and an exchange's once its sink was taken out of it.
pub(crate) struct NoSink;

impl ResponseSink for NoSink {
    fn send_head(&mut self, _: Python<'_>, _: ResponseHead) -> Result<(), Disconnected> {
        Err(Disconnected)
    }
    fn send_chunk(&mut self, _: Python<'_>, _: Bytes) -> Result<(), Disconnected> {
        Err(Disconnected)
    }
    fn send_file(
        &mut self,
        _: Python<'_>,
        _: std::fs::File,
        _: u64,
        _: u64,
    ) -> Result<(), Disconnected> {
        Err(Disconnected)
    }
    fn finish(&mut self, _: Python<'_>, _: ResponseEnd) {}
    fn wants_body(&self) -> bool {
        false
    }
}

/// A Python thread's spare [`Responder`] with its bound `start_response` and `write`,
/// reused by the next request when the app kept none of the three.
///
/// Making them per request (the object, and two bound methods looked up by name) cost
/// ~1,200 instructions, about as much as the app's own call on a small request.
#[derive(Default)]
pub struct ResponderCache {
    spare: Option<Lent>,
    /// The strings `start_response` checked on this thread, lent to each request's
    /// responder and taken back after it, whether or not the responder is kept.
    known: Option<Box<KnownStrings>>,
}

/// A responder and its bound methods, lent to one request.
pub struct Lent {
    /// The responder.
    pub responder: Py<Responder>,
    /// Its bound `start_response`, what the app is called with.
    pub start_response: Py<PyAny>,
    write: Py<PyAny>,
}

impl ResponderCache {
    /// A responder for a request sending to `sink`: the spare one, or a new one.
    pub fn lend(&mut self, py: Python<'_>, sink: Box<dyn ResponseSink>) -> PyResult<Lent> {
        let lent = match self.spare.take() {
            Some(lent) => {
                let mut responder = lent.responder.bind(py).borrow_mut();
                let _ = std::mem::replace(&mut *responder, Responder::new(sink));
                drop(responder);
                lent
            }
            None => {
                let responder = Bound::new(py, Responder::new(sink))?;
                let start_response = responder.getattr(pyo3::intern!(py, "start_response"))?;
                let write = responder.getattr(pyo3::intern!(py, "write"))?;
                Lent {
                    responder: responder.unbind(),
                    start_response: start_response.unbind(),
                    write: write.unbind(),
                }
            }
        };
        let mut responder = lent.responder.bind(py).borrow_mut();
        // For the request only: the responder holding its own bound method is a cycle.
        responder.write = Some(lent.write.clone_ref(py));
        responder.known = self.known.take();
        drop(responder);
        Ok(lent)
    }

    /// Takes back what [`lend`](Self::lend) gave once the request is over. It is kept for
    /// the next request only if nothing else refers to any of it: an app may keep
    /// `start_response` or `write` (a generator that was never finished, a callable stored
    /// away), and those must keep working on their own request's responder.
    pub fn give_back(&mut self, py: Python<'_>, lent: Lent) {
        let responder = lent.responder.bind(py);
        {
            let mut responder = responder.borrow_mut();
            responder.write = None;
            // Taken even from a responder the app keeps: should it call `start_response`
            // again, it makes a cache of its own.
            if let Some(known) = responder.known.take() {
                self.known = Some(known);
            }
        }
        // Counted with no borrow of the responder alive (a borrow holds a reference).
        // SAFETY: reading reference counts of live objects, with the GIL held (`py`).
        let unshared = unsafe {
            pyo3::ffi::Py_REFCNT(lent.start_response.as_ptr()) == 1
                && pyo3::ffi::Py_REFCNT(lent.write.as_ptr()) == 1
                // Ours, and the `__self__` of each bound method.
                && pyo3::ffi::Py_REFCNT(responder.as_ptr()) == 3
        };
        if unshared {
            // The request's sink goes now, as it would with the responder.
            responder.borrow_mut().sink = Box::new(NoSink);
            self.spare = Some(lent);
        }
    }
}

/// What went wrong while sending body bytes.
pub enum SendError {
    /// The client is gone.
    Disconnected,
    /// The app broke a rule; the message names it.
    Fault(String),
}

impl Responder {
    /// A responder sending to `sink`.
    pub fn new(sink: Box<dyn ResponseSink>) -> Self {
        Responder {
            sink,
            pending: None,
            headers_sent: false,
            remaining: None,
            single_chunk: false,
            truncated: false,
            bodiless: false,
            finished: false,
            body_bytes: 0,
            status: 0,
            write: None,
            known: None,
        }
    }

    /// The status code sent, or 0 if no head was sent.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the head has gone to the client.
    pub fn headers_sent(&self) -> bool {
        self.headers_sent
    }

    /// Whether start_response has been called (and its head not yet replaced by a send).
    pub fn has_status(&self) -> bool {
        self.pending.is_some() || self.headers_sent
    }

    /// Whether body bytes will reach the client (false for HEAD).
    pub fn wants_body(&self) -> bool {
        self.sink.wants_body()
    }

    /// The iterable has exactly one item: its length is the Content-Length.
    pub fn set_single_chunk(&mut self) {
        self.single_chunk = true;
    }

    /// Whether the app's body went past its Content-Length (and was cut).
    pub fn was_truncated(&self) -> bool {
        self.truncated
    }

    fn send_head(&mut self, py: Python<'_>, first_chunk: Option<usize>) -> Result<(), SendError> {
        let Some(mut head) = self.pending.take() else {
            return Err(SendError::Fault(
                "the application sent body bytes before calling start_response()".into(),
            ));
        };
        if head.content_length.is_none() && self.single_chunk {
            head.content_length = first_chunk.map(|n| n as u64);
        }
        self.status = head.status;
        self.bodiless = !crate::http::response::status_allows_body(head.status);
        self.remaining = if self.bodiless {
            None
        } else {
            head.content_length
        };
        self.headers_sent = true;
        self.sink.send_head(py, head).map_err(disconnected)
    }

    /// Sends one piece of the body: sends the head first if needed, cuts what goes past
    /// the declared Content-Length.
    pub fn send_body(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyBytes>,
    ) -> Result<(), SendError> {
        if self.finished {
            return Err(SendError::Fault(
                "write() called after the response ended".into(),
            ));
        }
        let bytes = data.as_bytes();
        if bytes.is_empty() {
            return Ok(());
        }
        if !self.headers_sent {
            self.send_head(py, Some(bytes.len()))?;
        }
        let mut len = bytes.len();
        if let Some(remaining) = self.remaining {
            if (len as u64) > remaining {
                len = remaining as usize;
                self.truncated = true;
            }
            self.remaining = Some(remaining - len as u64);
        }
        if len == 0 || !self.sink.wants_body() || self.bodiless {
            return Ok(());
        }
        let chunk = if len < ZERO_COPY_THRESHOLD {
            Bytes::copy_from_slice(&bytes[..len])
        } else {
            Bytes::from_owner(PyBackedBytes::from(data.clone())).slice(..len)
        };
        self.body_bytes += len as u64;
        self.sink.send_chunk(py, chunk).map_err(disconnected)
    }

    /// Sends a whole body known up front (a list or tuple of bytes) with its computed
    /// Content-Length, unless the app declared one.
    pub fn send_all(&mut self, py: Python<'_>, body: WholeBody) -> Result<(), SendError> {
        if self.headers_sent {
            // The app used write() first: the rest follows as ordinary body pieces.
            for chunk in body.into_pieces() {
                self.send_body(py, &PyBytes::new(py, &chunk))?;
            }
            return self.finish(py);
        }
        let Some(mut head) = self.pending.take() else {
            return Err(SendError::Fault(
                "the application returned without calling start_response()".into(),
            ));
        };
        self.status = head.status;
        let bodiless = !crate::http::response::status_allows_body(head.status);
        if bodiless || !self.sink.wants_body() {
            // No body goes out (1xx/204/304, or a HEAD request, whose app may declare the
            // GET's Content-Length and return nothing): lengths need not match.
            if !bodiless {
                head.content_length.get_or_insert(body.len());
            }
            self.headers_sent = true;
            self.finished = true;
            return self
                .sink
                .send_complete(py, head, WholeBody::default())
                .map_err(disconnected);
        }
        let total = body.len();
        let declared = *head.content_length.get_or_insert(total);
        let mut end = ResponseEnd::Complete;
        let mut body = body;
        if total > declared {
            self.truncated = true;
            body.truncate(declared);
        } else if total < declared {
            end = ResponseEnd::Aborted;
        }
        self.headers_sent = true;
        self.finished = true;
        self.body_bytes = total.min(declared);
        if end == ResponseEnd::Complete {
            return self
                .sink
                .send_complete(py, head, body)
                .map_err(disconnected);
        }
        self.sink.send_head(py, head).map_err(disconnected)?;
        if self.sink.wants_body() {
            for chunk in body.into_pieces() {
                self.sink.send_chunk(py, chunk).map_err(disconnected)?;
            }
        }
        self.sink.finish(py, end);
        Err(SendError::Fault(format!(
            "response body shorter than its Content-Length ({total} of {declared} bytes)"
        )))
    }

    /// Sends `len` bytes of a file from `offset`, after the head.
    pub fn send_file(
        &mut self,
        py: Python<'_>,
        file: std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<(), SendError> {
        if !self.headers_sent {
            if let Some(head) = self.pending.as_mut() {
                head.content_length.get_or_insert(len);
            }
            self.send_head(py, None)?;
        }
        let len = match self.remaining {
            Some(remaining) => {
                self.truncated |= len > remaining;
                len.min(remaining)
            }
            None => len,
        };
        self.remaining = self.remaining.map(|r| r - len);
        if len == 0 || !self.sink.wants_body() || self.bodiless {
            return Ok(());
        }
        self.body_bytes += len;
        self.sink
            .send_file(py, file, offset, len)
            .map_err(disconnected)
    }

    /// Ends a response whose body was iterated to its end. Returns a fault when the body
    /// was shorter than the Content-Length it declared (the connection is then closed).
    pub fn finish(&mut self, py: Python<'_>) -> Result<(), SendError> {
        if self.finished {
            return Ok(());
        }
        if !self.headers_sent {
            let Some(head) = self.pending.as_mut() else {
                return Err(SendError::Fault(
                    "the application returned without calling start_response()".into(),
                ));
            };
            // The whole body was empty: its length is known.
            head.content_length.get_or_insert(0);
            self.send_head(py, None)?;
        }
        self.finished = true;
        match self.remaining {
            Some(missing) if missing > 0 && self.sink.wants_body() => {
                self.sink.finish(py, ResponseEnd::Aborted);
                Err(SendError::Fault(format!(
                    "response body shorter than its Content-Length ({missing} bytes missing); connection closed"
                )))
            }
            _ => {
                self.sink.finish(py, ResponseEnd::Complete);
                Ok(())
            }
        }
    }

    /// Ends the response after a failure: a 500 if nothing was sent yet, otherwise the
    /// connection is cut so the client sees a truncated response, never a wrong one.
    pub fn fail(&mut self, py: Python<'_>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.headers_sent {
            self.sink.finish(py, ResponseEnd::Aborted);
            return;
        }
        let body = Bytes::from_static(b"Internal Server Error");
        let head = ResponseHead {
            status: 500,
            status_line: Bytes::from_static(b"500 Internal Server Error"),
            headers: vec![(
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
            content_length: Some(body.len() as u64),
            close_connection: false,
        };
        self.status = 500;
        self.headers_sent = true;
        // A client that is gone cannot be told; nothing else to do.
        let _ = self
            .sink
            .send_complete(py, head, WholeBody::from(vec![body]));
    }

    /// Marks the response as ended without telling the client anything more (the client
    /// is gone).
    pub fn abandon(&mut self, py: Python<'_>) {
        if !self.finished {
            self.finished = true;
            self.sink.finish(py, ResponseEnd::Aborted);
        }
    }
}

fn disconnected(_: Disconnected) -> SendError {
    SendError::Disconnected
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// Validates start_response's arguments into a head, with the strings `known` remembers
/// taken as checked.
fn parse_head(
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    known: &mut KnownStrings,
) -> PyResult<ResponseHead> {
    let status = status.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "start_response(): status must be str like '200 OK', not {}",
            type_name(status)
        ))
    })?;
    let status = known.status(status)?;
    if !(headers.is_instance_of::<PyList>() || headers.is_instance_of::<PyTuple>()) {
        return Err(PyTypeError::new_err(format!(
            "start_response(): headers must be a list of (name, value) tuples, not {}",
            type_name(headers)
        )));
    }
    let mut response = ResponseHead {
        status: status.code,
        status_line: status.line,
        headers: Vec::with_capacity(headers.len()?),
        content_length: None,
        close_connection: false,
    };
    // An exact list (what nearly every app passes) is walked by index, without the
    // iterator protocol.
    if let Ok(list) = headers.cast_exact::<PyList>() {
        for item in list.iter() {
            add_header(&mut response, &item, known)?;
        }
    } else {
        for item in headers.try_iter()? {
            add_header(&mut response, &item?, known)?;
        }
    }
    Ok(response)
}

/// Checks one `(name, value)` item of the app's headers and adds it to `response`.
fn add_header(
    response: &mut ResponseHead,
    item: &Bound<'_, PyAny>,
    known: &mut KnownStrings,
) -> PyResult<()> {
    let pair = match item.cast::<PyTuple>() {
        Ok(tuple) if tuple.len() == 2 => (tuple.get_item(0)?, tuple.get_item(1)?),
        _ => match item.cast::<PyList>() {
            Ok(list) if list.len() == 2 => (list.get_item(0)?, list.get_item(1)?),
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "start_response(): each header must be a (name, value) tuple, got {}",
                    item.repr()?
                )))
            }
        },
    };
    let (Ok(name), Ok(value)) = (pair.0.cast::<PyString>(), pair.1.cast::<PyString>()) else {
        return Err(PyTypeError::new_err(format!(
            "start_response(): header names and values must be str, got ({}, {})",
            type_name(&pair.0),
            type_name(&pair.1)
        )));
    };
    let kind = known.name(name)?;
    if kind == HeaderName::ContentLength {
        // Only the number is kept (the engine writes the header itself), and apps compute
        // it afresh for each response: a valid one is read straight from the str, with no
        // checked copy made and remembered (~300 instructions). Any other value takes the
        // checks below, for their error.
        let parsed = value.to_str().ok();
        if let Some(length) = parsed.and_then(|text| head::parse_content_length(text.as_bytes())) {
            return set_content_length(response, length);
        }
    }
    let checked = known.value(name, value)?;
    match kind {
        HeaderName::Sent(name) => response.headers.push((name, checked.bytes)),
        HeaderName::ContentLength => {
            let length = checked.length.ok_or_else(|| {
                PyValueError::new_err(format!(
                    "start_response(): invalid Content-Length {:?}: expected a number of bytes",
                    value.to_cow().unwrap_or_default()
                ))
            })?;
            set_content_length(response, length)?;
        }
        HeaderName::Connection | HeaderName::HopByHop => {
            if kind == HeaderName::Connection && head::has_token(&checked.bytes, "close") {
                response.close_connection = true;
            }
            tracing::debug!(
                "dropped hop-by-hop response header {:?} set by the application",
                name.to_cow().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Records the response's Content-Length; a second, different one is an error.
fn set_content_length(response: &mut ResponseHead, length: u64) -> PyResult<()> {
    if response.content_length.is_some_and(|known| known != length) {
        return Err(PyValueError::new_err(
            "start_response(): two different Content-Length headers",
        ));
    }
    response.content_length = Some(length);
    Ok(())
}

#[pymethods]
impl Responder {
    /// PEP 3333 `start_response(status, response_headers, exc_info=None)`; returns `write`.
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn start_response(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        let mut known = {
            let mut this = slf.borrow_mut();
            if this.finished {
                return Err(PyRuntimeError::new_err(
                    "start_response() called after the response ended",
                ));
            }
            match exc_info {
                Some(exc_info) if this.headers_sent => {
                    // Too late to replace the response: re-raise, as PEP 3333 requires.
                    let value = exc_info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
                None if this.pending.is_some() || this.headers_sent => {
                    return Err(PyRuntimeError::new_err(
                        "start_response() called a second time without exc_info",
                    ));
                }
                _ => {}
            }
            // Out of the responder while the headers are read: a header iterable that is
            // not a list or tuple runs Python code, which may call back into this responder.
            this.known.take().unwrap_or_default()
        };
        let head = parse_head(status, headers, &mut known);
        let mut this = slf.borrow_mut();
        this.known = Some(known);
        this.pending = Some(head?);
        match &this.write {
            Some(write) => Ok(write.clone_ref(slf.py())),
            None => {
                drop(this);
                Ok(slf.getattr(pyo3::intern!(slf.py(), "write"))?.unbind())
            }
        }
    }

    /// PEP 3333 `write(data)`: sends body bytes at once (the head first if not yet sent).
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!("write() takes bytes, not {}", type_name(data)))
        })?;
        let py = slf.py();
        let mut this = slf.borrow_mut();
        if !this.has_status() {
            return Err(PyRuntimeError::new_err(
                "write() called before start_response()",
            ));
        }
        match this.send_body(py, data) {
            Ok(()) => Ok(()),
            Err(SendError::Disconnected) => Err(ClientDisconnected::new_err(
                "client disconnected while the response was being sent",
            )),
            Err(SendError::Fault(message)) => Err(PyRuntimeError::new_err(message)),
        }
    }
}
