//! One HTTP/2 stream: its request becomes an [`Exchange`] for the WSGI bridge, its body is
//! read as the app asks for it, and the app's response goes out under flow control.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{
    BodyError, Exchange, ListenerInfo, Peer, Protocol, RequestBody, RequestForm, RequestHead,
    ResponseEnd, ResponseHead,
};
use crate::http::date::with_http_date;
use crate::http::fields::HeaderFields;
use crate::http::handoff;
use crate::http::response::status_allows_body;
use crate::http::sink::{
    BodyMessage, CompleteResponse, HttpBodySource, HttpSink, ResponseEvent, BODY_QUEUE,
    RESPONSE_QUEUE,
};
use crate::http::writer::read_file_at;
use crate::http::ConnContext;
use crate::logging::AccessEntry;
use crate::static_files::{StaticBody, StaticResponse};
use crate::wsgi::environ::PeerEnviron;

/// Size of the reads that send a `wsgi.file_wrapper` file (no sendfile(2) on HTTP/2).
const FILE_CHUNK: usize = 64 * 1024;

/// Why a response could not be completed.
enum StreamError {
    /// The client reset the stream or the connection is gone.
    Gone,
    /// The client took no response data for `--write-timeout`.
    TimedOut,
}

/// Serves one stream to its end.
pub async fn serve_stream(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    (peer, peer_environ): (Peer, Arc<PeerEnviron>),
    listener: Arc<ListenerInfo>,
    ctx: Arc<ConnContext>,
) {
    let started = Instant::now();
    let (parts, recv) = request.into_parts();
    let method = Bytes::copy_from_slice(parts.method.as_str().as_bytes());
    let target = Bytes::copy_from_slice(
        parts
            .uri
            .path_and_query()
            .map_or(
                if parts.method == http::Method::OPTIONS {
                    "*"
                } else {
                    "/"
                },
                |p| p.as_str(),
            )
            .as_bytes(),
    );
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::with_capacity(parts.headers.len() + 1);
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            pairs.push((b"host", authority.as_str().as_bytes()));
        }
    }
    for (name, value) in &parts.headers {
        pairs.push((name.as_str().as_bytes(), value.as_bytes()));
    }
    let headers = HeaderFields::from_pairs(&pairs);
    let is_head = parts.method == http::Method::HEAD;
    let access = ctx
        .access_log
        .as_ref()
        .map(|log| log.entry(&method, &target, Protocol::Http2, &headers, &peer));
    let mut writer = StreamWriter {
        respond: Some(&mut respond),
        send: None,
        ctx: &ctx,
        is_head,
        status: 0,
        body_bytes: 0,
        access,
    };

    if let Some((status, detail)) = check_limits(&ctx, &headers) {
        tracing::info!(
            "Bad HTTP/2 request from {}: {detail} (answered {status})",
            label(&peer)
        );
        crate::metrics::refused();
        writer.refuse(status);
        log_access(&ctx, &mut writer, started);
        return;
    }

    if let Some(site) = ctx.static_files.clone() {
        if let Some(answer) = site.respond_mounted(&ctx.proxy.root_path, &method, &target, &headers)
        {
            // Answered by the engine; a request body, if any, is never read (dropping the
            // receiving half resets the stream's upload, not the connection).
            drop(recv);
            writer.send_static(answer).await;
            crate::metrics::response_since(writer.status, started);
            log_access(&ctx, &mut writer, started);
            return;
        }
    }

    let (body, pump) = if recv.is_end_stream() {
        (RequestBody::Empty, None)
    } else {
        let (messages_tx, messages_rx) = mpsc::channel(BODY_QUEUE);
        let (demand_tx, demand_rx) = oneshot::channel();
        let (failed_tx, failed_rx) = oneshot::channel();
        let source = HttpBodySource::new(messages_rx, demand_tx);
        let pump = tokio::spawn(pump_body(
            recv,
            messages_tx,
            demand_rx,
            failed_tx,
            ctx.limits.body,
            ctx.limits.body_timeout,
        ));
        (
            RequestBody::Stream(Box::new(source)),
            Some((AbortOnDrop(pump), failed_rx)),
        )
    };
    let (pump_task, mut body_failed) = match pump {
        Some((task, failed)) => (Some(task), Some(failed)),
        None => (None, None),
    };

    let (events_tx, mut events) = handoff::channel(RESPONSE_QUEUE);
    let (overdue_tx, mut overdue) = oneshot::channel::<()>();
    let exchange = Box::new(Exchange {
        head: RequestForm::Http(RequestHead {
            method,
            target,
            protocol: Protocol::Http2,
            headers,
            peer: peer.clone(),
            peer_environ,
            listener,
        }),
        body,
        sink: Box::new(HttpSink::new(events_tx, is_head)),
        on_overdue: Some(crate::overdue::OnOverdue::Call(Box::new(move || {
            let _ = overdue_tx.send(());
        }))),
    });
    if !ctx.dispatch(exchange) {
        crate::metrics::refused();
        writer.refuse(503);
        log_access(&ctx, &mut writer, started);
        return;
    }

    let mut overdue_armed = true;
    loop {
        tokio::select! {
            biased;
            fired = &mut overdue, if overdue_armed => {
                overdue_armed = false;
                if fired.is_ok() {
                    // The app ran past --timeout: answer for it if nothing went out yet.
                    if writer.head_sent() {
                        writer.reset(Reason::INTERNAL_ERROR);
                    } else {
                        writer.refuse(504);
                    }
                    break;
                }
            }
            failed = async { body_failed.as_mut().expect("guarded").await }, if body_failed.is_some() => {
                body_failed = None;
                if let Ok(error) = failed {
                    // The app's read raised; answer for it if it has not answered.
                    let status = match error {
                        BodyError::TooLarge(_) => 413,
                        BodyError::TimedOut => 408,
                        _ => 400,
                    };
                    if writer.head_sent() {
                        writer.reset(Reason::CANCEL);
                    } else {
                        tracing::info!("HTTP/2 request body from {}: {error} (answered {status})", label(&peer));
                        writer.refuse(status);
                    }
                    break;
                }
            }
            event = events.recv() => {
                let Some(event) = event else {
                    // The Python side dropped the response without ending it.
                    writer.reset(Reason::INTERNAL_ERROR);
                    break;
                };
                match writer.apply(event).await {
                    Ok(None) => {}
                    Ok(Some(ResponseEnd::Complete)) => break,
                    Ok(Some(ResponseEnd::Aborted)) => {
                        writer.reset(Reason::INTERNAL_ERROR);
                        break;
                    }
                    Err(StreamError::TimedOut) => {
                        tracing::debug!("HTTP/2 stream to {}: --write-timeout", label(&peer));
                        writer.reset(Reason::CANCEL);
                        break;
                    }
                    Err(StreamError::Gone) => {
                        // A no-op if the client reset the stream; a cut response otherwise.
                        writer.reset(Reason::INTERNAL_ERROR);
                        break;
                    }
                }
            }
        }
    }
    drop(pump_task);
    crate::metrics::response_since(writer.status, started);
    log_access(&ctx, &mut writer, started);
}

