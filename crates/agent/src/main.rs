//! `qga-agent`: the QEMU guest agent daemon.
//!
//! On glibc the entry point is C's `main` itself, without Rust's runtime start-up (see
//! `sys::rt` for why and what it keeps). On musl Rust's start-up is kept: there it is
//! what hands the command line to `std::env::args`.

#![cfg_attr(all(target_env = "gnu", not(test)), no_main)]

// GCC's unwinder from the static archive instead of libgcc_s.so.1 (see build.rs).
#[cfg(qga_static_libgcc)]
#[link(name = "gcc_eh", kind = "static")]
extern "C" {}

/// The process's entry point, called by glibc's start-up code. The arguments are not
/// needed: glibc hands them to `std::env::args` itself.
#[cfg(all(target_env = "gnu", not(test)))]
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    qga_agent::sys::rt::init();
    // `exit` flushes Rust's stdout buffer, which returning to C would not.
    std::process::exit(i32::from(qga_agent::server::main()))
}

#[cfg(not(all(target_env = "gnu", not(test))))]
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(qga_agent::server::main())
}
