//! One FastCGI connection: wait for `BEGIN_REQUEST`, read `PARAMS`, run the request with
//! its `STDIN` streamed to the app, write `STDOUT` and `END_REQUEST`, and repeat while the
//! front server keeps the connection.
//!
//! Like the HTTP engine, the connection task waits on two things while a request runs:
//! response events from the Python thread, and the app's demand for body bytes. Request
//! body records are read from the socket only when the app has room for them, so a large
//! upload is never held whole in memory.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cgi::response::encode_head;
use crate::fastcgi::codec::{self, CodecError, Limits, Record};
use crate::gateway::{BodyError, CgiRequest, Exchange, RequestBody, RequestForm, ResponseEnd};
use crate::http::body::READ_SIZE;
use crate::http::conn::Socket;
use crate::http::handoff::{self, TryRecvError};
use crate::http::sink::{
    BodyMessage, CompleteResponse, HttpBodySource, HttpSink, ResponseEvent, BODY_QUEUE,
    RESPONSE_QUEUE,
};
use crate::http::writer::OutQueue;
use crate::http::ConnContext;
use crate::logging::AccessEntry;

/// Largest parameter stream accepted for one request (nginx sends a few KiB).
const MAX_PARAMS: usize = 1024 * 1024;
/// How long an idle connection is kept. Front servers close their idle upstream
/// connections well before this (nginx: 60 s), which avoids closing one they are reusing.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How much unread request body is discarded to keep a connection for the next request.
const DRAIN_LIMIT: u64 = 1024 * 1024;
/// How long discarding unread request body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// What `GET_VALUES` answers. Connections and requests are limited only by the socket
/// backlog and the Python threads, so these are what a front server should not exceed.
const LIMITS: Limits = Limits {
    max_conns: 1024,
    max_reqs: 1024,
};

/// Serves a FastCGI connection until it closes.
pub async fn serve_connection<S: Socket>(stream: S, ctx: Arc<ConnContext>) {
    let mut connection = Connection {
        stream,
        buf: BytesMut::with_capacity(16 * 1024),
        out: OutQueue::new(),
        ctx,
    };
    if let Err(error) = connection.run().await {
        tracing::debug!("FastCGI connection ended: {error}");
    }
}

struct Connection<S> {
    stream: S,
    buf: BytesMut,
    out: OutQueue,
    ctx: Arc<ConnContext>,
}

/// What happened to a request once its parameters were read.
enum Begun {
    /// The parameters are complete.
    Params(CgiRequest),
    /// The front server aborted the request before it started; it was answered.
    Aborted,
}

fn protocol_error(error: CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.0)
}

