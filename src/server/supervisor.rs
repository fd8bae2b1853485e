//! The supervisor: owns the listening sockets, forks the workers, keeps their number, and
//! turns signals into a lifecycle that drops no request.
//!
//! It runs on the main thread of the `tidegate` command and starts no thread and no
//! runtime, so forking is safe; it forks through Python's `os.fork()`, which reinitialises
//! the interpreter in the child and runs the `os.register_at_fork` hooks apps rely on.
//! Signals reach it as bytes on a wakeup pipe (`signal.set_wakeup_fd`), worker news as
//! bytes on one socketpair per worker, exits through `waitpid`; one `poll(2)` waits for all.
//!
//! | signal | effect |
//! |---|---|
//! | TERM | graceful stop: stop accepting, workers finish in-flight requests, exit 0 |
//! | INT, QUIT | quick stop |
//! | HUP | graceful reload: new workers start (loading new code unless `--preload`); the old ones drain once the new ones serve |
//! | TTIN / TTOU | one worker more / less |
//! | USR1 | workers reopen their log files |

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::gateway::ListenerInfo;
use crate::server::bind::Listener;
use crate::server::control::{self, HEARTBEAT, READY, RETIRING};
use crate::server::worker::{self, WorkerSetup};
use crate::server::{open_listeners, socket_paths, systemd, ServerConfig};

/// Exit status when the application cannot be loaded (gunicorn's APP_LOAD_ERROR).
pub const EXIT_APP_LOAD_ERROR: i32 = 4;
/// How long the supervisor sleeps in poll(2) at most.
const TICK: Duration = Duration::from_millis(100);
/// The longest wait between attempts to start a worker that keeps failing at start-up.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A worker that sends no heartbeat for this long (beyond --timeout) is frozen.
const MIN_HEARTBEAT_LIMIT: Duration = Duration::from_secs(10);
/// How long a quick stop waits before SIGKILL.
const QUICK_STOP_GRACE: Duration = Duration::from_secs(3);

/// The process model's settings (on top of [`ServerConfig`]).
pub struct SupervisorConfig {
    /// Listening, threads, logs.
    pub server: ServerConfig,
    /// `-w/--workers`.
    pub workers: usize,
    /// `--timeout`: a request running longer is hung (none: no limit).
    pub timeout: Option<Duration>,
    /// `--max-requests` (0: no limit).
    pub max_requests: u64,
    /// `--max-requests-jitter`.
    pub max_requests_jitter: u64,
    /// `--max-rss` in MiB (0: no limit).
    pub max_rss_mib: u64,
    /// `--reload`.
    pub reload: bool,
    /// `--pid`.
    pub pid_file: Option<PathBuf>,
    /// `--metrics-bind`: where to serve Prometheus metrics (none: no metrics).
    pub metrics_bind: Option<String>,
}

/// gunicorn-style process hooks, set from Python.
#[derive(Default)]
pub struct ProcessHooks {
    /// `post_fork(worker)`: in the new worker, right after the fork, before the app loads.
    pub post_fork: Option<Py<PyAny>>,
    /// `worker_exit(worker)`: in the worker, after it stopped serving.
    pub worker_exit: Option<Py<PyAny>>,
    /// `pre_request(worker, environ)`.
    pub pre_request: Option<Py<PyAny>>,
    /// `post_request(worker, environ, status)`.
    pub post_request: Option<Py<PyAny>>,
}

/// One worker as the supervisor sees it.
struct WorkerRecord {
    pid: i32,
    control: UnixStream,
    generation: u64,
    age: u64,
    ready: bool,
    retiring: bool,
    last_seen: Instant,
    /// When to SIGKILL a worker that was told to stop and is still there.
    kill_at: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stopping {
    Graceful,
    Quick,
}

struct Supervisor<'a> {
    config: &'a SupervisorConfig,
    loader: &'a Py<PyAny>,
    hooks: &'a ProcessHooks,
    listeners: Vec<(Listener, ListenerInfo)>,
    /// The signal wakeup pipe (read end, write end); dropped in forked workers.
    wakeup: Option<(OwnedFd, OwnedFd)>,
    workers: Vec<WorkerRecord>,
    target: usize,
    generation: u64,
    started_workers: u64,
    reloading: bool,
    ever_ready: bool,
    notified_ready: bool,
    boot_failures: u32,
    next_spawn: Instant,
    stopping: Option<(Stopping, Instant)>,
    exit_code: i32,
    /// `--metrics-bind`: the shared counters and the endpoint, served from this loop.
    metrics: Option<crate::metrics::Hub>,
}

