//! Telling an HTTP/2 prior-knowledge connection (h2c) from HTTP/1.1 on cleartext, and
//! giving the bytes read while telling back to whichever engine serves it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::http::conn::SHUTDOWN_LINGER;
use crate::http2::PREFACE;

/// What the first bytes of a connection say.
pub enum Sniffed {
    /// The client sent the HTTP/2 preface (the bytes read are returned).
    Http2(BytesMut),
    /// Anything else: HTTP/1.x (the bytes read are returned).
    Http1(BytesMut),
    /// The client closed, sent nothing in time, or the server is stopping.
    Closed,
}

/// Reads until the bytes either match the whole h2 preface or stop matching it. Costs no
/// extra read for HTTP/1.1: the first read usually holds the whole request head, which the
/// HTTP/1.1 loop then parses from the returned buffer.
pub async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Sniffed {
    let mut buf = crate::http::buffers::take(crate::http::buffers::Kind::Read, 8 * 1024);
    let mut deadline = tokio::time::Instant::now() + timeout;
    let mut stopping = false;
    loop {
        // While the server stops, a connection that has sent nothing yet lingers briefly
        // (as the HTTP/1.1 loop does): its first request may be on its way.
        if !stopping && *shutdown.borrow_and_update() {
            stopping = true;
            deadline = deadline.min(tokio::time::Instant::now() + SHUTDOWN_LINGER);
        }
        let matched = buf.len().min(PREFACE.len());
        if buf[..matched] != PREFACE[..matched] {
            return Sniffed::Http1(buf);
        }
        if matched == PREFACE.len() {
            return Sniffed::Http2(buf);
        }
        // Biased, the read first: on a new connection it is usually ready at once, and the
        // other two are then never polled (polled, each registers with its timer or
        // notifier, and deregisters when dropped).
        let read = tokio::select! {
            biased;
            read = stream.read_buf(&mut buf) => read,
            () = tokio::time::sleep_until(deadline) => {
                return if buf.is_empty() { Sniffed::Closed } else { Sniffed::Http1(buf) };
            }
            changed = shutdown.changed(), if !stopping => {
                if changed.is_err() {
                    return Sniffed::Closed;
                }
                continue;
            }
        };
        match read {
            Ok(0) | Err(_) => return Sniffed::Closed,
            Ok(_) => {}
        }
    }
}

/// A stream that yields `prefix` before what is still to be read from `inner`.
pub struct Rewind<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    /// Replays `prefix`, then reads `inner`.
    pub fn new(prefix: BytesMut, inner: S) -> Self {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniff_bytes(sent: &'static [u8]) -> Sniffed {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(sent).await.unwrap();
        drop(client);
        let (_tx, mut rx) = watch::channel(false);
        sniff(&mut server, Duration::from_secs(1), &mut rx).await
    }

    #[tokio::test]
    async fn tells_the_preface_from_http1() {
        let mut sent = PREFACE.to_vec();
        sent.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        let sent: &'static [u8] = sent.leak();
        assert!(matches!(sniff_bytes(sent).await, Sniffed::Http2(b) if &b[..] == sent));
        assert!(matches!(
            sniff_bytes(b"GET / HTTP/1.1\r\n\r\n").await,
            Sniffed::Http1(b) if &b[..] == b"GET / HTTP/1.1\r\n\r\n"
        ));
        // A method that starts like the preface is still HTTP/1.1.
        assert!(matches!(
            sniff_bytes(b"PRIX / HTTP/1.1\r\n\r\n").await,
            Sniffed::Http1(_)
        ));
        assert!(matches!(sniff_bytes(b"").await, Sniffed::Closed));
    }

    #[tokio::test]
    async fn a_stop_lets_a_request_on_its_way_arrive() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let (_tx, mut rx) = watch::channel(true);
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            client
        });
        let sniffed = sniff(&mut server, Duration::from_secs(10), &mut rx).await;
        assert!(matches!(sniffed, Sniffed::Http1(_)));
        let _client = late.await.unwrap();
        // Nothing comes: the linger, not --header-timeout, ends the wait.
        let started = std::time::Instant::now();
        let (_quiet_client, mut quiet) = tokio::io::duplex(1024);
        assert!(matches!(
            sniff(&mut quiet, Duration::from_secs(10), &mut rx).await,
            Sniffed::Closed
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn rewind_replays_the_prefix() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut rewound = Rewind::new(BytesMut::from(&b"hello"[..]), server);
        let mut all = String::new();
        rewound.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
