//! Backpressure: a process accepts new connections only while it has a Python thread
//! free for them.
//!
//! Requests handed to the Python threads and not yet finished are counted. While that
//! count is at the number of threads, the accept loops wait, and new connections stay in
//! the kernel's backlog where another worker (one with a free thread) takes them. So a
//! worker whose threads are all busy, or hung, does not collect connections it cannot
//! serve. Idle keep-alive connections cost nothing here: only requests count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Requests in flight against the number of Python threads.
pub struct Capacity {
    limit: usize,
    in_flight: AtomicUsize,
    freed: Notify,
}

impl Capacity {
    /// Room for `limit` requests at once (the number of Python threads).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Capacity {
            limit: limit.max(1),
            in_flight: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// A request was handed to the Python threads.
    pub fn acquire(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A request finished.
    pub fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == self.limit {
            self.freed.notify_waiters();
        }
    }

    /// Holds room for a connection just accepted, until its first request is handed over
    /// (which then counts by itself). Without it, the accept loop would see free room
    /// while that request is still being read, and take more connections than there are
    /// free threads (a worker whose only thread hangs would collect connections it can
    /// never serve).
    pub fn reserve(self: &Arc<Self>) -> Reservation {
        self.acquire();
        Reservation(Some(Arc::clone(self)))
    }

    /// Resolves once a Python thread is free for a new connection's request.
    pub async fn available(&self) {
        loop {
            // Registered before the check, so a release in between is not missed.
            let freed = self.freed.notified();
            if self.in_flight.load(Ordering::Acquire) < self.limit {
                return;
            }
            freed.await;
        }
    }
}

/// Room held for a connection that has not yet sent its first request.
pub struct Reservation(Option<Arc<Capacity>>);

impl Reservation {
    /// Gives the room back (the connection's first request now counts by itself, or the
    /// connection is done).
    pub fn release(&mut self) {
        if let Some(capacity) = self.0.take() {
            capacity.release();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn waits_until_a_request_finishes() {
        let capacity = Capacity::new(1);
        capacity.available().await;
        capacity.acquire();
        let waiting = {
            let capacity = Arc::clone(&capacity);
            tokio::spawn(async move { capacity.available().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        capacity.release();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken")
            .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_reservation_holds_room_until_released() {
        let capacity = Capacity::new(1);
        let mut reservation = capacity.reserve();
        let waiting = {
            let capacity = Arc::clone(&capacity);
            tokio::spawn(async move { capacity.available().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        reservation.release();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("woken")
            .unwrap();
    }
}
