//! The supervisor's side of the metrics: the shared region, which slot each worker uses,
//! and the `/metrics` endpoint.

use super::endpoint::Endpoint;
use super::shared::Region;

/// Everything the supervisor keeps for `--metrics-bind`.
pub struct Hub {
    region: Region,
    endpoint: Endpoint,
    /// (worker pid, slot index).
    slots: Vec<(i32, usize)>,
}

impl Hub {
    /// Maps the region (room for `workers` and their replacements) and listens on
    /// `address`. Called before any worker is forked; makes the supervisor count its own
    /// observations (restarts) into slot 0.
    pub fn start(address: &str, workers: usize) -> Result<Hub, String> {
        let endpoint = Endpoint::bind(address)?;
        // Workers overlap their replacements during reloads and retirements, and
        // TTIN adds more: room for four times the workers, and at least 64.
        let region = Region::map((workers * 4).max(64))
            .map_err(|e| format!("could not map shared memory for metrics: {e}"))?;
        super::set_current(Some(region.supervisor_slot()));
        Ok(Hub {
            region,
            endpoint,
            slots: Vec::new(),
        })
    }

    /// The URL to scrape.
    pub fn url(&self) -> String {
        self.endpoint.url()
    }

    /// Takes a slot for the worker about to be forked.
    pub fn reserve(&mut self) -> Option<usize> {
        let slot = self.region.reserve();
        if slot.is_none() {
            tracing::warn!("No free metrics slot: the next worker's requests are not counted");
        }
        slot
    }

    /// In the new worker, right after the fork: count into `slot` from now on.
    pub fn enter_worker(&self, slot: Option<usize>) {
        super::set_current(slot.map(|index| self.region.slot(index)));
    }

    /// In the supervisor, after the fork: `pid` uses `slot`.
    pub fn adopt(&mut self, pid: i32, slot: Option<usize>) {
        if let Some(slot) = slot {
            self.slots.push((pid, slot));
        }
    }

    /// A slot reserved for a fork that failed.
    pub fn unreserve(&mut self, slot: Option<usize>) {
        if let Some(slot) = slot {
            self.region.release(slot);
        }
    }

    /// Worker `pid` has exited: its counts move to the totals and its slot is freed.
    pub fn worker_exited(&mut self, pid: i32) {
        if let Some(position) = self.slots.iter().position(|&(p, _)| p == pid) {
            let (_, slot) = self.slots.swap_remove(position);
            self.region.release(slot);
        }
    }

    /// The descriptors the supervisor's poll(2) waits on for the endpoint.
    pub fn pollfds(&self) -> impl Iterator<Item = libc::pollfd> + '_ {
        self.endpoint.pollfds()
    }

    /// Serves scrapes (without blocking); `workers` is the number of live workers.
    pub fn service(&mut self, workers: usize) {
        self.endpoint.service(&self.region, workers);
    }
}
