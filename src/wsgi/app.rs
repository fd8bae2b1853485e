//! Calling the application: the PEP 3333 protocol from environ to `close()`.
//!
//! [`Bridge::handle`] runs one [`Exchange`] on the current Python thread: it builds the
//! environ, calls the app, walks the returned iterable into the response sink (with fast
//! paths for a list of bytes and for `wsgi.file_wrapper` over a real file), and always
//! calls the iterable's `close()`. Whatever the app does wrong is turned into one error log
//! line naming the fault and either a 500 (nothing sent yet) or a cut connection; the
//! thread then goes on to the next request.

use std::fs::File;
use std::os::fd::BorrowedFd;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::gateway::{Exchange, RequestBody, RequestForm};
use crate::whole_body::WholeBody;
use crate::wsgi::environ::{EnvironTemplate, TemplateOptions};
use crate::wsgi::errors::ErrorStream;
use crate::wsgi::file_wrapper::FileWrapper;
use crate::wsgi::input::{ClientDisconnected, Input};
use crate::wsgi::responder::{NoSink, Responder, ResponderCache, SendError};

/// What the bridge needs to know about the server it runs in.
pub struct BridgeOptions {
    /// More than one Python thread runs the app.
    pub multithread: bool,
    /// More than one process runs the app.
    pub multiprocess: bool,
    /// Hooks around each request.
    pub hooks: RequestHooks,
    /// The process serves one request and exits (the CGI gateway).
    pub run_once: bool,
    /// Trusted proxies and root path, applied to HTTP requests' environ.
    pub proxy: std::sync::Arc<crate::proxy::ProxyConfig>,
}

/// gunicorn-style hooks around each request, set from Python.
#[derive(Default)]
pub struct RequestHooks {
    /// The `worker` object the hooks receive (None in a lone server).
    pub worker: Option<Py<PyAny>>,
    /// `pre_request(worker, environ)`, before the app; an exception makes the response a 500.
    pub pre_request: Option<Py<PyAny>>,
    /// `post_request(worker, environ, status)` once the response is done; `status` is the
    /// status code sent (0 if nothing was sent).
    pub post_request: Option<Py<PyAny>>,
}

/// Runs requests through one WSGI application.
pub struct Bridge {
    app: Py<PyAny>,
    environ: EnvironTemplate,
    hooks: RequestHooks,
    /// The `wsgi.input` of every request without a body. An input with nothing buffered
    /// and no source has no state to change (every read returns `b""`), so one object
    /// serves them all instead of one allocated per request.
    empty_input: Py<Input>,
}

/// Why a request could not be answered as the app intended.
enum Fault {
    /// The app (or something it called) raised.
    Exception(PyErr),
    /// The app broke a rule of PEP 3333; the text names it.
    Rule(String),
    /// The client went away.
    Disconnected,
}

impl From<SendError> for Fault {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Disconnected => Fault::Disconnected,
            SendError::Fault(message) => Fault::Rule(message),
        }
    }
}

impl Bridge {
    /// A bridge for `app`.
    pub fn new(py: Python<'_>, app: Py<PyAny>, options: BridgeOptions) -> PyResult<Self> {
        let errors = Bound::new(py, ErrorStream::new())?.into_any();
        let file_wrapper = py.get_type::<FileWrapper>().into_any();
        let environ = EnvironTemplate::new(
            py,
            TemplateOptions {
                multithread: options.multithread,
                multiprocess: options.multiprocess,
                run_once: options.run_once,
                errors,
                file_wrapper,
                proxy: options.proxy,
            },
        )?;
        Ok(Bridge {
            app,
            environ,
            hooks: options.hooks,
            empty_input: Py::new(py, Input::new(Bytes::new(), None))?,
        })
    }

