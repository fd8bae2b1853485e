//! Accepting connections on a listener and serving each in its own task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::gateway::{ListenerInfo, Peer};
use crate::http::conn::{serve_cleartext, serve_connection, RawSocket, Socket};
use crate::http::ConnContext;
use crate::http2::HttpVersions;
use crate::metrics::socket::Metered;
use crate::server::bind::Listener;
use crate::server::stop::StopWait;
use crate::server::WireProtocol;

/// Counts open connections, so a stop can wait for them and `--max-connections` can hold
/// new ones in the backlog.
pub struct ConnectionCount {
    open: AtomicUsize,
    limit: usize,
    /// Notified when the last connection closes.
    closed: Notify,
    /// Notified when a connection closes at the limit.
    below_limit: Notify,
}

/// Held by a connection task while the connection is open.
pub struct ConnectionGuard(Arc<ConnectionCount>);

impl ConnectionCount {
    /// A counter allowing `limit` open connections (0: no limit).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ConnectionCount {
            open: AtomicUsize::new(0),
            limit: if limit == 0 { usize::MAX } else { limit },
            closed: Notify::new(),
            below_limit: Notify::new(),
        })
    }

    /// Resolves once a new connection may be accepted.
    pub async fn available(&self) {
        loop {
            let freed = self.below_limit.notified();
            if self.open.load(Ordering::SeqCst) < self.limit {
                return;
            }
            freed.await;
        }
    }

    /// Records a new open connection.
    pub fn enter(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        crate::metrics::connection_opened();
        ConnectionGuard(Arc::clone(self))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Resolves when no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let before = self.0.open.fetch_sub(1, Ordering::SeqCst);
        crate::metrics::connection_closed();
        if before == 1 {
            self.0.closed.notify_waiters();
        }
        if before == self.0.limit {
            self.0.below_limit.notify_waiters();
        }
    }
}

/// Serves `listener` until shutdown.
pub async fn accept_loop(
    listener: Listener,
    ctx: Arc<ConnContext>,
    connections: Arc<ConnectionCount>,
) {
    match listener {
        Listener::Tcp(std_listener) => {
            let nodelay_inherited = nodelay_on_listener(&std_listener);
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(listener) => listener,
                Err(error) => {
                    return tracing::error!(
                        "Could not use listener {}: {error}",
                        ctx.listener.display
                    )
                }
            };
            let (listener, info) = (&listener, &ctx.listener);
            serve_accepted(&ctx, &connections, move || async move {
                let (stream, peer) = listener.accept().await?;
                if !nodelay_inherited {
                    let _ = stream.set_nodelay(true);
                }
                // The address the client reached matters only on a wildcard listener:
                // elsewhere it is the listener's, and asking costs a getsockname(2).
                let server = if is_wildcard(info) {
                    server_address(info, stream.local_addr().ok())
                } else {
                    Arc::clone(info)
                };
                Ok((Metered::new(stream), Peer::Tcp(peer), server))
            })
            .await;
        }
        Listener::Unix(std_listener, _) => {
            let listener = match tokio::net::UnixListener::from_std(std_listener) {
                Ok(listener) => listener,
                Err(error) => {
                    return tracing::error!(
                        "Could not use listener {}: {error}",
                        ctx.listener.display
                    )
                }
            };
            let (listener, info) = (&listener, &ctx.listener);
            serve_accepted(&ctx, &connections, move || async move {
                let (stream, _) = listener.accept().await?;
                Ok((Metered::new(stream), Peer::Unix, Arc::clone(info)))
            })
            .await;
        }
    }
}

