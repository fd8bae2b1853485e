//! Prometheus metrics: what every process counts, summed over the workers.
//!
//! Each worker counts into its own slot of a shared-memory region that the supervisor maps
//! before it forks anything ([`shared::Region`]); the supervisor adds the slots up when
//! `/metrics` is scraped ([`exposition`]) and serves the endpoint from its own poll loop
//! ([`endpoint`]). Counting is a relaxed atomic add on a cache line no other process
//! writes, so the hot path costs a few nanoseconds per request and takes no lock.
//!
//! Without `--metrics-bind` (and in `tidegate.serve` or a CGI process) no slot is set and
//! every function here returns after one load of a null pointer.

pub mod endpoint;
pub mod exposition;
pub mod hub;
pub mod shared;
pub mod socket;

use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Instant;

use pyo3::prelude::*;

pub use hub::Hub;
pub use shared::{Region, Slot, LATENCY_BOUNDS_US};

/// Why a worker was replaced (the `reason` label of `tidegate_worker_restarts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// A request ran past `--timeout`, or the worker stopped sending heartbeats.
    Timeout,
    /// `--max-requests`.
    MaxRequests,
    /// `--max-rss`.
    MaxRss,
    /// The worker died or exited without being asked to (a crash, a kill, `os._exit`).
    Crash,
    /// `SIGHUP` or `--reload`.
    Reload,
}

impl RestartReason {
    /// Every reason, in the order of [`Slot::restarts`].
    pub const ALL: [RestartReason; 5] = [
        RestartReason::Timeout,
        RestartReason::MaxRequests,
        RestartReason::MaxRss,
        RestartReason::Crash,
        RestartReason::Reload,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RestartReason::Timeout => "timeout",
            RestartReason::MaxRequests => "max_requests",
            RestartReason::MaxRss => "max_rss",
            RestartReason::Crash => "crash",
            RestartReason::Reload => "reload",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// This process's slot; null when metrics are off.
static CURRENT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

/// This process's slot, if metrics are on.
#[inline]
fn slot() -> Option<&'static Slot> {
    let pointer = CURRENT.load(Ordering::Relaxed);
    // SAFETY: CURRENT is only ever set to a slot of a `Region`, which is mapped for the
    // life of the process (regions are never unmapped), or to null.
    unsafe { pointer.as_ref() }
}

/// Makes `slot` the one this process counts into (`None`: stop counting).
pub fn set_current(slot: Option<&'static Slot>) {
    let pointer = slot.map_or(std::ptr::null_mut(), |s| std::ptr::from_ref(s).cast_mut());
    CURRENT.store(pointer, Ordering::Relaxed);
}

/// Whether this process counts (used to skip clock reads when it does not).
#[inline]
pub fn enabled() -> bool {
    !CURRENT.load(Ordering::Relaxed).is_null()
}

/// A request was handed to the Python threads.
#[inline]
pub fn request_dispatched() {
    if let Some(slot) = slot() {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
    }
}

/// A Python thread finished running a request.
#[inline]
pub fn request_done() {
    if let Some(slot) = slot() {
        slot.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request (answered by the application or by `--static`) got `status`; it began at
/// `started`. A status of 0 (no response head went out) is not counted.
#[inline]
pub fn response_since(status: u16, started: Instant) {
    if let Some(slot) = slot() {
        if status != 0 {
            slot.record_response(status, started.elapsed());
        }
    }
}

/// A request was refused before the application ran (malformed head, limits).
#[inline]
pub fn refused() {
    if let Some(slot) = slot() {
        slot.refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection was accepted.
#[inline]
pub fn connection_opened() {
    if let Some(slot) = slot() {
        slot.connections.fetch_add(1, Ordering::Relaxed);
        slot.connections_total.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection was closed.
#[inline]
pub fn connection_closed() {
    if let Some(slot) = slot() {
        slot.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `n` bytes were read from a client socket.
#[inline]
pub fn bytes_in(n: usize) {
    if let Some(slot) = slot() {
        slot.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// `n` bytes were written to a client socket.
#[inline]
pub fn bytes_out(n: u64) {
    if let Some(slot) = slot() {
        slot.bytes_out.fetch_add(n, Ordering::Relaxed);
    }
}

/// This process replaces a worker (or a worker asks to be replaced) for `reason`.
pub fn restart(reason: RestartReason) {
    if let Some(slot) = slot() {
        slot.restarts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `f` with the GIL released, like `py.detach(f)`, and counts how long taking the GIL
/// back took once `f` returned: the time a Python thread waited for the GIL.
#[inline]
pub fn detach_timed<T, F>(py: Python<'_>, f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    let Some(slot) = slot() else {
        return py.detach(f);
    };
    let (value, released) = py.detach(|| (f(), Instant::now()));
    let waited = released.elapsed().as_nanos();
    slot.gil_wait_ns
        .fetch_add(u64::try_from(waited).unwrap_or(u64::MAX), Ordering::Relaxed);
    value
}
