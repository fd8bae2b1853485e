//! `wsgi.input`: the request body as a stream that never loses a byte.
//!
//! The stream keeps one buffer of received-but-unread bytes and pulls more from the
//! engine's [`BodySource`] only when a call needs them, with the GIL released while it
//! waits. Every method (`read`, `readline`, `readlines`, iteration) takes from the same
//! buffer, so any mix of calls sees each byte once, and the source never yields more than
//! the body, so nothing past it is ever read. A body that ends early (the client went
//! away) raises [`ClientDisconnected`] rather than looking like a short body.

use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::gateway::{BodyError, BodySource};

pyo3::create_exception!(
    tidegate,
    ClientDisconnected,
    PyOSError,
    "The client closed its connection before the request body was complete."
);

/// The `wsgi.input` stream of one request.
#[pyclass(module = "tidegate._tidegate")]
pub struct Input {
    buffer: Bytes,
    source: Option<Box<dyn BodySource>>,
    failure: Option<BodyError>,
}

impl Input {
    /// A stream over `received` (already read) followed by what `source` yields.
    pub fn new(received: Bytes, source: Option<Box<dyn BodySource>>) -> Self {
        Input {
            buffer: received,
            source,
            failure: None,
        }
    }

    /// Pulls the next piece of the body into the (empty) buffer. Returns false at the end.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        debug_assert!(self.buffer.is_empty());
        if let Some(failure) = &self.failure {
            return Err(body_error(failure));
        }
        let Some(source) = self.source.as_mut() else {
            return Ok(false);
        };
        loop {
            match crate::metrics::detach_timed(py, || source.next_chunk()) {
                Ok(Some(chunk)) if chunk.is_empty() => continue,
                Ok(Some(chunk)) => {
                    self.buffer = chunk;
                    return Ok(true);
                }
                Ok(None) => {
                    self.source = None;
                    return Ok(false);
                }
                Err(failure) => {
                    let error = body_error(&failure);
                    self.source = None;
                    self.failure = Some(failure);
                    return Err(error);
                }
            }
        }
    }

    /// Takes up to `limit` buffered bytes (all of them with `None`).
    fn take(&mut self, limit: Option<usize>) -> Bytes {
        match limit {
            Some(limit) if limit < self.buffer.len() => self.buffer.split_to(limit),
            _ => std::mem::take(&mut self.buffer),
        }
    }

    fn read_bytes(&mut self, py: Python<'_>, size: Option<usize>) -> PyResult<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let want = size.map(|s| s - out.len());
            let piece = self.take(want);
            out.extend_from_slice(&piece);
            if size == Some(out.len()) || !self.fill(py)? {
                return Ok(out);
            }
        }
    }

    fn readline_bytes(&mut self, py: Python<'_>, size: Option<usize>) -> PyResult<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let room = size.map_or(usize::MAX, |s| s - out.len());
            let window = room.min(self.buffer.len());
            if let Some(newline) = self.buffer[..window].iter().position(|&b| b == b'\n') {
                out.extend_from_slice(&self.buffer.split_to(newline + 1));
                return Ok(out);
            }
            out.extend_from_slice(&self.take(Some(window)));
            if size == Some(out.len()) || !self.fill(py)? {
                return Ok(out);
            }
        }
    }
}

fn body_error(failure: &BodyError) -> PyErr {
    match failure {
        BodyError::Disconnected => ClientDisconnected::new_err(failure.to_string()),
        BodyError::Malformed(_) | BodyError::TooLarge(_) => PyOSError::new_err(failure.to_string()),
        BodyError::TimedOut => PyTimeoutError::new_err(failure.to_string()),
    }
}

/// `None` or a negative size means "no limit", as for `io` streams.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    /// Reads up to `size` bytes (everything left when `size` is omitted, None or negative).
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let size = limit(size);
        if size == Some(0) {
            return Ok(PyBytes::new(py, b""));
        }
        // Fast paths, one copy straight into the bytes object: the buffer already holds
        // what is asked for, or all that is left of a body received whole (without a size,
        // `read_bytes` would first gather it into a `Vec`, a second copy).
        match size {
            Some(size) if self.buffer.len() >= size => {
                let piece = self.buffer.split_to(size);
                return Ok(PyBytes::new(py, &piece));
            }
            None if self.source.is_none() && self.failure.is_none() => {
                let rest = std::mem::take(&mut self.buffer);
                return Ok(PyBytes::new(py, &rest));
            }
            _ => {}
        }
        let data = self.read_bytes(py, size)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Reads one line, with its newline, or at most `size` bytes of it.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let size = limit(size);
        if size == Some(0) {
            return Ok(PyBytes::new(py, b""));
        }
        let data = self.readline_bytes(py, size)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Reads lines until the body ends or their total size reaches `hint` (when positive).
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.readline_bytes(py, None)?;
            if line.is_empty() {
                return Ok(lines);
            }
            total += line.len();
            lines.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                return Ok(lines);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline_bytes(py, None)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}
