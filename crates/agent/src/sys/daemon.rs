//! Process lifecycle syscalls, as qemu-ga does them: `--daemonize` (fork, pidfile,
//! `umask 077`, `setsid`, `chdir /`, stdio to /dev/null), the fcntl-locked pidfile,
//! systemd socket activation (`LISTEN_PID`/`LISTEN_FDS`), and the local clock GLib's
//! default log handler prints before the agent's own logger exists.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::strerror;

/// A written, locked pidfile. The lock lives as long as this value (the open file);
/// dropping it unlinks the file, as qemu-ga does at exit.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    _file: File,
}

impl Pidfile {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Pidfile {
    /// Keeps the pidfile (and its lock) for the rest of the process and unlinks it when
    /// the process exits through `exit` (returning from `main`, `std::process::exit`), as
    /// qemu-ga unlinks it on its way out. A process has at most one such pidfile.
    pub fn keep_until_exit(self) -> Result<(), String> {
        extern "C" fn unlink_kept() {
            if let Some(p) = KEPT.get() {
                let _ = std::fs::remove_file(&p.path);
            }
        }
        KEPT.set(self)
            .map_err(|p| format!("a pidfile is already kept: {}", p.path.display()))?;
        // SAFETY: registers a plain extern "C" function without arguments.
        if unsafe { libc::atexit(unlink_kept) } != 0 {
            return Err("cannot register the pidfile cleanup".into());
        }
        Ok(())
    }
}

/// The pidfile kept until exit (statics are never dropped: the lock stays held).
static KEPT: std::sync::OnceLock<Pidfile> = std::sync::OnceLock::new();

impl Drop for Pidfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn errno_text(e: &std::io::Error) -> String {
    strerror(e.raw_os_error().unwrap_or(0))
}

/// `qemu_write_pidfile`: create (0600), take a whole-file write lock with `F_SETLK`, make
/// sure the locked inode is still the one at `path` (retry if another process raced us),
/// truncate, write `<pid>\n`. Errors carry QEMU's texts, e.g.
/// `Cannot lock pid file: Resource temporarily unavailable` when another agent holds it.
pub fn write_pidfile(path: &Path) -> Result<Pidfile, String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    loop {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("Could not create '{}': {}", path.display(), errno_text(&e)))?;
        let ino = file
            .metadata()
            .map_err(|e| format!("Cannot stat file: {}", errno_text(&e)))?
            .ino();
        // SAFETY: an all-zero flock is valid; the fields set below describe a write lock
        // of the whole file.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: the fd is open for the duration of the call and `lock` is a valid flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock) } != 0 {
            return Err(format!(
                "Cannot lock pid file: {}",
                errno_text(&last_error())
            ));
        }
        match std::fs::metadata(path) {
            Ok(m) if m.ino() == ino => {}
            // Unlinked or replaced while we were locking it: start over.
            _ => continue,
        }
        let fail = |msg: String| {
            let _ = std::fs::remove_file(path);
            msg
        };
        file.set_len(0)
            .map_err(|e| fail(format!("Failed to truncate pid file: {}", errno_text(&e))))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(|_| fail("Failed to write pid file".into()))?;
        return Ok(Pidfile {
            path: path.to_path_buf(),
            _file: file,
        });
    }
}

/// qemu-ga's `become_daemon`: fork (the parent exits 0 at once), then in the child write
/// the pidfile if one is given, `umask 077`, `setsid`, `chdir /`, and point stdin, stdout
/// and stderr at /dev/null. Returns in the child only; the pidfile stays locked until
/// the process exits and is unlinked then ([`Pidfile::keep_until_exit`]). On an error the
/// caller logs the text as critical and exits 1 (the parent has already exited 0, as with
/// qemu-ga). A frozen start passes `None` and writes the pidfile at thaw instead.
///
/// Call it while the process has a single thread: only the calling thread survives fork.
pub fn daemonize(pidfile: Option<&Path>) -> Result<(), String> {
    let pid = become_daemon(pidfile)?;
    pid.map_or(Ok(()), Pidfile::keep_until_exit)
}

