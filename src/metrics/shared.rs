//! The shared-memory region: one slot of atomic counters per worker, plus slot 0 for the
//! supervisor (the totals of workers that have exited, and the restarts it observes).
//!
//! The region is an anonymous `MAP_SHARED` mapping made by the supervisor before it forks,
//! so every worker sees the same pages. A worker writes only its own slot; the supervisor
//! reads them all. When a worker has exited, the supervisor folds its counters into slot 0
//! and zeroes the slot for the next worker, so counters never go backwards. The mapping is
//! never unmapped: forked workers keep a pointer into it for their whole life.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::RestartReason;

/// Upper bounds of the latency histogram buckets, in microseconds (the last bucket,
/// `+Inf`, is implicit). Prometheus' usual web latencies, 1 ms to 30 s.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// The counters of one process. Aligned to two cache lines so two workers never write the
/// same line (adjacent-line prefetching pairs lines).
#[repr(C, align(128))]
#[derive(Default)]
pub struct Slot {
    /// Responses by status class: 1xx .. 5xx.
    pub responses: [AtomicU64; 5],
    /// Requests refused before the app ran.
    pub refused: AtomicU64,
    /// Latency histogram, one (non-cumulative) count per bucket, `+Inf` last.
    pub latency_buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of latencies in microseconds.
    pub latency_sum_us: AtomicU64,
    /// Requests handed to Python and not finished (gauge).
    pub in_flight: AtomicI64,
    /// Open connections (gauge).
    pub connections: AtomicI64,
    /// Connections accepted.
    pub connections_total: AtomicU64,
    /// Bytes read from clients.
    pub bytes_in: AtomicU64,
    /// Bytes written to clients.
    pub bytes_out: AtomicU64,
    /// Nanoseconds Python threads waited to take the GIL back.
    pub gil_wait_ns: AtomicU64,
    /// Worker restarts by [`RestartReason`].
    pub restarts: [AtomicU64; 5],
}

impl Slot {
    /// Counts a response.
    #[inline]
    pub fn record_response(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Every counter (not the gauges), for folding and zeroing.
    fn counters(&self) -> impl Iterator<Item = &AtomicU64> {
        self.responses
            .iter()
            .chain(std::iter::once(&self.refused))
            .chain(self.latency_buckets.iter())
            .chain([
                &self.latency_sum_us,
                &self.connections_total,
                &self.bytes_in,
                &self.bytes_out,
                &self.gil_wait_ns,
            ])
            .chain(self.restarts.iter())
    }
}

/// What a scrape reports: the sum over every slot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Responses by status class 1xx .. 5xx.
    pub responses: [u64; 5],
    /// Requests refused before the app ran.
    pub refused: u64,
    /// Non-cumulative histogram counts, `+Inf` last.
    pub latency_buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of latencies in microseconds.
    pub latency_sum_us: u64,
    /// Requests in flight.
    pub in_flight: i64,
    /// Open connections.
    pub connections: i64,
    /// Connections accepted.
    pub connections_total: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Nanoseconds waited for the GIL.
    pub gil_wait_ns: u64,
    /// Restarts by reason, in [`RestartReason::ALL`] order.
    pub restarts: [u64; 5],
}

impl Totals {
    fn add(&mut self, slot: &Slot) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (total, counter) in self.responses.iter_mut().zip(&slot.responses) {
            *total += load(counter);
        }
        self.refused += load(&slot.refused);
        for (total, counter) in self.latency_buckets.iter_mut().zip(&slot.latency_buckets) {
            *total += load(counter);
        }
        self.latency_sum_us += load(&slot.latency_sum_us);
        self.in_flight += slot.in_flight.load(Ordering::Relaxed);
        self.connections += slot.connections.load(Ordering::Relaxed);
        self.connections_total += load(&slot.connections_total);
        self.bytes_in += load(&slot.bytes_in);
        self.bytes_out += load(&slot.bytes_out);
        self.gil_wait_ns += load(&slot.gil_wait_ns);
        for (total, counter) in self.restarts.iter_mut().zip(&slot.restarts) {
            *total += load(counter);
        }
    }

    /// The restarts counted for `reason`.
    pub fn restarts(&self, reason: RestartReason) -> u64 {
        self.restarts[reason as usize]
    }
}

