//! Calls that may block in the kernel for ever (statvfs on a filesystem whose device
//! stopped answering, an NVMe admin command to a wedged controller), run with a time
//! bound so that one stuck device cannot stall the agent.
//!
//! Each call runs on a helper thread; the caller waits at most the given bound. A
//! helper that returned in time is kept for the next call (a KubeVirt poll every 10 s
//! makes one statvfs per mount: starting a thread for each cost more than the call)
//! and ends after [`IDLE_EXIT`] without work. When the bound passes, the caller carries on without the result, and the
//! call's key (e.g. the mount point) stays registered as *pending* until the helper
//! thread finally returns. While a key is pending, further calls with that key are not
//! started at all: they are answered "skipped" at once, so a device that stays stuck
//! costs one parked thread, not one more per poll. At most [`MAX_PENDING`] keys may be
//! pending at a time; beyond that every new call is skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

/// Most calls left running after their bound passed (one parked thread each).
pub const MAX_PENDING: usize = 64;
/// An idle helper thread ends after this long without a call.
pub const IDLE_EXIT: Duration = Duration::from_secs(60);

/// A call handed to a helper thread.
type Job = Box<dyn FnOnce() + Send>;

/// The idle helper: its number and where its calls go.
type Idle = Option<(u64, mpsc::Sender<Job>)>;

/// The outcome of a bounded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bounded<T> {
    /// The call returned in time.
    Done(T),
    /// The bound passed; the call is still running and its key is now pending.
    TimedOut,
    /// Not started: an earlier call with the same key is still running, too many
    /// calls are pending, or no thread could be started.
    Skipped,
}

/// The set of keys whose calls outlived their bound.
pub struct Pending {
    keys: Mutex<Vec<Vec<u8>>>,
    idle: Mutex<Idle>,
    workers: AtomicU64,
}

/// The agent's registry (stuck calls are a property of the process).
pub static PENDING: Pending = Pending::new();

