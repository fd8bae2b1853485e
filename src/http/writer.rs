//! Writing response bytes: a queue that coalesces small pieces and sends large ones
//! without copying, and sendfile(2) for files.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::http::buffers;
use crate::http::conn::RawSocket;

/// Pieces below this size are copied into the staging buffer: one write beats many.
pub const COPY_BELOW: usize = 4 * 1024;
/// Most pieces handed to one writev(2).
const MAX_IOV: usize = 64;

/// Bytes waiting to be written, in order.
pub struct OutQueue {
    staging: BytesMut,
    queue: VecDeque<Bytes>,
}

impl Default for OutQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl OutQueue {
    /// An empty queue.
    pub fn new() -> Self {
        OutQueue {
            staging: buffers::take(buffers::Kind::Staging, 4096),
            queue: VecDeque::new(),
        }
    }

    /// Hands the staging buffer to the thread's next connection.
    pub fn recycle(self) {
        buffers::give_back(buffers::Kind::Staging, self.staging);
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.staging.is_empty() && self.queue.is_empty()
    }

    /// The buffer small writes go to (after everything already queued).
    pub fn staging(&mut self) -> &mut BytesMut {
        &mut self.staging
    }

    /// Queues a copy of `bytes`.
    pub fn put_slice(&mut self, bytes: &[u8]) {
        self.staging.extend_from_slice(bytes);
    }

    /// Queues `bytes`, copying small pieces and sharing large ones.
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.len() < COPY_BELOW {
            self.staging.extend_from_slice(&bytes);
        } else {
            self.seal();
            self.queue.push_back(bytes);
        }
    }

    fn seal(&mut self) {
        if !self.staging.is_empty() {
            let sealed = self.staging.split().freeze();
            self.queue.push_back(sealed);
        }
    }

    /// Writes what the socket takes now, without waiting; returns whether everything queued
    /// went out (and the stream was flushed). The rest is left for [`flush`](Self::flush).
    pub fn write_now<W: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut W,
        cx: &mut Context<'_>,
    ) -> io::Result<bool> {
        // Only the staging buffer alone is written here; a queue of shared pieces takes
        // writev, which `flush` does.
        if self.queue.is_empty() && !self.staging.is_empty() {
            match Pin::new(&mut *stream).poll_write(cx, &self.staging) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => self.staging.advance(written),
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(false),
            }
        }
        if !self.is_empty() {
            return Ok(false);
        }
        // Plain sockets hold nothing back; TLS may keep its last record until flushed.
        match Pin::new(stream).poll_flush(cx) {
            Poll::Ready(result) => result.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    /// Writes everything queued; fails if one write makes no progress within `timeout`
    /// (the client stopped reading).
    pub async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut W,
        timeout: Duration,
    ) -> io::Result<()> {
        // The common case, a response small enough to be staged whole, is written straight
        // from the staging buffer: no queue entry (whose freeze makes the buffer shared, an
        // allocation) and no iovec array.
        while self.queue.is_empty() && !self.staging.is_empty() {
            let written = within(timeout, stream.write(&self.staging))
                .await
                .map_err(|_| write_timed_out())??;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.staging.advance(written);
        }
        self.seal();
        while !self.queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .queue
                .iter()
                .take(MAX_IOV)
                .map(|b| IoSlice::new(b))
                .collect();
            let mut written = within(timeout, stream.write_vectored(&slices))
                .await
                .map_err(|_| write_timed_out())??;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while written > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                if written >= front.len() {
                    written -= front.len();
                    self.queue.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        flush_within(stream, timeout).await
    }
}

/// Flushes `stream`, failing if that makes no progress within `timeout`. Plain sockets hold
/// nothing back and are done at the first poll; TLS may keep its last record until flushed.
pub async fn flush_within<W: AsyncWrite + Unpin>(
    stream: &mut W,
    timeout: Duration,
) -> io::Result<()> {
    within(timeout, stream.flush())
        .await
        .map_err(|_| write_timed_out())?
}

/// Runs `future` with a time limit, arming the timer only if the first poll does not finish
/// it. A write to a socket with room, the common case, is done at once; a timer armed for it
/// cost a clock read, a runtime handle and a timer entry (~250 instructions) per write.
pub async fn within<F: std::future::Future>(
    timeout: Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut future = std::pin::pin!(future);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => tokio::time::timeout(timeout, future).await,
    }
}

/// The error for a client that stopped reading.
pub fn write_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client stopped reading (--write-timeout)",
    )
}

/// Sends `len` bytes of `file` from `offset` with sendfile(2). Returns the bytes sent,
/// fewer than `len` only if the file ended early.
pub async fn sendfile_all<S: RawSocket>(
    socket: &S,
    file: &File,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<u64> {
    let mut position =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut sent = 0u64;
    let out_fd = socket.as_raw_fd();
    let in_fd = file.as_raw_fd();
    while sent < len {
        within(timeout, socket.writable())
            .await
            .map_err(|_| write_timed_out())??;
        let step = (len - sent).min(1 << 30) as usize;
        let result = socket.try_write_io(|| {
            // SAFETY: both descriptors are open for the duration of the call (`socket` and
            // `file` are borrowed), and `position` is a valid, exclusively borrowed off_t.
            let n = unsafe { libc::sendfile(out_fd, in_fd, &mut position, step) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match result {
            Ok(0) => return Ok(sent),
            Ok(n) => {
                sent += n;
                crate::metrics::bytes_out(n);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(sent)
}

/// Size of the reads [`copy_file`] makes.
const COPY_CHUNK: usize = 64 * 1024;

/// Sends `len` bytes of `file` from `offset` by reading and writing, for streams that cannot
/// take sendfile(2) (TLS encrypts what it writes). Returns the bytes sent, fewer than `len`
/// only if the file ended early.
pub async fn copy_file<W: AsyncWrite + Unpin>(
    stream: &mut W,
    file: &File,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<u64> {
    let mut sent = 0u64;
    let mut buf = vec![0u8; COPY_CHUNK.min(len as usize)];
    while sent < len {
        let want = (len - sent).min(buf.len() as u64) as usize;
        let n = read_file_at(file, &mut buf[..want], offset + sent)?;
        if n == 0 {
            break;
        }
        tokio::time::timeout(timeout, stream.write_all(&buf[..n]))
            .await
            .map_err(|_| write_timed_out())??;
        sent += n as u64;
    }
    flush_within(stream, timeout).await?;
    Ok(sent)
}

/// Reads from `file` at `offset` (pread(2): the app's file position is left alone).
pub fn read_file_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, offset) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
