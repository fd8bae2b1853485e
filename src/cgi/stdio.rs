//! The CGI request body on stdin and the CGI response on stdout.
//!
//! Both are plain blocking I/O on the calling thread: the bridge releases the GIL around
//! body reads, and a CGI process has no other request to serve while it waits.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use pyo3::Python;

use crate::cgi::response::encode_head;
use crate::gateway::{
    BodyError, BodySource, Disconnected, ResponseEnd, ResponseHead, ResponseSink,
};

/// Bytes asked of stdin per read, and the size of the stdout buffer.
const IO_SIZE: usize = 64 * 1024;

/// The request body: the first `CONTENT_LENGTH` bytes of stdin, never more (RFC 3875: the
/// server need not close stdin at the end of the body).
pub struct StdinBody {
    remaining: u64,
}

impl StdinBody {
    /// A body of `length` bytes.
    pub fn new(length: u64) -> Self {
        StdinBody { remaining: length }
    }
}

impl BodySource for StdinBody {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let want = self.remaining.min(IO_SIZE as u64) as usize;
        let mut buf = vec![0; want];
        loop {
            match io::stdin().lock().read(&mut buf) {
                // The front server closed stdin before CONTENT_LENGTH bytes came.
                Ok(0) => return Err(BodyError::Disconnected),
                Ok(n) => {
                    self.remaining -= n as u64;
                    buf.truncate(n);
                    return Ok(Some(Bytes::from(buf)));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(BodyError::Disconnected),
            }
        }
    }
}

/// How the response on stdout ended, as [`crate::cgi::run`] reads it afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not ended yet.
    Pending,
    /// Every byte the head promised was written.
    Complete,
    /// The response stopped after its head: the app failed, or stdout was closed.
    Aborted,
}

/// Shared view of the [`Outcome`], readable once the sink has been handed to the bridge.
#[derive(Clone, Default)]
pub struct OutcomeCell(Arc<AtomicU8>);

impl OutcomeCell {
    fn set(&self, outcome: Outcome) {
        self.0.store(outcome as u8, Ordering::SeqCst);
    }

    /// The outcome so far.
    pub fn get(&self) -> Outcome {
        match self.0.load(Ordering::SeqCst) {
            1 => Outcome::Complete,
            2 => Outcome::Aborted,
            _ => Outcome::Pending,
        }
    }
}

/// Writes the CGI response to stdout.
///
/// The head waits in the buffer for the first piece of body, so the two leave in one
/// write; each piece of body is then flushed at once (PEP 3333: a server must not delay a
/// block the app yielded), and so is the end of the response.
pub struct StdoutSink {
    out: BufWriter<File>,
    wants_body: bool,
    outcome: OutcomeCell,
}

impl StdoutSink {
    /// A sink on a duplicate of the stdout descriptor (so Rust's own line-buffered
    /// `Stdout` never sees the body), and the cell that tells how the response ended.
    pub fn open() -> io::Result<(Self, OutcomeCell)> {
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        let outcome = OutcomeCell::default();
        let sink = StdoutSink {
            out: BufWriter::with_capacity(IO_SIZE, File::from(fd)),
            wants_body: true,
            outcome: outcome.clone(),
        };
        Ok((sink, outcome))
    }

    /// The sink for a request; `wants_body` is false for HEAD, whose response must carry
    /// no body (RFC 3875 section 4.3.3).
    pub fn for_request(mut self, wants_body: bool) -> Self {
        self.wants_body = wants_body;
        self
    }

    /// Answers a request the environment does not describe properly.
    pub fn bad_request(mut self) -> io::Result<()> {
        let body = b"Bad Request";
        let head = ResponseHead {
            status: 400,
            status_line: Bytes::from_static(b"400 Bad Request"),
            headers: vec![(
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
            content_length: Some(body.len() as u64),
            close_connection: true,
        };
        let mut bytes = Vec::new();
        encode_head(&mut bytes, &head);
        bytes.extend_from_slice(body);
        self.out.write_all(&bytes)?;
        self.out.flush()?;
        self.outcome.set(Outcome::Complete);
        Ok(())
    }

    fn write(&mut self, bytes: &[u8], flush: bool) -> Result<(), Disconnected> {
        let written =
            self.out
                .write_all(bytes)
                .and_then(|()| if flush { self.out.flush() } else { Ok(()) });
        written.map_err(|error| {
            tracing::debug!("Writing the CGI response failed: {error}");
            self.outcome.set(Outcome::Aborted);
            Disconnected
        })
    }
}

impl ResponseSink for StdoutSink {
    fn send_head(&mut self, _py: Python<'_>, head: ResponseHead) -> Result<(), Disconnected> {
        let mut bytes = Vec::new();
        encode_head(&mut bytes, &head);
        self.write(&bytes, false)
    }

    fn send_chunk(&mut self, py: Python<'_>, chunk: Bytes) -> Result<(), Disconnected> {
        py.detach(|| self.write(&chunk, true))
    }

    fn send_file(
        &mut self,
        py: Python<'_>,
        file: File,
        offset: u64,
        len: u64,
    ) -> Result<(), Disconnected> {
        // pread(2) leaves the app's file position alone (the descriptor is a duplicate
        // sharing it); the copy goes through the stdout buffer.
        py.detach(|| {
            let mut buf = vec![0; IO_SIZE];
            let mut done = 0u64;
            while done < len {
                let want = (len - done).min(IO_SIZE as u64) as usize;
                let n = match file.read_at(&mut buf[..want], offset + done) {
                    Ok(0) => {
                        tracing::error!("The file ended {} bytes early", len - done);
                        self.outcome.set(Outcome::Aborted);
                        return Err(Disconnected);
                    }
                    Ok(n) => n,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        tracing::error!("Reading the file to send failed: {error}");
                        self.outcome.set(Outcome::Aborted);
                        return Err(Disconnected);
                    }
                };
                self.write(&buf[..n], false)?;
                done += n as u64;
            }
            self.write(&[], true)
        })
    }

    fn finish(&mut self, _py: Python<'_>, end: ResponseEnd) {
        // What the app produced before it failed still goes out: the front server sees a
        // response shorter than promised, and the exit status says why.
        let flushed = self.write(&[], true);
        let outcome = match (end, flushed) {
            (ResponseEnd::Complete, Ok(())) => Outcome::Complete,
            _ => Outcome::Aborted,
        };
        self.outcome.set(outcome);
    }

    fn wants_body(&self) -> bool {
        self.wants_body
    }
}
