//! The OS seam: syscalls and `/proc` / `/sys` parsing live here, so the rest of the
//! agent never writes `cfg(target_os)`. Parsers take a root path or the file's text so
//! tests feed them recorded fixtures.

pub mod cscan;
pub mod host;
pub mod hotplug;
pub mod mounts;
pub mod netif;
pub mod osrelease;
pub mod procfs;
pub mod route;
pub mod run;
pub mod tz;
pub mod utmp;