fn label(peer: &Peer) -> String {
    match peer {
        Peer::Tcp(address) => address.to_string(),
        Peer::Unix => "unix socket".into(),
    }
}

/// Writes the stream's access log line.
fn log_access(ctx: &ConnContext, writer: &mut StreamWriter<'_>, started: Instant) {
    if let (Some(log), Some(entry)) = (&ctx.access_log, writer.access.take()) {
        log.write(&entry, writer.status, writer.body_bytes, started.elapsed());
    }
}

/// `--limit-request-fields` and `--limit-request-field-size` for an HTTP/2 head (h2
/// itself bounds the whole list with SETTINGS_MAX_HEADER_LIST_SIZE); `--limit-request-body`
/// for a declared `content-length`.
fn check_limits(ctx: &ConnContext, headers: &HeaderFields) -> Option<(u16, String)> {
    let limits = &ctx.limits;
    if headers.len() > limits.fields {
        return Some((
            431,
            format!(
                "more than --limit-request-fields {} header fields",
                limits.fields
            ),
        ));
    }
    if limits.field_size > 0 {
        if let Some((name, _)) = headers
            .iter()
            .find(|(n, v)| n.len() + 2 + v.len() > limits.field_size)
        {
            return Some((
                431,
                format!(
                    "header field {} longer than --limit-request-field-size {}",
                    String::from_utf8_lossy(name),
                    limits.field_size
                ),
            ));
        }
    }
    if limits.body > 0 {
        let declared = headers
            .get(b"content-length")
            .and_then(crate::wsgi::head::parse_content_length);
        if declared.is_some_and(|length| length > limits.body) {
            return Some((
                413,
                format!("request body over --limit-request-body {}", limits.body),
            ));
        }
    }
    None
}