fn become_daemon(pidfile: Option<&Path>) -> Result<Option<Pidfile>, String> {
    // Flush what the parent printed so the child does not print it again.
    let _ = std::io::stdout().flush();
    // SAFETY: fork has no memory-safety preconditions; the child continues with a copy of
    // this single-threaded process.
    match unsafe { libc::fork() } {
        -1 => {
            return Err(format!(
                "failed to daemonize: {}",
                errno_text(&last_error())
            ))
        }
        0 => {}
        _ => std::process::exit(0),
    }
    let pid = pidfile.map(write_pidfile).transpose()?;
    let fail = || "failed to daemonize".to_string();
    // SAFETY: umask, setsid and chdir only change this process's attributes; the path is
    // a NUL-terminated literal.
    unsafe {
        libc::umask(0o077);
        if libc::setsid() < 0 || libc::chdir(c"/".as_ptr()) < 0 {
            return Err(fail()); // dropping `pid` unlinks the pidfile, as qemu-ga does
        }
    }
    for fd in 0..3 {
        reopen_to_null(fd);
    }
    Ok(pid)
}

/// qemu-ga's `reopen_fd_to_null`.
fn reopen_to_null(fd: libc::c_int) {
    // SAFETY: open returns a new fd or -1; dup2 onto one of the standard descriptors
    // and close of the temporary fd touch nothing else.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null < 0 {
            return;
        }
        libc::dup2(null, fd);
        if null != fd {
            libc::close(null);
        }
    }
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const FIRST_LISTEN_FD: i32 = 3;

/// QEMU's `check_socket_activation`: when `LISTEN_PID` is this process, the number of
/// sockets in `LISTEN_FDS` (0 otherwise). Both variables are removed so helper programs
/// do not inherit them, and every passed descriptor gets `FD_CLOEXEC`; one that cannot is
/// reported as `Socket activation failed: invalid file descriptor fd = N: <strerror>`.
///
/// Call it before any other thread exists (it edits the environment).
pub fn socket_activation() -> Result<u64, String> {
    let number = |name: &str| std::env::var(name).ok().and_then(|v| parse_ulong(&v));
    if number("LISTEN_PID") != Some(u64::from(std::process::id())) {
        return Ok(0);
    }
    let Some(count) = number("LISTEN_FDS") else {
        return Ok(0);
    };
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_PID");
    for i in 0..count {
        let fd = FIRST_LISTEN_FD.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
        // SAFETY: F_GETFD/F_SETFD only read and set the descriptor flags of `fd`.
        let ok = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            flags != -1 && libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) != -1
        };
        if !ok {
            return Err(format!(
                "Socket activation failed: invalid file descriptor fd = {fd}: {}",
                errno_text(&last_error())
            ));
        }
    }
    Ok(count)
}

/// `qemu_strtoul(s, NULL, 10)`: optional leading whitespace and `+`, decimal digits, and
/// nothing after them.
fn parse_ulong(s: &str) -> Option<u64> {
    let s = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The address family of socket `fd` (`AF_UNIX`, `AF_VSOCK`, ...), or `None` if it is
/// not a socket.
pub fn socket_family(fd: i32) -> Option<i32> {
    // SAFETY: sockaddr_storage is plain data; getsockname writes at most `len` bytes.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, std::ptr::addr_of_mut!(addr).cast(), &mut len) != 0 {
            return None;
        }
        Some(i32::from(addr.ss_family))
    }
}

/// The local wall-clock time as GLib's default log handler prints it: `HH:MM:SS.mmm`.
pub fn local_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = crate::sys::TimeT::try_from(now.as_secs()).unwrap_or(crate::sys::TimeT::MAX);
    // SAFETY: tm is plain data; localtime_r fills it from `secs` and reads the zone data.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return format!("00:00:00.{:03}", now.subsec_millis());
        }
        tm
    };
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis()
    )
}