/// Runs the supervisor until it stops; returns the process exit status.
pub fn run(
    py: Python<'_>,
    loader: Py<PyAny>,
    hooks: ProcessHooks,
    config: SupervisorConfig,
) -> PyResult<i32> {
    crate::logging::init(&config.server.log_level).map_err(PyValueError::new_err)?;
    // Checked before anything starts: a bad certificate or key is an error naming the file.
    let tls = config.server.load_tls()?;
    crate::server::raise_open_file_limit();
    // Before any fork: workers inherit the setting and start their threads after it.
    crate::server::limit_malloc_arenas();
    let activated = systemd::activated_listeners()
        .map_err(|e| PyOSError::new_err(format!("socket activation: {e}")))?;
    let mut listeners = if activated.is_empty() {
        open_listeners(py, &config.server)?
    } else {
        activated
    };
    crate::server::label_listeners(&mut listeners, config.server.protocol);
    crate::tls::label_listeners(&mut listeners, tls.is_some());
    drop(tls);
    let unix_paths = socket_paths(&listeners);
    if let Some(path) = &config.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
            PyOSError::new_err(format!(
                "could not write --pid file {}: {e}",
                path.display()
            ))
        })?;
    }
    let wakeup =
        wakeup_pipe().map_err(|e| PyOSError::new_err(format!("could not create a pipe: {e}")))?;
    py.import("tidegate._process")?
        .call_method1("supervisor_signals", (wakeup.1.as_raw_fd(),))?;

    // Before any fork, so every worker inherits the shared counters.
    let metrics = match &config.metrics_bind {
        Some(address) => {
            Some(crate::metrics::Hub::start(address, config.workers).map_err(PyOSError::new_err)?)
        }
        None => None,
    };

    tracing::info!("Starting tidegate {}", env!("CARGO_PKG_VERSION"));
    for (_, info) in &listeners {
        tracing::info!("Listening at: {} ({})", info.display, std::process::id());
    }
    if let Some(hub) = &metrics {
        tracing::info!("Serving metrics at: {}", hub.url());
    }
    tracing::info!(
        "Using {} worker{} with {} Python thread{} each",
        config.workers,
        plural(config.workers),
        config.server.threads,
        plural(config.server.threads)
    );

    let mut supervisor = Supervisor {
        config: &config,
        loader: &loader,
        hooks: &hooks,
        listeners,
        wakeup: Some(wakeup),
        workers: Vec::new(),
        target: config.workers,
        generation: 1,
        started_workers: 0,
        reloading: false,
        ever_ready: false,
        notified_ready: false,
        boot_failures: 0,
        next_spawn: Instant::now(),
        stopping: None,
        exit_code: 0,
        metrics,
    };
    let result = supervisor.run_loop(py);
    for path in unix_paths {
        let _ = std::fs::remove_file(path);
    }
    if let Some(path) = &config.pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn wakeup_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a child we started.
    unsafe { libc::kill(pid, signal) };
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        format!("signal {signal} ({})", signal_name(signal))
    } else {
        format!("status {status:#x}")
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

impl Supervisor<'_> {
    fn run_loop(&mut self, py: Python<'_>) -> PyResult<i32> {
        loop {
            if self.stopping.is_none() {
                self.spawn_missing(py)?;
            }
            let signals = self.wait(py);
            // Runs the (no-op) Python handlers, so their pending flags are cleared.
            let _ = py.check_signals();
            for signal in signals {
                self.on_signal(signal);
            }
            self.read_control();
            if let Some(hub) = &mut self.metrics {
                hub.service(self.workers.len());
            }
            self.reap();
            self.finish_reload();
            self.enforce_deadlines();
            if !self.notified_ready && self.ready_count(self.generation) >= self.target {
                self.notified_ready = true;
                systemd::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
            }
            if let Some((_, deadline)) = self.stopping {
                if self.workers.is_empty() {
                    tracing::info!("Shutting down: all workers have exited");
                    return Ok(self.exit_code);
                }
                if Instant::now() >= deadline {
                    for worker in &self.workers {
                        tracing::warn!("Worker {} did not stop in time; killing it", worker.pid);
                        send_signal(worker.pid, libc::SIGKILL);
                    }
                    self.stopping = Some((Stopping::Quick, Instant::now() + QUICK_STOP_GRACE));
                }
            }
        }
    }

    /// Waits for a signal, a worker message or the next tick; returns the signals received.
    fn wait(&self, py: Python<'_>) -> Vec<i32> {
        let Some((wakeup, _)) = &self.wakeup else {
            return Vec::new();
        };
        let wakeup = wakeup.as_raw_fd();
        let mut fds: Vec<libc::pollfd> = std::iter::once(wakeup)
            .chain(self.workers.iter().map(|w| w.control.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .chain(self.metrics.iter().flat_map(|hub| hub.pollfds()))
            .collect();
        let timeout = TICK.as_millis() as i32;
        py.detach(|| {
            // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        });
        let mut signals = Vec::new();
        let mut buffer = [0u8; 64];
        loop {
            // SAFETY: `buffer` is valid for writes of its length; the fd is our pipe's read end.
            let n = unsafe { libc::read(wakeup, buffer.as_mut_ptr().cast(), buffer.len()) };
            if n <= 0 {
                break;
            }
            signals.extend(buffer[..n as usize].iter().map(|&b| i32::from(b)));
        }
        signals
    }

    fn on_signal(&mut self, signal: i32) {
        match signal {
            libc::SIGTERM => self.stop(Stopping::Graceful),
            libc::SIGINT | libc::SIGQUIT => self.stop(Stopping::Quick),
            libc::SIGHUP if self.stopping.is_none() => {
                // New workers read the TLS files again: refuse the reload while they are
                // broken, so the running workers keep serving with what they loaded.
                let server = &self.config.server;
                let check = server
                    .tls
                    .as_ref()
                    .map(|tls| crate::tls::load(tls, server.http2.versions.alpn()));
                if let Some(Err(error)) = check {
                    tracing::error!(
                        "Handling signal SIGHUP: not reloading, the running workers keep serving: {error}"
                    );
                    return;
                }
                self.generation += 1;
                self.reloading = true;
                self.boot_failures = 0;
                self.next_spawn = Instant::now();
                systemd::notify("RELOADING=1");
                tracing::info!(
                    "Handling signal SIGHUP: starting {} new worker{}; the running ones stop once they serve",
                    self.target,
                    plural(self.target)
                );
            }
            libc::SIGTTIN if self.stopping.is_none() => {
                self.target += 1;
                tracing::info!("Handling signal SIGTTIN: {} workers", self.target);
            }
            libc::SIGTTOU if self.stopping.is_none() && self.target > 1 => {
                self.target -= 1;
                tracing::info!("Handling signal SIGTTOU: {} workers", self.target);
                let oldest = self
                    .workers
                    .iter_mut()
                    .filter(|w| !w.retiring && w.generation == self.generation)
                    .min_by_key(|w| w.age);
                if let Some(worker) = oldest {
                    Self::retire(worker, self.config.server.graceful_timeout);
                }
            }
            libc::SIGUSR1 => {
                tracing::info!("Handling signal SIGUSR1: workers reopen their log files");
                for worker in &self.workers {
                    send_signal(worker.pid, libc::SIGUSR1);
                }
            }
            _ => {}
        }
    }

    fn retire(worker: &mut WorkerRecord, grace: Duration) {
        worker.retiring = true;
        worker.kill_at = Some(Instant::now() + grace + Duration::from_secs(1));
        send_signal(worker.pid, libc::SIGTERM);
    }

    fn stop(&mut self, how: Stopping) {
        if self
            .stopping
            .is_some_and(|(current, _)| current == Stopping::Quick || how == Stopping::Graceful)
        {
            return;
        }
        systemd::notify("STOPPING=1");
        // Closing our copies of the listening sockets: once the workers close theirs,
        // new connections are refused instead of queueing for no one.
        self.listeners.clear();
        let (signal, grace, name) = match how {
            Stopping::Graceful => (
                libc::SIGTERM,
                self.config.server.graceful_timeout + Duration::from_secs(1),
                "graceful",
            ),
            Stopping::Quick => (libc::SIGQUIT, QUICK_STOP_GRACE, "quick"),
        };
        tracing::info!(
            "Shutting down ({name}): stopping {} worker{}",
            self.workers.len(),
            plural(self.workers.len())
        );
        for worker in &mut self.workers {
            worker.retiring = true;
            send_signal(worker.pid, signal);
        }
        self.stopping = Some((how, Instant::now() + grace));
    }

    fn ready_count(&self, generation: u64) -> usize {
        self.workers
            .iter()
            .filter(|w| w.generation == generation && w.ready && !w.retiring)
            .count()
    }

    fn spawn_missing(&mut self, py: Python<'_>) -> PyResult<()> {
        loop {
            let serving = self
                .workers
                .iter()
                .filter(|w| w.generation == self.generation && !w.retiring)
                .count();
            if serving >= self.target || Instant::now() < self.next_spawn {
                return Ok(());
            }
            self.spawn(py)?;
        }
    }

    fn spawn(&mut self, py: Python<'_>) -> PyResult<()> {
        let (supervisor_end, worker_end) = control::pair()
            .map_err(|e| PyOSError::new_err(format!("could not create a socketpair: {e}")))?;
        self.started_workers += 1;
        let age = self.started_workers;
        let metrics_slot = self.metrics.as_mut().and_then(|hub| hub.reserve());
        let os = py.import("os")?;
        let forked = os.call_method0("fork").and_then(|pid| pid.extract::<i32>());
        let pid = match forked {
            Ok(pid) => pid,
            Err(error) => {
                if let Some(hub) = &mut self.metrics {
                    hub.unreserve(metrics_slot);
                }
                return Err(error);
            }
        };
        if pid == 0 {
            if let Some(hub) = self.metrics.take() {
                // The listener and scrape connections close with `hub`; the shared region
                // stays mapped (it is never unmapped).
                hub.enter_worker(metrics_slot);
            }
            self.become_worker(py, worker_end, supervisor_end, age);
        }
        if let Some(hub) = &mut self.metrics {
            hub.adopt(pid, metrics_slot);
        }
        drop(worker_end);
        tracing::info!("Booting worker with pid: {pid}");
        let now = Instant::now();
        self.workers.push(WorkerRecord {
            pid,
            control: supervisor_end,
            generation: self.generation,
            age,
            ready: false,
            retiring: false,
            last_seen: now,
            kill_at: None,
        });
        Ok(())
    }

    /// In the child after fork: drops what belongs to the supervisor, runs the worker, and
    /// leaves the process without returning into the supervisor's code.
    fn become_worker(
        &mut self,
        py: Python<'_>,
        control: UnixStream,
        supervisor_end: UnixStream,
        age: u64,
    ) -> ! {
        drop(supervisor_end);
        // Other workers' control sockets and the wakeup pipe are the supervisor's.
        self.workers.clear();
        self.wakeup = None;
        let listeners: Vec<(Listener, Arc<ListenerInfo>)> = std::mem::take(&mut self.listeners)
            .into_iter()
            .map(|(listener, info)| (listener, Arc::new(info)))
            .collect();
        let code = worker::run(
            py,
            WorkerSetup {
                listeners,
                control,
                age,
            },
            self.config,
            self.loader,
            self.hooks,
        );
        if let Ok(process) = py.import("tidegate._process") {
            let _ = process.call_method0("flush_std_streams");
        }
        // SAFETY: _exit(2) ends the process at once; skipping the supervisor's destructors
        // and the interpreter's finalisation is what a forked worker must do (it owns
        // neither the pid file nor the socket files).
        unsafe { libc::_exit(code) }
    }

    fn read_control(&mut self) {
        let mut buffer = [0u8; 256];
        for worker in &mut self.workers {
            loop {
                match worker.control.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        for &message in &buffer[..n] {
                            match message {
                                READY if !worker.ready => {
                                    worker.ready = true;
                                    self.ever_ready = true;
                                    self.boot_failures = 0;
                                    tracing::info!("Worker {} is ready", worker.pid);
                                }
                                RETIRING if !worker.retiring => {
                                    // Its replacement starts now; it drains and exits.
                                    worker.retiring = true;
                                    worker.kill_at = Some(
                                        Instant::now()
                                            + self.config.server.graceful_timeout
                                            + Duration::from_secs(1),
                                    );
                                }
                                HEARTBEAT | READY | RETIRING => {}
                                _ => {}
                            }
                        }
                        worker.last_seen = Instant::now();
                    }
                    Err(_) => break,
                }
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid int for waitpid to fill; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
                continue;
            };
            let worker = self.workers.remove(index);
            if let Some(hub) = &mut self.metrics {
                hub.worker_exited(pid);
            }
            self.on_exit(&worker, status);
        }
    }

    fn on_exit(&mut self, worker: &WorkerRecord, status: i32) {
        let how = describe_status(status);
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        if worker.retiring || self.stopping.is_some() {
            tracing::info!("Worker {} exited ({how})", worker.pid);
            return;
        }
        if worker.ready {
            tracing::error!(
                "Worker {} exited unexpectedly ({how}); starting a replacement",
                worker.pid
            );
            crate::metrics::restart(crate::metrics::RestartReason::Crash);
            return;
        }
        if code == Some(EXIT_APP_LOAD_ERROR) && !self.ever_ready {
            tracing::error!(
                "Worker {} could not load the application; stopping",
                worker.pid
            );
            self.exit_code = EXIT_APP_LOAD_ERROR;
            self.stop(Stopping::Quick);
            return;
        }
        self.boot_failures += 1;
        crate::metrics::restart(crate::metrics::RestartReason::Crash);
        let backoff = Duration::from_secs(1 << (self.boot_failures - 1).min(5)).min(MAX_BACKOFF);
        self.next_spawn = Instant::now() + backoff;
        tracing::error!(
            "Worker {} exited while starting ({how}); {} failure{} in a row, next start in {}s",
            worker.pid,
            self.boot_failures,
            plural(self.boot_failures as usize),
            backoff.as_secs()
        );
    }

    /// A reload is done when the new generation serves: the old workers then drain.
    fn finish_reload(&mut self) {
        if !self.reloading
            || self.stopping.is_some()
            || self.ready_count(self.generation) < self.target
        {
            return;
        }
        self.reloading = false;
        let grace = self.config.server.graceful_timeout;
        let mut stopped = 0;
        for worker in self
            .workers
            .iter_mut()
            .filter(|w| w.generation < self.generation && !w.retiring)
        {
            Self::retire(worker, grace);
            crate::metrics::restart(crate::metrics::RestartReason::Reload);
            stopped += 1;
        }
        tracing::info!(
            "Reload complete: {stopped} old worker{} draining",
            plural(stopped)
        );
        systemd::notify("READY=1");
    }

    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let heartbeat_limit = self
            .config
            .timeout
            .unwrap_or(Duration::ZERO)
            .max(MIN_HEARTBEAT_LIMIT);
        for worker in &mut self.workers {
            if worker.kill_at.is_some_and(|at| now >= at) {
                tracing::warn!(
                    "Worker {} did not finish draining in time; killing it",
                    worker.pid
                );
                send_signal(worker.pid, libc::SIGKILL);
                worker.kill_at = None;
            } else if worker.ready
                && !worker.retiring
                && now.duration_since(worker.last_seen) > heartbeat_limit
            {
                tracing::error!(
                    "Worker {} sent no heartbeat for {}s (frozen); killing it",
                    worker.pid,
                    heartbeat_limit.as_secs()
                );
                send_signal(worker.pid, libc::SIGKILL);
                worker.retiring = true;
                crate::metrics::restart(crate::metrics::RestartReason::Timeout);
            }
        }
    }
}
