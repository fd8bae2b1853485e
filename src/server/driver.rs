//! `--threads 1`: the Python thread drives the I/O runtime itself (leader/follower).
//!
//! With one Python thread, handing each request from an I/O thread to the Python thread and
//! its response back cost more than the rest of the engine's work on a small request: a
//! queue each way, wake-ups, and every byte of the request touched by two cores. Here the
//! runtime is a `current_thread` one that no thread owns. The Python thread (a *runner*)
//! drives it with `block_on` until a connection hands over a request, leaves `block_on`
//! (the runtime's core is then free) and runs the app, and enters `block_on` again, which
//! delivers the response to its connection task and takes the next request. Wakes from
//! inside `block_on` need no system call, so a busy worker serves request after request
//! with no wake-up at all. Requests already queued when one ends are run at once, for up to
//! [`BATCH_WINDOW`], so that one turn at the runtime (the GIL released and taken back, the
//! runtime entered and left) serves them all and their responses go out together.
//!
//! A request that waits for its client (a request body still to come, a response channel
//! full) drives the runtime itself until the wait is over ([`Runner::drive`]), and the
//! connection task its response events are for is woken at the runner's next turn
//! ([`wake_soon`]): a request's own I/O wakes no thread. While a runner is in the app
//! otherwise, nobody drives the runtime. A *standby* thread takes the free core when a
//! request runs longer than [`TAKEOVER_AFTER`], and gives it back as soon as a runner wants
//! it. So slow and hung requests do not stop the worker's other connections, heartbeats,
//! static files or the 504 of `--timeout`, and the rescue thread a hung request calls for
//! is one more runner.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use tokio::runtime::Runtime;

use crate::gateway::Exchange;
use crate::overdue::OnOverdue;
use crate::server::capacity::Capacity;
use crate::server::monitor::Monitor;
use crate::server::pool::{register_thread, run_exchange, spawn_python_thread};
use crate::wsgi::responder::ResponderCache;
use crate::wsgi::Bridge;

/// How long a request may keep the runtime undriven before the standby drives it.
pub const TAKEOVER_AFTER: Duration = Duration::from_millis(20);
/// How often the standby looks at the runners when nobody asks it to.
const STANDBY_TICK: Duration = Duration::from_millis(25);
/// How long requests taken from the queue one after the other may run before the runner
/// goes back to the runtime, which sends their responses. Long enough to share one turn at
/// the runtime among tens of small requests, short enough that no response waits for more
/// than about this long plus one request.
pub const BATCH_WINDOW: Duration = Duration::from_micros(200);
/// Runner slots: the Python thread and the rescue threads a hung request may call for.
const MAX_RUNNERS: usize = 8;

/// What the runners, the standby and the connection tasks share.
pub struct Shared {
    /// Requests waiting for a runner, and the runner waiting for them.
    jobs: Mutex<Jobs>,
    /// No more requests will be taken: runners leave once the queue is empty.
    stopping: AtomicBool,
    /// Per runner slot: when its current request began (ms since `epoch`, plus one), or 0.
    busy_since: [AtomicU64; MAX_RUNNERS],
    /// Runners about to enter `block_on`: the standby gives the core back to them.
    want_core: AtomicUsize,
    /// The standby drives the runtime now.
    standby_driving: AtomicBool,
    /// The standby's `block_on` future, to end its turn.
    standby_waker: Mutex<Option<Waker>>,
    /// Set to make the standby look now rather than at its next tick.
    takeover: Mutex<bool>,
    takeover_signal: Condvar,
    /// The standby leaves.
    standby_stop: AtomicBool,
    /// Connection tasks a runner outside the runtime sent response events to, woken by the
    /// next `block_on` (a runner's or the standby's) so that no wake crosses threads.
    outbox: Mutex<Vec<Waker>>,
    epoch: Instant,
}

/// Requests waiting for a runner, in arrival order, with the waker of the runner now
/// driving the runtime while it waits for one: under one lock, so that queueing a request
/// and finding whom to wake take one lock, and a runner's check for a request and its
/// registration cannot miss one queued in between.
#[derive(Default)]
struct Jobs {
    queue: VecDeque<Box<Exchange>>,
    waker: Option<Waker>,
}

