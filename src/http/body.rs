//! Reading a request body from the connection into the app's `wsgi.input`.
//!
//! The [`BodyPump`] runs inside the connection task, next to the response writer. It reads
//! the socket only while the app has room in the bounded body channel, so a 1 GiB upload
//! read slowly holds a few socket reads in memory, never the whole body. With
//! `Expect: 100-continue` it waits for the app's first read before sending
//! `100 Continue` and reading anything.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};

use crate::gateway::BodyError;
use crate::http::chunked::{ChunkedDecoder, Decoded};
use crate::http::sink::BodyMessage;

/// Bytes asked of the socket per read.
pub const READ_SIZE: usize = 64 * 1024;

/// How a body is delimited, with the decoding state.
#[derive(Debug)]
pub enum BodyDecoder {
    /// This many bytes are left.
    Length(u64),
    /// A chunked body.
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    /// Takes what it can from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, String> {
        match self {
            BodyDecoder::Length(0) => Ok(Decoded::Done),
            BodyDecoder::Length(remaining) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = (*remaining).min(buf.len() as u64);
                *remaining -= n;
                Ok(Decoded::Data(buf.split_to(n as usize).freeze()))
            }
            BodyDecoder::Chunked(decoder) => decoder.decode(buf),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpState {
    /// Waiting for the app's first read (Expect: 100-continue).
    AwaitingDemand,
    /// Reading the body into the channel.
    Active,
    /// The whole body was read.
    Finished,
    /// The app dropped wsgi.input before the end; the rest can only be discarded.
    Abandoned,
    /// The body could not be read (client gone, stalled, or malformed framing).
    Failed,
    /// The body grew past `--limit-request-body`.
    TooLarge,
    /// The body's framing was invalid (bad chunk size line, bad trailer...).
    Malformed,
}

/// What bounds a body while it is read.
#[derive(Debug, Clone, Copy)]
pub struct BodyBounds {
    /// `--limit-request-body` (0: none).
    pub limit: u64,
    /// `--body-timeout`: the longest wait for the next body bytes.
    pub timeout: std::time::Duration,
}

/// The state of a body read from the connection while the app runs.
struct Pump {
    state: PumpState,
    decoder: BodyDecoder,
    messages: Option<mpsc::Sender<BodyMessage>>,
    demand: Option<oneshot::Receiver<()>>,
    expect_continue: bool,
    bounds: BodyBounds,
    received: u64,
    /// Why the body was refused, when its framing was invalid.
    malformed: Option<String>,
}

impl Pump {
    /// Whether the pump has something to do: wait for the app's first read, or read body.
    fn is_busy(&self) -> bool {
        matches!(self.state, PumpState::AwaitingDemand | PumpState::Active)
    }

    /// One step: waits for the app's first read, or moves one piece of body. Returns true
    /// when `100 Continue` must be sent now. Cancel-safe.
    async fn step<S: AsyncRead + Unpin>(&mut self, stream: &mut S, buf: &mut BytesMut) -> bool {
        if self.state == PumpState::AwaitingDemand {
            let demanded = self.demanded().await;
            return self.on_demand(demanded);
        }
        self.pump(stream, buf).await;
        false
    }

    /// Resolves when the app first reads `wsgi.input` (or drops it: `false`).
    async fn demanded(&mut self) -> bool {
        match self.demand.as_mut() {
            Some(demand) => demand.await.is_ok(),
            None => std::future::pending().await,
        }
    }

    /// Records the app's first read. Returns whether `100 Continue` must be sent now.
    fn on_demand(&mut self, demanded: bool) -> bool {
        self.demand = None;
        if demanded {
            self.state = PumpState::Active;
            self.expect_continue
        } else {
            self.state = PumpState::Abandoned;
            false
        }
    }

    /// Moves one piece of body from the socket to the app. Cancel-safe: it only awaits
    /// channel room and socket reads, and changes state only after they complete.
    async fn pump<S: AsyncRead + Unpin>(&mut self, stream: &mut S, buf: &mut BytesMut) {
        let Some(messages) = self.messages.as_ref() else {
            self.state = PumpState::Abandoned;
            return;
        };
        let Ok(permit) = messages.reserve().await else {
            // wsgi.input was dropped: nobody will read the rest.
            self.state = PumpState::Abandoned;
            return;
        };
        loop {
            match self.decoder.decode(buf) {
                Ok(Decoded::Data(data)) => {
                    self.received += data.len() as u64;
                    if self.bounds.limit > 0 && self.received > self.bounds.limit {
                        permit.send(BodyMessage::Failed(BodyError::TooLarge(self.bounds.limit)));
                        self.state = PumpState::TooLarge;
                        return;
                    }
                    permit.send(BodyMessage::Data(data));
                    return;
                }
                Ok(Decoded::Done) => {
                    permit.send(BodyMessage::End);
                    self.state = PumpState::Finished;
                    self.messages = None;
                    return;
                }
                Ok(Decoded::NeedMore) => {}
                Err(why) => {
                    permit.send(BodyMessage::Failed(BodyError::Malformed(why.clone())));
                    self.state = PumpState::Malformed;
                    self.malformed = Some(why);
                    return;
                }
            }
            buf.reserve(READ_SIZE);
            let failure =
                match tokio::time::timeout(self.bounds.timeout, stream.read_buf(buf)).await {
                    Ok(Ok(n)) if n > 0 => continue,
                    Ok(_) => BodyError::Disconnected,
                    Err(_) => BodyError::TimedOut,
                };
            permit.send(BodyMessage::Failed(failure));
            self.state = PumpState::Failed;
            return;
        }
    }

