//! Running a helper the way qemu-ga's suspend code does (`run_process_child`, which is
//! GLib's `g_spawn_sync` with `G_SPAWN_SEARCH_PATH` and stdout/stderr to /dev/null):
//! the program is looked up in a search path, its output is discarded, and only its
//! exit status matters. The search path is a parameter, so tests put fake
//! `systemctl` / `pm-*` scripts first.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::strerror;

/// How a helper run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spawned {
    /// It ran: `WEXITSTATUS` of its wait status, which is 0 after a death by signal.
    Exited(i32),
    /// It is not in the search path (GLib's `G_SPAWN_ERROR_NOENT`).
    NotFound,
    /// Any other failure to start it, with GLib's message.
    Failed(String),
}

/// The search path GLib uses: `$PATH`, or `/bin:/usr/bin:.` when it is unset.
pub fn default_search_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin:."))
}

/// Whether `access(path, X_OK)` succeeds.
pub fn is_executable(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// Finds `name` as `execvp` would: a name with a `/` is used as is; otherwise each
/// entry of `search_path` (an empty entry is the current directory) is tried in
/// order. Returns the errno of the failure: ENOENT when nothing was there, EACCES when
/// only non-executable candidates were.
pub fn find_program(name: &str, search_path: &OsStr) -> Result<PathBuf, i32> {
    let check = |p: &Path| -> Result<(), i32> {
        match std::fs::metadata(p) {
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::ENOENT)),
            Ok(m) if m.is_file() && is_executable(p) => Ok(()),
            Ok(_) => Err(libc::EACCES),
        }
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return check(&p).map(|()| p);
    }
    let mut eacces = false;
    for dir in search_path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(name);
        match check(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(libc::EACCES) => eacces = true,
            Err(_) => {}
        }
    }
    Err(if eacces { libc::EACCES } else { libc::ENOENT })
}

/// Runs `argv` with stdin, stdout and stderr on /dev/null and waits for it. A run
/// longer than `bound` is killed, which reads as exit status 0 (a death by signal,
/// as qemu-ga's `WEXITSTATUS` sees it).
pub fn spawn_quiet(argv: &[&str], search_path: &OsStr, bound: Duration) -> Spawned {
    let failed = |errno: i32| {
        Spawned::Failed(format!(
            "Failed to execute child process \u{201C}{}\u{201D} ({})",
            argv[0],
            strerror(errno)
        ))
    };
    let program = match find_program(argv[0], search_path) {
        Ok(p) => p,
        Err(libc::ENOENT) => return Spawned::NotFound,
        Err(errno) => return failed(errno),
    };
    let child = Command::new(&program)
        .arg0(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Spawned::NotFound,
        Err(e) => return failed(e.raw_os_error().unwrap_or(0)),
    };
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(bound) {
        Ok(s) => s,
        Err(_) => {
            // SAFETY: plain syscall; the child is not reaped yet (its waiter is still
            // blocked), so the pid still names it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            rx.recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("lost child")))
        }
    };
    match status {
        Ok(s) => Spawned::Exited(s.code().unwrap_or(0)),
        Err(e) => failed(e.raw_os_error().unwrap_or(0)),
    }
}

/// Helpers for tests that run fake programs.
#[cfg(test)]
pub(crate) mod testutil {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// A fresh directory under the temp dir.
    pub fn tempdir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("qga-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Writes `#!/bin/sh` + `body` to `dir/name` with `mode`. The executable file is
    /// written by a `cp` child, never through a descriptor of this (multi-threaded)
    /// process, so a concurrent fork elsewhere cannot make its exec fail with ETXTBSY.
    pub fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let src = dir.join(format!(".{name}.src"));
        std::fs::write(&src, format!("#!/bin/sh\n{body}\n")).unwrap();
        let p = dir.join(name);
        let ok = std::process::Command::new("cp")
            .arg(&src)
            .arg(&p)
            .status()
            .unwrap();
        assert!(ok.success());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::remove_file(&src).unwrap();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{script, tempdir};
    use super::*;

    #[test]
    fn search_exit_status_and_failures() {
        let a = tempdir("a");
        let b = tempdir("b");
        script(&a, "tool", "exit 7", 0o644); // not executable: skipped, remembered
        script(
            &b,
            "tool",
            "echo \"$*\" > \"$(dirname \"$0\")/args\"; exit 3",
            0o755,
        );
        let path = OsString::from(format!("{}:{}", a.display(), b.display()));
        let bound = Duration::from_secs(20);
        assert_eq!(find_program("tool", &path), Ok(b.join("tool")));
        assert_eq!(
            spawn_quiet(&["tool", "x", "y"], &path, bound),
            Spawned::Exited(3)
        );
        let args = std::fs::read_to_string(b.join("args")).unwrap();
        assert_eq!(args, "x y\n");

        let only_a = OsString::from(a.as_os_str());
        assert_eq!(find_program("tool", &only_a), Err(libc::EACCES));
        assert_eq!(
            spawn_quiet(&["tool"], &only_a, bound),
            Spawned::Failed(
                "Failed to execute child process \u{201C}tool\u{201D} (Permission denied)".into()
            )
        );
        assert_eq!(spawn_quiet(&["nope"], &only_a, bound), Spawned::NotFound);

        script(&b, "hang", "exec sleep 30", 0o755);
        let t = std::time::Instant::now();
        let only_b = OsString::from(b.as_os_str());
        let r = spawn_quiet(&["hang"], &only_b, Duration::from_millis(200));
        assert_eq!(r, Spawned::Exited(0));
        assert!(t.elapsed() < Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }
}