/// Accepts connections with `accept` and serves each in its own task, until shutdown.
/// Returning drops the listener, so new connections are refused from then on.
async fn serve_accepted<S, F, Fut>(
    ctx: &Arc<ConnContext>,
    connections: &Arc<ConnectionCount>,
    mut accept: F,
) where
    S: Socket + RawSocket + crate::proxy::connection::PeekSocket,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<(S, Peer, Arc<ListenerInfo>)>>,
{
    // The waits for the stop and for every thread busy are kept across connections: a new
    // `changed()` or `notified()` per connection registered with its notifier when it was
    // polled and deregistered when dropped, two locks each (~670 instructions per
    // connection).
    let mut stop = StopWait::new(&ctx.stop_notice);
    let mut filled = std::pin::pin!(ctx.capacity.filled());
    loop {
        // Backpressure: take a new connection only when a Python thread is free for it and
        // the process is under --max-connections; until then it waits in the backlog.
        tokio::select! {
            () = async {
                connections.available().await;
                ctx.capacity.available().await;
            } => {}
            () = stop.stopped() => return,
        }
        tokio::select! {
            // Every thread got a request while we waited: stop accepting until one is free.
            // (`filled` returns only once it sees every thread busy, so a notice that came
            // while this loop waited above does not end a later wait early.)
            () = filled.as_mut() => {
                filled.set(ctx.capacity.filled());
                continue;
            }
            accepted = accept() => match accepted {
                Ok((stream, peer, server)) => {
                    let guard = connections.enter();
                    let ctx = Arc::clone(ctx);
                    // Boxed, so the task tokio allocates and moves holds a pointer rather
                    // than the connection's future (several KiB, HTTP/2 and TLS states
                    // included), which spawning copied twice and finishing once more.
                    match cleartext_http(&ctx) {
                        Some(sniff_h2) => tokio::spawn(Box::pin(serve_cleartext(
                            stream, peer, server, ctx, sniff_h2, guard,
                        ))),
                        None => tokio::spawn(Box::pin(serve_one(stream, peer, server, ctx, guard))),
                    };
                }
                Err(error) => accept_failed(&ctx.listener, error).await,
            },
            () = stop.stopped() => return,
        }
    }
}

/// For a listener whose connections are HTTP with nothing to take off first (no TLS, no
/// PROXY header), whether their first bytes must tell HTTP/2 from HTTP/1.1; `None` for
/// any other listener, whose connections [`serve_one`] serves.
fn cleartext_http(ctx: &ConnContext) -> Option<bool> {
    let cleartext = matches!(ctx.protocol, WireProtocol::Http)
        && !ctx.proxy.proxy_protocol
        && ctx.tls.is_none();
    match ctx.http2.versions {
        HttpVersions::Http1 if cleartext => Some(false),
        HttpVersions::Auto if cleartext => Some(true),
        _ => None,
    }
}

/// Serves one accepted connection with the listener's protocol, holding `guard` (the
/// connection's place in the open count) until it closes.
async fn serve_one<S>(
    mut stream: S,
    peer: Peer,
    server: Arc<ListenerInfo>,
    ctx: Arc<ConnContext>,
    guard: ConnectionGuard,
) where
    S: Socket + RawSocket + crate::proxy::connection::PeekSocket,
{
    // --proxy-protocol: the header comes off the socket before any protocol (or, later,
    // TLS) reads it, and names the peer.
    let Some(peer) = proxy_header(&mut stream, peer, &ctx).await else {
        return drop(guard);
    };
    // The protocols other than HTTP/1.1 are boxed where they start, so their (larger)
    // futures are not part of every connection's.
    match ctx.protocol {
        WireProtocol::Http => serve_http(stream, peer, server, ctx).await,
        WireProtocol::FastCgi => {
            Box::pin(crate::fastcgi::conn::serve_connection(stream, ctx)).await;
        }
        WireProtocol::Uwsgi => {
            Box::pin(crate::uwsgi::conn::serve_connection(stream, ctx)).await;
        }
    }
    drop(guard);
}

/// With `--proxy-protocol`, takes the PROXY header off a new connection and returns the
/// peer it names; `None` when the connection must be closed (the reason is logged).
/// Without it, the peer as accepted.
async fn proxy_header<S: crate::proxy::connection::PeekSocket>(
    stream: &mut S,
    peer: Peer,
    ctx: &ConnContext,
) -> Option<Peer> {
    use crate::proxy::connection::{receive_header, Refusal};
    if !ctx.proxy.proxy_protocol {
        return Some(peer);
    }
    let label = match &peer {
        Peer::Tcp(address) => address.to_string(),
        Peer::Unix => "unix socket".to_string(),
    };
    match receive_header(stream, peer, &ctx.proxy.allow, ctx.limits.header_timeout).await {
        Ok(peer) => Some(peer),
        Err(Refusal::Warning(why)) => {
            tracing::warn!("Closed connection from {label}: {why}");
            None
        }
        Err(Refusal::Quiet(why)) => {
            tracing::debug!("Closed connection from {label}: {why}");
            None
        }
    }
}

