//! `wsgi.file_wrapper`: lets an app hand the server a file to send efficiently.
//!
//! When an app returns a `FileWrapper` around a real file, the bridge sends it with
//! sendfile(2) from the file's current position and never copies it through Python. Any
//! other file-like object (BytesIO, a pipe, a socket file) is iterated in `blksize` blocks,
//! exactly as PEP 3333 describes the fallback.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Wraps a file-like object for efficient transmission.
#[pyclass(module = "tidegate._tidegate")]
pub struct FileWrapper {
    /// The wrapped file-like object.
    pub filelike: Py<PyAny>,
    /// Block size for iteration when sendfile cannot be used.
    pub blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: isize) -> PyResult<Self> {
        let blksize = usize::try_from(blksize)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| PyValueError::new_err("blksize must be a positive integer"))?;
        Ok(FileWrapper { filelike, blksize })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1(pyo3::intern!(py, "read"), (self.blksize,))?;
        let empty = match block.cast::<PyBytes>() {
            Ok(bytes) => bytes.as_bytes().is_empty(),
            // Not bytes: hand it on; the bridge reports the wrong type.
            Err(_) => block.is_truthy().map(|t| !t)?,
        };
        Ok(if empty { None } else { Some(block.unbind()) })
    }

    /// Closes the wrapped file (PEP 3333: the wrapper's close calls the file's close).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if let Some(close) = filelike.getattr_opt(pyo3::intern!(py, "close"))? {
            close.call0()?;
        }
        Ok(())
    }

    /// The wrapped file-like object.
    #[getter]
    fn filelike(&self, py: Python<'_>) -> Py<PyAny> {
        self.filelike.clone_ref(py)
    }

    /// The block size used when iterating.
    #[getter]
    fn blksize(&self) -> usize {
        self.blksize
    }
}
