//! One client connection: read a request, hand it to Python, write the response, repeat.
//!
//! Requests on a connection are served one after the other, so pipelined requests get
//! their responses in order: the next head is parsed from the buffer only after the
//! previous response is written. While a request runs, the task waits on two things at
//! once: response events from the Python thread, and the app's demand for body bytes.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{
    Exchange, ListenerInfo, Peer, Protocol, RequestBody, RequestForm, RequestHead, ResponseEnd,
    ResponseHead,
};
use crate::http::body::{BodyBounds, BodyDecoder, BodyPump, READ_SIZE};
use crate::http::buffers;
use crate::http::chunked::{ChunkedDecoder, Decoded};
use crate::http::handoff::{self, TryRecvError};
use crate::http::request::{parse_head, BodyFraming, ParsedHead, Rejection};
use crate::http::response::{
    choose_framing, chunk_header, encode_head, ResponseFraming, LAST_CHUNK,
};
use crate::http::sink::{HttpBodySource, HttpSink, ResponseEvent, BODY_QUEUE, RESPONSE_QUEUE};
use crate::http::writer::OutQueue;
use crate::http::ConnContext;
use crate::http2::sniff::{sniff, Rewind, Sniffed};
use crate::logging::AccessEntry;
use crate::overdue::OverdueWait;
use crate::server::stop::StopWait;
use crate::static_files::http1::write_response as write_static;
use crate::whole_body::WholeBody;

/// How long an idle connection waits for a last request while the server stops.
pub const SHUTDOWN_LINGER: Duration = Duration::from_millis(500);
/// How much unread request body is discarded to keep a connection alive.
const DRAIN_LIMIT: u64 = 256 * 1024;
/// How long discarding unread request body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A stream the engine can serve: a TCP or unix socket, or TLS over one.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    /// Sends `len` bytes of `file` from `offset`; returns the bytes sent, fewer than `len`
    /// only if the file ended early. A plain socket hands the file to sendfile(2); a stream
    /// that transforms what it writes (TLS) reads the file and writes it
    /// ([`copy_file`](crate::http::writer::copy_file)).
    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        timeout: Duration,
    ) -> impl std::future::Future<Output = io::Result<u64>> + Send;
}

/// A plain socket whose descriptor can take sendfile(2).
pub trait RawSocket: AsRawFd + AsFd {
    /// Waits until the socket may be writable.
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    /// Runs a non-blocking write operation on the raw socket, clearing readiness on
    /// `WouldBlock`.
    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

impl RawSocket for tokio::net::TcpStream {
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        tokio::net::TcpStream::writable(self)
    }
    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(tokio::io::Interest::WRITABLE, f)
    }
}

impl RawSocket for tokio::net::UnixStream {
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        tokio::net::UnixStream::writable(self)
    }
    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(tokio::io::Interest::WRITABLE, f)
    }
}

impl Socket for tokio::net::TcpStream {
    async fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        timeout: Duration,
    ) -> io::Result<u64> {
        crate::http::writer::sendfile_all(self, file, offset, len, timeout).await
    }
}

impl Socket for tokio::net::UnixStream {
    async fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        timeout: Duration,
    ) -> io::Result<u64> {
        crate::http::writer::sendfile_all(self, file, offset, len, timeout).await
    }
}

/// Serves a connection until it closes. `listener` is what the environ reports as the
/// server address (the listener's, or the address this connection reached when the
/// listener is bound to a wildcard address).
pub async fn serve_connection<S: Socket>(
    stream: S,
    peer: Peer,
    listener: Arc<ListenerInfo>,
    ctx: Arc<ConnContext>,
) {
    let buf = buffers::take(buffers::Kind::Read, 8 * 1024);
    let mut connection = Connection::new(stream, buf, peer, listener, ctx);
    let ended = connection.run().await;
    connection.close(ended);
}