/// What a runner thread keeps about itself, for the engine code its requests run.
struct RunnerSlot {
    /// The runner running on this thread, if it is one.
    runner: RefCell<Option<Runner>>,
    /// The runner is in a request (outside `block_on`), so it may enter the runtime.
    in_request: Cell<bool>,
}

thread_local! {
    static RUNNER: RunnerSlot = const {
        RunnerSlot { runner: RefCell::new(None), in_request: Cell::new(false) }
    };
}

/// A runner's handle on its runtime, for the waits of the request it runs.
#[derive(Clone)]
pub struct Runner {
    shared: Arc<Shared>,
    runtime: Arc<Runtime>,
}

impl Runner {
    /// The runner of this thread, if this thread is a runner in a request.
    pub fn current() -> Option<Runner> {
        RUNNER.with(|slot| {
            if !slot.in_request.get() {
                return None;
            }
            slot.runner.borrow().clone()
        })
    }

    /// Drives the runtime until `future` (a wait for a connection task: room in its
    /// response channel, the next piece of a request body) completes. Call it without the
    /// GIL. The runner serves the I/O its request waits for itself: no thread is woken,
    /// and the connection task runs on the core that already holds its request.
    pub fn drive<F: Future>(&self, future: F) -> F::Output {
        self.shared.ask_for_core();
        // The tasks this turn runs are not the request: what they drop (a sink, say) must
        // not try to enter the runtime they are already in.
        let in_request = RUNNER.with(|slot| slot.in_request.replace(false));
        let output = self.runtime.block_on(NestedTurn {
            shared: &self.shared,
            entered: false,
            future: std::pin::pin!(future),
        });
        RUNNER.with(|slot| slot.in_request.set(in_request));
        output
    }
}

/// Runs `f`, an operation that wakes a connection task through a channel whose waker it
/// does not hand out (a `oneshot`), so that the wake costs no system call when this thread
/// is a runner in a request.
///
/// From outside the runtime that wake is a write to the runtime's eventfd, and nobody waits
/// on the runtime to take it: the runner drives the runtime only at its next turn. So `f`
/// runs inside the runtime (entering it costs about as much as the write, in instructions),
/// where the wake only queues the task for that turn. With the standby driving, or on any
/// other thread, `f` runs directly. (The response channel hands its waker back instead:
/// [`wake_soon`].)
pub fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
    RUNNER.with(|slot| {
        if slot.in_request.get() {
            if let Some(runner) = &*slot.runner.borrow() {
                if !runner.shared.standby_driving.load(Ordering::Acquire) {
                    // The future is ready at its first poll, which `block_on` makes before
                    // running any task; if the core is busy (the standby began meanwhile),
                    // `block_on` polls it without the core, and the wake is a plain one.
                    return runner.runtime.block_on(async move { f() });
                }
            }
        }
        f()
    })
}

impl Shared {
    fn new() -> Self {
        Shared {
            jobs: Mutex::new(Jobs::default()),
            stopping: AtomicBool::new(false),
            busy_since: std::array::from_fn(|_| AtomicU64::new(0)),
            want_core: AtomicUsize::new(0),
            standby_driving: AtomicBool::new(false),
            standby_waker: Mutex::new(None),
            takeover: Mutex::new(false),
            takeover_signal: Condvar::new(),
            standby_stop: AtomicBool::new(false),
            outbox: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        }
    }

