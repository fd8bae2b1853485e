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
    filled: Notify,
}

impl Capacity {
    /// Room for `limit` requests at once (the number of Python threads).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Capacity {
            limit: limit.max(1),
            in_flight: AtomicUsize::new(0),
            freed: Notify::new(),
            filled: Notify::new(),
        })
    }

    /// A request was handed to the Python threads.
    pub fn acquire(&self) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) + 1 == self.limit {
            self.filled.notify_waiters();
        }
    }

    /// A request finished.
    pub fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == self.limit {
            self.freed.notify_waiters();
        }
    }

    /// Resolves once every Python thread has a request: an accept loop waiting in accept(2)
    /// then stops waiting, so a request dispatched meanwhile (say, one that will hang) does
    /// not let it take a connection no thread is free for. Connections that have sent
    /// nothing yet cost nothing here, so slow clients cannot block accepting.
    pub async fn filled(&self) {
        loop {
            let filled = self.filled.notified();
            if self.in_flight.load(Ordering::Acquire) >= self.limit {
                return;
            }
            filled.await;
        }
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
    async fn reports_when_every_thread_is_taken() {
        let capacity = Capacity::new(2);
        capacity.acquire();
        let watching = {
            let capacity = Arc::clone(&capacity);
            tokio::spawn(async move { capacity.filled().await })
        };
        tokio::task::yield_now().await;
        assert!(!watching.is_finished());
        capacity.acquire();
        tokio::time::timeout(std::time::Duration::from_secs(1), watching)
            .await
            .expect("woken")
            .unwrap();
    }
}
