//! One uwsgi connection: read the request packet, run the request with its body streamed
//! to the app, write the response as HTTP/1.1, close.
//!
//! The response has no chunked framing (nginx's uwsgi module reads the body to the end of
//! the connection or to its `Content-Length`). A response the app cannot complete is
//! ended with a TCP reset, which nginx reports as an upstream error and passes on as a
//! cut response, rather than with an orderly close, which would look like a whole body.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::cgi::response::encode_http_head;
use crate::gateway::{CgiRequest, Exchange, RequestBody, RequestForm, ResponseEnd, ResponseHead};
use crate::http::body::{BodyDecoder, BodyPump, READ_SIZE};
use crate::http::conn::Socket;
use crate::http::handoff;
use crate::http::sink::{
    CompleteResponse, HttpBodySource, HttpSink, ResponseEvent, BODY_QUEUE, RESPONSE_QUEUE,
};
use crate::http::writer::OutQueue;
use crate::http::ConnContext;
use crate::logging::AccessEntry;
use crate::uwsgi::codec;

/// How long a new connection may take to send its request packet.
const PACKET_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves a uwsgi connection: one request.
pub async fn serve_connection<S: Socket + std::os::fd::AsFd>(stream: S, ctx: Arc<ConnContext>) {
    let mut connection = Connection {
        stream,
        buf: BytesMut::with_capacity(16 * 1024),
        out: OutQueue::new(),
        ctx,
    };
    match connection.run().await {
        Ok(ResponseEnd::Complete) => {
            let _ = connection.stream.shutdown().await;
        }
        Ok(ResponseEnd::Aborted) => connection.reset(),
        Err(error) => {
            tracing::debug!("uwsgi connection ended: {error}");
            connection.reset();
        }
    }
}

struct Connection<S> {
    stream: S,
    buf: BytesMut,
    out: OutQueue,
    ctx: Arc<ConnContext>,
}

impl<S: Socket + std::os::fd::AsFd> Connection<S> {
    /// Closes with a reset where the socket has one (TCP), so the front server cannot
    /// take a cut response for a whole one.
    fn reset(&self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }

    async fn read_packet(&mut self) -> io::Result<Option<codec::Packet>> {
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            if let Some(packet) = codec::decode_packet(&mut self.buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))?
            {
                return Ok(Some(packet));
            }
            let idle = self.buf.is_empty();
            self.buf.reserve(READ_SIZE);
            let read = tokio::select! {
                read = self.stream.read_buf(&mut self.buf) => read?,
                _ = shutdown.changed(), if idle => return Ok(None),
            };
            if read == 0 {
                return Ok(None);
            }
        }
    }

    async fn run(&mut self) -> io::Result<ResponseEnd> {
        let packet = match tokio::time::timeout(PACKET_TIMEOUT, self.read_packet()).await {
            Ok(packet) => packet?,
            Err(_) => None,
        };
        let Some(packet) = packet else {
            return Ok(ResponseEnd::Complete);
        };
        if packet.modifier1 != codec::MODIFIER_WSGI {
            tracing::info!(
                "uwsgi packet with modifier1 {} refused: only WSGI requests (0) are served",
                packet.modifier1
            );
            crate::metrics::refused();
            return Ok(ResponseEnd::Aborted);
        }
        let request = CgiRequest { vars: packet.vars };
        let length = match request.content_length() {
            Ok(length) => length.unwrap_or(0),
            Err(why) => {
                tracing::info!("Bad uwsgi request: {why} (answered 400)");
                crate::metrics::refused();
                self.bad_request().await?;
                return Ok(ResponseEnd::Complete);
            }
        };
        self.serve_request(request, length).await
    }

    async fn bad_request(&mut self) -> io::Result<()> {
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
        encode_http_head(&mut bytes, &head);
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await
    }

    async fn serve_request(&mut self, request: CgiRequest, length: u64) -> io::Result<ResponseEnd> {
        let started = Instant::now();
        let mut access = self
            .ctx
            .access_log
            .as_ref()
            .map(|log| log.entry_from_cgi(&request));
        let (body, mut pump) = if length == 0 {
            (RequestBody::Empty, BodyPump::none())
        } else if self.buf.len() as u64 >= length {
            let body = self.buf.split_to(length as usize).freeze();
            (RequestBody::Complete(body), BodyPump::none())
        } else {
            let (messages_tx, messages_rx) = mpsc::channel(BODY_QUEUE);
            let (demand_tx, demand_rx) = oneshot::channel();
            let source = HttpBodySource::new(messages_rx, demand_tx);
            let body = RequestBody::Stream(Box::new(source));
            let pump = BodyPump::new(
                BodyDecoder::Length(length),
                messages_tx,
                demand_rx,
                false,
                crate::http::body::BodyBounds {
                    limit: self.ctx.limits.body,
                    timeout: self.ctx.limits.body_timeout,
                },
            );
            (body, pump)
        };
        let is_head = request.is_head();
        let (events_tx, mut events) = handoff::channel(RESPONSE_QUEUE);
        let exchange = Box::new(Exchange {
            head: RequestForm::Cgi(request),
            body,
            sink: Box::new(HttpSink::new(events_tx, is_head)),
            on_overdue: None,
        });
        if !self.ctx.dispatch(exchange) {
            tracing::info!("uwsgi request refused: the server is shutting down");
            crate::metrics::refused();
            return Ok(ResponseEnd::Aborted);
        }
        let mut status = 0;
        let mut body_bytes = 0;
        let end = loop {
            tokio::select! {
                biased;
                event = events.recv() => {
                    let Some(event) = event else {
                        break ResponseEnd::Aborted;
                    };
                    if let Some(end) = self.apply(event, &mut status, &mut body_bytes, &mut access).await? {
                        break end;
                    }
                    // Write what the app produced before waiting for more (no delay of a
                    // block the app yielded, as PEP 3333 asks).
                    if events.is_empty() {
                        self.out.flush(&mut self.stream, self.ctx.limits.write_timeout).await?;
                    }
                }
                _ = pump.step(&mut self.stream, &mut self.buf), if pump.is_busy() => {}
            }
        };
        self.out
            .flush(&mut self.stream, self.ctx.limits.write_timeout)
            .await?;
        crate::metrics::response_since(status, started);
        if let (Some(log), Some(entry)) = (&self.ctx.access_log, access) {
            log.write(&entry, status, body_bytes, started.elapsed());
        }
        Ok(end)
    }

    async fn apply(
        &mut self,
        event: ResponseEvent,
        status: &mut u16,
        body_bytes: &mut u64,
        access: &mut Option<AccessEntry>,
    ) -> io::Result<Option<ResponseEnd>> {
        let head = match &event {
            ResponseEvent::Head(head) => Some(&**head),
            ResponseEvent::Complete(complete) => Some(&complete.head),
            _ => None,
        };
        if let (Some(access), Some(head)) = (access.as_mut(), head) {
            access.capture_response(head);
        }
        match event {
            ResponseEvent::Head(head) => {
                *status = head.status;
                let mut bytes = Vec::new();
                encode_http_head(&mut bytes, &head);
                self.out.put_slice(&bytes);
                Ok(None)
            }
            ResponseEvent::Chunk(chunk) => {
                *body_bytes += chunk.len() as u64;
                self.out.push(*chunk);
                Ok(None)
            }
            ResponseEvent::File { file, offset, len } => {
                self.out
                    .flush(&mut self.stream, self.ctx.limits.write_timeout)
                    .await?;
                let sent = self
                    .stream
                    .send_file(&file, offset, len, self.ctx.limits.write_timeout)
                    .await?;
                *body_bytes += sent;
                if sent < len {
                    return Ok(Some(ResponseEnd::Aborted));
                }
                Ok(None)
            }
            ResponseEvent::Complete(complete) => {
                let CompleteResponse { head, body } = *complete;
                *status = head.status;
                let mut bytes = Vec::new();
                encode_http_head(&mut bytes, &head);
                self.out.put_slice(&bytes);
                for chunk in body.into_pieces() {
                    *body_bytes += chunk.len() as u64;
                    self.out.push(chunk);
                }
                Ok(Some(ResponseEnd::Complete))
            }
            ResponseEvent::End(end) => Ok(Some(end)),
        }
    }
}