/// Serves a cleartext HTTP connection, holding `guard` until it closes: HTTP/1.1, or HTTP/2
/// when `sniff_h2` is set and the client opens with the HTTP/2 preface.
///
/// A listener without TLS or a PROXY header spawns it as the connection's task itself:
/// through the functions that choose a protocol, every poll of a request passed through two
/// more futures, whose states lay in cache lines of their own (see BENCHMARKS.md, "Fewer
/// cache lines per connection").
pub async fn serve_cleartext<S: Socket>(
    mut stream: S,
    peer: Peer,
    listener: Arc<ListenerInfo>,
    ctx: Arc<ConnContext>,
    sniff_h2: bool,
    guard: impl Send,
) {
    let buf = if sniff_h2 {
        let mut shutdown = ctx.shutdown.clone();
        match sniff(&mut stream, ctx.limits.header_timeout, &mut shutdown).await {
            Sniffed::Http1(buf) => buf,
            Sniffed::Http2(buf) => {
                let stream = Rewind::new(buf, stream);
                Box::pin(crate::http2::conn::serve(stream, peer, listener, ctx)).await;
                return drop(guard);
            }
            Sniffed::Closed => return drop(guard),
        }
    } else {
        buffers::take(buffers::Kind::Read, 8 * 1024)
    };
    let mut connection = Connection::new(stream, buf, peer, listener, ctx);
    let ended = connection.run().await;
    connection.close(ended);
    drop(guard);
}

struct Connection<S> {
    stream: S,
    buf: BytesMut,
    out: OutQueue,
    peer: Peer,
    /// The peer as the environ shows it, made once for all the connection's requests.
    /// The last request takes it, so that it is dropped with its request on the Python
    /// thread (a Python object dropped here, without the GIL, is queued for later).
    peer_environ: Option<Arc<crate::wsgi::environ::PeerEnviron>>,
    listener: Arc<ListenerInfo>,
    /// The keep-alive and header deadline, one timer for the connection's life: a new
    /// `Sleep` per request took the timer driver's lock to register and again to
    /// deregister. It may be set earlier than the deadline of the wait in progress, never
    /// later (see [`read_head`](Self::read_head)).
    idle_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The server's stop, which an idle connection waits for beside its read, registered
    /// once for the connection's life (see [`crate::server::stop`]).
    stop: StopWait,
    ctx: Arc<ConnContext>,
}

/// What ended a connection's wait for more of a request head.
enum HeadWait {
    /// The read finished: the bytes read (0 at the end of the stream), or its error.
    Read(io::Result<usize>),
    /// The server began to stop while the connection was idle.
    Stopped,
    /// The connection's timer fired.
    Timer,
}

/// What ended a request's wait for its response.
enum ResponseWait {
    /// The app ran past `--timeout`.
    Overdue,
    /// A response event, or `None` when the Python side dropped the response unended.
    Event(Option<ResponseEvent>),
    /// The body pump took a step; `true` when `100 Continue` must be sent now.
    Pumped(bool),
}

/// What [`Connection::start_request`] made of a request head.
enum Started {
    /// The app has the request: its response is awaited, and the body pump feeds it the
    /// request body.
    Dispatched(ResponseState, BodyPump),
    /// A static file answers the request, without the app.
    Static(Box<StaticAnswer>),
    /// Refused before the app runs: answered, and the connection closed.
    Refused(Rejection),
}

/// A static file's answer to a request, and what its writing reports.
struct StaticAnswer {
    answer: crate::static_files::response::StaticResponse,
    protocol: Protocol,
    keep_alive: bool,
    started: Option<Instant>,
    access: Option<Box<AccessEntry>>,
}

/// What the response writer knows about the response in progress.
struct ResponseState {
    protocol: Protocol,
    is_head: bool,
    framing: Option<ResponseFraming>,
    status: u16,
    body_bytes: u64,
    keep_alive: bool,
    /// When the request began, if anything reports its duration (access log, metrics).
    started: Option<Instant>,
    /// The access log's record of the request, when the log is on. Boxed: inline, its
    /// 224 bytes made this state, which the connection's future keeps, 272 bytes long.
    access: Option<Box<AccessEntry>>,
}