    /// Queues a request for a runner; false once the runners have stopped. Called by
    /// connection tasks, on the runtime: waking the runner costs no system call.
    pub fn dispatch(&self, exchange: Box<Exchange>) -> bool {
        if self.stopping.load(Ordering::Acquire) {
            return false;
        }
        let waker = {
            let mut jobs = lock(&self.jobs);
            jobs.queue.push_back(exchange);
            jobs.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// `at` as the runners' busy clocks count it: ms since `epoch`, plus one (0 is idle).
    fn ms_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    /// How long the longest-running request has run, if a runner is in one.
    fn longest_busy(&self) -> Option<Duration> {
        let now = self.now_ms();
        self.busy_since
            .iter()
            .map(|since| since.load(Ordering::Acquire))
            .filter(|&since| since != 0)
            .map(|since| Duration::from_millis(now.saturating_sub(since)))
            .max()
    }

    fn wake_standby_turn(&self) {
        if let Some(waker) = lock(&self.standby_waker).take() {
            waker.wake();
        }
    }

    /// A runner is about to enter `block_on`: the standby ends its turn and gives the core
    /// back. Paired with [`begin_runner_turn`](Self::begin_runner_turn).
    fn ask_for_core(&self) {
        self.want_core.fetch_add(1, Ordering::AcqRel);
        self.wake_standby_turn();
    }

    /// The first poll of a runner's turn at the runtime (it holds the core now): delivers
    /// what runners left in the outbox.
    fn begin_runner_turn(&self) {
        self.want_core.fetch_sub(1, Ordering::AcqRel);
        self.deliver_outbox();
    }

    fn ask_standby(&self) {
        *lock(&self.takeover) = true;
        self.takeover_signal.notify_one();
    }

    /// Wakes the connection tasks runners sent response events to. Called inside
    /// `block_on`, where a wake is a queue push.
    fn deliver_outbox(&self) {
        // Drained in place: the buffer keeps its capacity for the next turn.
        let mut outbox = lock(&self.outbox);
        for waker in outbox.drain(..) {
            waker.wake();
        }
    }
}

/// Wakes `waker`, a connection task that a response event was just queued for, without a
/// cross-thread wake when this thread is a runner in a request: the wake waits in the
/// outbox for the `block_on` the runner enters next (nobody drives the runtime before
/// that unless the standby takes over, and the standby's turn delivers the outbox too).
/// Anywhere else (the standby driving, inside the runtime, a pool thread) it wakes now.
pub fn wake_soon(waker: Option<Waker>) {
    let Some(waker) = waker else {
        return;
    };
    RUNNER.with(|slot| {
        if slot.in_request.get() {
            if let Some(Runner { shared, .. }) = &*slot.runner.borrow() {
                // The standby drives the runtime: a direct wake reaches it now.
                if !shared.standby_driving.load(Ordering::Acquire) {
                    lock(&shared.outbox).push(waker);
                    if shared.standby_driving.load(Ordering::Acquire) {
                        // The standby began to drive meanwhile and may have looked at the
                        // outbox already: its turn ends at this wake, and the next
                        // `block_on` delivers.
                        shared.wake_standby_turn();
                    }
                    return;
                }
            }
        }
        waker.wake();
    })
}

/// The runners and the standby of one worker, and the runtime they share.
pub struct Driver {
    runtime: Option<Arc<Runtime>>,
    shared: Arc<Shared>,
    runners: Vec<JoinHandle<()>>,
    standby: Option<JoinHandle<()>>,
    spawn: RunnerSpawn,
}

/// What a new runner needs.
#[derive(Clone)]
struct RunnerSpawn {
    runtime: Arc<Runtime>,
    shared: Arc<Shared>,
    bridge: Arc<Bridge>,
    monitor: Option<Arc<Monitor>>,
    capacity: Arc<Capacity>,
}

impl RunnerSpawn {
    fn spawn(&self, index: usize) -> std::io::Result<JoinHandle<()>> {
        let this = self.clone();
        spawn_python_thread(index, move || this.run(index))
    }

    fn run(&self, index: usize) {
        let slot = index.min(MAX_RUNNERS - 1);
        RUNNER.with(|slot| {
            *slot.runner.borrow_mut() = Some(Runner {
                shared: Arc::clone(&self.shared),
                runtime: Arc::clone(&self.runtime),
            })
        });
        Python::attach(|py| {
            if let Some(monitor) = &self.monitor {
                register_thread(py, monitor, index);
            }
            // What the requests run since the last turn at the runtime left to do there.
            let mut finished = 0usize;
            let mut leftovers: Vec<OnOverdue> = Vec::new();
            let mut queued: Option<Box<Exchange>> = None;
            let mut batch_started: Option<Instant> = None;
            // The clock read when the last request ended, which is also when the next one,
            // taken at once from the queue, begins: one reading per request in a batch
            // (~20 ns each here) instead of one for each thing that keeps time.
            let mut ended_at: Option<Instant> = None;
            let mut responders = ResponderCache::default();
            loop {
                let mut exchange = match queued.take() {
                    Some(exchange) => exchange,
                    None => {
                        self.shared.ask_for_core();
                        let next_job = NextJob {
                            shared: &self.shared,
                            capacity: &self.capacity,
                            finished: std::mem::take(&mut finished),
                            leftovers: &mut leftovers,
                            entered: false,
                        };
                        let runtime = &self.runtime;
                        let next = crate::metrics::detach_timed(py, || runtime.block_on(next_job));
                        match next {
                            Some(exchange) => exchange,
                            None => return,
                        }
                    }
                };
                let started = ended_at.take().unwrap_or_else(Instant::now);
                self.shared.busy_since[slot].store(self.shared.ms_at(started), Ordering::Release);
                // An HTTP/2 stream's overdue callback holds a oneshot whose drop wakes its
                // task: it is dropped in the next turn at the runtime, where that costs no
                // wake-up.
                let overdue = exchange.on_overdue.take();
                match &self.monitor {
                    Some(monitor) => {
                        monitor.begin(index, started, exchange.head.lazy_label(), overdue)
                    }
                    None => leftovers.extend(overdue),
                }
                RUNNER.with(|slot| slot.in_request.set(true));
                run_exchange(py, &self.bridge, exchange, &mut responders);
                RUNNER.with(|slot| slot.in_request.set(false));
                self.shared.busy_since[slot].store(0, Ordering::Release);
                crate::metrics::request_done();
                if let Some(monitor) = &self.monitor {
                    leftovers.extend(monitor.end(index));
                }
                // The request's capacity is given back inside the runtime, where waking the
                // accept loop is a queue push.
                finished += 1;
                // A request already queued is taken at once, with the GIL kept: the turn at
                // the runtime (the GIL released and taken back, the runtime entered and
                // left) is paid once for all the requests queued together, and their
                // responses go out together at its start.
                // Bounded by time: the responses of the batch wait for its end, so a batch
                // stops growing once it has run for BATCH_WINDOW (a request slower than that
                // is a batch of its own).
                let now = Instant::now();
                let batch_age = now.saturating_duration_since(*batch_started.get_or_insert(now));
                if batch_age < BATCH_WINDOW && !self.shared.stopping.load(Ordering::Acquire) {
                    queued = lock(&self.shared.jobs).queue.pop_front();
                }
                if queued.is_none() {
                    batch_started = None;
                } else {
                    ended_at = Some(now);
                }
            }
        });
        RUNNER.with(|slot| slot.runner.borrow_mut().take());
    }
}

/// A runner's turn at the runtime: delivers what the last requests left, then waits for the
/// next request (`None`: the driver stops).
struct NextJob<'a> {
    shared: &'a Shared,
    capacity: &'a Capacity,
    /// Requests finished since the last turn, whose capacity is given back here.
    finished: usize,
    /// Their unused overdue callbacks, dropped here.
    leftovers: &'a mut Vec<OnOverdue>,
    entered: bool,
}

impl Future for NextJob<'_> {
    type Output = Option<Box<Exchange>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.entered {
            this.entered = true;
            this.shared.begin_runner_turn();
            this.leftovers.clear();
            for _ in 0..std::mem::take(&mut this.finished) {
                this.capacity.release();
            }
        }
        let mut jobs = lock(&this.shared.jobs);
        if let Some(job) = jobs.queue.pop_front() {
            return Poll::Ready(Some(job));
        }
        // `stop` sets the flag before it takes the lock to wake: read under the lock, a
        // stop is either seen here or finds this waker.
        if this.shared.stopping.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        jobs.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A runner's turn at the runtime from inside a request ([`Runner::drive`]): delivers the
/// outbox, then drives the runtime until `future` completes.
struct NestedTurn<'a, F> {
    shared: &'a Shared,
    entered: bool,
    future: Pin<&'a mut F>,
}

