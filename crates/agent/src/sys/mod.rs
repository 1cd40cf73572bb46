//! The OS seam: syscalls and `/proc` / `/sys` parsing live here, so the rest of the
//! agent never writes `cfg(target_os)`. Parsers take a root path or the file's text so
//! tests feed them recorded fixtures.

pub mod blockdev;
pub mod bounded;
pub mod clock;
pub mod daemon;
pub mod disks;
pub mod diskstats;
pub mod fsfreeze;
pub mod gfile;
pub mod mounts;
pub mod nvme;
pub mod passwd;
pub mod run;
pub mod scan;
pub mod spawn_sync;
pub mod statvfs;
pub mod udev;
