//! The two channels between a connection task and the Python thread running its request.
//!
//! [`HttpSink`] turns the bridge's response calls into [`ResponseEvent`]s for the
//! connection task; [`HttpBodySource`] receives the request body the connection task
//! reads. Both channels are bounded, so a slow client slows the app down instead of
//! growing memory, and both wait with the GIL released.

use std::fs::File;

use bytes::Bytes;
use pyo3::Python;
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{
    BodyError, BodySource, Disconnected, ResponseEnd, ResponseHead, ResponseSink,
};
use crate::server::driver;
use crate::whole_body::WholeBody;

/// What the Python side tells the connection task about the response.
///
/// The large payloads are boxed so the enum stays at 24 bytes: tokio's channel allocates
/// its slots in blocks of 32, and with the payloads inline (104 bytes) each request's
/// channel allocated a 3.3 KiB block, beyond malloc's thread cache and in the range where
/// glibc consolidates its fast bins first. Boxed, the block is under 1 KiB.
pub enum ResponseEvent {
    /// The head; body events follow.
    Head(Box<ResponseHead>),
    /// A piece of the body.
    Chunk(Box<Bytes>),
    /// Part of a file, to send with sendfile(2).
    File {
        /// A duplicate descriptor of the app's file.
        file: File,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// The whole response at once.
    Complete(Box<CompleteResponse>),
    /// The response is over.
    End(ResponseEnd),
}

/// A response whose body the app handed over whole (a list): one box for the head and
/// the body, one allocation fewer per response than a box each.
pub struct CompleteResponse {
    /// The head.
    pub head: ResponseHead,
    /// The body.
    pub body: WholeBody,
}

// Keeps the channel block (32 events) under 1 KiB: see ResponseEvent.
const _: () = assert!(std::mem::size_of::<ResponseEvent>() <= 24);

/// How many response events may wait for the connection task.
pub const RESPONSE_QUEUE: usize = 16;

/// The response sink of one HTTP request.
pub struct HttpSink {
    events: mpsc::Sender<ResponseEvent>,
    wants_body: bool,
    /// The response's last event (`End` or `Complete`) was handed over.
    ended: bool,
    /// The driver's turn in which the last event was sent from inside the runtime.
    sent_in_turn: Option<u64>,
}

impl HttpSink {
    /// A sink sending to `events`; `is_head` for HEAD requests.
    pub fn new(events: mpsc::Sender<ResponseEvent>, is_head: bool) -> Self {
        HttpSink {
            events,
            wants_body: !is_head,
            ended: false,
            sent_in_turn: None,
        }
    }

    fn send(&mut self, py: Python<'_>, event: ResponseEvent) -> Result<(), Disconnected> {
        let events = &self.events;
        match driver::in_runtime(&mut self.sent_in_turn, || events.try_send(event)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(event)) => {
                crate::metrics::detach_timed(py, || match driver::Runner::current() {
                    // The connection task makes room by writing to its client, on the
                    // runtime this runner drives.
                    Some(runner) => runner.drive(events.send(event)),
                    None => events.blocking_send(event),
                })
                .map_err(|_| Disconnected)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Disconnected),
        }
    }

    /// Sends the response's last event; on a runner thread of the `--threads 1` driver it
    /// waits for the runner's next turn at the runtime instead (no cross-thread wake).
    fn send_last(&mut self, py: Python<'_>, event: ResponseEvent) -> Result<(), Disconnected> {
        if self.events.is_closed() {
            return Err(Disconnected);
        }
        match crate::server::driver::defer_last_event(&self.events, event) {
            Ok(()) => Ok(()),
            Err(event) => self.send(py, event),
        }
    }
}

impl ResponseSink for HttpSink {
    fn send_head(&mut self, py: Python<'_>, head: ResponseHead) -> Result<(), Disconnected> {
        self.send(py, ResponseEvent::Head(Box::new(head)))
    }

    fn send_chunk(&mut self, py: Python<'_>, chunk: Bytes) -> Result<(), Disconnected> {
        self.send(py, ResponseEvent::Chunk(Box::new(chunk)))
    }

    fn send_file(
        &mut self,
        py: Python<'_>,
        file: File,
        offset: u64,
        len: u64,
    ) -> Result<(), Disconnected> {
        self.send(py, ResponseEvent::File { file, offset, len })
    }

