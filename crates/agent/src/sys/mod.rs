//! The OS seam: syscalls and `/proc` / `/sys` parsing live here, so the rest of the
//! agent never writes `cfg(target_os)`. Parsers take a root path or the file's text so
//! tests feed them recorded fixtures.

pub mod base64;
pub mod blockdev;
pub mod bounded;
pub mod clock;
pub mod cscan;
pub mod daemon;
pub mod disks;
pub mod diskstats;
pub mod errtext;
pub mod fsfreeze;
pub mod gfile;
pub mod harden;
pub mod host;
pub mod hotplug;
pub mod mounts;
pub mod netif;
pub mod netlink;
pub mod nvme;
pub mod osrelease;
pub mod passwd;
pub mod peer;
pub mod procfs;
pub mod route;
pub mod rt;
pub mod run;
pub mod spawn;
pub mod spawn_sync;
pub mod statvfs;
pub mod stdio;
pub mod syslog;
pub mod tz;
pub mod udev;
pub mod utmp;
pub mod vfork;

/// C's `time_t` (the `libc` crate marks it deprecated on musl, where it is about to
/// change from 32 to 64 bits on 32-bit targets; on x86_64 it has 64 bits either way).
#[allow(deprecated)]
pub type TimeT = libc::time_t;

/// C's `suseconds_t` (see [`TimeT`]).
#[allow(deprecated)]
pub type SusecondsT = libc::suseconds_t;

/// Asks for transparent huge pages under a large buffer's spare capacity (a 48 MiB
/// guest-file-read): some 24 page faults instead of 12,288 as it fills. Only a hint:
/// where THP is off, or for the unaligned ends, normal pages are used.
pub fn advise_huge_pages(buf: &mut Vec<u8>) {
    const HUGE: usize = 2 << 20;
    let start = buf.as_mut_ptr() as usize;
    let end = start + buf.capacity();
    let (first, last) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if last > first {
        // SAFETY: [first, last) lies inside the buffer's allocation, which we own;
        // MADV_HUGEPAGE changes no contents and no mapping, only how it is backed.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}