/// Serves an HTTP connection: TLS first when configured, then HTTP/2 or HTTP/1.1 as ALPN,
/// `--http` or (cleartext `--http auto`) the connection preface says.
async fn serve_http<S: Socket>(
    stream: S,
    peer: Peer,
    server: Arc<ListenerInfo>,
    ctx: Arc<ConnContext>,
) {
    let versions = ctx.http2.versions;
    if let Some(acceptor) = ctx.tls.clone() {
        return Box::pin(serve_tls(acceptor, stream, peer, server, ctx)).await;
    }
    match versions {
        HttpVersions::Http2 => Box::pin(crate::http2::conn::serve(stream, peer, server, ctx)).await,
        HttpVersions::Http1 | HttpVersions::Auto => {
            let sniff_h2 = matches!(versions, HttpVersions::Auto);
            serve_cleartext(stream, peer, server, ctx, sniff_h2, ()).await;
        }
    }
}

/// Serves a connection over TLS: HTTP/2 or HTTP/1.1 as ALPN or `--http` says.
async fn serve_tls<S: Socket>(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: S,
    peer: Peer,
    server: Arc<ListenerInfo>,
    ctx: Arc<ConnContext>,
) {
    let timeout = ctx.limits.header_timeout;
    let Some(stream) = crate::tls::accept(&acceptor, stream, timeout, &peer).await else {
        return;
    };
    let h2 = match ctx.http2.versions {
        HttpVersions::Http1 => false,
        HttpVersions::Http2 => true,
        HttpVersions::Auto => crate::tls::negotiated_protocol(&stream) == Some(b"h2"),
    };
    if h2 {
        crate::http2::conn::serve(stream, peer, server, ctx).await;
    } else {
        serve_connection(stream, peer, server, ctx).await;
    }
}

/// Sets TCP_NODELAY on a listening socket so the connections it accepts are born with it
/// (Linux copies the listener's TCP options to each accepted socket), which saves a
/// setsockopt(2) per connection. Returns whether accepted sockets can rely on it; when not
/// (another system, or the call failed), each connection sets it itself.
fn nodelay_on_listener(listener: &std::net::TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

/// Whether the listener is bound to a wildcard address (0.0.0.0, ::).
fn is_wildcard(listener: &ListenerInfo) -> bool {
    listener.server_name == "0.0.0.0" || listener.server_name == "::"
}

/// The server address a connection reports: the listener's, unless the listener is bound
/// to a wildcard address (0.0.0.0, ::), where the address the client reached says more.
fn server_address(
    listener: &Arc<ListenerInfo>,
    local: Option<std::net::SocketAddr>,
) -> Arc<ListenerInfo> {
    match local {
        Some(local) if is_wildcard(listener) => Arc::new(ListenerInfo {
            server_name: local.ip().to_canonical().to_string(),
            server_port: listener.server_port.clone(),
            url_scheme: listener.url_scheme,
            display: listener.display.clone(),
            environ: Default::default(),
        }),
        _ => Arc::clone(listener),
    }
}

/// accept() failures are usually transient (out of file descriptors, a connection reset
/// before it was accepted): log and pause briefly instead of spinning.
async fn accept_failed(listener: &ListenerInfo, error: std::io::Error) {
    tracing::error!("accept() failed on {}: {error}", listener.display);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The saving rests on Linux handing the listener's TCP_NODELAY to accepted sockets:
    /// if that ever stopped, small responses written in pieces would wait on Nagle.
    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inherited = nodelay_on_listener(&listener);
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        if inherited {
            assert!(accepted.nodelay().unwrap());
        }
        assert_eq!(inherited, cfg!(target_os = "linux"));
    }
}
