//! What Rust's runtime does before `main` that the agent depends on, for the glibc
//! build, whose `main` is a plain C entry point (`src/main.rs`).
//!
//! Rust's own start-up also finds the main thread's stack through glibc's
//! `pthread_getattr_np`, which parses `/proc/self/maps` with stdio and `sscanf` and so
//! leaves that part of libc mapped for good: an idle do-nothing Rust binary has 1.94–1.97
//! MB RSS with it and 1.43–1.50 MB without; in the agent, which needs more of libc anyway,
//! libc's resident share went from 1216–1456 to 1152–1352 KiB. All that start-up buys is
//! a "has overflowed its stack" message before a crash that happens anyway; the guard
//! page still stops an overflow. The agent keeps the two parts that matter.

/// Makes sure descriptors 0–2 are open (on `/dev/null` where they were closed), so no
/// file the agent opens becomes its stdin, stdout or stderr and receives log lines,
/// and ignores SIGPIPE, so a write to a host that hung up fails with EPIPE instead of
/// killing the agent (children get the default back: `vfork.rs`).
pub fn init() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor table.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        if closed {
            // SAFETY: a NUL-terminated constant path; open takes the lowest free
            // descriptor, which is `fd` since the lower ones are open.
            let got = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if got != fd {
                // As Rust's runtime does: no safe way to go on without stdio.
                std::process::abort();
            }
        }
    }
    // SAFETY: installs the constant SIG_IGN disposition; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
