//! The OS seam: syscalls and `/proc` / `/sys` parsing live here, so the rest of the
//! agent never writes `cfg(target_os)`. Parsers take a root path or the file's text so
//! tests feed them recorded fixtures.

pub mod base64;
pub mod mounts;
pub mod run;
pub mod spawn;
pub mod stdio;