/// Reads the request body once the app first asks for it, handing each DATA frame to the
/// app and releasing its flow-control capacity when the app's queue takes it: a client can
/// send at most its window ahead of what the app has read.
async fn pump_body(
    mut recv: RecvStream,
    messages: mpsc::Sender<BodyMessage>,
    demand: oneshot::Receiver<()>,
    failed: oneshot::Sender<BodyError>,
    limit: u64,
    timeout: std::time::Duration,
) {
    if demand.await.is_err() {
        // The app never read the body; dropping `recv` tells h2 we want no more of it.
        return;
    }
    let mut received = 0u64;
    let error = loop {
        let next = match tokio::time::timeout(timeout, recv.data()).await {
            Ok(next) => next,
            Err(_) => break BodyError::TimedOut,
        };
        match next {
            None => {
                let _ = messages.send(BodyMessage::End).await;
                return;
            }
            Some(Err(error)) => {
                tracing::debug!("HTTP/2 request body failed: {error}");
                break BodyError::Disconnected;
            }
            Some(Ok(data)) => {
                let len = data.len();
                received += len as u64;
                if limit > 0 && received > limit {
                    break BodyError::TooLarge(limit);
                }
                if messages.send(BodyMessage::Data(data)).await.is_err() {
                    return;
                }
                let _ = recv.flow_control().release_capacity(len);
            }
        }
    };
    let _ = messages.send(BodyMessage::Failed(error.clone())).await;
    if !matches!(error, BodyError::Disconnected) {
        let _ = failed.send(error);
    }
}

/// Aborts a task when dropped (the body pump must not outlive its stream).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes the app's response to the stream.
struct StreamWriter<'a> {
    /// Until the head is sent.
    respond: Option<&'a mut SendResponse<Bytes>>,
    /// After the head, while the body is still open.
    send: Option<SendStream<Bytes>>,
    ctx: &'a ConnContext,
    is_head: bool,
    status: u16,
    body_bytes: u64,
    /// The access log's record of the request, when the log is on.
    access: Option<AccessEntry>,
}