    /// Runs one request to its end. Never fails: every problem is logged and answered.
    /// `responders` is the calling thread's own (see [`ResponderCache`]).
    pub fn handle(
        &self,
        py: Python<'_>,
        mut exchange: Box<Exchange>,
        responders: &mut ResponderCache,
    ) {
        // The head stays in its box (it is read by reference); the body and the sink are
        // taken out of it.
        let body = std::mem::replace(&mut exchange.body, RequestBody::Empty);
        let sink = std::mem::replace(&mut exchange.sink, Box::new(NoSink));
        let head = &exchange.head;
        let input = match body {
            RequestBody::Empty => Ok(self.empty_input.bind(py).clone()),
            RequestBody::Complete(bytes) => Bound::new(py, Input::new(bytes, None)),
            RequestBody::Stream(source) => Bound::new(py, Input::new(Bytes::new(), Some(source))),
        };
        let (input, lent) = match (input, responders.lend(py, sink)) {
            (Ok(input), Ok(lent)) => (input, lent),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!("could not set up request {}: {error}", label(head));
                return;
            }
        };
        let responder = lent.responder.bind(py);
        let start_response = lent.start_response.bind(py);
        let fault = self
            .call(py, head, input.as_any(), responder, start_response)
            .err();
        if let Some(fault) = fault {
            report(py, head, &fault);
            match fault {
                Fault::Disconnected => responder.borrow_mut().abandon(py),
                _ => responder.borrow_mut().fail(py),
            }
        }
        if responder.borrow().was_truncated() {
            tracing::warn!(
                "Response to {} was longer than its Content-Length; the extra bytes were not sent",
                label(head)
            );
        }
        responders.give_back(py, lent);
    }

    fn call(
        &self,
        py: Python<'_>,
        head: &RequestForm,
        input: &Bound<'_, PyAny>,
        responder: &Bound<'_, Responder>,
        start_response: &Bound<'_, PyAny>,
    ) -> Result<(), Fault> {
        let environ = match head {
            RequestForm::Http(head) => self.environ.build(py, head, input),
            RequestForm::Cgi(request) => self.environ.build_cgi(py, request, input),
        }
        .map_err(Fault::Exception)?;
        let worker = || {
            self.hooks
                .worker
                .as_ref()
                .map_or_else(|| py.None(), |w| w.clone_ref(py))
        };
        if let Some(pre_request) = &self.hooks.pre_request {
            pre_request
                .bind(py)
                .call1((worker(), &environ))
                .map_err(Fault::Exception)?;
        }
        let outcome = self.call_app(py, head, &environ, responder, start_response);
        if let Some(post_request) = &self.hooks.post_request {
            let status = responder.borrow().status();
            if let Err(error) = post_request.bind(py).call1((worker(), &environ, status)) {
                let fault = Fault::Rule(format!(
                    "the post_request hook raised {}",
                    describe_exception(py, &error)
                ));
                report(py, head, &fault);
            }
        }
        outcome
    }

    fn call_app(
        &self,
        py: Python<'_>,
        head: &RequestForm,
        environ: &Bound<'_, pyo3::types::PyDict>,
        responder: &Bound<'_, Responder>,
        start_response: &Bound<'_, PyAny>,
    ) -> Result<(), Fault> {
        let result = self
            .app
            .bind(py)
            .call1((environ, start_response))
            .map_err(Fault::Exception)?;
        let sent = send_result(py, responder, &result);
        // PEP 3333: close() is called whatever happened, once the response is done.
        let closed = close_result(&result);
        match (sent, closed) {
            (Err(fault), closed) => {
                if let Err(close_fault) = closed {
                    report(py, head, &close_fault);
                }
                Err(fault)
            }
            (Ok(()), Err(close_fault)) => {
                // The response already went out complete; the fault is only logged.
                report(py, head, &close_fault);
                Ok(())
            }
            (Ok(()), Ok(())) => Ok(()),
        }
    }
}

/// Walks the app's return value into the responder.
fn send_result(
    py: Python<'_>,
    responder: &Bound<'_, Responder>,
    result: &Bound<'_, PyAny>,
) -> Result<(), Fault> {
    if result.is_none() {
        return Err(Fault::Rule(
            "the application returned None instead of an iterable of bytes".into(),
        ));
    }
    if let Ok(list) = result.cast_exact::<PyList>() {
        let chunks = collect_bytes(list.iter())?;
        return responder
            .borrow_mut()
            .send_all(py, chunks)
            .map_err(Fault::from);
    }
    if let Ok(tuple) = result.cast_exact::<PyTuple>() {
        let chunks = collect_bytes(tuple.iter())?;
        return responder
            .borrow_mut()
            .send_all(py, chunks)
            .map_err(Fault::from);
    }
    if let Ok(wrapper) = result.cast_exact::<FileWrapper>() {
        if let Some((file, offset, len)) = sendfile_plan(py, &wrapper.borrow()) {
            let mut responder = responder.borrow_mut();
            if !responder.has_status() {
                return Err(Fault::Rule(
                    "the application returned without calling start_response()".into(),
                ));
            }
            responder.send_file(py, file, offset, len)?;
            return responder.finish(py).map_err(Fault::from);
        }
    }
    // len() is optional for an iterable (a generator has none): only a 1 counts.
    if result.len().ok() == Some(1) {
        responder.borrow_mut().set_single_chunk();
    }
    for item in result.try_iter().map_err(Fault::Exception)? {
        let item = item.map_err(Fault::Exception)?;
        let bytes = item.cast::<PyBytes>().map_err(|_| {
            Fault::Rule(format!(
                "the response body yielded a {}, not bytes",
                type_name(&item)
            ))
        })?;
        let mut responder = responder.borrow_mut();
        responder.send_body(py, bytes)?;
        if responder.headers_sent() && !responder.wants_body() {
            // HEAD: the head is out and no body will be sent; stop running the app's body.
            break;
        }
    }
    responder.borrow_mut().finish(py).map_err(Fault::from)
}

