//! A worker process: forked by the supervisor, it loads the app (unless it was preloaded),
//! serves on the inherited listening sockets, tells the supervisor it is alive, and leaves
//! when told to (SIGTERM graceful, SIGINT/SIGQUIT quick) or when its budget is spent.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PySystemExit;
use pyo3::prelude::*;
use tokio::io::AsyncWriteExt;

use crate::gateway::ListenerInfo;
use crate::server::bind::Listener;
use crate::server::control::{HEARTBEAT, HEARTBEAT_INTERVAL, READY, RETIRING};
use crate::server::engine::{Engine, EngineOptions, StopMode};
use crate::server::monitor::{spawn_watchdog, Budgets, Monitor};
use crate::server::supervisor::{ProcessHooks, SupervisorConfig};
use crate::server::SIGNAL_POLL;
use crate::wsgi::RequestHooks;

/// Exit status of a worker that could not start (gunicorn's WORKER_BOOT_ERROR).
pub const EXIT_BOOT_ERROR: i32 = 3;

/// What a new worker is handed at fork.
pub struct WorkerSetup {
    /// The listening sockets, inherited from the supervisor.
    pub listeners: Vec<(Listener, Arc<ListenerInfo>)>,
    /// The worker's end of the control socket.
    pub control: UnixStream,
    /// 1 for the first worker the supervisor started, counting up.
    pub age: u64,
}

/// Runs the worker to its end and returns its exit status.
pub fn run(
    py: Python<'_>,
    setup: WorkerSetup,
    config: &SupervisorConfig,
    loader: &Py<PyAny>,
    hooks: &ProcessHooks,
) -> i32 {
    match run_inner(py, setup, config, loader, hooks) {
        Ok(code) => code,
        Err(error) => {
            if error.is_instance_of::<PySystemExit>(py) {
                return exit_code(py, &error);
            }
            // Through the error log (not printed raw), so a JSON log stays one object a line.
            tracing::error!(
                "Worker {} failed to start: {}",
                std::process::id(),
                crate::wsgi::app::describe_exception(py, &error)
            );
            EXIT_BOOT_ERROR
        }
    }
}

fn exit_code(py: Python<'_>, error: &PyErr) -> i32 {
    error
        .value(py)
        .getattr("code")
        .ok()
        .and_then(|code| code.extract::<i32>().ok())
        .unwrap_or(1)
}

