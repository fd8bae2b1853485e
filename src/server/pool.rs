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
use pyo3::prelude::*;

use crate::gateway::Exchange;
use crate::server::capacity::Capacity;
use crate::server::monitor::Monitor;
use crate::wsgi::responder::ResponderCache;
use crate::wsgi::Bridge;

/// The running Python threads.
pub struct WorkerPool {
    sender: Option<Sender<Box<Exchange>>>,
    threads: Vec<JoinHandle<()>>,
    spawn: ThreadSpawn,
}

/// What a new pool thread needs.
#[derive(Clone)]
struct ThreadSpawn {
    bridge: Arc<Bridge>,
    receiver: Receiver<Box<Exchange>>,
    monitor: Option<Arc<Monitor>>,
    capacity: Arc<Capacity>,
}

impl ThreadSpawn {
    fn spawn(&self, index: usize) -> std::io::Result<JoinHandle<()>> {
        let this = self.clone();
        spawn_python_thread(index, move || {
            run_thread(
                index,
                &this.bridge,
                &this.receiver,
                this.monitor.as_deref(),
                &this.capacity,
            )
        })
    }
}

impl WorkerPool {
    /// Starts `count` threads running requests through `bridge`, reporting to `monitor`
    /// when the process is a supervised worker.
    pub fn start(
        bridge: Arc<Bridge>,
        count: usize,
        monitor: Option<Arc<Monitor>>,
        capacity: Arc<Capacity>,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = crossbeam_channel::unbounded::<Box<Exchange>>();
        let spawn = ThreadSpawn {
            bridge,
            receiver,
            monitor,
            capacity,
        };
        let threads = (0..count)
            .map(|index| spawn.spawn(index))
            .collect::<std::io::Result<_>>()?;
        Ok(WorkerPool {
            sender: Some(sender),
            threads,
            spawn,
        })
    }

    /// Starts one more thread (slot `index` of the monitor). A worker whose thread hangs
    /// gets one, so the requests already queued behind the hung one are still served while
    /// the worker drains.
    pub fn add_thread(&mut self, index: usize) -> std::io::Result<()> {
        let thread = self.spawn.spawn(index)?;
        self.threads.push(thread);
        Ok(())
    }

    /// A handle for queueing requests.
    pub fn sender(&self) -> Sender<Box<Exchange>> {
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

fn run_thread(
    index: usize,
    bridge: &Bridge,
    requests: &Receiver<Box<Exchange>>,
    monitor: Option<&Monitor>,
    capacity: &Capacity,
) {
    Python::attach(|py| {
        if let Some(monitor) = monitor {
            register_thread(py, monitor, index);
        }
        let mut responders = ResponderCache::default();
        loop {
            // A request already queued is taken without releasing the GIL: handing the GIL
            // back and forth costs more than the check when requests arrive back to back.
            let next = match requests.try_recv() {
                Ok(exchange) => Ok(exchange),
                // Taking the GIL back after the wait is where this thread may queue behind
                // others: the metrics count that time.
                Err(_) => crate::metrics::detach_timed(py, || requests.recv()),
            };
            let Ok(mut exchange) = next else {
                return;
            };
            if let Some(monitor) = monitor {
                let overdue = exchange.on_overdue.take();
                monitor.begin(index, Instant::now(), exchange.head.lazy_label(), overdue);
            }
            run_exchange(py, bridge, exchange, &mut responders);
            capacity.release();
            crate::metrics::request_done();
            if let Some(monitor) = monitor {
                drop(monitor.end(index));
            }
        }
    });
}

/// Starts the Python thread of monitor slot `index` (named `tidegate-py-N` in `top` and in
/// stack dumps), for the pool and the `--threads 1` driver alike.
pub(crate) fn spawn_python_thread(
    index: usize,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("tidegate-py-{index}"))
        .spawn(body)
}

/// Tells the watchdog which Python thread serves slot `index`, so that it can find its
/// stack when a request hangs.
pub(crate) fn register_thread(py: Python<'_>, monitor: &Monitor, index: usize) {
    let ident = py
        .import("threading")
        .and_then(|t| t.call_method0("get_ident"))
        .and_then(|i| i.extract::<u64>());
    if let Ok(ident) = ident {
        monitor.register_thread(index, ident);
    }
}

/// Runs one request through the bridge; a panic (a bug in tidegate, never the app's doing)
/// is logged and costs only that request's connection.
pub(crate) fn run_exchange(
    py: Python<'_>,
    bridge: &Bridge,
    exchange: Box<Exchange>,
    responders: &mut ResponderCache,
) {
    let outcome =
        std::panic::catch_unwind(AssertUnwindSafe(|| bridge.handle(py, exchange, responders)));
    if outcome.is_err() {
        tracing::error!(
            "Internal error while handling a request (a bug in tidegate); the connection was closed"
        );
    }
}
