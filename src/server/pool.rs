//! The Python threads that run the application.
//!
//! Each thread attaches to the interpreter once and detaches only while it waits for the
//! next request (or for the client, inside a request), so the GIL changes hands only when
//! there is nothing to run.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pyo3::Python;

use crate::gateway::Exchange;
use crate::wsgi::Bridge;

/// The running Python threads.
pub struct WorkerPool {
    sender: Option<Sender<Exchange>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `count` threads running requests through `bridge`.
    pub fn start(bridge: Arc<Bridge>, count: usize) -> std::io::Result<Self> {
        let (sender, receiver) = crossbeam_channel::unbounded::<Exchange>();
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let bridge = Arc::clone(&bridge);
            let receiver = receiver.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tidegate-py-{index}"))
                    .spawn(move || run_thread(&bridge, &receiver))?,
            );
        }
        Ok(WorkerPool {
            sender: Some(sender),
            threads,
        })
    }

    /// A handle for queueing requests.
    pub fn sender(&self) -> Sender<Exchange> {
        self.sender.clone().expect("pool is running")
    }

    /// Stops taking requests and waits up to `timeout` for the threads to finish the ones
    /// they run. Returns how many threads were still busy at the deadline.
    pub fn stop(mut self, py: Python<'_>, timeout: Duration) -> usize {
        self.sender = None;
        let deadline = Instant::now() + timeout;
        py.detach(|| {
            while Instant::now() < deadline && self.threads.iter().any(|t| !t.is_finished()) {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let busy = self.threads.iter().filter(|t| !t.is_finished()).count();
        for thread in self.threads.drain(..).filter(|t| t.is_finished()) {
            let _ = thread.join();
        }
        busy
    }
}

fn run_thread(bridge: &Bridge, requests: &Receiver<Exchange>) {
    Python::attach(|py| loop {
        let Ok(exchange) = py.detach(|| requests.recv()) else {
            return;
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| bridge.handle(py, exchange)));
        if outcome.is_err() {
            tracing::error!("Internal error while handling a request (a bug in tidegate); the connection was closed");
        }
    });
}
