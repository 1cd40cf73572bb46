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
pub mod nvme;
pub mod osrelease;
pub mod passwd;
pub mod peer;
pub mod procfs;
pub mod route;
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
