//! The `qga-children` thread: one epoll set over every guest-exec child's pidfd, stdin
//! pipe and output pipes, so that feeding input, collecting output and reaping never
//! block a command. guest-exec registers a new child's descriptors in the set itself,
//! so starting a child does not wake the thread. The table it shares with the
//! handlers is locked only for bookkeeping and bounded reads, never across a wait.
//!
//! A child's exit is watched only after a grace of at most [`REAP_GRACE`] from its
//! start: most children a host runs are short and the host's own guest-exec-status
//! reaps them, so the thread is not woken at each exit to do the same (on a guest with
//! two CPUs that wake-up took the CPU from the thread answering the host, about 40 µs
//! per exec). One timer covers every child started since it was armed; when it fires
//! the thread reaps those that have exited and watches the rest. A child nobody asks
//! about is so reaped at most [`REAP_GRACE`] after it exits.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Policy, MAX_OUTPUT};
use crate::sys::spawn::{self, Epoll};

/// How often what the epoll set does not cover is checked: children without a pidfd
/// (kernels before 5.3) and descriptors the set refused.
const SWEEP_INTERVAL: Duration = Duration::from_millis(50);
/// Reads of one output pipe per wakeup, so one flooding child cannot starve others.
const READS_PER_WAKEUP: usize = 16;
const READ_CHUNK: usize = 64 * 1024;
/// Events handled per epoll_wait.
const EVENTS: usize = 64;
/// How long after it starts a child is at most left to guest-exec-status before its
/// exit is watched (see the module comment).
pub const REAP_GRACE: Duration = Duration::from_millis(10);

/// Event tokens: the child's id shifted left by 3, or'ed with the kind.
const PIDFD: u64 = 0;
const STDIN: u64 = 1;
const OUT: u64 = 2;
const ERR: u64 = 3;
/// The token of the wake-up pipe.
const WAKE: u64 = u64::MAX;
/// The token of the grace timer.
const TIMER: u64 = u64::MAX - 1;

/// A captured stream once the child is done.
#[derive(Debug, Default)]
pub struct Captured {
    /// The first 16 MiB.
    pub data: Vec<u8>,
    /// More than that was produced.
    pub truncated: bool,
}

/// A collected result.
#[derive(Debug)]
pub struct Finished {
    /// The raw wait status.
    pub status: i32,
    /// Captured stdout, if stdout was captured.
    pub out: Option<Captured>,
    /// Captured stderr, if stderr was captured separately.
    pub err: Option<Captured>,
}

/// A descriptor in the monitor's epoll set (unless the set refused it: then the
/// sweep looks at it); it leaves the set before it is closed.
struct Watched {
    fd: OwnedFd,
    ep: Option<Arc<Epoll>>,
}

impl Watched {
    fn new(ep: &Arc<Epoll>, fd: OwnedFd, events: i32, token: u64) -> Watched {
        let ep = ep.add(&fd, events, token).ok().map(|()| ep.clone());
        Watched { fd, ep }
    }

    fn swept(&self) -> bool {
        self.ep.is_none()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(ep) = &self.ep {
            ep.remove(&self.fd);
        }
    }
}

struct Capture {
    /// `None` once the pipe reached EOF (or failed).
    fd: Option<Watched>,
    kept: Captured,
}

struct Feed {
    fd: Watched,
    data: Vec<u8>,
    written: usize,
}

struct Proc {
    /// Unique for the process's lifetime (PIDs are reused).
    id: u64,
    pid: i32,
    /// `None` when the kernel has no pidfd, while `unwatched`, and once the child is
    /// reaped.
    pidfd: Option<Watched>,
    /// Started since the grace timer was armed: its exit is not watched yet.
    unwatched: bool,
    status: Option<i32>,
    stdin: Option<Feed>,
    out: Option<Capture>,
    err: Option<Capture>,
    finished: Option<Instant>,
}

impl Proc {
    fn exited(&self) -> bool {
        let open = |c: &Option<Capture>| c.as_ref().is_some_and(|c| c.fd.is_some());
        self.status.is_some() && !open(&self.out) && !open(&self.err)
    }

    fn kept_bytes(&self) -> usize {
        let len = |c: &Option<Capture>| c.as_ref().map_or(0, |c| c.kept.data.len());
        len(&self.out) + len(&self.err)
    }

    /// Reaps the child if it has exited (at most once).
    fn reap(&mut self) {
        if self.status.is_none() {
            self.status = spawn::try_reap(self.pid);
        }
        if self.status.is_some() {
            self.pidfd = None;
            self.unwatched = false;
        }
    }

