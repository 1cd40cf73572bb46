//! guest-fsfreeze-status, -freeze, -freeze-list, -thaw and guest-fstrim, as qemu-ga 10.x
//! does them on Linux, made safe against the ways a freeze goes wrong:
//!
//! - **Freeze bound.** The FIFREEZE loop runs on a worker thread. When it has not
//!   finished within [`FREEZE_BOUND`] (a FIFREEZE stuck syncing a busy filesystem), the
//!   command thaws everything and fails; a FIFREEZE that returns later is thawed by the
//!   worker itself.
//! - **Thaw is always served.** A thaw never waits for the worker: it starts a new
//!   generation (which cancels the freeze in flight), thaws every mount except the one
//!   the worker is stuck on, and leaves that one to the worker. No lock is held across
//!   a kernel call or a hook.
//! - **Thaw needs no memory.** Like qemu-ga, thaw calls FITHAW on every mount in the
//!   list, so it works after the agent restarted frozen (`qga.state.isfrozen`).
//! - **Watchdog.** With `--fsfreeze-timeout`, [`run_watchdog`] thaws a guest left frozen
//!   longer than that and logs it once logging is back on.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qga_proto::cmds::freeze::*;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::log::Level;
use crate::sys::fsfreeze::{KernelOps, LinuxKernel};
use crate::sys::mounts::Mount;
use crate::sys::run::{run_command, DEFAULT_BOUND};

/// How long the FIFREEZE loop of one guest-fsfreeze-freeze may take.
pub const FREEZE_BOUND: Duration = Duration::from_secs(60);

/// FITHAW calls per mount at most (qemu-ga loops until one fails; a kernel that never
/// fails must not hang the agent).
const MAX_THAWS_PER_MOUNT: u32 = 1024;

/// Freeze bookkeeping beyond the agent's frozen flag: the kernel seam, and the state
/// shared by the command threads, the freeze worker and the watchdog.
pub struct FreezeState {
    kernel: Arc<dyn KernelOps>,
    shared: Arc<Shared>,
    bound: Duration,
    /// Held while a hook runs (and by a thaw from before it leaves the frozen state),
    /// so hooks run one at a time, in the order of the state changes they go with.
    hooks: Mutex<()>,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

#[derive(Default)]
struct Inner {
    /// Bumped when a freeze starts freezing and when a thaw starts: a freeze whose
    /// generation is no longer current has been overtaken by a thaw.
    generation: u64,
    /// A freeze worker is running (maybe stuck in the kernel).
    worker: bool,
    /// The mount point the worker is opening or freezing right now.
    in_progress: Option<OsString>,
    /// The worker's result, with its generation.
    outcome: Option<(u64, Result<i64>)>,
    /// Since when the guest has been frozen, for the watchdog.
    frozen_since: Option<Instant>,
    /// Tells [`run_watchdog`] to return.
    stop: bool,
}

impl Default for FreezeState {
    /// The real kernel. This is the agent's only way to the real FIFREEZE/FITHAW/FITRIM
    /// (`Agent::new` uses it); tests build the state with a fake kernel instead.
    fn default() -> Self {
        Self::build(Arc::new(LinuxKernel::new()), FREEZE_BOUND)
    }
}

impl FreezeState {
    fn build(kernel: Arc<dyn KernelOps>, bound: Duration) -> Self {
        FreezeState {
            kernel,
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                changed: Condvar::new(),
            }),
            bound,
            hooks: Mutex::new(()),
        }
    }

    /// A state on a fake kernel, with its own freeze bound.
    #[cfg(test)]
    pub(crate) fn with_kernel(kernel: Arc<dyn KernelOps>, bound: Duration) -> Self {
        Self::build(kernel, bound)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn hooks(&self) -> MutexGuard<'_, ()> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hooks_then<T>(&self, f: impl FnOnce() -> T) -> T {
        let _hooks = self.hooks();
        f()
    }

    /// Makes [`run_watchdog`] return (at shutdown).
    pub fn stop_watchdog(&self) {
        self.lock().stop = true;
        self.shared.changed.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// guest-fsfreeze-status: the agent's own frozen flag.
pub fn status(agent: &Agent, _: GuestFsfreezeStatusArgs) -> Result<GuestFsfreezeStatus> {
    Ok(if agent.is_frozen() {
        GuestFsfreezeStatus::Frozen
    } else {
        GuestFsfreezeStatus::Thawed
    })
}

/// guest-fsfreeze-freeze: freeze every mount.
pub fn freeze(agent: &Agent, _: GuestFsfreezeFreezeArgs) -> Result<i64> {
    freeze_mounts(agent, None)
}

/// guest-fsfreeze-freeze-list: freeze the listed mounts (every mount when absent).
pub fn freeze_list(agent: &Agent, args: GuestFsfreezeFreezeListArgs) -> Result<i64> {
    freeze_mounts(agent, args.mountpoints)
}

/// guest-fsfreeze-thaw: thaw every mount, leave the frozen state, run the thaw hook.
pub fn thaw(agent: &Agent, _: GuestFsfreezeThawArgs) -> Result<i64> {
    thaw_all(agent, true)
}

/// Thaws at exit when still frozen (qemu-ga's `guest_fsfreeze_cleanup`).
pub fn cleanup(agent: &Agent) {
    if agent.is_frozen() {
        if let Err(e) = thaw_all(agent, true) {
            agent
                .log
                .audit(&format!("failed to clean up frozen filesystems: {e}"));
        }
    }
}

/// qemu-ga's error when neither mountinfo nor its fallback can be read.
fn mount_list_error(e: &std::io::Error) -> Error {
    Error::errno("failed to open mtab file: '/proc/self/mounts'", e)
}

/// Runs `<hook> freeze|thaw` when a hook is configured. The caller holds
/// `FreezeState::hooks`.
fn run_hook(agent: &Agent, arg: &str) -> Result<()> {
    let Some(hook) = agent.config.fsfreeze_hook.as_deref() else {
        return Ok(());
    };
    agent
        .log
        .audit(&format!("executing fsfreeze hook with arg '{arg}'"));
    run_command(&[hook, arg], None, "execute fsfreeze hook", DEFAULT_BOUND)
}

fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} seconds", d.as_secs())
    } else {
        format!("{d:?}")
    }
}

