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
//! stopped answering blocks the agent for good. Here each `statvfs` runs on a helper
//! thread ([`crate::sys::bounded`]). The first call that meets a stuck mount waits at
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
use crate::sys::bounded::{Bounded, PENDING};
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
    let mut sizes = |m: &Mount| bounded_statvfs(agent, &m.dir, deadline);
    fsinfo(&SysRoot::live(), &mounts, &mut sizes)
}

/// `statvfs(dir)` with the time bound described in the module documentation.
fn bounded_statvfs(agent: &Agent, dir: &OsStr, deadline: Instant) -> Option<FsSizes> {
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(STATVFS_MIN_WAIT);
    let mut key = b"statvfs:".to_vec();
    key.extend_from_slice(dir.as_bytes());
    let path = dir.to_os_string();
    let shown = dir.to_string_lossy();
    match PENDING.run(&key, wait, move || statvfs::sizes(&path)) {
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
                &format!("statvfs(\"{shown}\") is still blocked from an earlier request; leaving out its sizes"),
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