impl StreamWriter<'_> {
    fn head_sent(&self) -> bool {
        self.respond.is_none()
    }

    /// Answers for the app (an error status with a short text body).
    fn refuse(&mut self, status: u16) {
        let reason = match status {
            400 => "Bad Request",
            408 => "Request Timeout",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Error",
        };
        let head = ResponseHead {
            status,
            status_line: Bytes::from(format!("{status} {reason}")),
            headers: vec![(
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
            content_length: Some(reason.len() as u64),
            close_connection: false,
        };
        if self.send_head(&head, false).is_ok() {
            if let Some(mut send) = self.send.take() {
                self.body_bytes += reason.len() as u64;
                let _ = send.send_data(Bytes::from_static(reason.as_bytes()), true);
            }
        }
    }

    fn reset(&mut self, reason: Reason) {
        if let Some(send) = &mut self.send {
            send.send_reset(reason);
        } else if let Some(respond) = &mut self.respond {
            respond.send_reset(reason);
        }
        self.send = None;
    }

    /// Applies one response event; `Some` once the response has ended.
    async fn apply(&mut self, event: ResponseEvent) -> Result<Option<ResponseEnd>, StreamError> {
        match event {
            ResponseEvent::Head(head) => {
                self.send_head(&head, false)?;
                Ok(None)
            }
            ResponseEvent::Chunk(chunk) => {
                self.send_body(*chunk).await?;
                Ok(None)
            }
            ResponseEvent::File { file, offset, len } => {
                self.send_file(file, offset, len).await?;
                Ok(None)
            }
            ResponseEvent::Complete(complete) => {
                let CompleteResponse { head, body } = *complete;
                let body = body.into_pieces();
                let empty = body.iter().all(|chunk| chunk.is_empty());
                self.send_head(&head, empty)?;
                for chunk in body {
                    self.send_body(chunk).await?;
                }
                self.end()?;
                Ok(Some(ResponseEnd::Complete))
            }
            ResponseEvent::End(ResponseEnd::Complete) => {
                self.end()?;
                Ok(Some(ResponseEnd::Complete))
            }
            ResponseEvent::End(ResponseEnd::Aborted) => Ok(Some(ResponseEnd::Aborted)),
        }
    }

    /// Sends the head; the stream ends with it when no body can follow (or `no_body`).
    fn send_head(&mut self, head: &ResponseHead, no_body: bool) -> Result<(), StreamError> {
        let Some(respond) = self.respond.take() else {
            return Ok(());
        };
        self.status = head.status;
        if let Some(access) = &mut self.access {
            access.capture_response(head);
        }
        let mut builder = http::Response::builder().status(head.status);
        let mut has_date = false;
        let mut has_server = false;
        for (name, value) in &head.headers {
            // Names are validated tokens; h2 wants them lower-case, which from_bytes makes.
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) else {
                continue;
            };
            if is_connection_specific(&name) {
                continue;
            }
            has_date |= name == http::header::DATE;
            has_server |= name == http::header::SERVER;
            builder = builder.header(name, value);
        }
        if !has_server {
            builder = builder.header(http::header::SERVER, "tidegate");
        }
        if !has_date {
            let date = with_http_date(http::HeaderValue::from_bytes);
            if let Ok(date) = date {
                builder = builder.header(http::header::DATE, date);
            }
        }
        let allows_body = status_allows_body(head.status);
        if let Some(length) = head.content_length {
            if allows_body || head.status == 304 {
                builder = builder.header(http::header::CONTENT_LENGTH, length);
            }
        }
        let response = builder.body(()).map_err(|_| StreamError::Gone)?;
        let end = no_body || self.is_head || !allows_body;
        let send = respond
            .send_response(response, end)
            .map_err(|_| StreamError::Gone)?;
        if !end {
            self.send = Some(send);
        }
        Ok(())
    }

    /// Sends body bytes as the client's flow-control window allows.
    async fn send_body(&mut self, mut data: Bytes) -> Result<(), StreamError> {
        let Some(send) = &mut self.send else {
            return Ok(());
        };
        let timeout = self.ctx.limits.write_timeout;
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let mut capacity = send.capacity();
            while capacity == 0 {
                match tokio::time::timeout(timeout, poll_fn(|cx| send.poll_capacity(cx))).await {
                    Err(_) => return Err(StreamError::TimedOut),
                    Ok(Some(Ok(n))) => capacity = n,
                    Ok(_) => return Err(StreamError::Gone),
                }
            }
            let piece = data.split_to(capacity.min(data.len()));
            self.body_bytes += piece.len() as u64;
            send.send_data(piece, false)
                .map_err(|_| StreamError::Gone)?;
        }
        Ok(())
    }

    /// Sends part of a file, read in chunks (the GIL is not involved: this is the I/O task).
    async fn send_file(
        &mut self,
        file: std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<(), StreamError> {
        if self.send.is_none() {
            return Ok(());
        }
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(FILE_CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            let n = read_file_at(&file, &mut buf, offset + done).map_err(|error| {
                tracing::error!(
                    "Reading a response file (wsgi.file_wrapper or --static) failed: {error}"
                );
                StreamError::Gone
            })?;
            if n == 0 {
                // Shorter than announced: the response cannot be completed.
                tracing::error!(
                    "A response file (wsgi.file_wrapper or --static) is shorter than announced"
                );
                return Err(StreamError::Gone);
            }
            buf.truncate(n);
            self.send_body(Bytes::from(buf)).await?;
            done += n as u64;
        }
        Ok(())
    }

    /// Sends a `--static` answer: the head, then the text or the file range.
    async fn send_static(&mut self, answer: StaticResponse) {
        let head = ResponseHead {
            status: answer.status,
            status_line: Bytes::from(format!("{} {}", answer.status, answer.reason)),
            headers: answer.headers,
            content_length: answer.content_length,
            close_connection: false,
        };
        let empty = matches!(answer.body, StaticBody::Empty);
        let sent = match self.send_head(&head, empty) {
            Err(error) => Err(error),
            Ok(()) => match answer.body {
                StaticBody::Empty => Ok(()),
                StaticBody::Text(text) => self.send_body(text).await,
                StaticBody::File { file, offset, len } => self.send_file(file, offset, len).await,
            },
        };
        match sent.and_then(|()| self.end()) {
            Ok(()) => {}
            Err(StreamError::TimedOut) => self.reset(Reason::CANCEL),
            Err(StreamError::Gone) => self.reset(Reason::INTERNAL_ERROR),
        }
    }

    fn end(&mut self) -> Result<(), StreamError> {
        if let Some(mut send) = self.send.take() {
            send.send_data(Bytes::new(), true)
                .map_err(|_| StreamError::Gone)?;
        }
        Ok(())
    }
}

/// Header fields HTTP/2 forbids in a response (RFC 9113 section 8.2.2). The bridge already
/// drops hop-by-hop fields; this also keeps h2 from refusing the whole response.
fn is_connection_specific(name: &http::HeaderName) -> bool {
    use http::header;
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == "keep-alive"
        || name == "proxy-connection"
}