fn cancelled_error() -> Error {
    Error::new("the freeze was cancelled by guest-fsfreeze-thaw; the filesystems were thawed")
}

/// qemu-ga's `qmp_guest_fsfreeze_freeze_list`, with the FIFREEZE loop on a worker
/// thread and a time bound on it.
fn freeze_mounts(agent: &Agent, only: Option<Vec<String>>) -> Result<i64> {
    let st = &agent.freeze;
    agent.log.audit("guest-fsfreeze called");
    let start = {
        let inner = st.lock();
        if inner.worker {
            return Err(Error::new(match &inner.in_progress {
                Some(dir) => format!(
                    "an earlier freeze is still stuck in the kernel on {}; try again later",
                    dir.to_string_lossy()
                ),
                None => "an earlier freeze is still finishing; try again later".into(),
            }));
        }
        inner.generation
    };
    st.hooks_then(|| run_hook(agent, "freeze"))?;
    let mounts = st.kernel.mounts().map_err(|e| mount_list_error(&e))?;

    let mut inner = st.lock();
    if inner.generation != start || inner.worker {
        // A thaw came in while the freeze hook ran: nothing was frozen; undo the hook.
        drop(inner);
        let _ = st.hooks_then(|| run_hook(agent, "thaw"));
        return Err(cancelled_error());
    }
    if let Err(e) = agent.set_frozen(true) {
        agent.log.log(
            Level::Warning,
            &format!(
                "unable to create {}, fsfreeze may not function properly",
                agent.frozen_marker().display()
            ),
        );
        if !agent.is_frozen() {
            drop(inner);
            let _ = st.hooks_then(|| run_hook(agent, "thaw"));
            return Err(Error::errno(
                format!("unable to create {}", agent.frozen_marker().display()),
                &e,
            ));
        }
    }
    inner.generation += 1;
    let gen = inner.generation;
    inner.worker = true;
    inner.in_progress = None;
    inner.outcome = None;
    drop(inner);

    let (kernel, shared) = (Arc::clone(&st.kernel), Arc::clone(&st.shared));
    let spawned = std::thread::Builder::new()
        .name("qga-fsfreeze".into())
        .spawn(move || freeze_worker(&*kernel, &shared, gen, &mounts, only.as_deref()));
    if let Err(e) = spawned {
        st.lock().worker = false;
        let _ = thaw_all(agent, true);
        return Err(Error::errno("failed to start the freeze thread", &e));
    }

    let deadline = Instant::now() + st.bound;
    let mut inner = st.lock();
    loop {
        if inner.generation != gen {
            return Err(cancelled_error());
        }
        if matches!(inner.outcome, Some((g, _)) if g == gen) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            let what = inner
                .in_progress
                .as_ref()
                .map_or("the filesystems".into(), |d| {
                    d.to_string_lossy().into_owned()
                });
            drop(inner);
            let _ = thaw_all(agent, true);
            return Err(Error::new(format!(
                "failed to freeze {what}: timed out after {}; the filesystems were thawed",
                duration_text(st.bound)
            )));
        }
        inner = st
            .shared
            .changed
            .wait_timeout(inner, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    match inner.outcome.take().map(|(_, r)| r) {
        Some(Ok(0)) => {
            // Nothing frozen: back to thawed, and the thaw hook is not run.
            let r = agent.set_frozen(false);
            drop(inner);
            if r.is_err() {
                warn_marker_not_deleted(agent);
            }
            Ok(0)
        }
        Some(Ok(n)) => {
            inner.frozen_since = Some(Instant::now());
            st.shared.changed.notify_all();
            Ok(n)
        }
        Some(Err(e)) => {
            drop(inner);
            let _ = thaw_all(agent, true);
            Err(e)
        }
        None => Err(cancelled_error()),
    }
}

fn warn_marker_not_deleted(agent: &Agent) {
    agent.log.log(
        Level::Warning,
        &format!(
            "unable to delete {}, fsfreeze may not function properly",
            agent.frozen_marker().display()
        ),
    );
}

/// Whether the host's mount point (a C string: it ends at a NUL) names `dir`.
fn names(mountpoint: &str, dir: &OsStr) -> bool {
    let b = mountpoint.as_bytes();
    let b = b.iter().position(|&c| c == 0).map_or(b, |i| &b[..i]);
    b == dir.as_bytes()
}

/// The FIFREEZE loop: reverse mount order, only the listed mounts, EOPNOTSUPP and
/// EBUSY skipped. Stops as soon as its generation is overtaken, and thaws a mount whose
/// FIFREEZE returned after that.
fn freeze_worker(
    kernel: &dyn KernelOps,
    shared: &Shared,
    gen: u64,
    mounts: &[Mount],
    only: Option<&[String]>,
) {
    let result = (|| {
        let mut count = 0;
        let wanted = mounts.iter().rev().filter(|m| match only {
            None => true,
            Some(l) => l.iter().any(|p| names(p, &m.dir)),
        });
        for m in wanted {
            {
                let mut inner = shared.lock();
                if inner.generation != gen {
                    return Ok(count);
                }
                inner.in_progress = Some(m.dir.clone());
            }
            let opened = kernel.open_dir(&m.dir);
            let frozen = match &opened {
                Ok(dir) => kernel.freeze(dir),
                Err(_) => Ok(()),
            };
            let overtaken = {
                let mut inner = shared.lock();
                inner.in_progress = None;
                inner.generation != gen
            };
            let name = m.dir.to_string_lossy();
            let dir = opened.map_err(|e| Error::errno(format!("failed to open {name}"), &e))?;
            match frozen {
                Ok(()) if overtaken => {
                    // A thaw came while this FIFREEZE was in the kernel and left this
                    // mount to us.
                    let _ = kernel.thaw(&dir);
                    return Ok(count);
                }
                Ok(()) => count += 1,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EBUSY)) => {}
                Err(e) => return Err(Error::errno(format!("failed to freeze {name}"), &e)),
            }
        }
        Ok(count)
    })();
    let mut inner = shared.lock();
    inner.worker = false;
    inner.outcome = Some((gen, result));
    shared.changed.notify_all();
}

