//! The freeze, thaw and trim ioctls (`FIFREEZE`, `FITHAW`, `FITRIM`) and the mount list,
//! behind [`KernelOps`], so the fsfreeze state machine runs on a fake kernel in tests.
//!
//! The real implementation, [`LinuxKernel`], can only be built by
//! `FreezeState::default()` (the agent's one constructor), and inside this crate's unit
//! tests its ioctls panic instead of freezing the test machine. Tests use
//! `fake::FakeKernel` (compiled for tests only).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use super::mounts::{self, Mount};

/// A mount point opened for the ioctls (`open(dir, O_RDONLY | O_CLOEXEC)`).
#[derive(Debug)]
pub struct Dir {
    path: OsString,
    file: Option<File>,
}

impl Dir {
    /// The mount point this was opened from.
    pub fn path(&self) -> &OsStr {
        &self.path
    }
}

/// What `FITRIM` reports back: bytes trimmed and the minimum extent it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// `fstrim_range.len` after the call: bytes trimmed.
    pub len: u64,
    /// `fstrim_range.minlen` after the call (the kernel may raise it).
    pub minlen: u64,
}

/// The kernel operations guest-fsfreeze-* and guest-fstrim need.
pub trait KernelOps: Send + Sync {
    /// The block-device-backed mounts, in mount order (see [`mounts`]).
    fn mounts(&self) -> io::Result<Vec<Mount>>;
    /// Opens a mount point read-only.
    fn open_dir(&self, path: &OsStr) -> io::Result<Dir>;
    /// `ioctl(FIFREEZE)`.
    fn freeze(&self, dir: &Dir) -> io::Result<()>;
    /// `ioctl(FITHAW)`.
    fn thaw(&self, dir: &Dir) -> io::Result<()>;
    /// `ioctl(FITRIM)` over the whole filesystem with this minimum extent length.
    fn trim(&self, dir: &Dir, minlen: u64) -> io::Result<Trimmed>;
}

/// The real kernel. Only `FreezeState::default()` builds one.
pub struct LinuxKernel {
    _private: (),
}

impl LinuxKernel {
    /// The real kernel operations (see the module doc for who may call this).
    pub(crate) fn new() -> Self {
        LinuxKernel { _private: () }
    }
}

/// `struct fstrim_range` from `<linux/fs.h>`.
#[repr(C)]
struct FstrimRange {
    start: u64,
    len: u64,
    minlen: u64,
}

/// `_IOWR(ty, nr, size)`: the generic encoding, and the one of powerpc, mips and sparc
/// (3-bit direction field, 13-bit size).
const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    let (dir_shift, size_mask, read_write) = if cfg!(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )) {
        (29, 0x1fff, 2 | 4)
    } else {
        (30, 0x3fff, 2 | 1)
    };
    (read_write << dir_shift) | ((size as u32 & size_mask) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `_IOWR('X', 119, int)`
pub const FIFREEZE: u32 = iowr(b'X', 119, std::mem::size_of::<libc::c_int>());
/// `_IOWR('X', 120, int)`
pub const FITHAW: u32 = iowr(b'X', 120, std::mem::size_of::<libc::c_int>());
/// `_IOWR('X', 121, struct fstrim_range)`
pub const FITRIM: u32 = iowr(b'X', 121, std::mem::size_of::<FstrimRange>());

/// Runs one of the three ioctls on an opened mount point.
fn ioctl(dir: &Dir, request: u32, arg: *mut libc::c_void) -> io::Result<()> {
    if cfg!(test) {
        panic!(
            "a unit test reached the real ioctl {request:#x} on {:?}: use FakeKernel",
            dir.path
        );
    }
    let file = dir
        .file
        .as_ref()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the descriptor is open for the lifetime of `dir`; `arg` is either null
    // (FIFREEZE/FITHAW ignore it) or points to a live `FstrimRange`, the struct FITRIM
    // reads and writes. The request is passed as the C library declares it.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), request as libc::Ioctl, arg) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl KernelOps for LinuxKernel {
    fn mounts(&self) -> io::Result<Vec<Mount>> {
        mounts::mount_list()
    }

    fn open_dir(&self, path: &OsStr) -> io::Result<Dir> {
        // std opens with O_RDONLY | O_CLOEXEC, as qemu-ga's qga_open_cloexec.
        let file = File::open(path)?;
        Ok(Dir {
            path: path.to_owned(),
            file: Some(file),
        })
    }

    fn freeze(&self, dir: &Dir) -> io::Result<()> {
        ioctl(dir, FIFREEZE, std::ptr::null_mut())
    }

    fn thaw(&self, dir: &Dir) -> io::Result<()> {
        ioctl(dir, FITHAW, std::ptr::null_mut())
    }

    fn trim(&self, dir: &Dir, minlen: u64) -> io::Result<Trimmed> {
        let mut range = FstrimRange {
            start: 0,
            len: u64::MAX,
            minlen,
        };
        ioctl(dir, FITRIM, (&mut range as *mut FstrimRange).cast())?;
        Ok(Trimmed {
            len: range.len,
            minlen: range.minlen,
        })
    }
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_fs_h() {
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert_eq!(FIFREEZE, 0xC004_5877);
            assert_eq!(FITHAW, 0xC004_5878);
            assert_eq!(FITRIM, 0xC018_5879);
        }
    }

    #[test]
    #[should_panic(expected = "use FakeKernel")]
    fn the_real_ioctls_refuse_to_run_in_unit_tests() {
        // No descriptor: were the guard missing, the call would fail with EBADF (and
        // this test with it) instead of freezing anything.
        let dir = Dir {
            path: "/nonexistent".into(),
            file: None,
        };
        let _ = LinuxKernel::new().freeze(&dir);
    }
}