impl Drop for ResponseState {
    /// Counts the response in the metrics on every way out of a request, errors included.
    fn drop(&mut self) {
        if let Some(started) = self.started {
            crate::metrics::response_since(self.status, started);
        }
    }
}

impl<S: Socket> Connection<S> {
    fn new(
        stream: S,
        buf: BytesMut,
        peer: Peer,
        listener: Arc<ListenerInfo>,
        ctx: Arc<ConnContext>,
    ) -> Self {
        Connection {
            stream,
            buf,
            out: OutQueue::new(),
            peer,
            peer_environ: Some(Arc::default()),
            listener,
            idle_timer: Box::pin(tokio::time::sleep(ctx.limits.header_timeout)),
            stop: StopWait::new(&ctx.stop_notice),
            ctx,
        }
    }

    /// Logs how the connection ended if by an error, and gives its buffers to the thread's
    /// next connection.
    fn close(self, ended: io::Result<()>) {
        if let Err(error) = ended {
            tracing::debug!("Connection from {} ended: {error}", self.peer_label());
        }
        buffers::give_back(buffers::Kind::Read, self.buf);
        self.out.recycle();
    }

    fn peer_label(&self) -> String {
        match &self.peer {
            Peer::Tcp(addr) => addr.to_string(),
            Peer::Unix => "unix socket".to_string(),
        }
    }

    async fn run(&mut self) -> io::Result<()> {
        let mut first = true;
        // One response channel for the connection's life: its requests are served one
        // after the other, and a channel per request cost an allocation of its block.
        let (events_tx, mut events) = handoff::channel(RESPONSE_QUEUE);
        // Likewise one overdue signal, and the number of the request now served.
        let mut overdue = OverdueWait::new();
        let mut request = 0u64;
        loop {
            let Some(parsed) = self.read_head(first).await? else {
                return Ok(());
            };
            first = false;
            // A stop that began while this response went out keep-alive does not close the
            // connection here: read_head lingers and serves a request already on its way.
            request += 1;
            // The head is taken apart before anything is awaited: held in the connection's
            // future across the wait for the response (as an async function's argument is,
            // twice), the head and its pieces were copied there three times, ~400 bytes
            // written to cache lines of the connection's own for every request. Likewise the
            // response's state is this function's, and its wait takes a reference to it.
            let keep_alive = match self.start_request(parsed, &events_tx, &overdue, request) {
                Started::Dispatched(mut response, mut pump) => {
                    self.await_response(
                        &mut response,
                        &mut pump,
                        &mut events,
                        (&mut overdue, request),
                    )
                    .await?
                }
                Started::Static(answer) => self.serve_static(answer).await?,
                Started::Refused(rejection) => {
                    crate::metrics::refused();
                    self.reject(rejection).await;
                    false
                }
            };
            if !keep_alive {
                let _ = self.stream.shutdown().await;
                return Ok(());
            }
        }
    }

