//! A fake kernel for tests: an in-memory mount list whose filesystems keep a freeze
//! depth like the kernel's superblocks (FIFREEZE on a frozen one gives EBUSY, FITHAW on
//! a thawed one EINVAL), injectable errors, and freezes that block until released (a
//! stuck FIFREEZE on a busy filesystem). Every call is recorded in order.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Dir, KernelOps, Trimmed};
use crate::sys::mounts::Mount;

#[derive(Default)]
struct State {
    mounts: Vec<Mount>,
    mounts_errno: Option<i32>,
    depth: HashMap<OsString, u32>,
    open_errno: HashMap<OsString, i32>,
    freeze_errno: HashMap<OsString, i32>,
    trim: HashMap<OsString, Result<Trimmed, i32>>,
    blocked: HashSet<OsString>,
    waiting: HashSet<OsString>,
    calls: Vec<String>,
}

/// The fake kernel. Share it with `Arc`: the test keeps one handle to steer and
/// inspect it, the state machine gets the other.
#[derive(Default)]
pub struct FakeKernel {
    state: Mutex<State>,
    changed: Condvar,
}

fn errno_name(e: i32) -> String {
    match e {
        libc::EBUSY => "EBUSY".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EIO => "EIO".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::ENOTTY => "ENOTTY".into(),
        libc::EACCES => "EACCES".into(),
        e => format!("errno {e}"),
    }
}

fn key(dir: &str) -> OsString {
    OsString::from(dir)
}

impl FakeKernel {
    /// A kernel whose mount list is `dirs`, in mount order, none frozen.
    pub fn new(dirs: &[&str]) -> Arc<Self> {
        let k = FakeKernel::default();
        k.lock().mounts = dirs
            .iter()
            .zip(1..)
            .map(|(d, minor)| Mount {
                dir: key(d),
                fstype: "ext4".into(),
                source: format!("/dev/vd{minor}").into(),
                major: 253,
                minor,
                statfs_in_memory: true,
            })
            .collect();
        Arc::new(k)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes reading the mount list fail.
    pub fn fail_mounts(&self, errno: i32) {
        self.lock().mounts_errno = Some(errno);
    }

    /// Makes opening `dir` fail.
    pub fn fail_open(&self, dir: &str, errno: i32) {
        self.lock().open_errno.insert(key(dir), errno);
    }

    /// Makes FIFREEZE on `dir` fail.
    pub fn fail_freeze(&self, dir: &str, errno: i32) {
        self.lock().freeze_errno.insert(key(dir), errno);
    }

    /// What FITRIM on `dir` returns (default: nothing trimmed, minlen unchanged).
    pub fn set_trim(&self, dir: &str, result: Result<Trimmed, i32>) {
        self.lock().trim.insert(key(dir), result);
    }

    /// Freezes `dir` `depth` times from outside the agent.
    pub fn pre_freeze(&self, dir: &str, depth: u32) {
        self.lock().depth.insert(key(dir), depth);
    }

    /// FIFREEZE on `dir` blocks until [`release`](Self::release).
    pub fn block_freeze(&self, dir: &str) {
        self.lock().blocked.insert(key(dir));
    }

    /// Lets a blocked FIFREEZE on `dir` finish (successfully).
    pub fn release(&self, dir: &str) {
        self.lock().blocked.remove(&key(dir));
        self.changed.notify_all();
    }

    /// Waits (up to 10 s) until a FIFREEZE on `dir` is blocked in the fake.
    pub fn wait_blocked(&self, dir: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut st = self.lock();
        while !st.waiting.contains(OsStr::new(dir)) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no FIFREEZE of {dir} blocked within 10 s");
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits (up to 10 s) until `cond` holds for the recorded calls.
    pub fn wait_calls(&self, what: &str, cond: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut st = self.lock();
        while !cond(&st.calls) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}: {:?}",
                st.calls
            );
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// How many times `dir` is frozen now.
    pub fn depth(&self, dir: &str) -> u32 {
        self.lock().depth.get(OsStr::new(dir)).copied().unwrap_or(0)
    }

    /// Every mount point still frozen.
    pub fn frozen(&self) -> Vec<String> {
        let st = self.lock();
        let mut v: Vec<_> = st
            .depth
            .iter()
            .filter(|(_, &d)| d > 0)
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The calls so far, e.g. `freeze /data`, `thaw / EINVAL`, `trim /boot 4096`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Returns the calls so far and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().calls)
    }

    fn record(&self, st: &mut State, call: String) {
        st.calls.push(call);
        self.changed.notify_all();
    }

    fn outcome(&self, st: &mut State, call: String, r: Result<(), i32>) -> io::Result<()> {
        match r {
            Ok(()) => {
                self.record(st, call);
                Ok(())
            }
            Err(e) => {
                self.record(st, format!("{call} {}", errno_name(e)));
                Err(io::Error::from_raw_os_error(e))
            }
        }
    }
}

impl KernelOps for FakeKernel {
    fn mounts(&self) -> io::Result<Vec<Mount>> {
        let st = self.lock();
        match st.mounts_errno {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(st.mounts.clone()),
        }
    }

    fn open_dir(&self, path: &OsStr) -> io::Result<Dir> {
        let mut st = self.lock();
        let call = format!("open {}", path.to_string_lossy());
        let r = st.open_errno.get(path).map_or(Ok(()), |&e| Err(e));
        self.outcome(&mut st, call, r)?;
        Ok(Dir {
            path: path.to_owned(),
            file: None,
        })
    }

    fn freeze(&self, dir: &Dir) -> io::Result<()> {
        let mut st = self.lock();
        let call = format!("freeze {}", dir.path.to_string_lossy());
        if let Some(&e) = st.freeze_errno.get(&dir.path) {
            return self.outcome(&mut st, call, Err(e));
        }
        if st.depth.get(&dir.path).copied().unwrap_or(0) > 0 {
            return self.outcome(&mut st, call, Err(libc::EBUSY));
        }
        if st.blocked.contains(&dir.path) {
            st.waiting.insert(dir.path.clone());
            self.changed.notify_all();
            while st.blocked.contains(&dir.path) {
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.waiting.remove(&dir.path);
        }
        st.depth.insert(dir.path.clone(), 1);
        self.outcome(&mut st, call, Ok(()))
    }

    fn thaw(&self, dir: &Dir) -> io::Result<()> {
        let mut st = self.lock();
        let call = format!("thaw {}", dir.path.to_string_lossy());
        let r = match st.depth.get_mut(&dir.path) {
            Some(d) if *d > 0 => {
                *d -= 1;
                Ok(())
            }
            _ => Err(libc::EINVAL),
        };
        self.outcome(&mut st, call, r)
    }

    fn trim(&self, dir: &Dir, minlen: u64) -> io::Result<Trimmed> {
        let mut st = self.lock();
        let call = format!("trim {} {minlen}", dir.path.to_string_lossy());
        let r = st
            .trim
            .get(&dir.path)
            .copied()
            .unwrap_or(Ok(Trimmed { len: 0, minlen }));
        self.outcome(&mut st, call, r.map(|_| ()))?;
        Ok(r.unwrap_or(Trimmed { len: 0, minlen }))
    }
}