impl<S: Socket> Connection<S> {
    async fn run(&mut self) -> io::Result<()> {
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let Some((id, begin)) = self.await_begin(&mut shutdown).await? else {
                return Ok(());
            };
            let keep_conn = begin.keep_conn;
            if begin.role != codec::ROLE_RESPONDER {
                tracing::info!(
                    "FastCGI request for role {} refused: tidegate is a responder",
                    begin.role
                );
                crate::metrics::refused();
                self.end_request(id, codec::UNKNOWN_ROLE).await?;
            } else {
                match self.read_params(id).await? {
                    Begun::Params(request) => {
                        let served = self.serve_request(id, request).await?;
                        if !served {
                            return Ok(());
                        }
                    }
                    Begun::Aborted => {}
                }
            }
            if !keep_conn || *shutdown.borrow() {
                let _ = self.stream.shutdown().await;
                return Ok(());
            }
        }
    }

    /// Reads more bytes into the buffer. Returns false when the peer closed.
    async fn fill(&mut self) -> io::Result<bool> {
        self.buf.reserve(READ_SIZE);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// The next whole record, reading as needed. `None` when the peer closed.
    async fn next_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            if let Some(record) = codec::decode_record(&mut self.buf).map_err(protocol_error)? {
                return Ok(Some(record));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Answers a management record (request id 0) or refuses a second request while one
    /// runs. Returns true if `record` was one of those.
    fn answer_aside(&mut self, record: &Record, busy_with: Option<u16>) -> io::Result<bool> {
        let replies = self.out.staging();
        answer_aside(replies, record, busy_with)
    }

    /// Waits for the next `BEGIN_REQUEST`, answering management records meanwhile. `None`:
    /// the connection should close (peer gone, idle too long, or the server stopping).
    async fn await_begin(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> io::Result<Option<(u16, codec::BeginRequest)>> {
        loop {
            while let Some(record) = codec::decode_record(&mut self.buf).map_err(protocol_error)? {
                if record.kind == codec::BEGIN_REQUEST && record.request_id != 0 {
                    let begin =
                        codec::parse_begin_request(&record.content).map_err(protocol_error)?;
                    return Ok(Some((record.request_id, begin)));
                }
                // Management queries get their answer; leftovers of an earlier request
                // (records after its END_REQUEST) are ignored, as the specification asks.
                self.answer_aside(&record, None)?;
                self.out
                    .flush(&mut self.stream, self.ctx.limits.write_timeout)
                    .await?;
            }
            let idle = self.buf.is_empty();
            if idle && *shutdown.borrow() {
                return Ok(None);
            }
            self.buf.reserve(READ_SIZE);
            let read = tokio::select! {
                read = self.stream.read_buf(&mut self.buf) => read?,
                _ = shutdown.changed(), if idle => return Ok(None),
                _ = tokio::time::sleep(IDLE_TIMEOUT), if idle => return Ok(None),
            };
            if read == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads the parameter stream of request `id` up to its empty record.
    async fn read_params(&mut self, id: u16) -> io::Result<Begun> {
        let mut stream = BytesMut::new();
        loop {
            let Some(record) = self.next_record().await? else {
                return Err(io::ErrorKind::UnexpectedEof.into());
            };
            if self.answer_aside(&record, Some(id))? {
                self.out
                    .flush(&mut self.stream, self.ctx.limits.write_timeout)
                    .await?;
                continue;
            }
            match record.kind {
                codec::PARAMS if record.request_id == id => {
                    if record.content.is_empty() {
                        let pairs = codec::parse_pairs(&stream.freeze()).map_err(protocol_error)?;
                        return Ok(Begun::Params(CgiRequest { vars: pairs }));
                    }
                    if stream.len() + record.content.len() > MAX_PARAMS {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("FastCGI parameters larger than {MAX_PARAMS} bytes"),
                        ));
                    }
                    stream.extend_from_slice(&record.content);
                }
                codec::ABORT_REQUEST if record.request_id == id => {
                    self.end_request(id, codec::REQUEST_COMPLETE).await?;
                    return Ok(Begun::Aborted);
                }
                _ => {}
            }
        }
    }

    /// Sends an `END_REQUEST` for a request that produced no output.
    async fn end_request(&mut self, id: u16, status: u8) -> io::Result<()> {
        codec::encode_end_request(self.out.staging(), id, 0, status);
        self.out
            .flush(&mut self.stream, self.ctx.limits.write_timeout)
            .await
    }

    /// The request body when every one of its `STDIN` records is already buffered (the
    /// usual case: the front server sends small bodies in the same write as the params).
    fn buffered_body(&mut self, id: u16) -> Option<Bytes> {
        let mut offset = 0;
        let mut body_len = 0;
        loop {
            let header = self.buf.get(offset..offset + codec::HEADER_LEN)?;
            let (kind, request_id) = (header[1], u16::from_be_bytes([header[2], header[3]]));
            let content = usize::from(u16::from_be_bytes([header[4], header[5]]));
            let total = codec::HEADER_LEN + content + usize::from(header[6]);
            if header[0] != codec::VERSION
                || kind != codec::STDIN
                || request_id != id
                || self.buf.len() < offset + total
            {
                return None;
            }
            offset += total;
            body_len += content;
            if content == 0 {
                break;
            }
        }
        let mut body = BytesMut::with_capacity(body_len);
        while let Ok(Some(record)) = codec::decode_record(&mut self.buf) {
            if record.content.is_empty() {
                break;
            }
            body.extend_from_slice(&record.content);
        }
        Some(body.freeze())
    }

    /// Runs request `id` through the app. Returns whether the connection can go on.
    async fn serve_request(&mut self, id: u16, request: CgiRequest) -> io::Result<bool> {
        let started = Instant::now();
        let access = self
            .ctx
            .access_log
            .as_ref()
            .map(|log| log.entry_from_cgi(&request));
        let (body, mut pump) = match self.buffered_body(id) {
            Some(body) if body.is_empty() => (RequestBody::Empty, StdinPump::done()),
            Some(body) => (RequestBody::Complete(body), StdinPump::done()),
            None => {
                let (messages_tx, messages_rx) = mpsc::channel(BODY_QUEUE);
                // FastCGI has no 100-continue: the front server sends the body unasked.
                let (demand_tx, _) = oneshot::channel();
                let source = HttpBodySource::new(messages_rx, demand_tx);
                let body = RequestBody::Stream(Box::new(source));
                (body, StdinPump::new(id, messages_tx))
            }
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
            tracing::info!("FastCGI request refused: the server is shutting down");
            crate::metrics::refused();
            return Ok(false);
        }
        let mut response = ResponseState {
            id,
            status: 0,
            body_bytes: 0,
            access,
        };
        let end = loop {
            tokio::select! {
                biased;
                event = events.recv() => {
                    if let Some(end) = self.on_events(event, &mut events, &mut response).await? {
                        break end;
                    }
                }
                _ = pump.step(&mut self.stream, &mut self.buf), if pump.is_busy() => {
                    if !pump.replies.is_empty() {
                        let replies = pump.replies.split();
                        self.stream.write_all(&replies).await?;
                    }
                }
            }
        };
        crate::metrics::response_since(response.status, started);
        if let (Some(log), Some(entry)) = (&self.ctx.access_log, &response.access) {
            log.write(
                entry,
                response.status,
                response.body_bytes,
                started.elapsed(),
            );
        }
        if end == ResponseEnd::Aborted || pump.state == PumpState::Failed {
            // No END_REQUEST: the front server sees the connection close mid-response and
            // fails the request, so its client gets a cut response, never a wrong one.
            return Ok(false);
        }
        codec::encode_stream(self.out.staging(), codec::STDOUT, id, b"");
        codec::encode_end_request(self.out.staging(), id, 0, codec::REQUEST_COMPLETE);
        self.out
            .flush(&mut self.stream, self.ctx.limits.write_timeout)
            .await?;
        // A body the app read whole is drained at the first poll: no timer for it.
        let drained = crate::http::writer::within(
            DRAIN_TIMEOUT,
            pump.drain(&mut self.stream, &mut self.buf, DRAIN_LIMIT),
        )
        .await;
        Ok(matches!(drained, Ok(true)))
    }

    /// Applies the event received and every event already queued behind it, then writes
    /// them out together. Returns how the response ended once it has.
    async fn on_events(
        &mut self,
        first: Option<ResponseEvent>,
        events: &mut handoff::Receiver<ResponseEvent>,
        response: &mut ResponseState,
    ) -> io::Result<Option<ResponseEnd>> {
        let mut next = first;
        loop {
            let Some(event) = next else {
                self.out
                    .flush(&mut self.stream, self.ctx.limits.write_timeout)
                    .await?;
                return Ok(Some(ResponseEnd::Aborted));
            };
            if let Some(end) = self.apply(event, response).await? {
                self.out
                    .flush(&mut self.stream, self.ctx.limits.write_timeout)
                    .await?;
                return Ok(Some(end));
            }
            next = match events.try_recv() {
                Ok(event) => Some(event),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => None,
            };
        }
        self.out
            .flush(&mut self.stream, self.ctx.limits.write_timeout)
            .await?;
        Ok(None)
    }

    async fn apply(
        &mut self,
        event: ResponseEvent,
        response: &mut ResponseState,
    ) -> io::Result<Option<ResponseEnd>> {
        match event {
            ResponseEvent::Head(head) => {
                response.status = head.status;
                if let Some(access) = &mut response.access {
                    access.capture_response(&head);
                }
                let mut bytes = Vec::new();
                encode_head(&mut bytes, &head);
                codec::encode_stream(self.out.staging(), codec::STDOUT, response.id, &bytes);
                Ok(None)
            }
            ResponseEvent::Chunk(chunk) => {
                self.stdout(*chunk, response);
                Ok(None)
            }
            ResponseEvent::File { file, offset, len } => {
                self.stdout_file(&file, offset, len, response).await?;
                Ok(None)
            }
            ResponseEvent::Complete(complete) => {
                let CompleteResponse { head, body } = *complete;
                response.status = head.status;
                if let Some(access) = &mut response.access {
                    access.capture_response(&head);
                }
                let mut bytes = Vec::new();
                encode_head(&mut bytes, &head);
                codec::encode_stream(self.out.staging(), codec::STDOUT, response.id, &bytes);
                for chunk in body.into_pieces() {
                    self.stdout(chunk, response);
                }
                Ok(Some(ResponseEnd::Complete))
            }
            ResponseEvent::End(end) => Ok(Some(end)),
        }
    }

    /// Queues body bytes as `STDOUT` records; large pieces are shared, not copied.
    fn stdout(&mut self, mut chunk: Bytes, response: &mut ResponseState) {
        response.body_bytes += chunk.len() as u64;
        while !chunk.is_empty() {
            let piece = chunk.split_to(chunk.len().min(codec::MAX_CONTENT));
            codec::encode_header(
                self.out.staging(),
                codec::STDOUT,
                response.id,
                piece.len() as u16,
            );
            self.out.push(piece);
        }
    }

    /// Sends part of a file as `STDOUT` records, each record's content with sendfile(2).
    async fn stdout_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        response: &mut ResponseState,
    ) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            let piece = (len - done).min(codec::MAX_CONTENT as u64);
            codec::encode_header(self.out.staging(), codec::STDOUT, response.id, piece as u16);
            self.out
                .flush(&mut self.stream, self.ctx.limits.write_timeout)
                .await?;
            let sent = self
                .stream
                .send_file(file, offset + done, piece, self.ctx.limits.write_timeout)
                .await?;
            response.body_bytes += sent;
            if sent < piece {
                // The record header promised more: the stream cannot be repaired.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than announced",
                ));
            }
            done += piece;
        }
        Ok(())
    }
}

