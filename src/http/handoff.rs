//! The response channel: a bounded queue from the thread running a request to the task
//! writing its response.
//!
//! tokio's `mpsc` did this job, but it is built for many senders: a semaphore whose
//! release takes a lock on every receive, a list of slot blocks, an atomic waker, and a
//! wake the sender cannot put off. Here one short lock guards a small ring, and a send
//! hands the receiver's waker back to its caller instead of waking it, so the `--threads 1`
//! driver can wake the task at its next turn at the runtime, where a wake is a queue push
//! (see [`crate::server::driver::wake_soon`]).
//!
//! The last item of a response never waits for room ([`Sender::send_last`]): it is one
//! item more, and a response dropped unfinished must be able to end itself from any thread
//! without blocking.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Makes a queue holding up to `capacity` items besides a last one.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity),
            capacity,
            receiver: None,
            sender: None,
            blocked: 0,
            closed: false,
        }),
        room: Condvar::new(),
        senders: AtomicUsize::new(1),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when room is made or the receiver goes, for threads blocked in
    /// [`Sender::blocking_send`].
    room: Condvar,
    /// Live [`Sender`]s: with none left and the queue empty, the receiver gets `None`.
    senders: AtomicUsize,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// The receiving task, waiting for an item.
    receiver: Option<Waker>,
    /// A task waiting for room in [`Sender::send`].
    sender: Option<Waker>,
    /// Threads waiting for room in [`Sender::blocking_send`].
    blocked: usize,
    /// The receiver is gone.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while the lock is held leaves the ring consistent (every change to it is
        // one call), so a poisoned lock is taken as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> State<T> {
    /// Takes an item from the front; whoever waits for room is told.
    fn pop(&mut self, room: &Condvar) -> (Option<T>, Option<Waker>) {
        let item = self.items.pop_front();
        if item.is_none() {
            return (None, None);
        }
        if self.items.is_empty() {
            // Back to the start of the ring (`clear` on an empty deque only resets its
            // head): the next response's events go to the slots this one's warmed, not to
            // the next ones round the ring, cold once a few hundred other connections'
            // requests have passed.
            self.items.clear();
        }
        if self.blocked > 0 {
            room.notify_all();
        }
        (item, self.sender.take())
    }
}

/// Why [`Sender::try_send`] gave an item back.
#[derive(Debug)]
pub enum TrySendError<T> {
    /// The queue holds `capacity` items.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// Why [`Receiver::try_recv`] has no item.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is queued now.
    Empty,
    /// Nothing is queued and every sender is gone.
    Disconnected,
}

/// The sending side; clones share the queue.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` if there is room. `Ok` carries the receiver's waker, if it waits: the
    /// caller wakes it, now or at a better moment.
    pub fn try_send(&self, item: T) -> Result<Option<Waker>, TrySendError<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() >= state.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        Ok(state.receiver.take())
    }

    /// Queues a response's last item whether or not there is room (the receiver's waker
    /// comes back as from [`try_send`](Self::try_send)); `Err` gives it back if the receiver
    /// is gone.
    pub fn send_last(&self, item: T) -> Result<Option<Waker>, T> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        Ok(state.receiver.take())
    }

    /// Queues `item`, waiting for room as long as it takes; wakes the receiver. `Err` gives
    /// the item back if the receiver is gone. One task waits for room at a time (a
    /// response has one producer): a second one waiting would replace the first's waker.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        let waker = poll_fn(|cx: &mut Context<'_>| {
            let mut state = self.shared.lock();
            let held = item.take().expect("polled after completion");
            if state.closed {
                return Poll::Ready(Err(held));
            }
            if state.items.len() < state.capacity {
                state.items.push_back(held);
                return Poll::Ready(Ok(state.receiver.take()));
            }
            item = Some(held);
            match &mut state.sender {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await?;
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `item`, blocking this thread until there is room; wakes the receiver. For
    /// threads outside the runtime the receiver runs on.
    pub fn blocking_send(&self, item: T) -> Result<(), T> {
        let mut state = self.shared.lock();
        loop {
            if state.closed {
                return Err(item);
            }
            if state.items.len() < state.capacity {
                state.items.push_back(item);
                let waker = state.receiver.take();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
                return Ok(());
            }
            state.blocked += 1;
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
            state.blocked -= 1;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    /// The last sender gone, a waiting receiver is woken to see it.
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taken under the lock, which the receiver holds while it checks the count and
            // registers: either it saw the count at zero or its waker is here.
            let waker = self.shared.lock().receiver.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// The receiving side, held by the task writing the response.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is empty and every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item, registering `cx`'s waker when there is none.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        let (item, sender) = state.pop(&self.shared.room);
        if let Some(item) = item {
            drop(state);
            if let Some(sender) = sender {
                sender.wake();
            }
            return Poll::Ready(Some(item));
        }
        if self.shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(None);
        }
        match &mut state.receiver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        let (item, sender) = state.pop(&self.shared.room);
        drop(state);
        if let Some(sender) = sender {
            sender.wake();
        }
        match item {
            Some(item) => Ok(item),
            None if self.shared.senders.load(Ordering::Acquire) == 0 => {
                Err(TryRecvError::Disconnected)
            }
            None => Err(TryRecvError::Empty),
        }
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }
}

