//! The helper-program runner (qemu-ga's `ga_run_command`): shutdown, hwclock, chpasswd
//! and the fsfreeze hook all go through it, so their output ends up in the error the
//! host sees. Unlike qemu-ga, every run has a time bound: a program that hangs is
//! killed (with its whole process group) instead of stalling the agent forever.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{strerror, Error, Result};

/// How long a helper program may run before it is killed.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(300);

/// Runs `argv` (PATH lookup for a bare name) with `input` on stdin (or /dev/null),
/// stdout and stderr captured together. `action` completes the error sentence
/// "child process has failed to <action>". A run longer than `bound` is killed and
/// reported as an abnormal termination.
pub fn run_command(
    argv: &[&str],
    input: Option<&[u8]>,
    action: &str,
    bound: Duration,
) -> Result<()> {
    let (out_r, out_w) = pipe().map_err(|e| Error::errno("cannot create pipe", &e))?;
    let out_w2 = out_w
        .try_clone()
        .map_err(|e| Error::errno("cannot create pipe", &e))?;
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(out_w2));
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            // qemu-ga's child writes this line and exits 1.
            let out = format!(
                "failed to exec '{}': {}\n",
                argv[0],
                strerror(e.raw_os_error().unwrap_or(0))
            );
            return Err(Error::new(format!(
                "child process has failed to {action}: {out}"
            )));
        }
    };
    drop(cmd); // closes our copies of the write ends
    if let (Some(mut stdin), Some(data)) = (child.stdin.take(), input) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let (tx, rx) = mpsc::channel();
    let mut reader = std::fs::File::from(out_r);
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    let output = match rx.recv_timeout(bound) {
        Ok(out) => Some(out),
        Err(_) => {
            // SAFETY: plain syscall; the child is its own process group leader (setsid).
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            None
        }
    };
    let status = child
        .wait()
        .map_err(|e| Error::errno("failed to wait for child process", &e))?;
    let out = output
        .map(|o| String::from_utf8_lossy(&o).into_owned())
        .unwrap_or_default();
    if status.signal().is_some() || status.code().is_none() {
        if out.is_empty() {
            return Err(Error::new("child process has terminated abnormally"));
        }
        return Err(Error::new(format!(
            "child process has terminated abnormally: {out}"
        )));
    }
    match status.code() {
        Some(0) => Ok(()),
        Some(code) if out.is_empty() => Err(Error::new(format!(
            "child process has failed to {action}: exit status {code}"
        ))),
        Some(_) => Err(Error::new(format!(
            "child process has failed to {action}: {out}"
        ))),
        None => Err(Error::new("child process has terminated abnormally")),
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_failure_and_output() {
        let b = Duration::from_secs(10);
        assert_eq!(run_command(&["true"], None, "x", b), Ok(()));
        let e = run_command(&["sh", "-c", "exit 3"], None, "shutdown", b).unwrap_err();
        assert_eq!(
            e.desc(),
            "child process has failed to shutdown: exit status 3"
        );
        let e = run_command(
            &["sh", "-c", "echo out; echo err >&2; exit 1"],
            None,
            "set user password",
            b,
        )
        .unwrap_err();
        assert_eq!(
            e.desc(),
            "child process has failed to set user password: out\nerr\n"
        );
        let e = run_command(
            &["/nonexistent/hook", "freeze"],
            None,
            "execute fsfreeze hook",
            b,
        )
        .unwrap_err();
        assert_eq!(
            e.desc(),
            "child process has failed to execute fsfreeze hook: failed to exec '/nonexistent/hook': No such file or directory\n"
        );
        let e = run_command(
            &["sh", "-c", "read x; echo got $x; exit 2"],
            Some(b"hi\n"),
            "x",
            b,
        )
        .unwrap_err();
        assert_eq!(e.desc(), "child process has failed to x: got hi\n");
    }

    #[test]
    fn a_hung_program_is_killed_at_the_bound() {
        let t = std::time::Instant::now();
        let e = run_command(&["sleep", "30"], None, "x", Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.desc(), "child process has terminated abnormally");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
