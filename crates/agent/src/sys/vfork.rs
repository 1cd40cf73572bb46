//! The child half of guest-exec's spawn: a `clone(CLONE_VM | CLONE_VFORK)` child, as
//! glibc's `posix_spawn` makes, that wires stdio, resets its signal state, marks every
//! descriptor above 2 close-on-exec and runs GLib's `g_execute` search.
//!
//! Why not `fork`: a fork copies the agent's page tables and write-protects every
//! private page, so the parent then takes a fault on each page it writes; the child
//! needs none of that because it only execs. Why not `posix_spawn`: GLib's search
//! (the `PATH` of the child's `env`, EACCES remembered across directories, `/bin/sh`
//! for a file without `#!`) needs several `execve` attempts in one child.
//!
//! The child shares the parent's memory and runs on its own stack while the parent
//! thread is suspended (CLONE_VFORK) until the child execs or exits. It therefore runs
//! only async-signal-safe syscalls on memory prepared before the clone, and writes to
//! exactly one shared word: the errno of its failure, as glibc's `posix_spawn` does.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// Marks an error that came from exec (as opposed to wiring stdio).
pub const EXEC_FAILED: i32 = 0x4000_0000;
/// The child's stack. It only holds a few frames of the code below and the libc
/// syscall wrappers (glibc's posix_spawn uses 32 KiB plus the argv size).
const STACK_SIZE: usize = 64 * 1024;
/// Highest signal number + 1 (`_NSIG` on Linux).
const NSIG: c_int = 65;

const BIN_SH: &CStr = c"/bin/sh";

/// Everything the child needs to exec, prepared before the clone.
pub struct Plan {
    /// Paths to try, in order; a single one when the program name has a `/`.
    pub candidates: Vec<CString>,
    /// The program name has a `/`: only that path is tried.
    pub direct: bool,
    /// The program name was empty (GLib: ENOENT without trying anything).
    pub empty: bool,
    /// Keeps the strings `argv_ptrs` points into alive.
    pub argv: Vec<CString>,
    /// NULL-terminated.
    pub argv_ptrs: Vec<*const c_char>,
    /// `/bin/sh <candidate> argv[1..]` for files without `#!`; slot 1 is filled in.
    pub sh_ptrs: Vec<*const c_char>,
    /// Keeps the strings `envp_ptrs` points into alive (empty when those are the
    /// agent's own environment, made once for the life of the process).
    pub envp: Vec<CString>,
    /// NULL-terminated.
    pub envp_ptrs: Vec<*const c_char>,
}

/// NULL-terminated pointers to `strings`.
pub fn ptrs(strings: &[CString]) -> Vec<*const c_char> {
    let mut v: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    v.push(std::ptr::null());
    v
}

/// `/bin/sh` + a slot for the script + argv[1..], NULL-terminated.
pub fn sh_ptrs(argv: &[CString]) -> Vec<*const c_char> {
    let mut v = vec![BIN_SH.as_ptr(), std::ptr::null()];
    v.extend(argv.iter().skip(1).map(|a| a.as_ptr()));
    v.push(std::ptr::null());
    v
}

/// The descriptors that become the child's 0, 1 and 2 (all above 2, close-on-exec).
#[derive(Debug, Clone, Copy)]
pub struct Stdio {
    /// Becomes 0.
    pub stdin: c_int,
    /// Becomes 1.
    pub stdout: c_int,
    /// Becomes 2; `None` makes 2 a copy of 1.
    pub stderr: Option<c_int>,
}

/// What the child reads, and the one word it writes.
struct Ctx<'a> {
    plan: &'a mut Plan,
    stdio: Stdio,
    /// [`caught`]: the signals the child must reset to the default.
    caught: u64,
    /// 0, or the errno of the failure (with EXEC_FAILED if exec failed).
    error: AtomicI32,
}

