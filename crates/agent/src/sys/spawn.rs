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
//! The child is a vfork-style clone ([`super::vfork`]) that runs only async-signal-safe
//! code before exec: everything it needs (argv, envp, the candidate paths, its stdio
//! descriptors) is built before the clone.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use super::vfork;

/// GLib's search path when neither `env` nor the agent has `PATH`.
const DEFAULT_SEARCH_PATH: &str = "/bin:/usr/bin:.";

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
    let glib = |what: &str, e: io::Error| {
        let e = crate::error::strerror(e.raw_os_error().unwrap_or(libc::EIO));
        SpawnError(format!("{what} ({e})"))
    };
    let pipe_err = |e| {
        glib(
            "Failed to create pipe for communicating with child process",
            e,
        )
    };
    let null_err = |e| glib("Failed to open file to remap file descriptor", e);
    let mut fds = ChildFds::default();
    let mut stdin = None;
    let child_stdin = if spec.stdin_pipe {
        let (r, w) = pipe().map_err(pipe_err)?;
        stdin = Some(w);
        fds.keep(r).map_err(pipe_err)?
    } else {
        null(libc::O_RDONLY).map_err(null_err)?
    };
    let (mut stdout, mut stderr) = (None, None);
    let mut wire = |sink: Sink, parent: &mut Option<OwnedFd>| -> Result<_, SpawnError> {
        if sink == Sink::Pipe {
            let (r, w) = pipe().map_err(pipe_err)?;
            *parent = Some(r);
            return fds.keep(w).map_err(pipe_err);
        }
        null(libc::O_WRONLY).map_err(null_err)
    };
    // (stdout into "stdout" is not a wiring exec.rs asks for: /dev/null.)
    let child_stdout = wire(spec.stdout, &mut stdout)?;
    let child_stderr = match spec.stderr {
        Sink::Stdout => None,
        s => Some(wire(s, &mut stderr)?),
    };
    let mut plan = new_plan(spec);
    let spawned = vfork::spawn(
        &mut plan,
        vfork::Stdio {
            stdin: child_stdin,
            stdout: child_stdout,
            stderr: child_stderr,
        },
    );
    // Our copies of the child's ends: EOF arrives when it exits.
    drop(fds);
    let pid = spawned.map_err(|f| match f {
        vfork::Failure::Exec(e) => SpawnError(format!(
            "Failed to execute child process \u{201C}{program}\u{201D} ({})",
            crate::error::strerror(e)
        )),
        vfork::Failure::Setup(e) => glib(
            "Failed to redirect output or input of child process",
            io::Error::from_raw_os_error(e),
        ),
        vfork::Failure::Clone(e) => glib("Failed to fork", io::Error::from_raw_os_error(e)),
    })?;
    for fd in [&stdin, &stdout, &stderr].into_iter().flatten() {
        set_nonblocking(fd);
    }
    Ok(Child {
        pid,
        stdin,
        stdout,
        stderr,
    })
}

/// The descriptors that become the child's stdio, held until it has exec'd.
#[derive(Default)]
struct ChildFds {
    held: Vec<OwnedFd>,
}

impl ChildFds {
    /// Holds `fd` (moved above 2 if needed) and returns its number.
    fn keep(&mut self, fd: OwnedFd) -> io::Result<libc::c_int> {
        let fd = above_stdio(fd)?;
        let raw = fd.as_raw_fd();
        self.held.push(fd);
        Ok(raw)
    }
}

/// `/dev/null` opened with `mode` (O_RDONLY or O_WRONLY), close-on-exec and above 2:
/// opened on first use and kept, so a child without pipes costs no open and close.
/// Children share the open file description, which for /dev/null carries nothing
/// one child could change for the next (no offset, no data; O_NONBLOCK and O_APPEND
/// change nothing there).
fn null(mode: libc::c_int) -> io::Result<libc::c_int> {
    static READ: OnceLock<OwnedFd> = OnceLock::new();
    static WRITE: OnceLock<OwnedFd> = OnceLock::new();
    let cell = if mode == libc::O_RDONLY {
        &READ
    } else {
        &WRITE
    };
    if let Some(fd) = cell.get() {
        return Ok(fd.as_raw_fd());
    }
    let fd = above_stdio(open_null(mode)?)?;
    // A concurrent first use may have won: then this one is closed.
    Ok(cell.get_or_init(|| fd).as_raw_fd())
}

/// `/dev/null`, close-on-exec.
fn open_null(mode: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a static NUL-terminated path; a non-negative result is a new descriptor.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), mode | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fd` moved above 2 if it is 0, 1 or 2 (an agent started with closed stdio), so the
/// child's dup2 onto 0..2 never overwrites a descriptor it still has to copy.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl on a descriptor we own; a non-negative result is a new one.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

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

/// Everything the child needs, built before the clone: it must not allocate.
fn new_plan(spec: &Spec<'_>) -> vfork::Plan {
    let program = spec.argv.first().map(String::as_str).unwrap_or("");
    let argv: Vec<CString> = spec.argv.iter().map(|a| cstring(a.as_str())).collect();
    let envp: Vec<CString> = match spec.env {
        Some(env) => env.iter().map(|e| cstring(e.as_str())).collect(),
        None => Vec::new(),
    };
    let envp_ptrs = match spec.env {
        Some(_) => vfork::ptrs(&envp),
        None => vfork::ptrs(inherited_env()),
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
    vfork::Plan {
        candidates,
        direct,
        empty: program.is_empty(),
        argv_ptrs: vfork::ptrs(&argv),
        sh_ptrs: vfork::sh_ptrs(&argv),
        envp_ptrs,
        argv,
        envp,
    }
}

/// The agent's own environment as `KEY=value` strings, made once: children without
/// `env` inherit it, and it is only edited at start-up, before any thread or child
/// exists (socket activation removes `LISTEN_FDS`/`LISTEN_PID`). Made per spawn it
/// cost four allocations per variable.
fn inherited_env() -> &'static [CString] {
    static ENV: OnceLock<Vec<CString>> = OnceLock::new();
    ENV.get_or_init(|| {
        std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                // (The environment cannot hold a NUL.)
                cstring(kv)
            })
            .collect()
    })
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

/// A non-blocking, close-on-exec CLOCK_MONOTONIC timerfd, disarmed; `None` if the
/// kernel refuses one.
pub fn timerfd() -> Option<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: as above.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms `timer` to expire once, `after` from now.
pub fn arm_timer(timer: &OwnedFd, after: std::time::Duration) -> io::Result<()> {
    // A zero value would disarm it instead.
    let after = after.max(std::time::Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            // Below 10^9: it fits a c_long of any width.
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: spec is a valid itimerspec; a NULL old value is allowed.
    if unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

/// A level-triggered epoll set whose events carry a caller-chosen token.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new, empty set.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for `events` (EPOLLERR and EPOLLHUP are always reported).
    pub fn add(&self, fd: &OwnedFd, events: i32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event; both descriptors are open.
        let r = unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (before it is closed: a copy of it in a child that has not
    /// exec'd yet would otherwise keep it in the set).
    pub fn remove(&self, fd: &OwnedFd) {
        // SAFETY: both descriptors are open; a NULL event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits for events (`timeout_ms` < 0: without limit); returns their tokens.
    /// EINTR counts as no event.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: events is a valid, exclusively borrowed array of that length.
        let r = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len().min(i32::MAX as usize) as i32,
                timeout_ms,
            )
        };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        Err(e)
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
