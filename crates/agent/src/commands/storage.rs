//! guest-get-fsinfo, guest-get-disks and guest-get-diskstats, as qemu-ga 10.x on Linux.
//!
//! - guest-get-fsinfo: one entry per mount of the shared mount list
//!   ([`crate::sys::mounts`]), in reverse mount order; name and disks from sysfs
//!   ([`crate::sys::blockdev`]); sizes from `statvfs`. A sysfs error fails the whole
//!   command with qemu-ga's text (e.g. `realpath("/sys/dev/block/8:0"): ...`).
//! - guest-get-disks: [`crate::sys::disks`]; NVMe disks add their SMART log.
//! - guest-get-diskstats: `/proc/diskstats` ([`crate::sys::diskstats`]).
//!
//! # Bounded statvfs (a deliberate difference from qemu-ga)
//!
//! qemu-ga calls `statvfs` on every mount point inline: one filesystem whose device
//! stopped answering blocks the agent for good. Here each `statvfs` that could block
//! runs on a helper thread ([`crate::sys::bounded`]); only ext2/3/4 and XFS mounts
//! without quota options, reached through local filesystems only, are measured
//! inline: their `statfs` reads in-memory counters
//! ([`crate::sys::mounts::statfs_in_memory`]). The first call that meets a stuck mount waits at
//! most [`STATVFS_BOUND`] for all the mounts of that request together (every mount gets
//! at least [`STATVFS_MIN_WAIT`]); then the reply is sent without that mount's sizes.
//! The stuck mount point is remembered while its `statvfs` is still in the kernel:
//! later requests do not call `statvfs` on it again (no new thread, no wait) until the
//! earlier call has returned, after which it is measured normally again. A warning is
//! logged each time sizes are left out (visible with `-v`).
//!
//! What the host sees for such a filesystem: the entry keeps its place and its
//! mandatory members (`name`, `mountpoint`, `type`, `disk` with full disk addresses);
//! only `used-bytes`, `total-bytes` and `total-bytes-privileged` are absent. That is
//! exactly the shape qemu-ga itself sends when `statvfs` fails, which libvirt,
//! KubeVirt and the other clients already accept (the size members are optional).
//! The NVMe SMART query of guest-get-disks is bounded the same way ([`SMART_BOUND`]);
//! a disk whose controller does not answer in time has no `smart` member.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use qga_proto::cmds::storage::*;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::log::Level;
use crate::sys::blockdev::{device_disks, DeviceDisks, SysRoot};
use crate::sys::bounded::{Bounded, Pending, PENDING};
use crate::sys::mounts::Mount;
use crate::sys::statvfs::{self, FsSizes};
use crate::sys::{disks, diskstats, mounts, nvme};

/// The longest one guest-get-fsinfo waits for `statvfs` calls that do not return.
pub const STATVFS_BOUND: Duration = Duration::from_secs(2);

/// Every mount's `statvfs` gets at least this long, even after the bound was used up.
pub const STATVFS_MIN_WAIT: Duration = Duration::from_millis(100);

/// The longest guest-get-disks waits for one NVMe SMART log.
pub const SMART_BOUND: Duration = Duration::from_secs(2);

/// guest-get-fsinfo.
pub fn get_fsinfo(agent: &Agent, _: GuestGetFsinfoArgs) -> Result<Vec<GuestFilesystemInfo>> {
    let mounts = mounts::mount_list()
        .map_err(|_| Error::new("failed to open mtab file: '/proc/self/mounts'"))?;
    let deadline = Instant::now() + STATVFS_BOUND;
    let mut sizes = |m: &Mount| match m.statfs_in_memory {
        // Cannot block (see mounts::statfs_in_memory): no helper thread needed.
        true => statvfs::sizes(&m.dir),
        false => bounded_sizes(agent, &PENDING, &m.dir, deadline, statvfs::sizes),
    };
    fsinfo(&SysRoot::live(), &mounts, &mut sizes)
}

/// `stat(dir)` (normally `statvfs`) with the time bound described in the module
/// documentation: waits until `deadline`, but at least [`STATVFS_MIN_WAIT`]; `None`
/// (sizes left out, warning logged) when it does not return in time or an earlier
/// call on `dir` is still blocked.
pub fn bounded_sizes(
    agent: &Agent,
    pending: &'static Pending,
    dir: &OsStr,
    deadline: Instant,
    stat: fn(&OsStr) -> Option<FsSizes>,
) -> Option<FsSizes> {
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(STATVFS_MIN_WAIT);
    let mut key = b"statvfs:".to_vec();
    key.extend_from_slice(dir.as_bytes());
    let path = dir.to_os_string();
    let shown = dir.to_string_lossy();
    match pending.run(&key, wait, move || stat(&path)) {
        Bounded::Done(sizes) => sizes,
        Bounded::TimedOut => {
            agent.log.log(
                Level::Warning,
                &format!(
                    "statvfs(\"{shown}\") did not return within {} ms; leaving out its sizes",
                    wait.as_millis()
                ),
            );
            None
        }
        Bounded::Skipped => {
            agent.log.log(
                Level::Warning,
                &format!(
                    "statvfs(\"{shown}\") is still blocked from an earlier request \
                     (or too many calls are); leaving out its sizes"
                ),
            );
            None
        }
    }
}

