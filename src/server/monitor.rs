//! What a worker watches about itself: the request each Python thread is running, how many
//! requests it has served, and its budgets (`--timeout`, `--max-requests`, `--max-rss`).
//!
//! A request that runs past `--timeout` is a hung request. The watchdog thread then logs
//! the Python stack of the thread running it (file, line, function, as faulthandler would),
//! tells the engine to answer 504 if nothing was sent yet, and asks the worker to retire so
//! the supervisor replaces it. This is gunicorn's `WORKER TIMEOUT`, made useful: the log
//! says which request and which line of code were stuck.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyo3::prelude::*;

use crate::metrics::RestartReason;
use crate::overdue::OnOverdue;

/// Why a worker asks to be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetireRequest {
    /// For the log.
    pub reason: String,
    /// A request hung: the worker needs a rescue thread to serve what is queued.
    pub hung: bool,
}

/// What names a request in the timeout log line. Formatting `METHOD TARGET` costs an
/// allocation, paid per request if done up front; the parts are kept instead (cloning
/// `Bytes` only bumps a reference count) and formatted only when a request times out.
#[derive(Debug, Clone)]
pub enum RequestLabel {
    /// The method and target of an HTTP request.
    Http {
        /// The method token.
        method: Bytes,
        /// The request target as sent.
        target: Bytes,
    },
    /// Already formatted (CGI-style requests).
    Text(String),
}

impl std::fmt::Display for RequestLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestLabel::Http { method, target } => write!(
                f,
                "{} {}",
                String::from_utf8_lossy(method),
                String::from_utf8_lossy(target)
            ),
            RequestLabel::Text(text) => f.write_str(text),
        }
    }
}

impl From<&str> for RequestLabel {
    fn from(text: &str) -> Self {
        RequestLabel::Text(text.to_owned())
    }
}

/// A request in progress on one Python thread.
struct ActiveRequest {
    started: Instant,
    /// Names the request in the timeout log line.
    label: RequestLabel,
    overdue: Option<OnOverdue>,
    /// The timeout was already reported for this request.
    reported: bool,
}

/// One Python thread's slot.
struct Slot {
    /// `threading.get_ident()` of the thread, for finding its frame.
    thread_ident: AtomicU64,
    active: Mutex<Option<ActiveRequest>>,
}

/// The worker's self-watch.
pub struct Monitor {
    slots: Vec<Slot>,
    served: AtomicU64,
    /// Requests to serve before retiring (max-requests plus this worker's jitter).
    request_budget: Option<u64>,
    timeout: Option<Duration>,
    max_rss: Option<u64>,
    retire: Mutex<Sender<RetireRequest>>,
    retiring: AtomicBool,
}

/// The budgets a worker runs under.
pub struct Budgets {
    /// `--timeout`: a request running longer is hung.
    pub timeout: Option<Duration>,
    /// `--max-requests` with this worker's jitter added.
    pub request_budget: Option<u64>,
    /// `--max-rss` in bytes.
    pub max_rss: Option<u64>,
}

impl Monitor {
    /// A monitor for `threads` Python threads (and the one rescue thread a worker may add,
    /// in slot `threads`); retire requests go to `retire`.
    pub fn new(threads: usize, budgets: Budgets, retire: Sender<RetireRequest>) -> Arc<Self> {
        Arc::new(Monitor {
            slots: (0..=threads)
                .map(|_| Slot {
                    thread_ident: AtomicU64::new(0),
                    active: Mutex::new(None),
                })
                .collect(),
            served: AtomicU64::new(0),
            request_budget: budgets.request_budget,
            timeout: budgets.timeout,
            max_rss: budgets.max_rss,
            retire: Mutex::new(retire),
            retiring: AtomicBool::new(false),
        })
    }

    /// Records the Python thread ident of thread `index`.
    pub fn register_thread(&self, index: usize, ident: u64) {
        self.slots[index]
            .thread_ident
            .store(ident, Ordering::Relaxed);
    }

    /// Thread `index` started a request at `started`. `overdue` is fired if it runs past
    /// the timeout.
    pub fn begin(
        &self,
        index: usize,
        started: Instant,
        label: RequestLabel,
        overdue: Option<OnOverdue>,
    ) {
        let mut active = lock(&self.slots[index].active);
        *active = Some(ActiveRequest {
            started,
            label,
            overdue,
            reported: false,
        });
    }

