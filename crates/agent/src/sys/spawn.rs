//! Starting guest-exec children the way qemu-ga's `g_spawn_async_with_pipes` call
//! does (flags SEARCH_PATH | SEARCH_PATH_FROM_ENVP | DO_NOT_REAP_CHILD), and the
//! syscalls the exec monitor uses to watch them (pidfd, waitpid, poll, non-blocking
//! pipe I/O).
//!
//! GLib semantics reproduced:
//! - a program name without `/` is searched in the `PATH` of `env` when given, else in
//!   the agent's `PATH`, else in `/bin:/usr/bin:.`; an empty `PATH` element means the
//!   current directory; EACCES from one directory is remembered and reported only if
//!   no other directory works; ENOENT, ENOTDIR, ESTALE, ENODEV and ETIMEDOUT move on
//!   to the next directory; any other error stops the search;
//! - a file the kernel refuses with ENOEXEC (no `#!`) is run by `/bin/sh`;
//! - `env` is the child's whole environment; without it the agent's is inherited;
//! - every descriptor above 2 is closed on exec, SIGPIPE is reset to its default, and
//!   the signal mask is emptied (the agent blocks SIGTERM/SIGINT in its threads).
//!
//! The child runs only async-signal-safe code between fork and exec: everything it
//! needs (argv, envp, the candidate paths) is built before the fork.

use std::ffi::{c_char, CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// GLib's search path when neither `env` nor the agent has `PATH`.
const DEFAULT_SEARCH_PATH: &str = "/bin:/usr/bin:.";
/// Marks an error that came from exec in the child (as opposed to fork or setup).
const EXEC_FAILED: i32 = 0x4000_0000;

/// Where a child's stdout or stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// /dev/null
    Null,
    /// A pipe whose read end the caller gets.
    Pipe,
    /// (stderr only) the same pipe as stdout.
    Stdout,
}

/// What to start and how to wire it.
#[derive(Debug)]
pub struct Spec<'a> {
    /// argv; argv[0] is also the program to look up.
    pub argv: &'a [String],
    /// The child's whole environment, or `None` to inherit the agent's.
    pub env: Option<&'a [String]>,
    /// Give the child a stdin pipe (otherwise stdin is /dev/null).
    pub stdin_pipe: bool,
    /// stdout wiring.
    pub stdout: Sink,
    /// stderr wiring.
    pub stderr: Sink,
}

/// A started child and the parent's ends of its pipes (non-blocking, close-on-exec).
#[derive(Debug)]
pub struct Child {
    /// Process ID.
    pub pid: i32,
    /// Write end of stdin, if requested.
    pub stdin: Option<OwnedFd>,
    /// Read end of stdout, if piped.
    pub stdout: Option<OwnedFd>,
    /// Read end of stderr, if piped separately.
    pub stderr: Option<OwnedFd>,
}

/// Why a spawn failed, worded as GLib words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError(pub String);

/// Starts a child as described by `spec`.
pub fn spawn(spec: &Spec<'_>) -> Result<Child, SpawnError> {
    let program = spec.argv.first().map(String::as_str).unwrap_or("");
    let pipe_err = |e: io::Error| {
        SpawnError(format!(
            "Failed to create pipe for communicating with child process ({})",
            crate::error::strerror(e.raw_os_error().unwrap_or(libc::EIO))
        ))
    };
    let mut cmd = Command::new("/bin/sh");
    let mut stdin = None;
    let (mut stdout, mut stderr) = (None, None);
    if spec.stdin_pipe {
        let (r, w) = pipe().map_err(pipe_err)?;
        cmd.stdin(Stdio::from(r));
        stdin = Some(w);
    } else {
        cmd.stdin(Stdio::null());
    }
    match spec.stdout {
        Sink::Pipe => {
            let (r, w) = pipe().map_err(pipe_err)?;
            cmd.stdout(Stdio::from(w));
            stdout = Some(r);
        }
        Sink::Null | Sink::Stdout => {
            cmd.stdout(Stdio::null());
        }
    }
    match spec.stderr {
        Sink::Pipe => {
            let (r, w) = pipe().map_err(pipe_err)?;
            cmd.stderr(Stdio::from(w));
            stderr = Some(r);
        }
        Sink::Null | Sink::Stdout => {
            cmd.stderr(Stdio::null());
        }
    }
    let merge = spec.stderr == Sink::Stdout;
    let mut plan = Plan::new(spec);
    // SAFETY: the closure runs in the forked child and only makes async-signal-safe
    // calls (sigprocmask, sigaction, close_range/fcntl, dup2, execve) on memory
    // prepared before the fork; it never allocates, locks or panics.
    unsafe {
        cmd.pre_exec(move || {
            child_setup(merge);
            let errno = plan.exec();
            Err(io::Error::from_raw_os_error(EXEC_FAILED | errno))
        });
    }
    let spawned = cmd.spawn();
    // Drops our copies of the child's pipe ends, so EOF arrives when it exits.
    drop(cmd);
    let child = spawned.map_err(|e| {
        let code = e.raw_os_error().unwrap_or(libc::EIO);
        if code & EXEC_FAILED != 0 {
            SpawnError(format!(
                "Failed to execute child process \u{201C}{program}\u{201D} ({})",
                crate::error::strerror(code & !EXEC_FAILED)
            ))
        } else {
            SpawnError(format!("Failed to fork ({})", crate::error::strerror(code)))
        }
    })?;
    for fd in [&stdin, &stdout, &stderr].into_iter().flatten() {
        set_nonblocking(fd);
    }
    Ok(Child {
        pid: child.id() as i32,
        stdin,
        stdout,
        stderr,
    })
}

