//! Receiving the PROXY protocol header at the start of a connection (`--proxy-protocol`).
//!
//! The header is read before any protocol engine sees the socket (and, later, before a TLS
//! handshake). It is found by peeking (`recv` with `MSG_PEEK`) and then consumed with a
//! read of exactly its length, so not one byte of the request after it is taken from the
//! socket: the engine then reads the connection as if the header had never been there.
//!
//! The rule, in one place:
//!
//! | peer (`--forwarded-allow-ips`) | first bytes | outcome |
//! |---|---|---|
//! | allowed | a valid header | served; the header's source address is the peer |
//! | allowed | a valid `LOCAL`/`UNKNOWN` header | served; the peer stays the connection's |
//! | allowed | no header, or a malformed one | closed, WARNING logged |
//! | not allowed | a header (valid or not) | closed, WARNING logged |
//! | not allowed | no header | served as a direct client |
//! | any | nothing within `--header-timeout` | closed, DEBUG logged |
//!
//! The refusals are logged at WARNING because each means a misconfiguration that closes
//! every connection (a proxy that does not send the header, or whose address is missing
//! from `--forwarded-allow-ips`) or a client trying to pass itself off as a proxy.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::gateway::Peer;
use crate::proxy::protocol::{parse, Parsed, ProxyHeader};
use crate::proxy::AllowList;

/// A socket whose pending bytes can be peeked at without consuming them.
pub trait PeekSocket: AsyncRead + AsRawFd + Unpin {
    /// Waits until the socket may be readable.
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    /// Runs a non-blocking read operation on the raw socket, clearing readiness on
    /// `WouldBlock`.
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

impl PeekSocket for tokio::net::TcpStream {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(tokio::io::Interest::READABLE, f)
    }
}

impl PeekSocket for tokio::net::UnixStream {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        tokio::net::UnixStream::readable(self)
    }
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(tokio::io::Interest::READABLE, f)
    }
}

/// Why a connection was closed before it was served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Worth a WARNING: a proxy misconfigured, or a client posing as one.
    Warning(String),
    /// Worth a DEBUG line: the client left or said nothing in time.
    Quiet(String),
}

/// Takes the PROXY header off the start of `stream` (see the module documentation for the
/// rule). Returns the peer to serve the connection with, or why it must be closed.
pub async fn receive_header<S: PeekSocket>(
    stream: &mut S,
    peer: Peer,
    allow: &AllowList,
    timeout: Duration,
) -> Result<Peer, Refusal> {
    let trusted = allow.allows_peer(&peer);
    let outcome = tokio::time::timeout(timeout, peek_header(stream)).await;
    let parsed = match outcome {
        Err(_) => {
            return Err(Refusal::Quiet(format!(
                "no PROXY protocol header or request within --header-timeout {}s",
                timeout.as_secs_f64()
            )))
        }
        Ok(Err(error)) => return Err(Refusal::Quiet(error.to_string())),
        Ok(Ok(parsed)) => parsed,
    };
    match (parsed, trusted) {
        (Parsed::Complete { header, len }, true) => {
            let mut consumed = vec![0; len];
            stream
                .read_exact(&mut consumed)
                .await
                .map_err(|e| Refusal::Quiet(e.to_string()))?;
            Ok(match header {
                ProxyHeader::Proxied { source, .. } => Peer::Tcp(source),
                ProxyHeader::Local => peer,
            })
        }
        (Parsed::NotProxy, false) => Ok(peer),
        (Parsed::NotProxy, true) => Err(Refusal::Warning(
            "--proxy-protocol: the connection did not start with a PROXY protocol header".into(),
        )),
        (Parsed::Invalid(why), true) => Err(Refusal::Warning(format!(
            "--proxy-protocol: malformed PROXY protocol header: {why}"
        ))),
        (Parsed::Complete { .. } | Parsed::Invalid(_), false) => Err(Refusal::Warning(
            "sent a PROXY protocol header but is not in --forwarded-allow-ips".into(),
        )),
        (Parsed::Incomplete { .. }, _) => Err(Refusal::Quiet(
            "closed before the PROXY protocol header was complete".into(),
        )),
    }
}

