//! The serving machinery of one process: the I/O runtime, the accept loops and the
//! Python threads, started together and stopped together.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use tokio::sync::watch;

use crate::gateway::ListenerInfo;
use crate::http::{ConnContext, Dispatcher};
use crate::logging::AccessLog;
use crate::server::accept::{accept_loop, ConnectionCount};
use crate::server::bind::Listener;
use crate::server::capacity::Capacity;
use crate::server::driver::Driver;
use crate::server::monitor::Monitor;
use crate::server::pool::WorkerPool;
use crate::server::stop::{StopNotice, StopOnDrop};
use crate::wsgi::{Bridge, BridgeOptions, RequestHooks};

/// What differs between a lone server and a supervised worker.
pub struct EngineOptions {
    /// Python threads running the app.
    pub threads: usize,
    /// `wsgi.multiprocess`.
    pub multiprocess: bool,
    /// The worker's self-watch (none for a lone server).
    pub monitor: Option<Arc<Monitor>>,
    /// `pre_request`/`post_request` hooks.
    pub hooks: RequestHooks,
    /// `-` for stdout, a path, or none.
    pub access_log: Option<String>,
    /// HTTP limits and timeouts.
    pub limits: crate::http::HttpLimits,
    /// What the listeners speak.
    pub protocol: crate::server::WireProtocol,
    /// `--static` mounts answered by the engine, if any.
    pub static_files: Option<Arc<crate::static_files::StaticSite>>,
    /// Trusted proxies, PROXY protocol, root path.
    pub proxy: Arc<crate::proxy::ProxyConfig>,
    /// TLS for every listener (loaded by this process from the files).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTP versions and HTTP/2 bounds.
    pub http2: crate::http2::Http2Settings,
}

/// How to stop.
#[derive(Debug, Clone, Copy)]
pub enum StopMode {
    /// Stop accepting, let open connections finish their requests for up to this long.
    Graceful(Duration),
    /// Close everything now.
    Quick,
}

/// Who runs the requests and drives the I/O.
enum Executor {
    /// `--threads` above 1: an I/O thread (a one-worker tokio runtime) hands requests to a
    /// pool of Python threads.
    Pool {
        runtime: tokio::runtime::Runtime,
        pool: WorkerPool,
    },
    /// `--threads 1`: the Python thread drives the runtime itself (`server::driver`).
    Driver(Driver),
}

/// A running engine.
pub struct Engine {
    executor: Executor,
    shutdown: watch::Sender<bool>,
    /// Told after `shutdown` (so that a waiter it wakes reads the watch's new value), and
    /// when the engine is dropped.
    stop_notice: StopOnDrop,
    connections: Arc<ConnectionCount>,
    access_log: Option<Arc<AccessLog>>,
}