fn run_inner(
    py: Python<'_>,
    setup: WorkerSetup,
    config: &SupervisorConfig,
    loader: &Py<PyAny>,
    hooks: &ProcessHooks,
) -> PyResult<i32> {
    let process = py.import("tidegate._process")?;
    process.call_method0("worker_signals")?;
    let pid = std::process::id();
    let worker = process
        .call_method1("worker_info", (pid, setup.age))?
        .unbind();
    if let Some(post_fork) = &hooks.post_fork {
        post_fork.bind(py).call1((worker.clone_ref(py),))?;
    }
    let app = loader.bind(py).call0()?.unbind();
    // Read fresh in every worker: a HUP after the files were replaced serves the new ones.
    let tls = config.server.load_tls()?;

    let (retire_tx, retire_rx) = std::sync::mpsc::channel();
    let monitor = Monitor::new(
        config.server.threads,
        Budgets {
            timeout: config.timeout,
            request_budget: (config.max_requests > 0)
                .then(|| config.max_requests + random_below(config.max_requests_jitter + 1)),
            max_rss: (config.max_rss_mib > 0).then_some(config.max_rss_mib << 20),
        },
        retire_tx,
    );
    let mut engine = Engine::start(
        py,
        app,
        setup.listeners,
        EngineOptions {
            threads: config.server.threads,
            multiprocess: config.workers > 1,
            monitor: Some(Arc::clone(&monitor)),
            hooks: RequestHooks {
                worker: Some(worker.clone_ref(py)),
                pre_request: hooks.pre_request.as_ref().map(|h| h.clone_ref(py)),
                post_request: hooks.post_request.as_ref().map(|h| h.clone_ref(py)),
            },
            access_log: config.server.access_log.clone(),
            limits: config.server.limits,
            protocol: config.server.protocol,
            static_files: config.server.static_files.clone(),
            proxy: Arc::clone(&config.server.proxy),
            tls,
            http2: config.server.http2,
        },
    )?;

    let mut control = setup.control;
    // A supervisor that cannot hear READY will replace this worker anyway.
    let _ = control.write_all(&[READY]);
    if let Ok(heartbeat) = control.try_clone() {
        let handle = engine.handle();
        let _guard = handle.enter();
        if heartbeat.set_nonblocking(true).is_ok() {
            if let Ok(stream) = tokio::net::UnixStream::from_std(heartbeat) {
                handle.spawn(send_heartbeats(stream));
            }
        }
    }
    let watchdog_stop = Arc::new(AtomicBool::new(false));
    if monitor.needs_watchdog() {
        spawn_watchdog(
            Arc::clone(&monitor),
            Duration::from_millis(200),
            Arc::clone(&watchdog_stop),
        )
        .map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!("could not start the watchdog: {e}"))
        })?;
    }
    if config.reload {
        spawn_reloader(Arc::clone(&monitor), Arc::clone(&watchdog_stop));
    }

    let quick_exit = process.getattr("QuickExit")?;
    // Receiver is not Sync; a Mutex lets the wait happen with the GIL released.
    let retire_rx = std::sync::Mutex::new(retire_rx);
    let supervisor = parent_pid();
    let mode = loop {
        let received = py.detach(|| {
            retire_rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv_timeout(SIGNAL_POLL)
        });
        match received {
            Ok(request) => {
                tracing::info!("Worker {pid} retiring: {}", request.reason);
                if request.hung {
                    // The hung thread will never take another request; requests already
                    // queued on this worker's connections still deserve an answer.
                    engine.add_rescue_thread(config.server.threads);
                }
                let _ = control.write_all(&[RETIRING]);
                break StopMode::Graceful(config.server.graceful_timeout);
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        if let Err(signal) = py.check_signals() {
            if signal.is_instance(py, &quick_exit) {
                break StopMode::Quick;
            }
            break StopMode::Graceful(config.server.graceful_timeout);
        }
        if process.call_method0("take_reopen_request")?.is_truthy()? {
            engine.reopen_logs();
        }
        if parent_pid() != supervisor {
            tracing::error!("Worker {pid}: the supervisor is gone; exiting");
            break StopMode::Quick;
        }
    };
    watchdog_stop.store(true, Ordering::Relaxed);
    engine.stop(py, mode);
    if let Some(worker_exit) = &hooks.worker_exit {
        if let Err(error) = worker_exit.bind(py).call1((worker.clone_ref(py),)) {
            tracing::error!("The worker_exit hook raised: {error}");
        }
    }
    Ok(0)
}

async fn send_heartbeats(mut stream: tokio::net::UnixStream) {
    loop {
        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
        if stream.write_all(&[HEARTBEAT]).await.is_err() {
            return;
        }
    }
}

fn parent_pid() -> i32 {
    // SAFETY: getppid(2) has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// A random number in `0..bound`, for `--max-requests-jitter`: workers started together
/// must not all retire together.
fn random_below(bound: u64) -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        bytes = (u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15).to_le_bytes();
    }
    u64::from_le_bytes(bytes) % bound.max(1)
}

/// `--reload`: once a second, compares the modification times of the Python files the
/// worker has imported; a change retires the worker, and its replacement imports the new
/// code.
fn spawn_reloader(monitor: Arc<Monitor>, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("tidegate-reload".into())
        .spawn(move || {
            let snapshot = || {
                Python::attach(|py| -> PyResult<Vec<(String, f64)>> {
                    py.import("tidegate._process")?
                        .call_method0("module_mtimes")?
                        .extract()
                })
                .unwrap_or_default()
            };
            let mut known: std::collections::HashMap<String, f64> =
                snapshot().into_iter().collect();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                for (path, mtime) in snapshot() {
                    match known.insert(path.clone(), mtime) {
                        Some(before) if before != mtime => {
                            monitor.request_retirement(
                                format!("{path} changed (--reload)"),
                                false,
                                crate::metrics::RestartReason::Reload,
                            );
                            return;
                        }
                        _ => {}
                    }
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!("Could not start the --reload watcher: {error}");
    }
}
