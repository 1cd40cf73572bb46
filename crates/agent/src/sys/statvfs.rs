//! Filesystem sizes for guest-get-fsinfo, computed as qemu-ga does from `statvfs`:
//! `used = (f_blocks - f_bfree) * f_frsize`, `total = (used blocks + f_bavail) *
//! f_frsize` (what unprivileged users can reach) and `total-privileged = f_blocks *
//! f_frsize`, in wrapping 64-bit arithmetic (C `unsigned long`).

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;

/// The three size fields of a GuestFilesystemInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSizes {
    /// `used-bytes`
    pub used: u64,
    /// `total-bytes`
    pub total: u64,
    /// `total-bytes-privileged`
    pub total_privileged: u64,
}

impl FsSizes {
    /// Sizes from `statvfs` fields.
    pub fn from_counts(blocks: u64, bfree: u64, bavail: u64, frsize: u64) -> Self {
        let used = blocks.wrapping_sub(bfree);
        let nonroot_total = used.wrapping_add(bavail);
        FsSizes {
            used: used.wrapping_mul(frsize),
            total: nonroot_total.wrapping_mul(frsize),
            total_privileged: blocks.wrapping_mul(frsize),
        }
    }
}

/// `statvfs(path)`; `None` when it fails (qemu-ga then leaves the sizes out). This may
/// block for as long as the filesystem does: callers use [`super::bounded`].
pub fn sizes(path: &OsStr) -> Option<FsSizes> {
    let c = CString::new(path.as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `buf` a writable statvfs that outlives
    // the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    Some(FsSizes::from_counts(
        buf.f_blocks as u64,
        buf.f_bfree as u64,
        buf.f_bavail as u64,
        buf.f_frsize as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_as_qemu_ga() {
        let s = FsSizes::from_counts(1000, 300, 250, 4096);
        assert_eq!(s.used, 700 * 4096);
        assert_eq!(s.total, 950 * 4096);
        assert_eq!(s.total_privileged, 1000 * 4096);
        // Inconsistent counters wrap as C unsigned long does.
        assert_eq!(FsSizes::from_counts(1, 2, 0, 1).used, u64::MAX);
    }

    #[test]
    fn live_root() {
        let s = sizes(OsStr::new("/")).expect("statvfs /");
        assert!(s.total_privileged >= s.total && s.total >= s.used);
        assert_eq!(sizes(OsStr::new("/nonexistent/qga")), None);
    }
}