impl Engine {
    /// Starts serving `app` on `listeners`.
    pub fn start(
        py: Python<'_>,
        app: Py<PyAny>,
        listeners: Vec<(Listener, Arc<ListenerInfo>)>,
        options: EngineOptions,
    ) -> PyResult<Engine> {
        let access_log = match &options.access_log {
            Some(target) => Some(Arc::new(AccessLog::open(target).map_err(|e| {
                PyOSError::new_err(format!("could not open access log {target:?}: {e}"))
            })?)),
            None => None,
        };
        let bridge = Arc::new(Bridge::new(
            py,
            app,
            BridgeOptions {
                multithread: options.threads > 1,
                multiprocess: options.multiprocess,
                hooks: options.hooks,
                run_once: false,
                proxy: Arc::clone(&options.proxy),
            },
        )?);
        let capacity = Capacity::new(options.threads);
        let executor = if options.threads == 1 {
            let driver =
                Driver::start(bridge, 1, options.monitor, Arc::clone(&capacity)).map_err(|e| {
                    PyOSError::new_err(format!("could not start the Python thread: {e}"))
                })?;
            Executor::Driver(driver)
        } else {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("tidegate-io")
                // Before the I/O thread sleeps in epoll_wait, it offers its core to a
                // runnable Python thread: the response that thread is about to post is then
                // queued before the I/O thread parks, so it needs no eventfd wake-up and no
                // switch back.
                .on_thread_park(std::thread::yield_now)
                .enable_all()
                .build()
                .map_err(|e| PyOSError::new_err(format!("could not start the I/O runtime: {e}")))?;
            let pool = WorkerPool::start(
                bridge,
                options.threads,
                options.monitor,
                Arc::clone(&capacity),
            )
            .map_err(|e| PyOSError::new_err(format!("could not start Python threads: {e}")))?;
            Executor::Pool { runtime, pool }
        };
        let (dispatcher, handle) = match &executor {
            Executor::Pool { runtime, pool } => {
                (Dispatcher::Pool(pool.sender()), runtime.handle().clone())
            }
            Executor::Driver(driver) => (Dispatcher::Driver(driver.shared()), driver.handle()),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let stop_notice = Arc::new(StopNotice::default());
        let connections = ConnectionCount::new(options.limits.max_connections);
        for (listener, info) in listeners {
            let ctx = Arc::new(ConnContext {
                listener: info,
                shutdown: shutdown_rx.clone(),
                stop_notice: Arc::clone(&stop_notice),
                access_log: access_log.clone(),
                dispatcher: dispatcher.clone(),
                capacity: Arc::clone(&capacity),
                limits: options.limits,
                protocol: options.protocol,
                static_files: options.static_files.clone(),
                proxy: Arc::clone(&options.proxy),
                tls: options.tls.clone().map(tokio_rustls::TlsAcceptor::from),
                http2: options.http2,
            });
            handle.spawn(accept_loop(listener, ctx, Arc::clone(&connections)));
        }
        Ok(Engine {
            executor,
            shutdown,
            stop_notice: StopOnDrop(stop_notice),
            connections,
            access_log,
        })
    }

    /// The I/O runtime, for the worker's own tasks (heartbeats).
    pub fn handle(&self) -> tokio::runtime::Handle {
        match &self.executor {
            Executor::Pool { runtime, .. } => runtime.handle().clone(),
            Executor::Driver(driver) => driver.handle(),
        }
    }

    /// Adds the rescue thread (monitor slot `index`) to serve requests queued behind a
    /// hung one.
    pub fn add_rescue_thread(&mut self, index: usize) {
        let added = match &mut self.executor {
            Executor::Pool { pool, .. } => pool.add_thread(index),
            Executor::Driver(driver) => driver.add_runner(index),
        };
        if let Err(error) = added {
            tracing::error!("Could not start a rescue thread: {error}");
        }
    }

    /// Reopens the access log file (SIGUSR1, after log rotation).
    pub fn reopen_logs(&self) {
        if let Some(log) = &self.access_log {
            if let Err(error) = log.reopen() {
                tracing::error!("Could not reopen the access log: {error}");
            }
        }
    }

    /// Stops serving. Returns when every connection is closed (or the graceful time is up)
    /// and the Python threads have finished or been abandoned.
    pub fn stop(self, py: Python<'_>, mode: StopMode) {
        let _ = self.shutdown.send(true);
        self.stop_notice.0.stop();
        let grace = match mode {
            StopMode::Graceful(grace) => grace,
            StopMode::Quick => Duration::ZERO,
        };
        let started = std::time::Instant::now();
        let connections = Arc::clone(&self.connections);
        let drained = match &self.executor {
            Executor::Pool { runtime, .. } => py.detach(|| {
                runtime.block_on(async {
                    tokio::time::timeout(grace, connections.wait_idle())
                        .await
                        .is_ok()
                })
            }),
            // No thread owns the driver's runtime: the wait runs as a task on it.
            Executor::Driver(driver) => {
                let connections = Arc::clone(&connections);
                driver
                    .run(py, grace + Duration::from_secs(1), async move {
                        tokio::time::timeout(grace, connections.wait_idle())
                            .await
                            .is_ok()
                    })
                    .unwrap_or(false)
            }
        };
        if !drained && grace > Duration::ZERO {
            tracing::warn!(
                "Graceful timeout ({}s) reached with {} connection(s) still open; closing them",
                grace.as_secs(),
                connections.open()
            );
        }
        let mut left = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        if drained {
            // Every connection is closed, so a Python thread still running (a request that
            // timed out, or whose client left) has nobody to answer: wait only briefly.
            left = left.min(Duration::from_secs(1));
        }
        let busy = match self.executor {
            Executor::Pool { runtime, pool } => {
                let busy = pool.stop(py, left);
                py.detach(|| runtime.shutdown_timeout(Duration::from_secs(1)));
                busy
            }
            Executor::Driver(driver) => driver.stop(py, left),
        };
        if busy > 0 && grace > Duration::ZERO {
            tracing::warn!("{busy} Python thread(s) still running a request at exit");
        }
    }
}
