//! The two channels between a connection task and the Python thread running its request.
//!
//! [`HttpSink`] turns the bridge's response calls into [`ResponseEvent`]s for the
//! connection task (through [`handoff`]); [`HttpBodySource`] receives the request body the
//! connection task reads. Both channels are bounded (beside a response's one last event),
//! so a slow client slows the app down instead of growing memory, and both wait with the
//! GIL released.

use std::fs::File;

use bytes::Bytes;
use pyo3::Python;
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{
    BodyError, BodySource, Disconnected, ResponseEnd, ResponseHead, ResponseSink,
};
use crate::http::handoff::{self, TrySendError};
use crate::server::driver;
use crate::whole_body::WholeBody;

/// What the Python side tells the connection task about the response.
///
/// The large payloads are boxed so the enum stays at 24 bytes: the channel's ring holds
/// [`RESPONSE_QUEUE`] of them, and a move of an event is three words.
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

// Keeps events three words: see ResponseEvent.
const _: () = assert!(std::mem::size_of::<ResponseEvent>() <= 24);

/// How many response events may wait for the connection task.
pub const RESPONSE_QUEUE: usize = 16;

/// The response sink of one HTTP request.
pub struct HttpSink {
    events: handoff::Sender<ResponseEvent>,
    wants_body: bool,
    /// The response's last event (`End` or `Complete`) was handed over.
    ended: bool,
}

impl HttpSink {
    /// A sink sending to `events`; `is_head` for HEAD requests.
    pub fn new(events: handoff::Sender<ResponseEvent>, is_head: bool) -> Self {
        HttpSink {
            events,
            wants_body: !is_head,
            ended: false,
        }
    }

    fn send(&mut self, py: Python<'_>, event: ResponseEvent) -> Result<(), Disconnected> {
        match self.events.try_send(event) {
            Ok(waker) => {
                driver::wake_soon(waker);
                Ok(())
            }
            Err(TrySendError::Full(event)) => {
                let events = &self.events;
                crate::metrics::detach_timed(py, || match driver::Runner::current() {
                    // The connection task makes room by writing to its client, on the
                    // runtime this runner drives.
                    Some(runner) => runner.drive(events.send(event)),
                    None => events.blocking_send(event),
                })
                .map_err(|_| Disconnected)
            }
            Err(TrySendError::Closed(_)) => Err(Disconnected),
        }
    }

    /// Sends the response's last event, which never waits for room.
    fn send_last(&mut self, event: ResponseEvent) -> Result<(), Disconnected> {
        self.ended = true;
        let waker = self.events.send_last(event).map_err(|_| Disconnected)?;
        driver::wake_soon(waker);
        Ok(())
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

    fn finish(&mut self, _py: Python<'_>, end: ResponseEnd) {
        // If the connection is gone there is nobody left to tell.
        let _ = self.send_last(ResponseEvent::End(end));
    }

    fn send_complete(
        &mut self,
        _py: Python<'_>,
        head: ResponseHead,
        body: WholeBody,
    ) -> Result<(), Disconnected> {
        let body = if self.wants_body {
            body
        } else {
            WholeBody::default()
        };
        self.send_last(ResponseEvent::Complete(Box::new(CompleteResponse {
            head,
            body,
        })))
    }

    fn wants_body(&self) -> bool {
        self.wants_body
    }
}

impl Drop for HttpSink {
    /// An HTTP connection reuses one channel for all its responses, so the channel does not
    /// end when a sink goes: a response dropped unfinished (a panic in the bridge, a
    /// request that never reached a Python thread) is ended here as aborted, and the
    /// connection closes instead of waiting for events that will never come. The last
    /// event never waits for room, so this works on any thread.
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.send_last(ResponseEvent::End(ResponseEnd::Aborted));
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
            let _ = driver::in_runtime(|| demand.send(()));
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
        let (events_tx, mut events) = handoff::channel(RESPONSE_QUEUE);
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
    fn a_sink_dropped_unfinished_ends_its_response_even_when_the_queue_is_full() {
        let (events_tx, mut events) = handoff::channel(1);
        let mut sink = HttpSink::new(events_tx.clone(), false);
        Python::initialize();
        Python::attach(|py| {
            sink.send_chunk(py, Bytes::from_static(b"a")).unwrap();
        });
        drop(sink);
        assert!(matches!(events.try_recv(), Ok(ResponseEvent::Chunk(_))));
        assert!(matches!(
            events.try_recv(),
            Ok(ResponseEvent::End(ResponseEnd::Aborted))
        ));
        drop(events_tx);
    }

    #[test]
    fn response_events_stay_small() {
        assert!(std::mem::size_of::<ResponseEvent>() <= 24);
    }
}