impl Pending {
    /// An empty registry.
    pub const fn new() -> Self {
        Pending {
            keys: Mutex::new(Vec::new()),
            idle: Mutex::new(None),
            workers: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call with this key is still running.
    pub fn is_pending(&self, key: &[u8]) -> bool {
        self.lock().iter().any(|k| k == key)
    }

    /// How many calls are still running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no call is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on a helper thread and waits at most `bound` for it.
    pub fn run<T, F>(&'static self, key: &[u8], bound: Duration, f: F) -> Bounded<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        {
            let mut keys = self.lock();
            if keys.len() >= MAX_PENDING || keys.iter().any(|k| k == key) {
                return Bounded::Skipped;
            }
            keys.push(key.to_vec());
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let owned = key.to_vec();
        let job: Job = Box::new(move || {
            let v = f();
            // Released before the result is handed over, so a caller that got `Done`
            // may immediately call again with the same key.
            self.release(&owned);
            let _ = tx.send(v);
        });
        let Some(worker) = self.hand_over(job) else {
            self.release(key);
            return Bounded::Skipped;
        };
        match rx.recv_timeout(bound) {
            Ok(v) => {
                self.set_idle(worker);
                Bounded::Done(v)
            }
            // The helper is stuck in the call: its sender is dropped here, so it ends
            // once the call returns.
            Err(_) => Bounded::TimedOut,
        }
    }

    /// Gives `job` to the idle helper, or to a new one; returns that helper (to be put
    /// back as idle if it finishes in time), `None` if no thread could be started.
    fn hand_over(&'static self, job: Job) -> Option<(u64, mpsc::Sender<Job>)> {
        let idle = self.lock_idle().take();
        let job = match idle {
            Some((id, tx)) => match tx.send(job) {
                Ok(()) => return Some((id, tx)),
                // It ended after IDLE_EXIT between our taking it and sending.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let id = self.workers.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new()
            .name("qga-bounded".into())
            .stack_size(64 * 1024)
            .spawn(move || self.work(id, &rx))
            .ok()?;
        tx.send(job).ok()?;
        Some((id, tx))
    }

    /// A helper thread: runs calls until nobody holds its sender any more, or it sat
    /// idle for [`IDLE_EXIT`].
    fn work(&self, id: u64, rx: &mpsc::Receiver<Job>) {
        loop {
            match rx.recv_timeout(IDLE_EXIT) {
                Ok(job) => job(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Only an idle helper may end: taking its sender out of the slot
                    // under the lock means no call can be handed to it any more. If a
                    // caller holds the sender, a call is on its way (or the sender is
                    // dropped and the next recv says so).
                    let mut idle = self.lock_idle();
                    if idle.as_ref().is_some_and(|(i, _)| *i == id) {
                        *idle = None;
                        return;
                    }
                }
            }
        }
    }

    fn set_idle(&self, worker: (u64, mpsc::Sender<Job>)) {
        let mut idle = self.lock_idle();
        if idle.is_none() {
            *idle = Some(worker);
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, key: &[u8]) {
        let mut keys = self.lock();
        if let Some(i) = keys.iter().position(|k| k == key) {
            keys.swap_remove(i);
        }
    }
}

impl Default for Pending {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn stuck_call_is_bounded_and_not_repeated() {
        static P: Pending = Pending::new();
        let (unblock_tx, unblock_rx) = channel::<()>();
        let started = std::time::Instant::now();
        let r = P.run(b"/stuck", Duration::from_millis(50), move || {
            let _ = unblock_rx.recv();
            1
        });
        assert_eq!(r, Bounded::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(P.is_pending(b"/stuck"));
        // While it is still stuck, the same key is not started again.
        let r = P.run(b"/stuck", Duration::from_secs(5), || 2);
        assert_eq!(r, Bounded::Skipped);
        // Other keys run normally.
        assert_eq!(
            P.run(b"/fine", Duration::from_secs(5), || 3),
            Bounded::Done(3)
        );
        // A finished call releases its key before the caller sees the result.
        assert!(!P.is_pending(b"/fine"));
        // Once the stuck call returns, its key is released and runs again.
        unblock_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while P.is_pending(b"/stuck") {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            P.run(b"/stuck", Duration::from_secs(5), || 4),
            Bounded::Done(4)
        );
        assert!(P.is_empty());
    }

    #[test]
    fn a_helper_is_reused_and_a_stuck_one_is_not() {
        static P: Pending = Pending::new();
        let tid = || format!("{:?}", std::thread::current().id());
        let a = P.run(b"a", Duration::from_secs(5), tid);
        let b = P.run(b"b", Duration::from_secs(5), tid);
        assert_eq!(a, b, "the second call runs on the same helper thread");
        let (unblock_tx, unblock_rx) = channel::<()>();
        let stuck = P.run(b"s", Duration::from_millis(20), move || {
            let _ = unblock_rx.recv();
            tid()
        });
        assert_eq!(stuck, Bounded::TimedOut);
        // The stuck helper is not given the next call.
        let c = P.run(b"c", Duration::from_secs(5), tid);
        assert!(matches!(&c, Bounded::Done(_)) && c != a, "{c:?} {a:?}");
        unblock_tx.send(()).unwrap();
    }

    #[test]
    fn pending_set_is_capped() {
        static P: Pending = Pending::new();
        let (tx, rx) = channel::<()>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..MAX_PENDING {
            let rx = rx.clone();
            let r = P.run(
                format!("k{i}").as_bytes(),
                Duration::from_millis(1),
                move || {
                    let _ = rx.lock().map(|r| r.recv());
                },
            );
            assert_eq!(r, Bounded::TimedOut);
        }
        assert_eq!(P.len(), MAX_PENDING);
        assert_eq!(
            P.run(b"another", Duration::from_secs(1), || ()),
            Bounded::Skipped
        );
        for _ in 0..MAX_PENDING {
            tx.send(()).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !P.is_empty() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