/// How a spawn failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// clone itself failed (GLib: "Failed to fork").
    Clone(i32),
    /// The child could not wire its stdio (GLib: "Failed to redirect ...").
    Setup(i32),
    /// No exec succeeded.
    Exec(i32),
}

/// Starts the child and returns its pid once it has exec'd; on failure the child has
/// been reaped.
pub fn spawn(plan: &mut Plan, stdio: Stdio) -> Result<i32, Failure> {
    // Uninitialised: only the child writes it (malloc reuses the block, so no fresh
    // pages to fault in either).
    let mut stack: Vec<u8> = Vec::with_capacity(STACK_SIZE);
    let mut ctx = Ctx {
        plan,
        stdio,
        caught: caught(),
        error: AtomicI32::new(0),
    };
    // Stacks grow down on every Linux target we build for; the top is 16-aligned.
    let top = (stack.spare_capacity_mut().as_mut_ptr() as usize + STACK_SIZE) & !15;
    // SAFETY: all-signals-blocked is restored right after the clone; while it lasts no
    // handler can run in the child (which shares our memory) before it has reset its
    // handlers to the default. The child runs `child` on `stack`, which outlives it
    // (this thread is suspended until the child execs or exits, CLONE_VFORK), and
    // `ctx` lives on this frame until after that.
    let (pid, clone_errno) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut ctx as *mut Ctx<'_>).cast(),
        );
        let e = errno();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        (pid, e)
    };
    drop(stack);
    if pid < 0 {
        return Err(Failure::Clone(clone_errno));
    }
    let error = ctx.error.load(Ordering::Acquire);
    if error == 0 {
        return Ok(pid);
    }
    // The child has called _exit: reap it, so a failed spawn leaves no zombie.
    let mut status = 0;
    // SAFETY: waitpid for our own child with a valid out-pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
    Err(if error & EXEC_FAILED != 0 {
        Failure::Exec(error & !EXEC_FAILED)
    } else {
        Failure::Setup(error)
    })
}

/// The signals that have a handler (bit `n - 1` for signal `n`), looked up once.
///
/// glibc's `posix_spawn` child asks the kernel about all 64 signals while its parent
/// waits, about 15 µs per spawn here. The agent installs handlers only while it starts
/// (none on glibc; Rust's SIGSEGV/SIGBUS stack-overflow handlers on musl) and never
/// after its first spawn, so the answer does not change. Signals 32 and 33 belong to
/// glibc, whose sigaction refuses them; they are never sent to a new process.
fn caught() -> u64 {
    static CAUGHT: OnceLock<u64> = OnceLock::new();
    *CAUGHT.get_or_init(handled_signals)
}

/// The signals that have a handler right now, asked one by one.
fn handled_signals() -> u64 {
    let mut set = 0u64;
    for sig in 1..NSIG {
        // SAFETY: a query only (no new action), into a zeroed struct we own.
        let handled = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut sa) == 0
                && sa.sa_sigaction != libc::SIG_DFL
                && sa.sa_sigaction != libc::SIG_IGN
        };
        if handled {
            set |= 1 << (sig - 1);
        }
    }
    set
}