/// The items of a list or tuple body, checking each is bytes: a small body copied inline,
/// a larger one as pieces.
fn collect_bytes<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> Result<WholeBody, Fault> {
    let mut body = WholeBody::default();
    for (index, item) in items.enumerate() {
        let bytes = item.cast::<PyBytes>().map_err(|_| {
            Fault::Rule(format!(
                "item {index} of the response body is a {}, not bytes",
                type_name(&item)
            ))
        })?;
        let data = bytes.as_bytes();
        body.push(data, || {
            if data.len() < crate::wsgi::responder::ZERO_COPY_THRESHOLD {
                Bytes::copy_from_slice(data)
            } else {
                Bytes::from_owner(PyBackedBytes::from(bytes.clone()))
            }
        });
    }
    Ok(body)
}

/// When a file wrapper wraps a real file: a duplicate of its descriptor, the current
/// position and the length left, for sendfile. `None` means "iterate it instead".
fn sendfile_plan(py: Python<'_>, wrapper: &FileWrapper) -> Option<(File, u64, u64)> {
    let filelike = wrapper.filelike.bind(py);
    let plan = (|| -> PyResult<Option<(File, u64, u64)>> {
        let Some(fileno) = filelike.getattr_opt(pyo3::intern!(py, "fileno"))? else {
            return Ok(None);
        };
        let fd: i32 = fileno.call0()?.extract()?;
        if fd < 0 {
            return Ok(None);
        }
        // tell() is the logical position, which accounts for Python's read buffer.
        let offset: u64 = filelike
            .call_method0(pyo3::intern!(py, "tell"))?
            .extract()?;
        // SAFETY: `fd` was just returned by the file object's fileno(); the object (kept
        // alive by `wrapper`) holds it open for the whole of this borrow, which ends when
        // the descriptor has been duplicated below.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(owned) = borrowed.try_clone_to_owned() else {
            return Ok(None);
        };
        let file = File::from(owned);
        match file.metadata() {
            Ok(meta) if meta.is_file() => {
                let len = meta.len().saturating_sub(offset);
                Ok(Some((file, offset, len)))
            }
            _ => Ok(None),
        }
    })();
    // Any failure (no fileno on BytesIO, tell() on a pipe...) means: iterate in blocks.
    plan.unwrap_or(None)
}

/// Calls the iterable's `close()` if it has one.
fn close_result(result: &Bound<'_, PyAny>) -> Result<(), Fault> {
    let py = result.py();
    // An exact list or tuple (the common body) has no close(), and built-in types cannot
    // gain one; looking it up would raise and discard an AttributeError, message
    // formatting and all, on every request.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    match result.getattr_opt(pyo3::intern!(py, "close")) {
        Ok(Some(close)) => close.call0().map(drop).map_err(|error| {
            Fault::Rule(format!(
                "the response iterable's close() raised {}",
                describe_exception(py, &error)
            ))
        }),
        Ok(None) => Ok(()),
        Err(error) => Err(Fault::Exception(error)),
    }
}

fn label(head: &RequestForm) -> String {
    head.label()
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// Logs a fault as one error line (followed by the traceback for exceptions).
fn report(py: Python<'_>, head: &RequestForm, fault: &Fault) {
    match fault {
        Fault::Disconnected => {
            tracing::debug!("Client disconnected during {}", label(head));
        }
        Fault::Exception(error) if error.is_instance_of::<ClientDisconnected>(py) => {
            tracing::info!("Client disconnected during {}: {}", label(head), error);
        }
        Fault::Exception(error) => {
            tracing::error!(
                "Error handling request {}: {}",
                label(head),
                describe_exception(py, error)
            );
        }
        Fault::Rule(message) => {
            tracing::error!("Error handling request {}: {}", label(head), message);
        }
    }
}

/// `ExcType: message` followed by the formatted traceback.
pub fn describe_exception(py: Python<'_>, error: &PyErr) -> String {
    let summary = error.to_string();
    let traceback = (|| -> PyResult<String> {
        let module = py.import(pyo3::intern!(py, "traceback"))?;
        let lines = module.call_method1(
            pyo3::intern!(py, "format_exception"),
            (error.get_type(py), error.value(py), error.traceback(py)),
        )?;
        let text: String = pyo3::types::PyString::new(py, "")
            .call_method1(pyo3::intern!(py, "join"), (lines,))?
            .extract()?;
        Ok(text)
    })();
    match traceback {
        Ok(text) => format!("{summary}\n{}", text.trim_end()),
        Err(_) => summary,
    }
}
