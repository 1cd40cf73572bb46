//! The `qga-children` thread: one poll(2) loop over every guest-exec child's pidfd,
//! stdin pipe and output pipes, so that feeding input, collecting output and reaping
//! never block a command. The table it shares with the handlers is locked only for
//! bookkeeping and bounded reads, never across a wait.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Policy, MAX_OUTPUT};
use crate::sys::spawn;

/// On kernels without pidfd, how often running children are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(50);
/// Reads of one output pipe per wakeup, so one flooding child cannot starve others.
const READS_PER_WAKEUP: usize = 16;
const READ_CHUNK: usize = 64 * 1024;

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

struct Capture {
    /// `None` once the pipe reached EOF (or failed).
    fd: Option<OwnedFd>,
    kept: Captured,
}

struct Feed {
    fd: OwnedFd,
    data: Vec<u8>,
    written: usize,
}

struct Proc {
    /// Unique for the process's lifetime (PIDs are reused).
    id: u64,
    pid: i32,
    pidfd: Option<OwnedFd>,
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
}

#[derive(Default)]
struct Table {
    procs: Vec<Proc>,
    next_id: u64,
}

/// The shared table and the thread's wake-up pipe.
pub struct Monitor {
    table: Mutex<Table>,
    wake: OwnedFd,
    policy: Policy,
}

#[derive(Clone, Copy)]
enum Kind {
    Pidfd,
    Stdin,
    Out,
    Err,
}

impl Monitor {
    /// Starts the thread.
    pub fn start(policy: Policy) -> io::Result<Arc<Monitor>> {
        spawn::keep_child_statuses();
        let (wake_r, wake_w) = spawn::pipe()?;
        spawn::set_nonblocking(&wake_r);
        spawn::set_nonblocking(&wake_w);
        let m = Arc::new(Monitor {
            table: Mutex::new(Table::default()),
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

    fn wake(&self) {
        let _ = spawn::write(&self.wake, &[1]);
    }

    /// Registers a freshly spawned child.
    pub fn add(&self, child: spawn::Child, input: Option<Vec<u8>>) {
        let capture = |fd: Option<OwnedFd>| {
            fd.map(|fd| Capture {
                fd: Some(fd),
                kept: Captured::default(),
            })
        };
        let mut t = self.lock();
        let id = t.next_id;
        t.next_id += 1;
        t.procs.push(Proc {
            id,
            pid: child.pid,
            pidfd: spawn::pidfd_open(child.pid),
            status: None,
            stdin: child.stdin.map(|fd| Feed {
                fd,
                data: input.unwrap_or_default(),
                written: 0,
            }),
            out: capture(child.stdout),
            err: capture(child.stderr),
            finished: None,
        });
        drop(t);
        self.wake();
    }

    /// `None`: no such PID. `Some(None)`: still running (or output still open).
    /// `Some(Some(_))`: finished; the result is removed from the table.
    pub fn status(&self, pid: i64) -> Option<Option<Finished>> {
        let mut t = self.lock();
        self.prune(&mut t, Instant::now());
        let i = t.procs.iter().position(|p| i64::from(p.pid) == pid)?;
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
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut keys: Vec<(u64, Kind)> = Vec::new();
        loop {
            let timeout = self.collect_fds(&wake, &mut fds, &mut keys);
            if spawn::poll(&mut fds, timeout).is_err() {
                std::thread::sleep(SWEEP_INTERVAL);
            }
            if fds[0].revents != 0 {
                while matches!(spawn::read(&wake, &mut scratch), Ok(n) if n > 0) {}
            }
            let mut t = self.lock();
            for (pfd, &(id, kind)) in fds[1..].iter().zip(&keys) {
                if pfd.revents == 0 {
                    continue;
                }
                let Some(p) = t.procs.iter_mut().find(|p| p.id == id) else {
                    continue;
                };
                match kind {
                    Kind::Pidfd => {
                        if let Some(status) = spawn::try_reap(p.pid) {
                            p.status = Some(status);
                            p.pidfd = None;
                        }
                    }
                    Kind::Stdin => feed(&mut p.stdin),
                    Kind::Out => drain(p.out.as_mut(), &mut scratch),
                    Kind::Err => drain(p.err.as_mut(), &mut scratch),
                }
            }
            let now = Instant::now();
            for p in t.procs.iter_mut() {
                if p.status.is_none() && p.pidfd.is_none() {
                    p.status = spawn::try_reap(p.pid);
                }
                if p.finished.is_none() && p.exited() {
                    p.finished = Some(now);
                }
            }
            self.prune(&mut t, now);
        }
    }

    /// Fills the poll set (the wake pipe first) and returns the poll timeout.
    fn collect_fds(
        &self,
        wake: &OwnedFd,
        fds: &mut Vec<libc::pollfd>,
        keys: &mut Vec<(u64, Kind)>,
    ) -> i32 {
        fds.clear();
        keys.clear();
        let entry = |fd: &OwnedFd, events: libc::c_short| libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        fds.push(entry(wake, libc::POLLIN));
        let t = self.lock();
        let mut timeout: Option<Duration> = None;
        let now = Instant::now();
        for p in &t.procs {
            let mut add = |fd: Option<&OwnedFd>, events, kind| {
                if let Some(fd) = fd {
                    fds.push(entry(fd, events));
                    keys.push((p.id, kind));
                }
            };
            add(p.pidfd.as_ref(), libc::POLLIN, Kind::Pidfd);
            add(p.stdin.as_ref().map(|f| &f.fd), libc::POLLOUT, Kind::Stdin);
            add(
                p.out.as_ref().and_then(|c| c.fd.as_ref()),
                libc::POLLIN,
                Kind::Out,
            );
            add(
                p.err.as_ref().and_then(|c| c.fd.as_ref()),
                libc::POLLIN,
                Kind::Err,
            );
            let due = if p.status.is_none() && p.pidfd.is_none() {
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
        match spawn::write(&f.fd, &f.data[f.written..]) {
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
        let Some(fd) = c.fd.as_ref() else { return };
        match spawn::read(fd, scratch) {
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