/// The fsinfo entries for `mounts` (in mount order), reversed as qemu-ga prepends
/// them. `sizes` measures one mount.
pub fn fsinfo(
    root: &SysRoot,
    mounts: &[Mount],
    sizes: &mut dyn FnMut(&Mount) -> Option<FsSizes>,
) -> Result<Vec<GuestFilesystemInfo>> {
    let mut ret = Vec::with_capacity(mounts.len());
    for m in mounts {
        let mut acc = DeviceDisks::default();
        device_disks(
            root,
            &format!("/sys/dev/block/{}:{}", m.major, m.minor),
            &mut acc,
        )?;
        let s = sizes(m);
        ret.push(GuestFilesystemInfo {
            name: acc.name.unwrap_or_default(),
            mountpoint: ByteString(m.dir.as_bytes().to_vec()),
            fs_type: m.fstype.clone(),
            used_bytes: s.map(|s| s.used),
            total_bytes: s.map(|s| s.total),
            total_bytes_privileged: s.map(|s| s.total_privileged),
            disk: acc.disks,
        });
    }
    ret.reverse();
    Ok(ret)
}

/// guest-get-disks.
pub fn get_disks(agent: &Agent, _: GuestGetDisksArgs) -> Result<Vec<GuestDiskInfo>> {
    disks::list(&SysRoot::live(), &|dev| bounded_smart(agent, dev))
}

/// The SMART log of an NVMe disk, bounded.
fn bounded_smart(agent: &Agent, dev: &str) -> Option<GuestDiskSmart> {
    let key = format!("nvme-smart:{dev}");
    let path = dev.to_string();
    match PENDING.run(key.as_bytes(), SMART_BOUND, move || {
        nvme::read_smart_log(&path)
    }) {
        Bounded::Done(log) => log.map(|l| GuestDiskSmart::Nvme(nvme::parse_smart_log(&l))),
        Bounded::TimedOut | Bounded::Skipped => {
            agent.log.log(
                Level::Warning,
                &format!("NVMe SMART query of {dev} is blocked; leaving out its smart data"),
            );
            None
        }
    }
}

/// guest-get-diskstats.
pub fn get_diskstats(_: &Agent, _: GuestGetDiskstatsArgs) -> Result<Vec<GuestDiskStatsInfo>> {
    diskstats_at(&SysRoot::live())
}

/// guest-get-diskstats below `root`.
pub fn diskstats_at(root: &SysRoot) -> Result<Vec<GuestDiskStatsInfo>> {
    use std::io::Read;
    let path = "/proc/diskstats";
    let mut f = std::fs::File::open(root.path(path))
        .map_err(|e| Error::errno(format!("open(\"{path}\")"), &e))?;
    let mut text = Vec::new();
    // A read error ends the list where it happened, as qemu-ga's getline loop.
    let _ = f.read_to_end(&mut text);
    Ok(diskstats::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::log::Logger;
    use std::sync::{Arc, Condvar, Mutex};

    static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

    /// A statvfs that blocks on `/stuck` until the gate opens.
    fn gated_stat(p: &OsStr) -> Option<FsSizes> {
        if p == "/stuck" {
            let mut open = GATE.0.lock().unwrap();
            while !*open {
                open = GATE.1.wait(open).unwrap();
            }
        }
        Some(FsSizes::from_counts(10, 5, 4, 1))
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stuck_statvfs_is_bounded_and_not_retried_while_pending() {
        static P: Pending = Pending::new();
        let sink = Sink::default();
        let agent = Agent::new(
            Config::default(),
            Logger::new(Box::new(sink.clone()), true),
            false,
            crate::agent::FIRST_HANDLE,
        );
        let stuck = OsStr::new("/stuck");
        let t = Instant::now();
        let r = bounded_sizes(
            &agent,
            &P,
            stuck,
            t + Duration::from_millis(300),
            gated_stat,
        );
        let took = t.elapsed();
        assert_eq!(r, None);
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(P.is_pending(b"statvfs:/stuck"));
        // The bound is used up, yet a healthy mount still gets its minimum wait.
        let r = bounded_sizes(&agent, &P, OsStr::new("/ok"), t, gated_stat);
        assert_eq!(r, Some(FsSizes::from_counts(10, 5, 4, 1)));
        // While the first call is still blocked, the next request skips it at once.
        let t = Instant::now();
        let r = bounded_sizes(&agent, &P, stuck, t + Duration::from_secs(5), gated_stat);
        assert_eq!(r, None);
        assert!(t.elapsed() < Duration::from_millis(50));
        assert_eq!(P.len(), 1, "no second thread for the same mount");
        let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("warning: statvfs(\"/stuck\") did not return within"),
            "{log}"
        );
        assert!(
            log.contains("warning: statvfs(\"/stuck\") is still blocked"),
            "{log}"
        );
        // Once it returns, the mount is measured normally again.
        *GATE.0.lock().unwrap() = true;
        GATE.1.notify_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !P.is_empty() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = bounded_sizes(
            &agent,
            &P,
            stuck,
            Instant::now() + Duration::from_secs(5),
            gated_stat,
        );
        assert_eq!(r, Some(FsSizes::from_counts(10, 5, 4, 1)));
    }
}