/// Peeks until the first bytes are a whole header, no header, or a malformed one. An end of
/// stream while a header is incomplete gives `Incomplete`.
async fn peek_header<S: PeekSocket>(stream: &S) -> io::Result<Parsed> {
    let mut buf = vec![0u8; 256];
    loop {
        stream.readable().await?;
        let peeked = stream.try_read_io(|| {
            let n = peek(stream.as_raw_fd(), &mut buf)?;
            let parsed = parse(&buf[..n]);
            match parsed {
                // More bytes are needed and the kernel has none yet: report WouldBlock so
                // that the readiness is cleared and the next wait sleeps until new data
                // arrives (peeking leaves the bytes queued, so the socket stays readable).
                Parsed::Incomplete { at_least } if n > 0 && at_least > n && n < buf.len() => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                other => Ok((n, other)),
            }
        });
        match peeked {
            Ok((0, _)) => return Ok(Parsed::Incomplete { at_least: 1 }),
            Ok((n, Parsed::Incomplete { at_least })) if n == buf.len() => {
                // The header is longer than the buffer (version 2 with TLVs): grow it.
                buf.resize(at_least.max(buf.len() * 2).min(64 * 1024 + 16), 0);
            }
            Ok((_, parsed)) => return Ok(parsed),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
}

/// `recv(MSG_PEEK)`: copies the queued bytes without consuming them.
fn peek(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, writable buffer of `buf.len()` bytes for the whole call,
    // and `fd` is an open socket owned by the caller's stream.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn loopback() -> Peer {
        Peer::Tcp("127.0.0.1:5000".parse().unwrap())
    }

    #[test]
    fn a_header_sent_in_pieces_is_consumed_exactly() {
        runtime().block_on(async {
            let (mut client, mut server) = pair().await;
            let writer = tokio::spawn(async move {
                for piece in [
                    &b"PRO"[..],
                    b"XY TCP4 192.0.2.7 ",
                    b"10.0.0.1 1234 80\r",
                    b"\nGET /",
                ] {
                    client.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                client
            });
            let peer = receive_header(
                &mut server,
                loopback(),
                &AllowList::default(),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            assert!(matches!(peer, Peer::Tcp(a) if a.to_string() == "192.0.2.7:1234"));
            let _client = writer.await.unwrap();
            let mut rest = [0u8; 5];
            server.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"GET /");
        });
    }

    #[test]
    fn refusals() {
        runtime().block_on(async {
            let untrusted = AllowList::parse("10.0.0.1").unwrap();
            let (mut client, mut server) = pair().await;
            client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            // From an allowed peer, a missing header is refused.
            let refused = receive_header(
                &mut server,
                loopback(),
                &AllowList::default(),
                Duration::from_secs(5),
            )
            .await;
            assert!(matches!(refused, Err(Refusal::Warning(_))));
            // From another peer, it is a plain client, and nothing was consumed.
            let peer =
                receive_header(&mut server, loopback(), &untrusted, Duration::from_secs(5)).await;
            assert!(peer.is_ok());
            let mut first = [0u8; 3];
            server.read_exact(&mut first).await.unwrap();
            assert_eq!(&first, b"GET");

            let (mut client, mut server) = pair().await;
            client
                .write_all(b"PROXY TCP4 192.0.2.7 10.0.0.1 1234 80\r\n")
                .await
                .unwrap();
            let refused =
                receive_header(&mut server, loopback(), &untrusted, Duration::from_secs(5)).await;
            assert!(
                matches!(refused, Err(Refusal::Warning(w)) if w.contains("--forwarded-allow-ips"))
            );

            let (mut client, mut server) = pair().await;
            client.write_all(b"PROXY TCP4 nonsense\r\n").await.unwrap();
            let refused = receive_header(
                &mut server,
                loopback(),
                &AllowList::default(),
                Duration::from_secs(5),
            )
            .await;
            assert!(matches!(refused, Err(Refusal::Warning(w)) if w.contains("malformed")));

            let (mut client, mut server) = pair().await;
            client.write_all(b"PROXY TCP4").await.unwrap();
            let refused = receive_header(
                &mut server,
                loopback(),
                &AllowList::default(),
                Duration::from_millis(100),
            )
            .await;
            assert!(matches!(refused, Err(Refusal::Quiet(w)) if w.contains("--header-timeout")));
            drop(client);
        });
    }
}