/// The child. Only async-signal-safe syscalls; never allocates, locks, unwinds or
/// returns.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `Ctx`, which outlives this child's use of it (the
    // parent is suspended until we exec or exit); nobody else touches it meanwhile.
    let ctx = unsafe { &mut *arg.cast::<Ctx<'_>>() };
    // SAFETY: syscalls on the child's own signal state and descriptor table (both are
    // private copies: no CLONE_SIGHAND, no CLONE_FILES).
    unsafe {
        // A handler would run on memory shared with the parent: back to the default
        // (exec would reset it anyway).
        for sig in 1..NSIG {
            if ctx.caught & (1 << (sig - 1)) != 0 {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        // The agent ignores SIGPIPE; GLib children get the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let s = ctx.stdio;
        let wired = libc::dup2(s.stdin, 0) >= 0
            && libc::dup2(s.stdout, 1) >= 0
            && libc::dup2(s.stderr.unwrap_or(1), 2) >= 0;
        if !wired {
            ctx.error.store(errno(), Ordering::Release);
            libc::_exit(127);
        }
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
            // Kernels before 5.11: mark them one by one, up to the soft limit.
            let mut lim: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur.min(1 << 20) as c_int
            } else {
                1024
            };
            for fd in 3..max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        // The parent blocked everything around the clone; the program starts with
        // an empty mask (the agent's threads block SIGTERM/SIGINT).
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let e = exec(ctx.plan);
        ctx.error.store(EXEC_FAILED | e, Ordering::Release);
        libc::_exit(127)
    }
}

/// GLib's `g_execute`: returns only on failure, with the errno to report.
fn exec(plan: &mut Plan) -> i32 {
    if plan.empty {
        return libc::ENOENT;
    }
    let mut eacces = false;
    let mut last = libc::ENOENT;
    for i in 0..plan.candidates.len() {
        let path = plan.candidates[i].as_ptr();
        // SAFETY: path, argv and envp are NUL-terminated strings in NULL-terminated
        // arrays that live as long as plan.
        let mut e = unsafe {
            libc::execve(path, plan.argv_ptrs.as_ptr(), plan.envp_ptrs.as_ptr());
            errno()
        };
        if e == libc::ENOEXEC {
            plan.sh_ptrs[1] = path;
            // SAFETY: as above; sh_ptrs is NULL-terminated.
            e = unsafe {
                libc::execve(
                    BIN_SH.as_ptr(),
                    plan.sh_ptrs.as_ptr(),
                    plan.envp_ptrs.as_ptr(),
                );
                errno()
            };
        }
        if plan.direct {
            return e;
        }
        match e {
            libc::EACCES => eacces = true,
            libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
            other => return other,
        }
        last = e;
    }
    if eacces {
        libc::EACCES
    } else {
        last
    }
}

/// errno, read without allocating (safe in the child).
fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn plan(program: &CStr) -> Plan {
        let argv = vec![program.to_owned()];
        Plan {
            candidates: vec![program.to_owned()],
            direct: true,
            empty: false,
            argv_ptrs: ptrs(&argv),
            sh_ptrs: sh_ptrs(&argv),
            argv,
            envp: Vec::new(),
            envp_ptrs: ptrs(&[]),
        }
    }

    extern "C" fn ignore(_: c_int) {}

    #[test]
    fn handlers_are_found_but_ignored_and_default_signals_are_not() {
        let bit = |sig: c_int| 1u64 << (sig - 1);
        // SAFETY: installs and then removes a handler that does nothing, for a signal
        // no other test sends.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore as extern "C" fn(c_int) as libc::sighandler_t;
            libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
            let found = handled_signals();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
            assert_ne!(found & bit(libc::SIGUSR2), 0);
        }
        let found = handled_signals();
        assert_eq!(found & bit(libc::SIGUSR2), 0);
        // The test harness ignores SIGPIPE: ignored is not handled.
        assert_eq!(found & bit(libc::SIGPIPE), 0);
    }

    #[test]
    fn failures_are_told_apart_and_successes_run() {
        let null = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .unwrap();
        let n = null.as_raw_fd();
        let stdio = Stdio {
            stdin: n,
            stdout: n,
            stderr: Some(n),
        };
        let bad = Stdio { stdin: -1, ..stdio };
        assert_eq!(
            spawn(&mut plan(c"/bin/true"), bad),
            Err(Failure::Setup(libc::EBADF))
        );
        assert_eq!(
            spawn(&mut plan(c"/nonexistent/x"), stdio),
            Err(Failure::Exec(libc::ENOENT))
        );
        let pid = spawn(&mut plan(c"/bin/false"), stdio).unwrap();
        let mut status = 0;
        // SAFETY: waitpid for our own child with a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1);
    }
}