/// Answers a management record or refuses a concurrent request, appending the reply to
/// `out`. Returns whether `record` was one of those.
fn answer_aside(out: &mut BytesMut, record: &Record, busy_with: Option<u16>) -> io::Result<bool> {
    if record.request_id == 0 {
        match record.kind {
            codec::GET_VALUES => {
                codec::encode_get_values_result(out, &record.content, LIMITS)
                    .map_err(protocol_error)?;
            }
            kind => codec::encode_unknown_type(out, kind),
        }
        return Ok(true);
    }
    if record.kind == codec::BEGIN_REQUEST && Some(record.request_id) != busy_with {
        codec::encode_end_request(out, record.request_id, 0, codec::CANT_MPX_CONN);
        return Ok(true);
    }
    Ok(false)
}

/// What the writer knows about the response in progress.
struct ResponseState {
    id: u16,
    status: u16,
    body_bytes: u64,
    /// The access log's record of the request, when the log is on.
    access: Option<AccessEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpState {
    /// Records are read into the body channel as the app makes room.
    Active,
    /// The empty `STDIN` record came (or the body was handed over whole).
    Finished,
    /// The app dropped `wsgi.input`; what is left is discarded after the response.
    Abandoned,
    /// The body cannot be completed (peer gone, or the request aborted).
    Failed,
}

/// Feeds one request's `STDIN` records to the app.
struct StdinPump {
    id: u16,
    state: PumpState,
    messages: Option<mpsc::Sender<BodyMessage>>,
    /// Answers to management records met while reading the body, to write out.
    replies: BytesMut,
}

impl StdinPump {
    fn done() -> Self {
        StdinPump {
            id: 0,
            state: PumpState::Finished,
            messages: None,
            replies: BytesMut::new(),
        }
    }