/// The mapped slots; slot 0 is the supervisor's.
pub struct Region {
    slots: &'static [Slot],
    /// Which worker slots are taken (supervisor-side bookkeeping only).
    taken: Vec<bool>,
}

impl Region {
    /// Maps a region with room for `workers` worker slots (plus the supervisor's).
    pub fn map(workers: usize) -> std::io::Result<Region> {
        let count = workers + 1;
        let bytes = count * std::mem::size_of::<Slot>();
        // SAFETY: an anonymous shared mapping with no address hint; the result is checked.
        let pointer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if pointer == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the mapping is `bytes` long, page-aligned (so aligned for Slot), and
        // zero-filled by the kernel; an all-zero Slot is a valid Slot (atomics of 0). It is
        // never unmapped, so the 'static lifetime holds, and it is only accessed through
        // atomics, so sharing it between processes is sound.
        let slots = unsafe { std::slice::from_raw_parts(pointer.cast::<Slot>(), count) };
        Ok(Region {
            slots,
            taken: vec![false; count],
        })
    }

    /// The supervisor's slot.
    pub fn supervisor_slot(&self) -> &'static Slot {
        &self.slots[0]
    }

    /// The slot at `index`.
    pub fn slot(&self, index: usize) -> &'static Slot {
        &self.slots[index]
    }

    /// Takes a free worker slot (before forking the worker that will use it).
    pub fn reserve(&mut self) -> Option<usize> {
        let index = (1..self.taken.len()).find(|&i| !self.taken[i])?;
        self.taken[index] = true;
        Some(index)
    }

    /// Frees the slot of a worker that has exited: its counters go into the supervisor's
    /// slot, its gauges (which counted things that died with it) are dropped.
    pub fn release(&mut self, index: usize) {
        let (totals, slot) = (&self.slots[0], &self.slots[index]);
        for (total, counter) in totals.counters().zip(slot.counters()) {
            total.fetch_add(counter.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
        slot.in_flight.store(0, Ordering::Relaxed);
        slot.connections.store(0, Ordering::Relaxed);
        self.taken[index] = false;
    }

    /// The sum over every slot.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for slot in self.slots {
            totals.add(slot);
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_classes() {
        let slot = Slot::default();
        slot.record_response(200, Duration::from_micros(1_000));
        slot.record_response(404, Duration::from_micros(1_001));
        slot.record_response(503, Duration::from_secs(60));
        slot.record_response(101, Duration::ZERO);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(slot.responses.each_ref().map(load), [1, 1, 0, 1, 1]);
        assert_eq!(load(&slot.latency_buckets[0]), 2);
        assert_eq!(load(&slot.latency_buckets[1]), 1);
        assert_eq!(load(&slot.latency_buckets[LATENCY_BOUNDS_US.len()]), 1);
        assert_eq!(load(&slot.latency_sum_us), 60_002_001);
    }

    #[test]
    fn released_slots_keep_their_counts_in_the_totals() {
        let mut region = Region::map(2).unwrap();
        let first = region.reserve().unwrap();
        let second = region.reserve().unwrap();
        assert_eq!(region.reserve(), None);
        region.slot(first).record_response(200, Duration::ZERO);
        region.slot(first).in_flight.fetch_add(3, Ordering::Relaxed);
        region
            .slot(second)
            .bytes_out
            .fetch_add(10, Ordering::Relaxed);
        region.supervisor_slot().restarts[RestartReason::Crash as usize]
            .fetch_add(1, Ordering::Relaxed);
        let before = region.totals();
        assert_eq!(before.in_flight, 3);
        region.release(first);
        let after = region.totals();
        assert_eq!(after.responses, before.responses);
        assert_eq!(after.bytes_out, 10);
        assert_eq!(after.in_flight, 0);
        assert_eq!(after.restarts(RestartReason::Crash), 1);
        assert_eq!(region.reserve(), Some(first));
        assert_eq!(region.slot(first).responses[1].load(Ordering::Relaxed), 0);
    }
}