impl<F: Future> Future for NestedTurn<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if !this.entered {
            this.entered = true;
            this.shared.begin_runner_turn();
        }
        this.future.as_mut().poll(cx)
    }
}

/// The standby's turn at the runtime: drives it while a runner is in a request and no runner
/// wants the core back.
struct StandbyTurn<'a> {
    shared: &'a Shared,
}

impl Future for StandbyTurn<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = self.shared;
        let done = || {
            shared.standby_stop.load(Ordering::Acquire)
                || shared.want_core.load(Ordering::Acquire) > 0
                || shared.longest_busy().is_none()
        };
        if done() {
            return Poll::Ready(());
        }
        shared.deliver_outbox();
        *lock(&shared.standby_waker) = Some(cx.waker().clone());
        if done() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

fn run_standby(runtime: &Runtime, shared: &Shared) {
    loop {
        let asked = {
            let mut asked = lock(&shared.takeover);
            if !*asked && !shared.standby_stop.load(Ordering::Acquire) {
                asked = shared
                    .takeover_signal
                    .wait_timeout(asked, STANDBY_TICK)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            std::mem::take(&mut *asked)
        };
        if shared.standby_stop.load(Ordering::Acquire) {
            return;
        }
        let Some(busy) = shared.longest_busy() else {
            continue;
        };
        if !asked && busy < TAKEOVER_AFTER {
            continue;
        }
        shared.standby_driving.store(true, Ordering::Release);
        runtime.block_on(StandbyTurn { shared });
        shared.standby_driving.store(false, Ordering::Release);
        // A runner that deferred an event while this turn ended gets it delivered by its
        // own next `block_on`; nothing is left behind here.
        if shared.longest_busy().is_some() && shared.want_core.load(Ordering::Acquire) == 0 {
            // Still busy, nobody waiting for the core: look again at once.
            *lock(&shared.takeover) = true;
        }
    }
}

impl Driver {
    /// Starts `count` runners (usually one) and the standby on a new `current_thread`
    /// runtime.
    pub fn start(
        bridge: Arc<Bridge>,
        count: usize,
        monitor: Option<Arc<Monitor>>,
        capacity: Arc<Capacity>,
    ) -> std::io::Result<Self> {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        );
        let shared = Arc::new(Shared::new());
        let spawn = RunnerSpawn {
            runtime: Arc::clone(&runtime),
            shared: Arc::clone(&shared),
            bridge,
            monitor,
            capacity,
        };
        let runners = (0..count)
            .map(|index| spawn.spawn(index))
            .collect::<std::io::Result<_>>()?;
        let standby = {
            let runtime = Arc::clone(&runtime);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("tidegate-standby".into())
                .spawn(move || run_standby(&runtime, &shared))?
        };
        Ok(Driver {
            runtime: Some(runtime),
            shared,
            runners,
            standby: Some(standby),
            spawn,
        })
    }

    /// Where connection tasks queue requests.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The runtime, for spawning the accept loops and the worker's own tasks.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.spawn.runtime.handle().clone()
    }

    /// Starts one more runner (monitor slot `index`): a hung request's rescue thread.
    pub fn add_runner(&mut self, index: usize) -> std::io::Result<()> {
        let runner = self.spawn.spawn(index)?;
        self.runners.push(runner);
        Ok(())
    }

    /// Runs `future` on the runtime (driven by whoever drives it) and waits for its
    /// output with the GIL released; `None` if the runtime could not finish it within
    /// `limit`.
    pub fn run<F>(&self, py: Python<'_>, limit: Duration, future: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle().spawn(async move {
            let _ = tx.send(future.await);
        });
        // The runners may all be busy: the standby drives meanwhile.
        self.shared.ask_standby();
        let rx = Mutex::new(rx);
        py.detach(|| lock(&rx).recv_timeout(limit).ok())
    }

    /// Stops taking requests, lets the runners finish the queued ones for up to `timeout`,
    /// stops the standby and the runtime. Returns how many runners were still busy.
    pub fn stop(mut self, py: Python<'_>, timeout: Duration) -> usize {
        self.shared.stopping.store(true, Ordering::Release);
        let waker = lock(&self.shared.jobs).waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
        let deadline = Instant::now() + timeout;
        py.detach(|| {
            while Instant::now() < deadline && self.runners.iter().any(|t| !t.is_finished()) {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let busy = self.runners.iter().filter(|t| !t.is_finished()).count();
        for runner in self.runners.drain(..).filter(|t| t.is_finished()) {
            let _ = runner.join();
        }
        self.shared.standby_stop.store(true, Ordering::Release);
        self.shared.ask_standby();
        self.shared.wake_standby_turn();
        if let Some(standby) = self.standby.take() {
            let joined = py.detach(|| {
                let deadline = Instant::now() + Duration::from_secs(1);
                while Instant::now() < deadline && !standby.is_finished() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                standby.is_finished()
            });
            if joined {
                let _ = standby.join();
            }
        }
        // The runtime is shut down only when no runner holds it any more (a runner stuck in
        // a hung request keeps its reference; the process is leaving anyway).
        let runtime = self.runtime.take().expect("driver is running");
        drop(self.spawn);
        if let Ok(runtime) = Arc::try_unwrap(runtime) {
            py.detach(|| runtime.shutdown_timeout(Duration::from_secs(1)));
        }
        busy
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// Makes this thread a runner of a fresh runtime, in a request.
    fn become_runner() -> Runner {
        let runner = Runner {
            shared: Arc::new(Shared::new()),
            runtime: Arc::new(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap(),
            ),
        };
        RUNNER.with(|slot| {
            *slot.runner.borrow_mut() = Some(runner.clone());
            slot.in_request.set(true);
        });
        runner
    }

    fn leave() {
        RUNNER.with(|slot| {
            slot.runner.borrow_mut().take();
            slot.in_request.set(false);
        });
    }

    fn inside_runtime() -> bool {
        tokio::runtime::Handle::try_current().is_ok()
    }

    #[test]
    fn a_wake_enters_the_runtime_only_from_a_request_and_never_while_the_standby_drives() {
        let runner = become_runner();
        assert!(in_runtime(inside_runtime));
        // The standby drives: its runtime is awake, a direct wake reaches it.
        runner.shared.standby_driving.store(true, Ordering::Release);
        assert!(!in_runtime(inside_runtime));
        runner
            .shared
            .standby_driving
            .store(false, Ordering::Release);
        // Outside a request (between requests, or in the tasks a turn runs): directly.
        RUNNER.with(|slot| slot.in_request.set(false));
        assert!(!in_runtime(inside_runtime));
        leave();
        // And on a thread that is no runner at all.
        assert!(!in_runtime(inside_runtime));
    }

    /// A waker counting its wakes.
    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_runner_in_a_request_wakes_its_connection_at_its_next_turn() {
        let runner = become_runner();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let woken = || count.0.load(Ordering::SeqCst);
        wake_soon(Some(Waker::from(Arc::clone(&count))));
        assert_eq!(woken(), 0, "deferred while the runner is in the app");
        // The runner's next turn at the runtime delivers it.
        runner.drive(async {});
        assert_eq!(woken(), 1);
        // With the standby driving, at once.
        runner.shared.standby_driving.store(true, Ordering::Release);
        wake_soon(Some(Waker::from(Arc::clone(&count))));
        assert_eq!(woken(), 2);
        runner
            .shared
            .standby_driving
            .store(false, Ordering::Release);
        // And at once outside a request.
        RUNNER.with(|slot| slot.in_request.set(false));
        wake_soon(Some(Waker::from(Arc::clone(&count))));
        assert_eq!(woken(), 3);
        leave();
        wake_soon(None);
    }

    #[test]
    fn a_request_waiting_for_its_connection_drives_the_runtime_itself() {
        let runner = become_runner();
        let (to_request, mut from_connection) = mpsc::channel::<u32>(1);
        let (turn_tx, turn_rx) = tokio::sync::oneshot::channel::<()>();
        // A connection task that answers only after another task has run: nothing but
        // a thread driving the runtime can get it there.
        runner.runtime.spawn(async move {
            let _ = turn_rx.await;
            to_request.send(7).await.unwrap();
        });
        runner.runtime.spawn(async move {
            let _ = turn_tx.send(());
        });
        let got = runner.drive(from_connection.recv());
        assert_eq!(got, Some(7));
        // The core was asked for and taken back, and the runner is still in its request.
        assert_eq!(runner.shared.want_core.load(Ordering::Acquire), 0);
        assert!(Runner::current().is_some());
        leave();
        assert!(Runner::current().is_none());
    }
}
