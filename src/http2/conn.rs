//! One HTTP/2 connection: the settings handshake, then each stream served in its own task
//! while this task keeps the connection's I/O moving.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::gateway::{ListenerInfo, Peer};
use crate::http::ConnContext;
use crate::http2::stream::serve_stream;

/// Bytes of response data h2 may buffer per stream beyond what the client's window takes.
const MAX_SEND_BUFFER: usize = 256 * 1024;

/// The largest header list a request may send: every field at its size limit, with the
/// 32 bytes of overhead per field that HPACK counts (RFC 9113 section 6.5.2).
fn header_list_limit(limits: &crate::http::HttpLimits) -> u32 {
    if limits.field_size == 0 {
        return 1 << 20;
    }
    let per_field = limits.field_size as u64 + 32;
    (limits.fields as u64 * per_field).min(u32::MAX as u64) as u32
}

/// Serves an HTTP/2 connection until the client closes it, it goes idle past
/// `--keep-alive`, or the server stops (GOAWAY, then open streams finish).
pub async fn serve<S>(io: S, peer: Peer, listener: Arc<ListenerInfo>, ctx: Arc<ConnContext>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = ctx.http2;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        .initial_window_size(settings.initial_window_size)
        .initial_connection_window_size(settings.connection_window_size())
        .max_header_list_size(header_list_limit(&ctx.limits))
        .max_send_buffer_size(MAX_SEND_BUFFER);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut connection = match tokio::time::timeout(ctx.limits.header_timeout, handshake).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!("HTTP/2 handshake failed: {error}");
            return;
        }
        Err(_) => {
            tracing::debug!("HTTP/2 handshake not complete within --header-timeout");
            return;
        }
    };
    let active = Arc::new(AtomicUsize::new(0));
    let peer_environ = Arc::new(crate::wsgi::environ::PeerEnviron::default());
    let mut shutdown = ctx.shutdown.clone();
    let mut closing = *shutdown.borrow_and_update();
    if closing {
        connection.graceful_shutdown();
    }
    loop {
        tokio::select! {
            next = connection.accept() => match next {
                Some(Ok((request, respond))) => {
                    active.fetch_add(1, Ordering::SeqCst);
                    let active = StreamGuard(Arc::clone(&active));
                    let (peer, listener, ctx) =
                        (peer.clone(), Arc::clone(&listener), Arc::clone(&ctx));
                    let peer_environ = Arc::clone(&peer_environ);
                    tokio::spawn(async move {
                        serve_stream(request, respond, (peer, peer_environ), listener, ctx).await;
                        drop(active);
                    });
                }
                Some(Err(error)) => {
                    tracing::debug!("HTTP/2 connection ended: {error}");
                    break;
                }
                None => break,
            },
            changed = shutdown.changed(), if !closing => {
                // A stop (or a closed channel) ends the connection gracefully: GOAWAY,
                // and the streams already open finish.
                let _ = changed;
                closing = true;
                connection.graceful_shutdown();
            }
            () = tokio::time::sleep(ctx.limits.keep_alive), if !closing => {
                if active.load(Ordering::SeqCst) == 0 {
                    closing = true;
                    connection.graceful_shutdown();
                }
            }
        }
    }
}

/// Counts a stream as open until its task ends.
struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_list_limit_follows_the_field_limits() {
        let limits = crate::http::HttpLimits::default();
        assert_eq!(header_list_limit(&limits), 100 * (8190 + 32));
        let unlimited = crate::http::HttpLimits {
            field_size: 0,
            ..limits
        };
        assert_eq!(header_list_limit(&unlimited), 1 << 20);
    }
}