    /// Thread `index` finished its request. Returns its overdue callback, not called: the
    /// caller chooses where it is dropped (dropping it may wake the engine's connection
    /// task, which the `--threads 1` driver does from inside its runtime).
    #[must_use = "dropping the overdue callback may wake the connection task"]
    pub fn end(&self, index: usize) -> Option<OnOverdue> {
        let overdue = lock(&self.slots[index].active)
            .take()
            .and_then(|active| active.overdue);
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.request_budget.is_some_and(|budget| served >= budget) {
            self.request_retirement(
                format!("served {served} requests (max-requests)"),
                false,
                RestartReason::MaxRequests,
            );
        }
        overdue
    }

    /// Asks the worker to retire, once; `cause` is counted in the metrics.
    pub fn request_retirement(&self, reason: String, hung: bool, cause: RestartReason) {
        if !self.retiring.swap(true, Ordering::SeqCst) {
            crate::metrics::restart(cause);
            let _ = lock(&self.retire).send(RetireRequest { reason, hung });
        }
    }

    /// Whether a watchdog thread is needed.
    pub fn needs_watchdog(&self) -> bool {
        self.timeout.is_some() || self.max_rss.is_some()
    }

    /// One watchdog round: handles overdue requests and the memory budget.
    pub fn check(&self) {
        if let Some(timeout) = self.timeout {
            for slot in &self.slots {
                let overdue = {
                    let mut active = lock(&slot.active);
                    match active.as_mut() {
                        Some(request)
                            if !request.reported && request.started.elapsed() > timeout =>
                        {
                            request.reported = true;
                            Some((
                                request.overdue.take(),
                                request.started.elapsed(),
                                request.label.clone(),
                            ))
                        }
                        _ => None,
                    }
                };
                if let Some((notify, elapsed, label)) = overdue {
                    if let Some(notify) = notify {
                        notify.fire();
                    }
                    let ident = slot.thread_ident.load(Ordering::Relaxed);
                    let stack = python_stack(ident);
                    tracing::error!(
                        "WORKER TIMEOUT (pid {}): {} has run for {:.1}s (--timeout {}s); stack of the thread running it:\n{}",
                        std::process::id(),
                        label,
                        elapsed.as_secs_f64(),
                        timeout.as_secs(),
                        stack.trim_end()
                    );
                    self.request_retirement(
                        "a request exceeded --timeout".into(),
                        true,
                        RestartReason::Timeout,
                    );
                }
            }
        }
        if let Some(max_rss) = self.max_rss {
            if let Some(rss) = resident_bytes() {
                if rss > max_rss {
                    self.request_retirement(
                        format!(
                            "resident memory {} MiB is over --max-rss {} MiB",
                            rss >> 20,
                            max_rss >> 20
                        ),
                        false,
                        RestartReason::MaxRss,
                    );
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The formatted Python stack of the thread with `ident`, like faulthandler prints it.
fn python_stack(ident: u64) -> String {
    Python::attach(|py| -> PyResult<String> {
        let frames = py.import("sys")?.call_method0("_current_frames")?;
        let Some(frame) = frames.get_item(ident).ok() else {
            return Ok(format!("(thread {ident} has no Python frame)"));
        };
        let lines = py
            .import("traceback")?
            .call_method1("format_stack", (frame,))?;
        let text: String = pyo3::types::PyString::new(py, "")
            .call_method1("join", (lines,))?
            .extract()?;
        Ok(format!(
            "Thread {ident:#x} (most recent call last):\n{text}"
        ))
    })
    .unwrap_or_else(|error| format!("(could not read the stack: {error})"))
}

/// This process's resident set size, from /proc/self/statm.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always valid.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

/// Runs `monitor.check()` every `interval` on its own thread until `stop` is set.
pub fn spawn_watchdog(
    monitor: Arc<Monitor>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tidegate-watchdog".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                monitor.check();
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retires_once_at_the_request_budget() {
        let (tx, rx) = std::sync::mpsc::channel();
        let monitor = Monitor::new(
            1,
            Budgets {
                timeout: None,
                request_budget: Some(3),
                max_rss: None,
            },
            tx,
        );
        for _ in 0..5 {
            monitor.begin(0, Instant::now(), "GET /".into(), None);
            drop(monitor.end(0));
        }
        assert_eq!(
            rx.try_recv().unwrap().reason,
            "served 3 requests (max-requests)"
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn reads_its_own_rss() {
        assert!(resident_bytes().unwrap() > 1 << 20);
    }
}