    fn finish(&mut self, py: Python<'_>, end: ResponseEnd) {
        self.ended = true;
        // If the connection is gone there is nobody left to tell.
        let _ = self.send_last(py, ResponseEvent::End(end));
    }

    fn send_complete(
        &mut self,
        py: Python<'_>,
        head: ResponseHead,
        body: WholeBody,
    ) -> Result<(), Disconnected> {
        let body = if self.wants_body {
            body
        } else {
            WholeBody::default()
        };
        self.ended = true;
        self.send_last(
            py,
            ResponseEvent::Complete(Box::new(CompleteResponse { head, body })),
        )
    }

    fn wants_body(&self) -> bool {
        self.wants_body
    }
}

impl Drop for HttpSink {
    /// An HTTP connection reuses one channel for all its responses, so the channel does not
    /// close when a sink goes: a response dropped unfinished (a panic in the bridge, a
    /// request that never reached a Python thread) is ended here as aborted, and the
    /// connection closes instead of waiting for events that will never come.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let end = ResponseEvent::End(ResponseEnd::Aborted);
        let events = &self.events;
        let sent = &mut self.sent_in_turn;
        if let Err(mpsc::error::TrySendError::Full(end)) =
            driver::in_runtime(sent, || events.try_send(end))
        {
            // Full: the connection task is still writing earlier events out and will make
            // room. Blocking is not allowed on a runtime thread (nothing can be full there:
            // the connection drops a sink only before dispatching it).
            if let Some(runner) = driver::Runner::current() {
                let _ = runner.drive(events.send(end));
            } else if tokio::runtime::Handle::try_current().is_err() {
                let _ = events.blocking_send(end);
            }
        }
    }
}

/// What the connection task sends on the body channel.
#[derive(Debug)]
pub enum BodyMessage {
    /// Body bytes.
    Data(Bytes),
    /// The body ended normally.
    End,
    /// The body cannot be completed.
    Failed(BodyError),
}

/// How many body pieces may wait for the app (each at most one socket read).
pub const BODY_QUEUE: usize = 4;

/// The request body as the Python side reads it.
pub struct HttpBodySource {
    messages: mpsc::Receiver<BodyMessage>,
    /// Fired on the first read: the connection task then sends `100 Continue` if the client
    /// asked for it, and starts reading the body.
    demand: Option<oneshot::Sender<()>>,
    ended: bool,
}

impl HttpBodySource {
    /// A source reading `messages`, signalling `demand` on the first read.
    pub fn new(messages: mpsc::Receiver<BodyMessage>, demand: oneshot::Sender<()>) -> Self {
        HttpBodySource {
            messages,
            demand: Some(demand),
            ended: false,
        }
    }
}

impl BodySource for HttpBodySource {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.ended {
            return Ok(None);
        }
        if let Some(demand) = self.demand.take() {
            // The connection task may already be gone; the receive below reports that.
            let _ = driver::in_runtime(&mut None, || demand.send(()));
        }
        let next = match self.messages.try_recv() {
            Ok(message) => Some(message),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => match driver::Runner::current() {
                // The connection task reads the body on the runtime this runner drives.
                Some(runner) => runner.drive(self.messages.recv()),
                None => self.messages.blocking_recv(),
            },
        };
        match next {
            Some(BodyMessage::Data(data)) => Ok(Some(data)),
            Some(BodyMessage::End) => {
                self.ended = true;
                Ok(None)
            }
            Some(BodyMessage::Failed(error)) => Err(error),
            // The connection task ended without finishing the body.
            None => Err(BodyError::Disconnected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_dropped_unfinished_ends_the_response_as_aborted() {
        let (events_tx, mut events) = mpsc::channel(RESPONSE_QUEUE);
        drop(HttpSink::new(events_tx.clone(), false));
        // The connection still holds a sender, so only this event can end its wait.
        match events.try_recv() {
            Ok(ResponseEvent::End(ResponseEnd::Aborted)) => {}
            _ => panic!("expected End(Aborted)"),
        }
        assert!(events.try_recv().is_err());
        drop(events_tx);
    }

    #[test]
    fn response_events_stay_small() {
        assert!(std::mem::size_of::<ResponseEvent>() <= 24);
    }
}
