//! A client socket that counts the bytes it reads and writes (`tidegate_received_bytes_total`,
//! `tidegate_sent_bytes_total`): one relaxed add per read or write call, nothing when
//! metrics are off beyond a pointer check. Bytes sent with sendfile(2) are counted where
//! sendfile is called (`crate::http::writer::sendfile_all`).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use std::time::Duration;

use crate::http::conn::{RawSocket, Socket};
use crate::proxy::connection::PeekSocket;

/// A socket whose traffic is counted.
pub struct Metered<S>(S);

impl<S> Metered<S> {
    /// Counts the traffic of `socket`.
    pub fn new(socket: S) -> Self {
        Metered(socket)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            super::bytes_in(buf.filled().len() - before);
        }
        polled
    }
}

fn count_written(polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    if let Poll::Ready(Ok(n)) = polled {
        super::bytes_out(n as u64);
    }
    polled
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        count_written(Pin::new(&mut self.0).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        count_written(Pin::new(&mut self.0).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsRawFd> AsRawFd for Metered<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl<S: AsFd> AsFd for Metered<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl<S: RawSocket> RawSocket for Metered<S> {
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        self.0.writable()
    }

    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.0.try_write_io(f)
    }
}

impl<S: Socket> Socket for Metered<S> {
    /// The inner socket's sendfile(2) counts what it sends (`sendfile_all`).
    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        timeout: Duration,
    ) -> impl std::future::Future<Output = io::Result<u64>> + Send {
        self.0.send_file(file, offset, len, timeout)
    }
}

impl<S: PeekSocket> PeekSocket for Metered<S> {
    /// Bytes peeked and consumed for a PROXY header are not counted: they are not HTTP.
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        self.0.readable()
    }

    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.0.try_read_io(f)
    }
}