    /// Whether the body went past `--limit-request-body`.
    fn too_large(&self) -> bool {
        self.state == PumpState::TooLarge
    }

    /// Why the body's framing was refused, if it was.
    fn malformed(&self) -> Option<&str> {
        self.malformed.as_deref()
    }

    /// Whether the body can no longer be read to its end (the connection must close).
    fn broken(&self) -> bool {
        matches!(
            self.state,
            PumpState::Failed | PumpState::TooLarge | PumpState::Malformed
        )
    }

    /// What [`drain`](Self::drain) returns when it needs no read: `Some(true)` for a body
    /// read to its end, `Some(false)` for one that cannot be drained.
    fn drain_settled(&self) -> Option<bool> {
        match self.state {
            PumpState::Finished => Some(true),
            PumpState::Failed | PumpState::TooLarge | PumpState::Malformed => Some(false),
            // The client was never told to send the body: it may or may not come.
            PumpState::AwaitingDemand if self.expect_continue => Some(false),
            _ => None,
        }
    }

    /// After the response: reads and discards what the app left of the body, up to
    /// `limit` bytes, so the connection can serve the next request. Returns whether the
    /// body was consumed to its end.
    async fn drain<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
        limit: u64,
    ) -> bool {
        if let Some(settled) = self.drain_settled() {
            return settled;
        }
        self.messages = None;
        let mut discarded = 0u64;
        loop {
            match self.decoder.decode(buf) {
                Ok(Decoded::Data(data)) => {
                    discarded += data.len() as u64;
                    if discarded > limit {
                        return false;
                    }
                }
                Ok(Decoded::Done) => {
                    self.state = PumpState::Finished;
                    return true;
                }
                Ok(Decoded::NeedMore) => {
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

    /// Whether a response should announce that the connection closes because the body
    /// will not be read (the client still waits for `100 Continue`).
    fn body_unrequested(&self) -> bool {
        self.state == PumpState::AwaitingDemand
    }
}

/// Feeds one request's body to the app. A request whose body has been handed over whole, or
/// that has none, has no pump: one pointer in the connection's future, where the pump's
/// hundred bytes took cache lines of their own with every request.
pub struct BodyPump(Option<Box<Pump>>);

impl BodyPump {
    /// A pump for a request without a streamed body.
    pub fn none() -> Self {
        BodyPump(None)
    }

    /// A pump that feeds `messages`; it waits for `demand` first when the client expects
    /// `100 Continue`.
    pub fn new(
        decoder: BodyDecoder,
        messages: mpsc::Sender<BodyMessage>,
        demand: oneshot::Receiver<()>,
        expect_continue: bool,
        bounds: BodyBounds,
    ) -> Self {
        let pump = Box::new(Pump {
            state: if expect_continue {
                PumpState::AwaitingDemand
            } else {
                PumpState::Active
            },
            decoder,
            messages: Some(messages),
            demand: Some(demand),
            expect_continue,
            bounds,
            received: 0,
            malformed: None,
        });
        BodyPump(Some(pump))
    }

    /// Whether the pump has something to do: wait for the app's first read, or read body.
    pub fn is_busy(&self) -> bool {
        self.0.as_ref().is_some_and(|pump| pump.is_busy())
    }

    /// One step: waits for the app's first read, or moves one piece of body. Returns true
    /// when `100 Continue` must be sent now. Cancel-safe; never ready without a body.
    pub async fn step<S: AsyncRead + Unpin>(&mut self, stream: &mut S, buf: &mut BytesMut) -> bool {
        match &mut self.0 {
            Some(pump) => pump.step(stream, buf).await,
            None => std::future::pending().await,
        }
    }

    /// Whether the body grew past `--limit-request-body`.
    pub fn too_large(&self) -> bool {
        self.0.as_ref().is_some_and(|pump| pump.too_large())
    }

    /// Why the body's framing was refused, if it was.
    pub fn malformed(&self) -> Option<&str> {
        self.0.as_ref().and_then(|pump| pump.malformed())
    }

    /// Whether the body can no longer be read to its end (the connection must close).
    pub fn broken(&self) -> bool {
        self.0.as_ref().is_some_and(|pump| pump.broken())
    }

    /// What [`drain`](Self::drain) returns when it needs no read: `Some(true)` for a body
    /// that is done (or never was), `Some(false)` for one that cannot be drained.
    pub fn drain_settled(&self) -> Option<bool> {
        match &self.0 {
            Some(pump) => pump.drain_settled(),
            None => Some(true),
        }
    }

    /// After the response: reads and discards what the app left of the body, up to
    /// `limit` bytes, so the connection can serve the next request. Returns whether the
    /// body was consumed to its end.
    pub async fn drain<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
        limit: u64,
    ) -> bool {
        match &mut self.0 {
            Some(pump) => pump.drain(stream, buf, limit).await,
            None => true,
        }
    }

    /// Whether a response should announce that the connection closes because the body
    /// will not be read (the client still waits for `100 Continue`).
    pub fn body_unrequested(&self) -> bool {
        self.0.as_ref().is_some_and(|pump| pump.body_unrequested())
    }
}