/// qemu-ga's `qmp_guest_fsfreeze_thaw`: FITHAW repeatedly on every mount in forward
/// order (a mount counts once), leave the frozen state, then the thaw hook. `audit`:
/// log "guest-fsthaw called" (everyone but the watchdog).
fn thaw_all(agent: &Agent, audit: bool) -> Result<i64> {
    let st = &agent.freeze;
    let (gen, skip) = {
        let mut inner = st.lock();
        inner.generation += 1;
        st.shared.changed.notify_all();
        (inner.generation, inner.in_progress.clone())
    };
    let mounts = match st.kernel.mounts() {
        Ok(m) => m,
        Err(e) => {
            // qemu-ga stays frozen and runs no hook; the watchdog retries later.
            let mut inner = st.lock();
            if inner.frozen_since.is_some() {
                inner.frozen_since = Some(Instant::now());
            }
            return Err(mount_list_error(&e));
        }
    };
    let mut count = 0;
    for m in &mounts {
        if skip.as_deref() == Some(m.dir.as_os_str()) {
            continue; // the freeze worker is stuck on it and thaws it when it returns
        }
        let Ok(dir) = st.kernel.open_dir(&m.dir) else {
            continue;
        };
        let mut thawed = false;
        for _ in 0..MAX_THAWS_PER_MOUNT {
            if st.kernel.thaw(&dir).is_err() {
                break;
            }
            thawed = true;
        }
        count += i64::from(thawed);
    }
    // From here to the end of the hook: a freeze hook may not start in between.
    let _hooks = st.hooks();
    let unset = {
        let mut inner = st.lock();
        if inner.generation == gen {
            inner.frozen_since = None;
            agent.is_frozen().then(|| agent.set_frozen(false))
        } else {
            None // a newer freeze or thaw owns the frozen flag now
        }
    };
    if let Some(Err(_)) = unset {
        warn_marker_not_deleted(agent);
    }
    if audit {
        agent.log.audit("guest-fsthaw called");
    }
    run_hook(agent, "thaw")?;
    Ok(count)
}

mod trim;
mod watchdog;

pub use trim::fstrim;
pub use watchdog::run_watchdog;

#[cfg(test)]
mod tests;