/// Whether `fd` is a terminal (GLib colours its level names then).
pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulong_like_qemu_strtoul() {
        assert_eq!(parse_ulong("1"), Some(1));
        assert_eq!(parse_ulong("01"), Some(1));
        assert_eq!(parse_ulong(" +7"), Some(7));
        for bad in ["", "x", "1x", "-1", "1 "] {
            assert_eq!(parse_ulong(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pidfile_is_locked_holds_pid_and_is_removed() {
        let dir = std::env::temp_dir().join(format!("qga-pidfile.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ga.pid");
        std::fs::write(&path, "stale contents that are longer\n").unwrap();
        let pid = write_pidfile(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        use std::os::unix::fs::PermissionsExt;
        // An existing file keeps its mode; a new one is created 0600.
        drop(pid);
        assert!(!path.exists());
        let pid = write_pidfile(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o600, 0, "mode {mode:o}");
        assert_eq!(pid.path(), path);
        drop(pid);
        let missing = dir.join("no/such/dir.pid");
        assert_eq!(
            write_pidfile(&missing).unwrap_err(),
            format!(
                "Could not create '{}': No such file or directory",
                missing.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clock_format() {
        let c = local_clock();
        assert_eq!(c.len(), 12, "{c}");
        assert_eq!(&c[2..3], ":");
        assert_eq!(&c[8..9], ".");
    }

    /// The daemon side of `daemonize_detaches_and_writes_pidfile`: does nothing unless
    /// that test re-executes this binary with `QGA_DAEMON_TEST_DIR` set.
    #[test]
    fn daemonize_child() {
        let Ok(dir) = std::env::var("QGA_DAEMON_TEST_DIR") else {
            return;
        };
        let dir = PathBuf::from(dir);
        if let Err(e) = daemonize(Some(&dir.join("ga.pid"))) {
            // Straight to fd 2: the test harness captures eprintln!.
            let _ = writeln!(std::io::stderr(), "{e}");
            std::process::exit(1);
        }
        for _ in 0..1000 {
            if dir.join("stop").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The pidfile goes with the exit, as after SIGTERM.
        std::process::exit(0);
    }

    fn spawn_daemon(dir: &Path) -> std::process::Child {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::daemon::tests::daemonize_child",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("QGA_DAEMON_TEST_DIR", dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn wait_for(cond: impl Fn() -> bool) -> bool {
        for _ in 0..500 {
            if cond() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn daemonize_detaches_and_writes_pidfile() {
        let dir = std::env::temp_dir().join(format!("qga-daemon.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("ga.pid");
        let mut parent = spawn_daemon(&dir);
        assert!(
            parent.wait().unwrap().success(),
            "the parent exits 0 right after fork"
        );
        assert!(wait_for(
            || std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
        ));
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_ne!(pid, parent.id());
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        // The pidfile comes first (as in qemu-ga); stdio is redirected last.
        assert!(wait_for(
            || std::fs::read_link(proc_dir.join("fd/2")).is_ok_and(|t| t == Path::new("/dev/null"))
        ));
        let status = std::fs::read_to_string(proc_dir.join("status")).unwrap();
        assert!(status.contains("Umask:\t0077"), "{status}");
        assert_eq!(
            std::fs::read_link(proc_dir.join("cwd")).unwrap(),
            Path::new("/")
        );
        let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(fields[3], pid.to_string(), "session leader: {stat}");
        for fd in 0..3 {
            let target = std::fs::read_link(proc_dir.join(format!("fd/{fd}"))).unwrap();
            assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
        }

        // A second daemon cannot take the lock: its child says why and exits 1.
        let mut second = spawn_daemon(&dir);
        assert!(second.wait().unwrap().success());
        let mut err = String::new();
        std::io::Read::read_to_string(second.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(
            err.contains("Cannot lock pid file: Resource temporarily unavailable"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&pidfile).unwrap(),
            format!("{pid}\n")
        );

        std::fs::write(dir.join("stop"), "").unwrap();
        assert!(
            wait_for(|| !pidfile.exists()),
            "the pidfile is unlinked at exit"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