impl<T> Drop for Receiver<T> {
    /// Closes the queue: senders waiting for room are told, and the items left are dropped
    /// here rather than with the last sender.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        let items = std::mem::take(&mut state.items);
        let sender = state.sender.take();
        if state.blocked > 0 {
            self.shared.room.notify_all();
        }
        drop(state);
        drop(items);
        if let Some(sender) = sender {
            sender.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    /// A waker that records that it was woken.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        (Arc::clone(&flag), Waker::from(flag))
    }

    fn woken(flag: &Flag) -> bool {
        flag.0.swap(false, Ordering::SeqCst)
    }

    #[test]
    fn a_send_hands_back_the_waiting_receivers_waker_instead_of_waking_it() {
        let (tx, mut rx) = channel::<u32>(2);
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        let handed = tx.try_send(1).unwrap().expect("the receiver waits");
        assert!(!woken(&flag), "the sender decides when to wake");
        handed.wake();
        assert!(woken(&flag));
        // Nobody waits now: no waker comes back.
        assert!(tx.try_send(2).unwrap().is_none());
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_full_queue_refuses_items_but_never_the_last_one() {
        let (tx, mut rx) = channel::<u32>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        tx.send_last(4).unwrap();
        let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, [1, 2, 4]);
    }

    #[test]
    fn a_sender_waiting_for_room_is_woken_when_the_receiver_takes_an_item() {
        let (tx, mut rx) = channel::<u32>(1);
        tx.try_send(1).unwrap();
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let mut send = std::pin::pin!(tx.send(2));
        assert!(send.as_mut().poll(&mut cx).is_pending());
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(woken(&flag));
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
        assert_eq!(rx.try_recv(), Ok(2));
    }

    #[test]
    fn a_thread_blocked_for_room_goes_on_when_an_item_is_taken_or_the_receiver_goes() {
        let (tx, mut rx) = channel::<u32>(1);
        tx.try_send(1).unwrap();
        let sender = tx.clone();
        let blocked = std::thread::spawn(move || sender.blocking_send(2));
        // Give the thread time to block, then make room.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(blocked.join().unwrap(), Ok(()));
        assert_eq!(rx.try_recv(), Ok(2));

        tx.try_send(3).unwrap();
        let sender = tx.clone();
        let blocked = std::thread::spawn(move || sender.blocking_send(4));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(rx);
        assert_eq!(blocked.join().unwrap(), Err(4));
    }

    #[test]
    fn the_receiver_sees_the_end_once_every_sender_is_gone() {
        let (tx, mut rx) = channel::<u32>(4);
        let second = tx.clone();
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(tx);
        assert!(!woken(&flag), "a sender is left");
        second.try_send(7).unwrap();
        drop(second);
        // Items queued before the last sender went still come first.
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn the_last_sender_going_wakes_a_waiting_receiver() {
        let (tx, mut rx) = channel::<u32>(4);
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(tx);
        assert!(woken(&flag));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn sends_fail_once_the_receiver_is_gone() {
        let (tx, rx) = channel::<u32>(4);
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        tx.try_send(3).unwrap();
        tx.try_send(4).unwrap();
        let mut send = std::pin::pin!(tx.send(5));
        assert!(send.as_mut().poll(&mut cx).is_pending());
        drop(rx);
        assert!(
            woken(&flag),
            "a sender waiting for room learns the receiver went"
        );
        assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(Err(5)));
        assert!(matches!(tx.try_send(6), Err(TrySendError::Closed(6))));
        assert!(matches!(tx.send_last(7), Err(7)));
        assert_eq!(tx.blocking_send(8), Err(8));
    }

    #[test]
    fn items_left_when_the_receiver_goes_are_dropped_with_it() {
        let item = Arc::new(());
        let (tx, rx) = channel::<Arc<()>>(2);
        tx.try_send(Arc::clone(&item)).unwrap();
        drop(rx);
        assert_eq!(Arc::strong_count(&item), 1);
    }
}