    fn new(id: u16, messages: mpsc::Sender<BodyMessage>) -> Self {
        StdinPump {
            id,
            state: PumpState::Active,
            messages: Some(messages),
            replies: BytesMut::new(),
        }
    }

    fn is_busy(&self) -> bool {
        self.state == PumpState::Active
    }

    /// Sorts a record met while this request runs. Returns body bytes, or `None` for a
    /// record that was dealt with otherwise.
    fn on_record(&mut self, record: Record) -> io::Result<Option<BodyMessage>> {
        if answer_aside(&mut self.replies, &record, Some(self.id))? {
            return Ok(None);
        }
        if record.request_id != self.id {
            return Ok(None);
        }
        Ok(match record.kind {
            codec::STDIN if record.content.is_empty() => Some(BodyMessage::End),
            codec::STDIN => Some(BodyMessage::Data(record.content)),
            codec::ABORT_REQUEST => {
                tracing::info!("The front server aborted the request");
                Some(BodyMessage::Failed(BodyError::Disconnected))
            }
            _ => None,
        })
    }

    /// Moves one piece of body from the socket to the app. Cancel-safe: it awaits only
    /// channel room and socket reads, and changes state only after they complete.
    async fn step<S: Socket>(&mut self, stream: &mut S, buf: &mut BytesMut) {
        let Some(messages) = self.messages.clone() else {
            self.state = PumpState::Abandoned;
            return;
        };
        let Ok(permit) = messages.reserve().await else {
            self.state = PumpState::Abandoned;
            return;
        };
        loop {
            match codec::decode_record(buf) {
                Ok(Some(record)) => match self.on_record(record) {
                    Ok(Some(message)) => {
                        self.state = match &message {
                            BodyMessage::Data(_) => PumpState::Active,
                            BodyMessage::End => PumpState::Finished,
                            BodyMessage::Failed(_) => PumpState::Failed,
                        };
                        permit.send(message);
                        return;
                    }
                    Ok(None) => {
                        if !self.replies.is_empty() {
                            // Let the connection write the answer before reading on.
                            drop(permit);
                            return;
                        }
                        continue;
                    }
                    Err(error) => {
                        tracing::info!("Malformed FastCGI record: {error}");
                        permit.send(BodyMessage::Failed(BodyError::Malformed(error.to_string())));
                        self.state = PumpState::Failed;
                        return;
                    }
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::info!("Malformed FastCGI record: {error}");
                    permit.send(BodyMessage::Failed(BodyError::Malformed(error.0)));
                    self.state = PumpState::Failed;
                    return;
                }
            }
            buf.reserve(READ_SIZE);
            match stream.read_buf(buf).await {
                Ok(n) if n > 0 => {}
                _ => {
                    permit.send(BodyMessage::Failed(BodyError::Disconnected));
                    self.state = PumpState::Failed;
                    return;
                }
            }
        }
    }