/// In the child, before exec: a clean signal state, no inherited descriptors above 2,
/// and stderr merged into stdout if asked.
fn child_setup(merge: bool) {
    // SAFETY: all of these are async-signal-safe syscalls on the child's own state.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
            // Kernels before 5.11: mark them one by one, up to the soft limit.
            let mut lim: libc::rlimit = std::mem::zeroed();
            let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur.min(1 << 20) as libc::c_int
            } else {
                1024
            };
            for fd in 3..max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        if merge {
            libc::dup2(1, 2);
        }
    }
}

/// Everything the child needs to exec, prepared before the fork.
struct Plan {
    /// Paths to try, in order; a single one when the program name has a `/`.
    candidates: Vec<CString>,
    /// The program name has a `/`: only that path is tried.
    direct: bool,
    /// The program name was empty (GLib: ENOENT without trying anything).
    empty: bool,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    /// `/bin/sh <candidate> argv[1..]` for files without `#!`; slot 1 is filled in.
    sh_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into CStrings owned by the same Plan (heap buffers
// that do not move with it) or into static strings; the Plan is moved into the
// pre_exec closure and only dereferenced in the forked child.
unsafe impl Send for Plan {}
// SAFETY: as above; nothing is mutated except in the child's private copy.
unsafe impl Sync for Plan {}

const BIN_SH: &CStr = c"/bin/sh";

/// A C string for exec. A NUL inside a QAPI string is the pair C0 80 to QEMU (modified
/// UTF-8), and that is what GLib passes on.
fn cstring(s: impl AsRef<[u8]>) -> CString {
    let mut v = Vec::with_capacity(s.as_ref().len() + 1);
    for &b in s.as_ref() {
        match b {
            0 => v.extend_from_slice(&[0xC0, 0x80]),
            b => v.push(b),
        }
    }
    CString::new(v).unwrap_or_default()
}

fn ptrs(strings: &[CString]) -> Vec<*const c_char> {
    let mut v: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    v.push(std::ptr::null());
    v
}

impl Plan {
    fn new(spec: &Spec<'_>) -> Plan {
        let program = spec.argv.first().map(String::as_str).unwrap_or("");
        let argv: Vec<CString> = spec.argv.iter().map(|a| cstring(a.as_str())).collect();
        let envp: Vec<CString> = match spec.env {
            Some(env) => env.iter().map(|e| cstring(e.as_str())).collect(),
            None => std::env::vars_os()
                .map(|(k, v)| {
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    // (The environment cannot hold a NUL.)
                    cstring(kv)
                })
                .collect(),
        };
        let direct = program.contains('/');
        let candidates = if direct {
            vec![cstring(program)]
        } else {
            let from_env = spec.env.and_then(|env| {
                env.iter()
                    .find_map(|e| e.strip_prefix("PATH=").map(str::to_owned))
            });
            let path = from_env
                .or_else(|| std::env::var("PATH").ok())
                .unwrap_or_else(|| DEFAULT_SEARCH_PATH.to_owned());
            search_candidates(&path, program)
        };
        let argv_ptrs = ptrs(&argv);
        let mut sh_ptrs = vec![BIN_SH.as_ptr(), std::ptr::null()];
        sh_ptrs.extend(argv.iter().skip(1).map(|a| a.as_ptr()));
        sh_ptrs.push(std::ptr::null());
        Plan {
            candidates,
            direct,
            empty: program.is_empty(),
            argv_ptrs,
            sh_ptrs,
            envp_ptrs: ptrs(&envp),
            _argv: argv,
            _envp: envp,
        }
    }

    /// GLib's `g_execute`: returns only on failure, with the errno to report.
    fn exec(&mut self) -> i32 {
        if self.empty {
            return libc::ENOENT;
        }
        let mut eacces = false;
        let mut last = libc::ENOENT;
        for i in 0..self.candidates.len() {
            let path = self.candidates[i].as_ptr();
            // SAFETY: path, argv and envp are NUL-terminated strings in NULL-terminated
            // arrays that live as long as self.
            let mut e = unsafe {
                libc::execve(path, self.argv_ptrs.as_ptr(), self.envp_ptrs.as_ptr());
                errno()
            };
            if e == libc::ENOEXEC {
                self.sh_ptrs[1] = path;
                // SAFETY: as above; sh_ptrs is NULL-terminated.
                e = unsafe {
                    libc::execve(
                        BIN_SH.as_ptr(),
                        self.sh_ptrs.as_ptr(),
                        self.envp_ptrs.as_ptr(),
                    );
                    errno()
                };
            }
            if self.direct {
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
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The paths GLib tries for a program name without `/`: each `PATH` element joined
/// with the name, an empty element meaning the name itself (the current directory).
fn search_candidates(path: &str, program: &str) -> Vec<CString> {
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                cstring(program)
            } else {
                cstring(format!("{dir}/{program}"))
            }
        })
        .collect()
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets O_NONBLOCK.
pub fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// A pidfd for `pid` (Linux 5.3+); `None` on older kernels.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: as above (pidfds are close-on-exec).
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The child's exit status if it has terminated (it is reaped then); `None` while it
/// runs. Only ever waits for this one pid, never for "any child".
pub fn try_reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        // 0: still running. ECHILD: reaped behind our back (nothing in the agent
        // waits for "any child"); the status is unknown, which decodes to neither an
        // exit code nor a signal, and the entry does not wait forever.
        return if r < 0 { Some(STATUS_UNKNOWN) } else { None };
    }
}

/// A wait status that is neither an exit nor a signal.
pub const STATUS_UNKNOWN: i32 = -1;

/// Makes sure exit statuses can be collected: a SIGCHLD disposition of SIG_IGN
/// (inherited across exec from whoever started the agent) makes the kernel reap
/// children itself and throw their statuses away.
pub fn keep_child_statuses() {
    // SAFETY: sigaction with a zeroed struct only queries, then restores SIG_DFL for
    // SIGCHLD; no handler is installed.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
        {
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        }
    }
}

/// Decodes a wait status into (exit code, terminating signal).
pub fn decode_status(status: i32) -> (Option<i64>, Option<i64>) {
    if libc::WIFEXITED(status) {
        (Some(i64::from(libc::WEXITSTATUS(status))), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(i64::from(libc::WTERMSIG(status))))
    } else {
        (None, None)
    }
}

/// poll(2) over `fds`, retrying EINTR; `timeout_ms` < 0 waits without limit.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    loop {
        // SAFETY: fds is a valid, exclusively borrowed array of pollfd.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One read(2) into `buf`.
pub fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable slice.
    let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// One write(2) of `buf`.
pub fn write(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid readable slice.
    let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_candidates_follow_glib() {
        let c = |p: &str| -> Vec<String> {
            search_candidates(p, "prog")
                .into_iter()
                .map(|c| c.into_string().unwrap())
                .collect()
        };
        assert_eq!(c("/a:/b/"), ["/a/prog", "/b//prog"]);
        assert_eq!(c(":/a:"), ["prog", "/a/prog", "prog"]);
        assert_eq!(c(""), ["prog"]);
        assert_eq!(
            c(DEFAULT_SEARCH_PATH),
            ["/bin/prog", "/usr/bin/prog", "./prog"]
        );
    }

    #[test]
    fn nul_is_c0_80_and_statuses_decode() {
        assert_eq!(cstring("a\0b").as_bytes(), b"a\xC0\x80b");
        assert_eq!(decode_status(3 << 8), (Some(3), None));
        assert_eq!(decode_status(9), (None, Some(9)));
        assert_eq!(decode_status(STATUS_UNKNOWN), (None, None));
    }
}