    /// Reads until a whole head is buffered. `None`: the connection should close.
    ///
    /// Two clocks apply: between requests, the keep-alive idle time; once a request has
    /// begun (and from the start on a new connection), `--header-timeout` for the whole
    /// head, so a client trickling its head byte by byte (slowloris) is cut off.
    async fn read_head(&mut self, first: bool) -> io::Result<Option<ParsedHead>> {
        // The limits are read where they are needed rather than copied: a copy is kept in the
        // connection's future across the wait, 104 bytes written for every request.
        let header_timeout = self.ctx.limits.header_timeout;
        let mut head_deadline = first.then(|| Instant::now() + header_timeout);
        'head: loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf, &self.ctx.limits) {
                    Ok(Some(parsed)) => return Ok(Some(parsed)),
                    Ok(None) => {}
                    Err(rejection) => {
                        crate::metrics::refused();
                        self.reject(rejection).await;
                        return Ok(None);
                    }
                }
                head_deadline.get_or_insert_with(|| Instant::now() + header_timeout);
            }
            let idle = self.buf.is_empty();
            // While the server stops, an idle connection lingers briefly instead of closing
            // at once: a client may have sent its next request already, and closing under it
            // would fail that request. One that arrives is served with Connection: close.
            // The engine sets the watch before it tells the stop notice: a stop after this
            // read of the value makes the wait below ready.
            let stopping = self.ctx.stopping();
            let idle_limit = if stopping {
                SHUTDOWN_LINGER
            } else {
                self.ctx.limits.keep_alive
            };
            let deadline = match head_deadline {
                Some(deadline) if idle && stopping => {
                    deadline.min(Instant::now() + SHUTDOWN_LINGER)
                }
                Some(deadline) => deadline,
                None => Instant::now() + idle_limit,
            };
            self.buf.reserve(READ_SIZE);
            // The timer is moved earlier at once, but never later: a keep-alive connection's
            // deadline moves later with every request, and resetting the timer each time
            // cost ~190 instructions per request. A timer that fires before the deadline is
            // set again to it then, once per timer period instead of once per request.
            if deadline < self.idle_timer.deadline().into_std() {
                self.idle_timer.as_mut().reset(deadline.into());
            }
            // The read is tried first (it is what a busy connection is waiting for). One
            // `poll_fn` over the three waits, rather than `select!` over three futures: the
            // connection's future keeps only references for this wait, so a request touches
            // fewer of its cache lines (see BENCHMARKS.md, "Fewer cache lines per
            // connection").
            let read = loop {
                let (stream, buf, stop, timer) = (
                    &mut self.stream,
                    &mut self.buf,
                    &mut self.stop,
                    &mut self.idle_timer,
                );
                let waited = std::future::poll_fn(|cx| {
                    // A read future holds only its two references: one made per poll is the
                    // same as one kept across polls.
                    if let Poll::Ready(read) = std::pin::pin!(stream.read_buf(buf)).poll(cx) {
                        return Poll::Ready(HeadWait::Read(read));
                    }
                    if idle && !stopping && stop.poll_stopped(cx).is_ready() {
                        return Poll::Ready(HeadWait::Stopped);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(HeadWait::Timer);
                    }
                    Poll::Pending
                })
                .await;
                match waited {
                    HeadWait::Read(read) => break read?,
                    HeadWait::Stopped => {
                        // Told without the watch set: the engine went away without a stop.
                        if !*self.ctx.shutdown.borrow() {
                            return Ok(None);
                        }
                        continue 'head;
                    }
                    HeadWait::Timer => {
                        if Instant::now() < deadline {
                            // Set for an earlier deadline than this wait's.
                            self.idle_timer.as_mut().reset(deadline.into());
                            continue;
                        }
                        if !self.buf.is_empty() {
                            crate::metrics::refused();
                            self.reject(Rejection {
                                status: 408,
                                detail: format!(
                                    "request head not complete within --header-timeout {}s",
                                    header_timeout.as_secs_f64()
                                ),
                            })
                            .await;
                        }
                        return Ok(None);
                    }
                }
            };
            if read == 0 {
                // The client closed; a partial head cannot be answered.
                return Ok(None);
            }
        }
    }

    /// Answers a request refused before the app runs, and closes.
    async fn reject(&mut self, rejection: Rejection) {
        // 501 and 505 answer what the client sent, like the 4xx; 503 and 504 are ours.
        if rejection.status < 500 || matches!(rejection.status, 501 | 505) {
            tracing::info!(
                "Bad request from {}: {} (answered {})",
                self.peer_label(),
                rejection.detail,
                rejection.status
            );
        } else {
            tracing::info!(
                "Answered {} to {}: {}",
                rejection.status,
                self.peer_label(),
                rejection.detail
            );
        }
        let reason = reason_phrase(rejection.status);
        let head = ResponseHead {
            status: rejection.status,
            status_line: Bytes::from(format!("{} {}", rejection.status, reason)),
            headers: vec![(
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
            content_length: Some(reason.len() as u64),
            close_connection: true,
        };
        let mut out = BytesMut::new();
        encode_head(
            &mut out,
            &head,
            ResponseFraming::Length(reason.len() as u64),
            Protocol::Http11,
            false,
        );
        out.extend_from_slice(reason.as_bytes());
        let write = self.stream.write_all(&out);
        let _ = tokio::time::timeout(self.ctx.limits.write_timeout, write).await;
        let _ = self.stream.shutdown().await;
    }

    /// Hands the request to the app, unless a static file answers it or it is refused.
    fn start_request(
        &mut self,
        parsed: ParsedHead,
        events_tx: &handoff::Sender<ResponseEvent>,
        overdue: &OverdueWait,
        request: u64,
    ) -> Started {
        // The clock is read only when something reports the request's duration.
        let started =
            (self.ctx.access_log.is_some() || crate::metrics::enabled()).then(Instant::now);
        let ParsedHead {
            method,
            target,
            protocol,
            headers,
            framing,
            keep_alive,
            expect_continue,
        } = parsed;
        let is_head = method.as_ref() == b"HEAD";
        let access = self
            .ctx
            .access_log
            .as_ref()
            .map(|log| Box::new(log.entry(&method, &target, protocol, &headers, &self.peer)));
        if let Some(site) = &self.ctx.static_files {
            if let Some(answer) =
                site.respond_mounted(&self.ctx.proxy.root_path, &method, &target, &headers)
            {
                // A request body is not read: the connection ends after the answer.
                let keep_alive = keep_alive
                    && matches!(framing, BodyFraming::Empty | BodyFraming::Length(0))
                    && !self.ctx.stopping();
                return Started::Static(Box::new(StaticAnswer {
                    answer,
                    protocol,
                    keep_alive,
                    started,
                    access,
                }));
            }
        }

        let (body, pump) = match self.body_for(framing, expect_continue) {
            Ok(body) => body,
            // Refused before the app runs, like a bad head.
            Err(rejection) => return Started::Refused(rejection),
        };
        let head = RequestHead {
            method,
            target,
            protocol,
            headers,
            peer: self.peer.clone(),
            peer_environ: if keep_alive {
                self.peer_environ.clone().unwrap_or_default()
            } else {
                self.peer_environ.take().unwrap_or_default()
            },
            listener: Arc::clone(&self.listener),
        };
        let exchange = Box::new(Exchange {
            head: RequestForm::Http(head),
            body,
            sink: Box::new(HttpSink::new(events_tx.clone(), is_head)),
            on_overdue: Some(overdue.hook(request)),
        });
        if !self.ctx.dispatch(exchange) {
            return Started::Refused(Rejection {
                status: 503,
                detail: "server is shutting down".into(),
            });
        }
        let response = ResponseState {
            protocol,
            is_head,
            framing: None,
            status: 0,
            body_bytes: 0,
            keep_alive,
            started,
            access,
        };
        Started::Dispatched(response, pump)
    }

    /// Writes a static file's answer. Returns whether the connection may serve another
    /// request.
    async fn serve_static(&mut self, answer: Box<StaticAnswer>) -> io::Result<bool> {
        let StaticAnswer {
            answer,
            protocol,
            keep_alive,
            started,
            mut access,
        } = *answer;
        let status = answer.status;
        let timeout = self.ctx.limits.write_timeout;
        let (stream, out) = (&mut self.stream, &mut self.out);
        let sent = write_static(
            stream,
            out,
            answer,
            protocol,
            keep_alive,
            timeout,
            access.as_deref_mut(),
        )
        .await?;
        if let Some(started) = started {
            crate::metrics::response_since(status, started);
            if let (Some(log), Some(entry)) = (&self.ctx.access_log, access.as_deref()) {
                log.write(entry, status, sent, started.elapsed());
            }
        }
        Ok(keep_alive)
    }

    /// Waits for the app's response to the request dispatched, writing it as it comes, while
    /// the body pump feeds the app the request body. Returns whether the connection may
    /// serve another request.
    async fn await_response(
        &mut self,
        response: &mut ResponseState,
        pump: &mut BodyPump,
        events: &mut handoff::Receiver<ResponseEvent>,
        (overdue, request): (&mut OverdueWait, u64),
    ) -> io::Result<bool> {
        let end = loop {
            let waited = if pump.is_busy() {
                tokio::select! {
                    biased;
                    () = overdue.fired(request) => ResponseWait::Overdue,
                    event = events.recv() => ResponseWait::Event(event),
                    send_continue = pump.step(&mut self.stream, &mut self.buf) => {
                        ResponseWait::Pumped(send_continue)
                    }
                }
            } else {
                // The common case, no body to move: the wait holds two references, not the
                // futures `select!` keeps (fewer cache lines per request, as in read_head).
                std::future::poll_fn(|cx| {
                    if overdue.poll_fired(cx, request).is_ready() {
                        return Poll::Ready(ResponseWait::Overdue);
                    }
                    events.poll_recv(cx).map(ResponseWait::Event)
                })
                .await
            };
            match waited {
                ResponseWait::Overdue => {
                    // The app ran past --timeout: answer for it if nothing went out yet;
                    // either way this connection is done.
                    if response.framing.is_none() && self.out.is_empty() {
                        response.status = 504;
                        self.reject(Rejection {
                            status: 504,
                            detail: "the application did not answer within --timeout".into(),
                        })
                        .await;
                    }
                    return Ok(false);
                }
                ResponseWait::Event(event) => {
                    if let Some(end) = self.on_events(event, events, response, pump).await? {
                        break end;
                    }
                }
                ResponseWait::Pumped(send_continue) => {
                    if send_continue {
                        let interim = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
                        tokio::time::timeout(self.ctx.limits.write_timeout, interim)
                            .await
                            .map_err(|_| write_timed_out())??;
                        tokio::time::timeout(self.ctx.limits.write_timeout, self.stream.flush())
                            .await
                            .map_err(|_| write_timed_out())??;
                    }
                    if let Some(why) = pump.malformed() {
                        // Refused like a bad head if the app has not answered yet: its read
                        // raised, and whatever it would say now is moot.
                        if response.framing.is_none() && self.out.is_empty() {
                            response.status = 400;
                            let detail = format!("malformed chunked body: {why}");
                            self.reject(Rejection {
                                status: 400,
                                detail,
                            })
                            .await;
                        }
                        return Ok(false);
                    }
                    if pump.too_large() {
                        // Answer for the app if it has not started its response; either way
                        // the rest of this body will not be read.
                        if response.framing.is_none() && self.out.is_empty() {
                            response.status = 413;
                            self.reject(Rejection {
                                status: 413,
                                detail: format!(
                                    "chunked request body over --limit-request-body {}",
                                    self.ctx.limits.body
                                ),
                            })
                            .await;
                        }
                        return Ok(false);
                    }
                }
            }
        };
        let mut keep_alive = response.keep_alive && end == ResponseEnd::Complete;
        if keep_alive {
            // A request without a body, or whose body the app read, needs no drain: no
            // future for it. Any other is drained at once if it can be, without a timer.
            keep_alive = match pump.drain_settled() {
                Some(settled) => settled,
                None => {
                    let drained = crate::http::writer::within(
                        DRAIN_TIMEOUT,
                        pump.drain(&mut self.stream, &mut self.buf, DRAIN_LIMIT),
                    )
                    .await;
                    matches!(drained, Ok(true))
                }
            };
        }
        if let (Some(log), Some(entry), Some(started)) =
            (&self.ctx.access_log, &response.access, response.started)
        {
            log.write(
                entry,
                response.status,
                response.body_bytes,
                started.elapsed(),
            );
        }
        Ok(keep_alive)
    }

    /// How the body reaches the app: whole if it is already buffered, else streamed.
    ///
    /// A chunked body that arrived whole with its head is decoded before the app runs, so a
    /// malformed one is refused (400) or an oversized one (413) without calling the app.
    fn body_for(
        &mut self,
        framing: BodyFraming,
        expect_continue: bool,
    ) -> Result<(RequestBody, BodyPump), Rejection> {
        let decoder = match framing {
            BodyFraming::Empty => return Ok((RequestBody::Empty, BodyPump::none())),
            BodyFraming::Length(length) if !expect_continue && self.buf.len() as u64 >= length => {
                let body = self.buf.split_to(length as usize).freeze();
                return Ok((RequestBody::Complete(body), BodyPump::none()));
            }
            BodyFraming::Chunked if !expect_continue => {
                if let Some(body) = self.buffered_chunked_body()? {
                    return Ok((RequestBody::Complete(body), BodyPump::none()));
                }
                BodyDecoder::Chunked(ChunkedDecoder::new())
            }
            BodyFraming::Length(length) => BodyDecoder::Length(length),
            BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
        };
        let (messages_tx, messages_rx) = mpsc::channel(BODY_QUEUE);
        let (demand_tx, demand_rx) = oneshot::channel();
        let source = HttpBodySource::new(messages_rx, demand_tx);
        let body = RequestBody::Stream(Box::new(source));
        let bounds = BodyBounds {
            limit: self.ctx.limits.body,
            timeout: self.ctx.limits.body_timeout,
        };
        let pump = BodyPump::new(decoder, messages_tx, demand_rx, expect_continue, bounds);
        Ok((body, pump))
    }

    /// Decodes a chunked body if all of it is already buffered. `Ok(None)`: part of it is
    /// still to come, and it will be streamed.
    fn buffered_chunked_body(&mut self) -> Result<Option<Bytes>, Rejection> {
        let mut view = BytesMut::from(&self.buf[..]);
        let mut decoder = ChunkedDecoder::new();
        let mut body = BytesMut::new();
        loop {
            match decoder.decode(&mut view) {
                Ok(Decoded::Data(data)) => {
                    body.extend_from_slice(&data);
                    let limit = self.ctx.limits.body;
                    if limit > 0 && body.len() as u64 > limit {
                        return Err(Rejection {
                            status: 413,
                            detail: format!(
                                "chunked request body over --limit-request-body {limit}"
                            ),
                        });
                    }
                }
                Ok(Decoded::Done) => {
                    let consumed = self.buf.len() - view.len();
                    let _ = self.buf.split_to(consumed);
                    return Ok(Some(body.freeze()));
                }
                Ok(Decoded::NeedMore) => return Ok(None),
                Err(why) => {
                    return Err(Rejection {
                        status: 400,
                        detail: format!("malformed chunked body: {why}"),
                    })
                }
            }
        }
    }

    /// Applies the event received and every event already queued behind it, then writes
    /// them out together. Returns how the response ended once it has.
    async fn on_events(
        &mut self,
        first: Option<ResponseEvent>,
        events: &mut handoff::Receiver<ResponseEvent>,
        response: &mut ResponseState,
        pump: &BodyPump,
    ) -> io::Result<Option<ResponseEnd>> {
        let mut next = first;
        let end = loop {
            // `None`: the Python side dropped the response without ending it.
            let Some(event) = next else {
                break Some(ResponseEnd::Aborted);
            };
            // Only a file waits for the socket; every other event is applied here, with
            // nothing kept in the connection's future for it.
            let applied = match event {
                ResponseEvent::Head(head) => {
                    self.start_response(&head, response, pump);
                    None
                }
                ResponseEvent::Chunk(chunk) => {
                    self.body_chunk(*chunk, response);
                    None
                }
                ResponseEvent::File { file, offset, len } => {
                    self.body_file(file, offset, len, response).await?;
                    None
                }
                ResponseEvent::Complete(mut complete) => {
                    // Read in its box: moving the response out would copy it.
                    self.start_response(&complete.head, response, pump);
                    match &mut complete.body {
                        WholeBody::Small(small) => self.body_slice(small.as_slice(), response),
                        WholeBody::Pieces(pieces) => {
                            for chunk in pieces.drain(..) {
                                self.body_chunk(chunk, response);
                            }
                        }
                    }
                    Some(self.end_response(ResponseEnd::Complete, response))
                }
                ResponseEvent::End(end) => Some(self.end_response(end, response)),
            };
            if applied.is_some() {
                break applied;
            }
            next = match events.try_recv() {
                Ok(event) => Some(event),
                Err(TryRecvError::Empty) => break None,
                Err(TryRecvError::Disconnected) => None,
            };
        };
        self.flush_out().await?;
        Ok(end)
    }

    /// Writes what is queued: at once when the socket takes all of it (the common case,
    /// which keeps nothing in the connection's future), else waiting for room within
    /// `--write-timeout`.
    async fn flush_out(&mut self) -> io::Result<()> {
        let (out, stream) = (&mut self.out, &mut self.stream);
        let written = std::future::poll_fn(|cx| Poll::Ready(out.write_now(stream, cx))).await?;
        if !written {
            self.out
                .flush(&mut self.stream, self.ctx.limits.write_timeout)
                .await?;
        }
        Ok(())
    }

    fn start_response(
        &mut self,
        head: &ResponseHead,
        response: &mut ResponseState,
        pump: &BodyPump,
    ) {
        let framing = choose_framing(head, response.protocol);
        response.status = head.status;
        if let Some(access) = &mut response.access {
            access.capture_response(head);
        }
        response.keep_alive &= !head.close_connection
            && framing != ResponseFraming::CloseDelimited
            && !pump.body_unrequested()
            && !pump.broken()
            && !(100..200).contains(&head.status)
            && !self.ctx.stopping();
        response.framing = Some(framing);
        let staging = self.out.staging();
        encode_head(
            staging,
            head,
            framing,
            response.protocol,
            response.keep_alive,
        );
    }

    fn sends_body(response: &ResponseState) -> Option<ResponseFraming> {
        match response.framing {
            Some(ResponseFraming::NoBody) | None => None,
            Some(_) if response.is_head => None,
            framing => framing,
        }
    }

    fn body_chunk(&mut self, chunk: Bytes, response: &mut ResponseState) {
        self.body_piece(chunk.len(), response, |out| out.push(chunk));
    }

    /// [`body_chunk`](Self::body_chunk) for bytes held inline (a small whole body): copied
    /// into the staging buffer.
    fn body_slice(&mut self, bytes: &[u8], response: &mut ResponseState) {
        if !bytes.is_empty() {
            self.body_piece(bytes.len(), response, |out| out.put_slice(bytes));
        }
    }

    /// Frames `len` body bytes that `write` queues, unless the response sends no body.
    fn body_piece(
        &mut self,
        len: usize,
        response: &mut ResponseState,
        write: impl FnOnce(&mut OutQueue),
    ) {
        let Some(framing) = Self::sends_body(response) else {
            return;
        };
        response.body_bytes += len as u64;
        if framing == ResponseFraming::Chunked {
            chunk_header(self.out.staging(), len);
            write(&mut self.out);
            self.out.put_slice(b"\r\n");
        } else {
            write(&mut self.out);
        }
    }

    async fn body_file(
        &mut self,
        file: std::fs::File,
        offset: u64,
        len: u64,
        response: &mut ResponseState,
    ) -> io::Result<()> {
        let Some(framing) = Self::sends_body(response) else {
            return Ok(());
        };
        if framing == ResponseFraming::Chunked {
            chunk_header(self.out.staging(), len as usize);
        }
        self.out
            .flush(&mut self.stream, self.ctx.limits.write_timeout)
            .await?;
        let timeout = self.ctx.limits.write_timeout;
        let sent = self.stream.send_file(&file, offset, len, timeout).await?;
        response.body_bytes += sent;
        if sent < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than announced",
            ));
        }
        if framing == ResponseFraming::Chunked {
            self.out.put_slice(b"\r\n");
        }
        Ok(())
    }

    fn end_response(&mut self, end: ResponseEnd, response: &mut ResponseState) -> ResponseEnd {
        if end == ResponseEnd::Complete
            && Self::sends_body(response) == Some(ResponseFraming::Chunked)
        {
            self.out.put_slice(LAST_CHUNK);
        }
        if end == ResponseEnd::Aborted {
            response.keep_alive = false;
        }
        end
    }
}

fn write_timed_out() -> io::Error {
    crate::http::writer::write_timed_out()
}

/// The standard reason phrase for the statuses the engine itself sends.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}
