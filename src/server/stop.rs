//! The server's stop as something a connection can wait for at almost no cost per wait.
//!
//! An idle keep-alive connection waits for its next request and for the server's stop at
//! once, between every two requests. Waiting on the shutdown `watch` meant a `Notified`
//! that takes its notifier's lock at every poll to check its waker (~170 instructions per
//! request). Here a connection registers its waker once and, while the waker stays the
//! same (a task's does), a poll is an atomic load and a pointer comparison.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Set once when the server stops; wakes every connection waiting for it.
#[derive(Default)]
pub struct StopNotice {
    stopped: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The registered wakers, in reusable slots.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl StopNotice {
    /// Marks the server stopped and wakes everything waiting for it. Idempotent.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let wakers: Vec<Waker> = {
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            waiters.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether the server stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// Stops its notice when dropped: the engine holds one, so that connections see the stop
/// even when the engine goes away without [`StopNotice::stop`].
pub struct StopOnDrop(pub Arc<StopNotice>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// One waiter's place at a [`StopNotice`], kept for as long as it may wait again (a
/// connection's life).
pub struct StopWait {
    notice: Arc<StopNotice>,
    /// The slot of the registered waker, and a copy of it to compare at each poll.
    registered: Option<(usize, Waker)>,
}

impl StopWait {
    /// A waiter on `notice`, registered at its first pending poll.
    pub fn new(notice: &Arc<StopNotice>) -> Self {
        StopWait {
            notice: Arc::clone(notice),
            registered: None,
        }
    }

    /// Ready once the server stopped.
    pub fn poll_stopped(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.notice.is_stopped() {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &self.registered {
            if waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        {
            let mut waiters = self
                .notice
                .waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let slot = match &self.registered {
                Some((slot, _)) => *slot,
                None => match waiters.free.pop() {
                    Some(slot) => slot,
                    None => {
                        waiters.slots.push(None);
                        waiters.slots.len() - 1
                    }
                },
            };
            waiters.slots[slot] = Some(cx.waker().clone());
            self.registered = Some((slot, cx.waker().clone()));
        }
        // A stop between the first check and the registration woke nobody.
        if self.notice.is_stopped() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves once the server stopped.
    pub async fn stopped(&mut self) {
        std::future::poll_fn(|cx| self.poll_stopped(cx)).await
    }
}

impl Drop for StopWait {
    fn drop(&mut self) {
        if let Some((slot, _)) = self.registered.take() {
            let mut waiters = self
                .notice
                .waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            waiters.slots[slot] = None;
            waiters.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::counting_waker as waker;

    #[test]
    fn the_stop_wakes_every_registered_waiter_once_and_stays_ready() {
        let notice = Arc::new(StopNotice::default());
        let (first_count, first) = waker();
        let (second_count, second) = waker();
        let mut a = StopWait::new(&notice);
        let mut b = StopWait::new(&notice);
        assert!(a
            .poll_stopped(&mut Context::from_waker(&first))
            .is_pending());
        // Polled again with the same waker: no second registration.
        assert!(a
            .poll_stopped(&mut Context::from_waker(&first))
            .is_pending());
        assert!(b
            .poll_stopped(&mut Context::from_waker(&second))
            .is_pending());
        assert_eq!(notice.waiters.lock().unwrap().slots.len(), 2);
        notice.stop();
        notice.stop();
        assert_eq!(first_count.wakes(), 1);
        assert_eq!(second_count.wakes(), 1);
        assert!(a.poll_stopped(&mut Context::from_waker(&first)).is_ready());
        assert!(StopWait::new(&notice)
            .poll_stopped(&mut Context::from_waker(&first))
            .is_ready());
    }

    #[test]
    fn a_dropped_waiter_frees_its_slot_and_is_not_woken() {
        let notice = Arc::new(StopNotice::default());
        let (count, waker) = waker();
        let mut wait = StopWait::new(&notice);
        assert!(wait
            .poll_stopped(&mut Context::from_waker(&waker))
            .is_pending());
        drop(wait);
        let mut next = StopWait::new(&notice);
        assert!(next
            .poll_stopped(&mut Context::from_waker(&waker))
            .is_pending());
        // The freed slot was reused.
        assert_eq!(notice.waiters.lock().unwrap().slots.len(), 1);
        drop(next);
        notice.stop();
        assert_eq!(count.wakes(), 0);
    }

    #[test]
    fn a_new_waker_replaces_the_registered_one() {
        let notice = Arc::new(StopNotice::default());
        let (old_count, old) = waker();
        let (new_count, new) = waker();
        let mut wait = StopWait::new(&notice);
        assert!(wait
            .poll_stopped(&mut Context::from_waker(&old))
            .is_pending());
        assert!(wait
            .poll_stopped(&mut Context::from_waker(&new))
            .is_pending());
        drop(StopOnDrop(Arc::clone(&notice)));
        assert_eq!(old_count.wakes(), 0);
        assert_eq!(new_count.wakes(), 1);
    }
}
