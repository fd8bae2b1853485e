//! What the watchdog does with a request that runs past `--timeout`: tell the engine that
//! holds its connection, which answers 504 (or cuts the connection if the response had
//! started).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// How the watchdog reaches the engine of an overdue request.
pub enum OnOverdue {
    /// Calls a callback (an HTTP/2 stream's, whose requests are not one after the other).
    Call(Box<dyn FnOnce() + Send>),
    /// Raises the overdue signal of the request's HTTP/1 connection; the number tells the
    /// request among the connection's.
    Signal(Arc<OverdueSignal>, u64),
}

impl OnOverdue {
    /// Tells the engine that the request is overdue.
    pub fn fire(self) {
        match self {
            OnOverdue::Call(call) => call(),
            OnOverdue::Signal(signal, request) => signal.fire(request),
        }
    }
}

/// An HTTP/1 connection's "the request now running is overdue", made once for the
/// connection's life and handed to each of its requests with the request's number.
///
/// A oneshot channel and a boxed callback per request cost ~300 instructions per request
/// (two allocations, the channel's state changes and drops). Requests on a connection run
/// one after the other, so one signal serves them all: a late fire for an earlier request
/// (the watchdog took the request's entry just before it ended) carries that request's
/// number, which the connection no longer waits for.
#[derive(Default)]
pub struct OverdueSignal {
    /// The number of the last request the watchdog found overdue (0: none).
    fired: AtomicU64,
    /// The connection task waiting for the signal.
    waker: Mutex<Option<Waker>>,
}

impl OverdueSignal {
    /// Marks request `request` overdue and wakes the connection.
    pub fn fire(&self, request: u64) {
        self.fired.store(request, Ordering::Release);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The connection's side of its [`OverdueSignal`]: waits for one request's fire, with the
/// waker registered once for the connection's life (a task's waker is the same at every
/// poll), so that a poll is an atomic load and a pointer comparison rather than a lock.
pub struct OverdueWait {
    signal: Arc<OverdueSignal>,
    /// A copy of the waker registered in the signal, to compare at each poll.
    registered: Option<Waker>,
}

impl OverdueWait {
    /// A connection's new signal and its waiting side.
    pub fn new() -> Self {
        OverdueWait {
            signal: Arc::new(OverdueSignal::default()),
            registered: None,
        }
    }

    /// What the watchdog fires for request `request` of this connection.
    pub fn hook(&self, request: u64) -> OnOverdue {
        OnOverdue::Signal(Arc::clone(&self.signal), request)
    }

    /// Whether request `request` was found overdue; registers `cx`'s waker if not.
    pub fn poll_fired(&mut self, cx: &mut Context<'_>, request: u64) -> Poll<()> {
        let signal = &self.signal;
        if signal.fired.load(Ordering::Acquire) == request {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        *signal.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        self.registered = Some(cx.waker().clone());
        // A fire between the first check and the registration found no waker to wake.
        if signal.fired.load(Ordering::Acquire) == request {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves once request `request` is found overdue.
    pub async fn fired(&mut self, request: u64) {
        std::future::poll_fn(|cx| self.poll_fired(cx, request)).await
    }
}

impl Default for OverdueWait {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::counting_waker;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_fire_wakes_the_waiting_request_and_only_it_resolves() {
        let mut wait = OverdueWait::new();
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(wait.poll_fired(&mut cx, 2).is_pending());
        // A late fire for the connection's previous request wakes the task, which finds
        // that its own request is not the one.
        wait.hook(1).fire();
        assert_eq!(counter.wakes(), 1);
        assert!(wait.poll_fired(&mut cx, 2).is_pending());
        wait.hook(2).fire();
        assert_eq!(counter.wakes(), 2);
        assert!(wait.poll_fired(&mut cx, 2).is_ready());
        assert!(wait.poll_fired(&mut cx, 3).is_pending());
    }

    #[test]
    fn a_new_waker_is_registered_in_place_of_the_old() {
        let mut wait = OverdueWait::new();
        let (old, old_waker) = counting_waker();
        let (new, new_waker) = counting_waker();
        assert!(wait
            .poll_fired(&mut Context::from_waker(&old_waker), 1)
            .is_pending());
        assert!(wait
            .poll_fired(&mut Context::from_waker(&new_waker), 1)
            .is_pending());
        wait.hook(1).fire();
        assert_eq!(old.wakes(), 0);
        assert_eq!(new.wakes(), 1);
    }

    #[test]
    fn a_callback_is_called() {
        let called = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&called);
        OnOverdue::Call(Box::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        }))
        .fire();
        assert_eq!(called.load(Ordering::SeqCst), 1);
    }
}