    /// The grace is over: reaps the child if it has exited, otherwise watches its
    /// exit (or leaves it to the sweep when there is no pidfd).
    fn watch(&mut self, ep: &Arc<Epoll>) {
        if !self.unwatched {
            return;
        }
        self.reap();
        if self.status.is_none() {
            self.pidfd = spawn::pidfd_open(self.pid)
                .map(|fd| Watched::new(ep, fd, libc::EPOLLIN, self.id << 3 | PIDFD));
        }
        self.unwatched = false;
    }

    /// Whether something of it is not covered by the epoll set.
    fn needs_sweep(&self) -> bool {
        let swept = |c: &Option<Capture>| {
            c.as_ref()
                .and_then(|c| c.fd.as_ref())
                .is_some_and(Watched::swept)
        };
        (self.status.is_none() && !self.unwatched && self.pidfd.as_ref().is_none_or(Watched::swept))
            || self.stdin.as_ref().is_some_and(|f| f.fd.swept())
            || swept(&self.out)
            || swept(&self.err)
    }

    /// What the epoll set does not cover, done by hand.
    fn sweep(&mut self, scratch: &mut [u8]) {
        if self.pidfd.as_ref().is_none_or(Watched::swept) {
            self.reap();
        }
        if self.stdin.as_ref().is_some_and(|f| f.fd.swept()) {
            feed(&mut self.stdin);
        }
        for c in [&mut self.out, &mut self.err] {
            if c.as_ref()
                .and_then(|c| c.fd.as_ref())
                .is_some_and(Watched::swept)
            {
                drain(c.as_mut(), scratch);
            }
        }
    }
}

#[derive(Default)]
struct Table {
    procs: Vec<Proc>,
    next_id: u64,
    /// The grace timer runs: children started now are covered by it.
    timer_armed: bool,
}

/// The shared table, the epoll set, the thread's wake-up pipe and the grace timer
/// (`None` if the kernel refused a timerfd: exits are then watched at once).
pub struct Monitor {
    table: Mutex<Table>,
    ep: Arc<Epoll>,
    wake: OwnedFd,
    timer: Option<OwnedFd>,
    policy: Policy,
}

impl Monitor {
    /// Starts the thread.
    pub fn start(policy: Policy) -> io::Result<Arc<Monitor>> {
        spawn::keep_child_statuses();
        let ep = Arc::new(Epoll::new()?);
        let (wake_r, wake_w) = spawn::pipe()?;
        spawn::set_nonblocking(&wake_r);
        spawn::set_nonblocking(&wake_w);
        ep.add(&wake_r, libc::EPOLLIN, WAKE)?;
        let timer = spawn::timerfd().filter(|t| ep.add(t, libc::EPOLLIN, TIMER).is_ok());
        let m = Arc::new(Monitor {
            table: Mutex::new(Table::default()),
            ep,
            wake: wake_w,
            timer,
            policy,
        });
        let thread_m = m.clone();
        std::thread::Builder::new()
            .name("qga-children".into())
            .spawn(move || thread_m.run(wake_r))?;
        Ok(m)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a freshly spawned child: its pipes join the epoll set, its exit is
    /// left to the grace timer (armed here if it is not running), so the thread is
    /// woken only if the sweep has to cover some of them.
    pub fn add(&self, child: spawn::Child, input: Option<Vec<u8>>) {
        let mut t = self.lock();
        let unwatched = match &self.timer {
            Some(_) if t.timer_armed => true,
            Some(timer) => {
                t.timer_armed = spawn::arm_timer(timer, REAP_GRACE).is_ok();
                t.timer_armed
            }
            None => false,
        };
        let pidfd = if unwatched {
            None
        } else {
            spawn::pidfd_open(child.pid)
        };
        let id = t.next_id;
        t.next_id += 1;
        let watch = |fd, events, kind| Watched::new(&self.ep, fd, events, id << 3 | kind);
        let capture = |fd: Option<OwnedFd>, kind| {
            fd.map(|fd| Capture {
                fd: Some(watch(fd, libc::EPOLLIN, kind)),
                kept: Captured::default(),
            })
        };
        let p = Proc {
            id,
            pid: child.pid,
            pidfd: pidfd.map(|fd| watch(fd, libc::EPOLLIN, PIDFD)),
            unwatched,
            status: None,
            stdin: child.stdin.map(|fd| Feed {
                fd: watch(fd, libc::EPOLLOUT, STDIN),
                data: input.unwrap_or_default(),
                written: 0,
            }),
            out: capture(child.stdout, OUT),
            err: capture(child.stderr, ERR),
            finished: None,
        };
        let sweep = p.needs_sweep();
        t.procs.push(p);
        drop(t);
        if sweep {
            let _ = spawn::write(&self.wake, &[1]);
        }
    }

    /// `None`: no such PID. `Some(None)`: still running (or output still open).
    /// `Some(Some(_))`: finished; the result is removed from the table.
    pub fn status(&self, pid: i64) -> Option<Option<Finished>> {
        let mut t = self.lock();
        self.prune(&mut t, Instant::now());
        let i = t.procs.iter().position(|p| i64::from(p.pid) == pid)?;
        // The child may have exited since the thread last looked: reap it here rather
        // than answer "running" until the thread has been scheduled. (The table lock
        // makes this and the thread's reap exclusive.)
        t.procs[i].reap();
        if !t.procs[i].exited() {
            return Some(None);
        }
        let p = t.procs.remove(i);
        drop(t);
        Some(Some(Finished {
            status: p.status.unwrap_or(spawn::STATUS_UNKNOWN),
            out: p.out.map(|c| c.kept),
            err: p.err.map(|c| c.kept),
        }))
    }

    /// (entries, of which finished).
    pub fn counts(&self) -> (usize, usize) {
        let t = self.lock();
        let finished = t.procs.iter().filter(|p| p.finished.is_some()).count();
        (t.procs.len(), finished)
    }

    /// Applies the retention policy to finished results.
    fn prune(&self, t: &mut Table, now: Instant) {
        let ttl = self.policy.ttl;
        t.procs
            .retain(|p| !matches!(p.finished, Some(f) if now.duration_since(f) >= ttl));
        loop {
            let mut finished: Vec<(Instant, usize, usize)> = t
                .procs
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.finished.map(|f| (f, i, p.kept_bytes())))
                .collect();
            let bytes: usize = finished.iter().map(|f| f.2).sum();
            if finished.len() <= self.policy.max_results
                && (bytes <= self.policy.max_bytes || finished.len() <= 1)
            {
                return;
            }
            finished.sort_unstable();
            t.procs.remove(finished[0].1);
        }
    }

