//! The `qga-children` thread: one epoll set over every guest-exec child's pidfd, stdin
//! pipe and output pipes, so that feeding input, collecting output and reaping never
//! block a command. guest-exec registers a new child's descriptors in the set itself,
//! so starting a child does not wake the thread. The table it shares with the
//! handlers is locked only for bookkeeping and bounded reads, never across a wait.

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

/// Event tokens: the child's id shifted left by 3, or'ed with the kind.
const PIDFD: u64 = 0;
const STDIN: u64 = 1;
const OUT: u64 = 2;
const ERR: u64 = 3;
/// The token of the wake-up pipe.
const WAKE: u64 = u64::MAX;

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
    /// `None` when the kernel has no pidfd, and once the child is reaped.
    pidfd: Option<Watched>,
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
        }
    }

    /// Whether something of it is not covered by the epoll set.
    fn needs_sweep(&self) -> bool {
        let swept = |c: &Option<Capture>| {
            c.as_ref()
                .and_then(|c| c.fd.as_ref())
                .is_some_and(Watched::swept)
        };
        (self.status.is_none() && self.pidfd.as_ref().is_none_or(Watched::swept))
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
}

/// The shared table, the epoll set and the thread's wake-up pipe.
pub struct Monitor {
    table: Mutex<Table>,
    ep: Arc<Epoll>,
    wake: OwnedFd,
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
        let m = Arc::new(Monitor {
            table: Mutex::new(Table::default()),
            ep,
            wake: wake_w,
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

    /// Registers a freshly spawned child: its descriptors join the epoll set, so the
    /// thread is woken only if the sweep has to cover some of them.
    pub fn add(&self, child: spawn::Child, input: Option<Vec<u8>>) {
        let pidfd = spawn::pidfd_open(child.pid);
        let mut t = self.lock();
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