    /// After the response: reads and discards what the app left of the body, up to
    /// `limit` bytes. Returns whether the body was consumed to its end (so the connection
    /// can serve another request).
    async fn drain<S: Socket>(&mut self, stream: &mut S, buf: &mut BytesMut, limit: u64) -> bool {
        match self.state {
            PumpState::Finished => return true,
            PumpState::Failed => return false,
            PumpState::Active | PumpState::Abandoned => {}
        }
        self.messages = None;
        let mut discarded = 0u64;
        loop {
            match codec::decode_record(buf) {
                Ok(Some(record)) => match self.on_record(record) {
                    Ok(Some(BodyMessage::Data(data))) => {
                        discarded += data.len() as u64;
                        if discarded > limit {
                            return false;
                        }
                    }
                    Ok(Some(BodyMessage::End)) => {
                        self.state = PumpState::Finished;
                        // Answers to queries met on the way are lost with a closed
                        // connection only; here the connection goes on, so send them.
                        if !self.replies.is_empty() {
                            let replies = self.replies.split();
                            return stream.write_all(&replies).await.is_ok();
                        }
                        return true;
                    }
                    Ok(Some(BodyMessage::Failed(_))) | Err(_) => return false,
                    Ok(None) => {}
                },
                Ok(None) => {
                    buf.reserve(READ_SIZE);
                    match stream.read_buf(buf).await {
                        Ok(n) if n > 0 => {}
                        _ => return false,
                    }
                }
                Err(_) => return false,
            }
        }
    }
}