    /// The thread's loop; never returns.
    fn run(&self, wake: OwnedFd) {
        let mut scratch = vec![0u8; READ_CHUNK];
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            let timeout = self.timeout();
            let n = self.ep.wait(&mut events, timeout).unwrap_or_else(|_| {
                std::thread::sleep(SWEEP_INTERVAL);
                0
            });
            let mut t = self.lock();
            for ev in &events[..n] {
                let token = ev.u64;
                if token == WAKE {
                    while matches!(spawn::read(&wake, &mut scratch), Ok(n) if n > 0) {}
                    continue;
                }
                if token == TIMER {
                    if let Some(timer) = &self.timer {
                        while matches!(spawn::read(timer, &mut scratch), Ok(n) if n > 0) {}
                    }
                    t.timer_armed = false;
                    for p in t.procs.iter_mut() {
                        p.watch(&self.ep);
                    }
                    continue;
                }
                // Tokens of children removed since (or of descriptors closed) match
                // nothing: ids are never reused.
                let Some(p) = t.procs.iter_mut().find(|p| p.id == token >> 3) else {
                    continue;
                };
                match token & 7 {
                    PIDFD => p.reap(),
                    STDIN => feed(&mut p.stdin),
                    OUT => drain(p.out.as_mut(), &mut scratch),
                    ERR => drain(p.err.as_mut(), &mut scratch),
                    _ => {}
                }
            }
            let now = Instant::now();
            for p in t.procs.iter_mut() {
                if p.needs_sweep() {
                    p.sweep(&mut scratch);
                }
                if p.finished.is_none() && p.exited() {
                    p.finished = Some(now);
                }
            }
            self.prune(&mut t, now);
        }
    }

    /// The wait's timeout: the next sweep if one is needed, else the next expiry.
    fn timeout(&self) -> i32 {
        let t = self.lock();
        let mut timeout: Option<Duration> = None;
        let now = Instant::now();
        for p in &t.procs {
            let due = if p.needs_sweep() {
                Some(SWEEP_INTERVAL)
            } else {
                p.finished
                    .map(|f| (f + self.policy.ttl).saturating_duration_since(now))
            };
            timeout = match (timeout, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        timeout.map_or(-1, |d| {
            i32::try_from(d.as_millis().saturating_add(1)).unwrap_or(i32::MAX)
        })
    }
}

/// Writes as much pending input as the pipe takes; closes stdin when all is written
/// or the child stopped reading (EPIPE).
fn feed(stdin: &mut Option<Feed>) {
    let Some(f) = stdin.as_mut() else { return };
    while f.written < f.data.len() {
        match spawn::write(&f.fd.fd, &f.data[f.written..]) {
            Ok(n) => f.written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => break,
        }
    }
    *stdin = None;
}

/// Reads what the pipe has (a bounded number of chunks); keeps up to MAX_OUTPUT and
/// discards the rest, marking the stream truncated; closes it at EOF or on error.
fn drain(capture: Option<&mut Capture>, scratch: &mut [u8]) {
    let Some(c) = capture else { return };
    for _ in 0..READS_PER_WAKEUP {
        let Some(w) = c.fd.as_ref() else { return };
        match spawn::read(&w.fd, scratch) {
            Ok(0) => c.fd = None,
            Ok(n) => {
                let keep = n.min(MAX_OUTPUT - c.kept.data.len());
                c.kept.data.extend_from_slice(&scratch[..keep]);
                if keep < n {
                    c.kept.truncated = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => c.fd = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::spawn::{Sink, Spec};

    fn start(argv: &[&str]) -> spawn::Child {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        spawn::spawn(&Spec {
            argv: &argv,
            env: None,
            stdin_pipe: false,
            stdout: Sink::Null,
            stderr: Sink::Null,
        })
        .unwrap()
    }

    /// Whether `pid` is gone or a zombie: (gone, zombie).
    fn proc_state(pid: i32) -> (bool, bool) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => (true, false),
            Ok(s) => (
                false,
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z'),
            ),
        }
    }

    /// Waits up to 10 s for `m` to count `finished` finished results.
    fn wait_finished(m: &Monitor, finished: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.counts().1 != finished {
            assert!(Instant::now() < deadline, "counts {:?}", m.counts());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Nobody asks about a short child: it is reaped by the grace timer, not left a
    /// zombie; one started while the timer runs is covered by the same expiry.
    #[test]
    fn a_child_nobody_asks_about_is_reaped_after_the_grace() {
        let m = Monitor::start(Policy::default()).unwrap();
        let a = start(&["true"]);
        let b = start(&["true"]);
        let (pa, pb) = (a.pid, b.pid);
        m.add(a, None);
        m.add(b, None);
        wait_finished(&m, 2);
        assert_eq!(
            (proc_state(pa), proc_state(pb)),
            ((true, false), (true, false))
        );
        for pid in [pa, pb] {
            let st = m.status(i64::from(pid)).unwrap().unwrap();
            assert_eq!(spawn::decode_status(st.status), (Some(0), None));
        }
    }

    /// A child still running when the grace ends has its exit watched from then on:
    /// reaped when it exits, with no status call and no sweep.
    #[test]
    fn a_longer_child_is_watched_after_the_grace() {
        let m = Monitor::start(Policy::default()).unwrap();
        let c = start(&["sleep", "1000"]);
        let pid = c.pid;
        m.add(c, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let t = m.lock();
                let p = t.procs.iter().find(|p| p.pid == pid).unwrap();
                assert!(p.status.is_none());
                if !p.unwatched {
                    assert!(p.pidfd.is_some() && !p.needs_sweep());
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the grace never ended");
            std::thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: a plain kill of our own child, not reaped yet (so not a reused pid).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        wait_finished(&m, 1);
        assert_eq!(proc_state(pid), (true, false));
        let st = m.status(i64::from(pid)).unwrap().unwrap();
        assert_eq!(spawn::decode_status(st.status), (None, Some(9)));
    }

    /// A child whose descriptors the epoll set refused and which has no pidfd (a
    /// kernel before 5.3) is fed, drained and reaped by the sweep alone.
    #[test]
    fn the_sweep_covers_what_epoll_does_not() {
        let argv = ["sh", "-c", "cat; echo err >&2; exit 5"].map(String::from);
        let child = spawn::spawn(&Spec {
            argv: &argv,
            env: None,
            stdin_pipe: true,
            stdout: Sink::Pipe,
            stderr: Sink::Pipe,
        })
        .unwrap();
        let unwatched = |fd| Watched { fd, ep: None };
        let capture = |fd: Option<OwnedFd>| {
            Some(Capture {
                fd: Some(unwatched(fd.unwrap())),
                kept: Captured::default(),
            })
        };
        let mut p = Proc {
            id: 0,
            pid: child.pid,
            pidfd: None,
            unwatched: false,
            status: None,
            stdin: Some(Feed {
                fd: unwatched(child.stdin.unwrap()),
                data: b"in\n".to_vec(),
                written: 0,
            }),
            out: capture(child.stdout),
            err: capture(child.stderr),
            finished: None,
        };
        let mut scratch = vec![0u8; READ_CHUNK];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !p.exited() {
            assert!(p.needs_sweep());
            assert!(Instant::now() < deadline, "the child did not finish");
            p.sweep(&mut scratch);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!p.needs_sweep());
        assert_eq!(spawn::decode_status(p.status.unwrap()), (Some(5), None));
        let kept = |c: &Option<Capture>| c.as_ref().unwrap().kept.data.clone();
        assert_eq!(
            (kept(&p.out), kept(&p.err)),
            (b"in\n".to_vec(), b"err\n".to_vec())
        );
    }
}
