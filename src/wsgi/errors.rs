//! `wsgi.errors`: a text stream whose lines go to the error log.
//!
//! One object is shared by every request (PEP 3333 allows it, and it saves an allocation
//! per request). Writes are split into lines; a partial line waits for its newline or a
//! `flush()`, so a traceback written piecewise still arrives as readable lines.

use std::sync::Mutex;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The `wsgi.errors` stream.
#[pyclass(module = "tidegate._tidegate")]
pub struct ErrorStream {
    partial: Mutex<String>,
}

impl ErrorStream {
    /// A stream with nothing buffered.
    pub fn new() -> Self {
        ErrorStream {
            partial: Mutex::new(String::new()),
        }
    }

    fn emit(line: &str) {
        tracing::warn!(target: "wsgi.errors", "[wsgi.errors] {}", line.trim_end_matches('\r'));
    }

    fn partial(&self) -> std::sync::MutexGuard<'_, String> {
        // A panic while logging cannot leave the String half-written in a way that matters.
        self.partial.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for ErrorStream {
    fn default() -> Self {
        Self::new()
    }
}

#[pymethods]
impl ErrorStream {
    /// Writes text; complete lines go to the error log at once.
    fn write(&self, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = text.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "wsgi.errors.write() takes str, not {}",
                text.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        let text = text.to_cow()?;
        let mut partial = self.partial();
        partial.push_str(&text);
        while let Some(newline) = partial.find('\n') {
            Self::emit(&partial[..newline]);
            partial.drain(..=newline);
        }
        Ok(text.chars().count())
    }

    /// Writes each string of an iterable.
    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    /// Sends a pending partial line to the log.
    fn flush(&self) {
        let mut partial = self.partial();
        if !partial.is_empty() {
            Self::emit(&partial);
            partial.clear();
        }
    }
}
