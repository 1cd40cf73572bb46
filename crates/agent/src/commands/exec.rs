//! guest-exec and guest-exec-status.
//!
//! guest-exec starts the program (GLib `g_spawn` semantics, see [`crate::sys::spawn`])
//! and returns its PID at once. One monitor thread, `qga-children`, then does all the
//! waiting, so no command ever blocks on a child: it feeds `input-data` to the child's
//! stdin through a non-blocking pipe, collects captured stdout/stderr (16 MiB per
//! stream are kept; the rest is read and discarded and the stream marked truncated),
//! and reaps the child when it exits, so no zombie is left: guest-exec-status reaps an
//! exited child itself, and from 10 ms after its start the thread watches the child's
//! exit (pidfd; on kernels without pidfd a sweep every 50 ms), so a child nobody asks
//! about is reaped at most 10 ms after it exits (see `exec/monitor.rs`). It never
//! waits for "any child", only for its own PIDs.
//!
//! guest-exec-status reports `exited: true` only once the child was reaped AND its
//! captured output pipes reached EOF (as qemu-ga), with `exitcode` or `signal`,
//! `out-data`/`err-data` when non-empty, and `out-truncated`/`err-truncated` (true or
//! false) whenever the matching data is present (qemu-ga 10.2). That first
//! `exited: true` reply removes the result; later queries get `PID <n> does not exist`
//! (qemu-ga's text is literally `PID ld does not exist`, an upstream format bug; we
//! print the number).
//!
//! Results nobody collects (bounded, unlike qemu-ga, which keeps them forever): a
//! finished result is kept until it is collected, but
//! - at most [`Policy::max_results`] (1024) finished results are kept, and their
//!   captured output at most [`Policy::max_bytes`] (128 MiB) in total: beyond that the
//!   oldest-finished results are discarded first;
//! - a finished result is discarded [`Policy::ttl`] (1 hour) after the child finished.
//!
//! Running children are never discarded; their count is not limited (as qemu-ga).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qga_proto::cmds::exec::*;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::sys::base64;
use crate::sys::spawn::{self, Sink, Spec};

mod monitor;

use monitor::Monitor;

/// Captured output kept per stream (`GUEST_EXEC_MAX_OUTPUT`).
pub const MAX_OUTPUT: usize = 16 << 20;

/// How long and how many finished-but-uncollected results are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Finished results kept at most; the oldest-finished go first.
    pub max_results: usize,
    /// Captured output of finished results kept at most, in bytes (the newest result
    /// is always kept).
    pub max_bytes: usize,
    /// A finished result is discarded this long after the child finished.
    pub ttl: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_results: 1024,
            max_bytes: 128 << 20,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Children started by guest-exec and their results until the host collects them.
#[derive(Default)]
pub struct Children {
    policy: Policy,
    monitor: Mutex<Option<Arc<Monitor>>>,
}

impl Children {
    /// A table with a non-default retention policy.
    pub fn with_policy(policy: Policy) -> Self {
        Children {
            policy,
            monitor: Mutex::new(None),
        }
    }

    /// The monitor, started on first use.
    fn monitor(&self) -> Result<Arc<Monitor>> {
        let mut m = self.monitor.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = m.as_ref() {
            return Ok(m.clone());
        }
        let started = Monitor::start(self.policy)
            .map_err(|e| Error::errno("failed to start the child monitor", &e))?;
        *m = Some(started.clone());
        Ok(started)
    }

    fn started(&self) -> Option<Arc<Monitor>> {
        self.monitor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// (running or uncollected children, of which finished).
    pub fn counts(&self) -> (usize, usize) {
        self.started().map_or((0, 0), |m| m.counts())
    }
}

/// guest-exec
pub fn exec(agent: &Agent, args: GuestExecArgs) -> Result<GuestExec> {
    let input = args.input_data.as_deref().map(base64::decode).transpose()?;
    let mut argv: Vec<String> = vec![args.path];
    argv.extend(args.arg.into_iter().flatten());
    agent
        .log
        .audit(&format!("guest-exec called: \"{}\"", argv.join(" ")));
    use GuestExecCaptureOutputMode as M;
    let mode = args.capture_output.map_or(M::None, |c| c.mode());
    let (stdout, stderr) = match mode {
        M::None => (Sink::Null, Sink::Null),
        M::Stdout => (Sink::Pipe, Sink::Null),
        M::Stderr => (Sink::Null, Sink::Pipe),
        M::Separated => (Sink::Pipe, Sink::Pipe),
        M::Merged => (Sink::Pipe, Sink::Stdout),
    };
    let monitor = agent.exec.monitor()?;
    let child = spawn::spawn(&Spec {
        argv: &argv,
        env: args.env.as_deref(),
        stdin_pipe: input.is_some(),
        stdout,
        stderr,
    })
    .map_err(|e| Error::new(e.0))?;
    let pid = child.pid;
    monitor.add(child, input);
    Ok(GuestExec {
        pid: i64::from(pid),
    })
}

/// guest-exec-status
pub fn status(agent: &Agent, args: GuestExecStatusArgs) -> Result<GuestExecStatus> {
    agent.log.audit(&format!(
        "guest-exec-status called, pid: {}",
        args.pid as u32
    ));
    let gone = || Error::new(format!("PID {} does not exist", args.pid));
    let monitor = agent.exec.started().ok_or_else(gone)?;
    let Some(state) = monitor.status(args.pid) else {
        return Err(gone());
    };
    let Some(done) = state else {
        return Ok(GuestExecStatus {
            exited: false,
            ..Default::default()
        });
    };
    let (exitcode, signal) = spawn::decode_status(done.status);
    let data = |c: &Option<monitor::Captured>| {
        c.as_ref()
            .filter(|c| !c.data.is_empty())
            .map(|c| (base64::encode(&c.data), c.truncated))
    };
    let out = data(&done.out);
    let err = data(&done.err);
    Ok(GuestExecStatus {
        exited: true,
        exitcode,
        signal,
        out_truncated: out.as_ref().map(|o| o.1),
        err_truncated: err.as_ref().map(|e| e.1),
        out_data: out.map(|o| o.0),
        err_data: err.map(|e| e.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::tests::test_agent;
    use std::time::Instant;

    fn run(agent: &Agent, args: GuestExecArgs) -> Result<i64> {
        exec(agent, args).map(|r| r.pid)
    }

    fn args(
        path: &str,
        arg: &[&str],
        capture: Option<GuestExecCaptureOutputMode>,
    ) -> GuestExecArgs {
        GuestExecArgs {
            path: path.into(),
            arg: Some(arg.iter().map(|s| s.to_string()).collect()),
            capture_output: capture.map(GuestExecCaptureOutput::Mode),
            ..Default::default()
        }
    }

    fn wait(agent: &Agent, pid: i64) -> GuestExecStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let st = status(agent, GuestExecStatusArgs { pid }).unwrap();
            if st.exited {
                return st;
            }
            assert!(Instant::now() < deadline, "pid {pid} did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn out(st: &GuestExecStatus) -> Vec<u8> {
        st.out_data
            .as_deref()
            .map(|d| base64::decode(d).unwrap())
            .unwrap_or_default()
    }

    fn err(st: &GuestExecStatus) -> Vec<u8> {
        st.err_data
            .as_deref()
            .map(|d| base64::decode(d).unwrap())
            .unwrap_or_default()
    }

    const SCRIPT: &str = "echo out; echo err >&2; echo out2; exit 3";

    #[test]
    fn capture_modes() {
        use GuestExecCaptureOutputMode as M;
        let a = test_agent();
        let st = wait(
            &a,
            run(&a, args("sh", &["-c", SCRIPT], Some(M::Separated))).unwrap(),
        );
        assert_eq!((st.exitcode, st.signal), (Some(3), None));
        assert_eq!(
            (out(&st), err(&st)),
            (b"out\nout2\n".to_vec(), b"err\n".to_vec())
        );
        assert_eq!(
            (st.out_truncated, st.err_truncated),
            (Some(false), Some(false))
        );
        let st = wait(
            &a,
            run(&a, args("sh", &["-c", SCRIPT], Some(M::Merged))).unwrap(),
        );
        assert_eq!(out(&st), b"out\nerr\nout2\n");
        assert_eq!((st.err_data.as_deref(), st.err_truncated), (None, None));
        let st = wait(
            &a,
            run(&a, args("sh", &["-c", SCRIPT], Some(M::Stdout))).unwrap(),
        );
        assert_eq!(
            (out(&st), st.err_data.as_deref()),
            (b"out\nout2\n".to_vec(), None)
        );
        let st = wait(
            &a,
            run(&a, args("sh", &["-c", SCRIPT], Some(M::Stderr))).unwrap(),
        );
        assert_eq!(
            (st.out_data.as_deref(), err(&st)),
            (None, b"err\n".to_vec())
        );
        let st = wait(&a, run(&a, args("sh", &["-c", SCRIPT], None)).unwrap());
        assert_eq!(st.exitcode, Some(3));
        assert_eq!(
            (st.out_data, st.err_data, st.out_truncated),
            (None, None, None)
        );
        let st = wait(
            &a,
            run(&a, args("sh", &["-c", "kill -9 $$"], Some(M::Separated))).unwrap(),
        );
        assert_eq!((st.exitcode, st.signal, st.out_data), (None, Some(9), None));
    }

    #[test]
    fn the_first_exited_reply_removes_the_result() {
        let a = test_agent();
        let pid = run(&a, args("true", &[], None)).unwrap();
        wait(&a, pid);
        let e = status(&a, GuestExecStatusArgs { pid }).unwrap_err();
        assert_eq!(e.desc(), format!("PID {pid} does not exist"));
        let e = status(&a, GuestExecStatusArgs { pid: 0 }).unwrap_err();
        assert_eq!(e.desc(), "PID 0 does not exist");
    }

    #[test]
    fn input_data_and_a_child_that_never_reads_it() {
        let a = test_agent();
        let mut cat = args("cat", &[], Some(GuestExecCaptureOutputMode::Separated));
        cat.input_data = Some("aGVsbG8K".into());
        assert_eq!(out(&wait(&a, run(&a, cat).unwrap())), b"hello\n");
        // 4 MiB of input to a child that exits without reading: nothing blocks.
        let mut sleeper = args("sleep", &["0.3"], None);
        sleeper.input_data = Some(base64::encode(&vec![b'x'; 4 << 20]));
        let t = Instant::now();
        let pid = run(&a, sleeper).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(!status(&a, GuestExecStatusArgs { pid }).unwrap().exited);
        assert_eq!(wait(&a, pid).exitcode, Some(0));
        let mut bad = args("cat", &[], None);
        bad.input_data = Some("a b".into());
        assert_eq!(
            run(&a, bad).unwrap_err().desc(),
            "Base64 data contains invalid characters"
        );
    }

    #[test]
    fn exited_waits_for_the_output_pipes_to_close() {
        let a = test_agent();
        let script = "(sleep 0.5; echo late) & echo early";
        let pid = run(
            &a,
            args(
                "sh",
                &["-c", script],
                Some(GuestExecCaptureOutputMode::Separated),
            ),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // sh has exited and was reaped, but its child still holds stdout.
        assert!(!status(&a, GuestExecStatusArgs { pid }).unwrap().exited);
        assert_eq!(out(&wait(&a, pid)), b"early\nlate\n");
    }

    #[test]
    fn program_lookup_follows_glib() {
        use std::os::unix::fs::PermissionsExt;
        let a = test_agent();
        let dir = &a.config.statedir;
        let e = |r: Result<i64>| r.unwrap_err().desc().to_owned();
        // `env` without PATH: the agent's PATH is searched.
        let mut t = args("true", &[], None);
        t.env = Some(vec!["A=1".into()]);
        assert_eq!(wait(&a, run(&a, t).unwrap()).exitcode, Some(0));
        // `env` with PATH: that one.
        let mut p = args("true", &[], None);
        p.env = Some(vec!["PATH=/nonexistent".into()]);
        assert_eq!(
            e(run(&a, p)),
            "Failed to execute child process \u{201C}true\u{201D} (No such file or directory)"
        );
        assert_eq!(
            e(run(&a, args("", &[], None))),
            "Failed to execute child process \u{201C}\u{201D} (No such file or directory)"
        );
        assert_eq!(
            e(run(&a, args(dir, &[], None))),
            format!("Failed to execute child process \u{201C}{dir}\u{201D} (Permission denied)")
        );
        // A non-executable hit is remembered but a later directory wins; a file
        // without #! runs under /bin/sh.
        let (d1, d2) = (format!("{dir}/d1"), format!("{dir}/d2"));
        std::fs::create_dir_all(&d1).unwrap();
        std::fs::create_dir_all(&d2).unwrap();
        std::fs::write(format!("{d1}/prog"), "echo d1\n").unwrap();
        std::fs::write(format!("{d2}/prog"), "echo d2 \"$0\" \"$1\"\n").unwrap();
        let exe = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(format!("{d2}/prog"), exe).unwrap();
        let mut p = args("prog", &["x"], Some(GuestExecCaptureOutputMode::Separated));
        p.env = Some(vec![format!("PATH={d1}:{d2}")]);
        let st = wait(&a, run(&a, p).unwrap());
        assert_eq!(out(&st), format!("d2 {d2}/prog x\n").into_bytes());
        let mut p = args("prog", &[], None);
        p.env = Some(vec![format!("PATH={d1}")]);
        assert_eq!(
            e(run(&a, p)),
            "Failed to execute child process \u{201C}prog\u{201D} (Permission denied)"
        );
    }

    #[test]
    fn the_child_gets_a_clean_environment_and_no_agent_descriptors() {
        let a = test_agent();
        let mut p = args(
            "sh",
            &[
                "-c",
                "env; ls /proc/self/fd; grep -E '^Sig(Blk|Ign)' /proc/self/status",
            ],
            Some(GuestExecCaptureOutputMode::Separated),
        );
        p.env = Some(vec!["ONLY=1".into()]);
        let text = String::from_utf8(out(&wait(&a, run(&a, p).unwrap()))).unwrap();
        let mut lines = text.lines();
        let env: Vec<&str> = lines
            .by_ref()
            .take_while(|l| l.starts_with("ONLY") || l.contains('='))
            .collect();
        assert!(env.contains(&"ONLY=1"), "{text}");
        assert!(!env.iter().any(|l| l.starts_with("HOME=")), "{text}");
        // 0, 1, 2 and the descriptor ls itself opens.
        let fds: Vec<&str> = text
            .lines()
            .filter(|l| l.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(fds.len(), 4, "{text}");
        assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
        // SIGPIPE (ignored by the agent) is back to its default; other dispositions
        // are inherited, as with qemu-ga.
        let ign = text
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .unwrap();
        let ign = u64::from_str_radix(ign, 16).unwrap();
        assert_eq!(ign & (1 << (libc::SIGPIPE - 1)), 0, "{text}");
    }

    #[test]
    fn uncollected_results_are_bounded_oldest_first() {
        let mut a = test_agent();
        a.exec = Children::with_policy(Policy {
            max_results: 3,
            max_bytes: 10,
            ttl: Duration::from_millis(700),
        });
        let mut pids = Vec::new();
        for _ in 0..5 {
            pids.push(run(&a, args("true", &[], None)).unwrap());
            std::thread::sleep(Duration::from_millis(30));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.exec.counts() != (3, 3) {
            assert!(Instant::now() < deadline, "{:?}", a.exec.counts());
            std::thread::sleep(Duration::from_millis(5));
        }
        let gone = status(&a, GuestExecStatusArgs { pid: pids[0] }).unwrap_err();
        assert_eq!(gone.desc(), format!("PID {} does not exist", pids[0]));
        assert!(
            status(&a, GuestExecStatusArgs { pid: pids[4] })
                .unwrap()
                .exited
        );
        // Output counts against max_bytes: 8 + 8 bytes > 10, so the older goes.
        let cap = Some(GuestExecCaptureOutputMode::Separated);
        let p1 = run(&a, args("echo", &["1234567"], cap)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let p2 = run(&a, args("echo", &["abcdefg"], cap)).unwrap();
        // Once p2 is finished and uncollected too, p1 goes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.exec.counts() != (1, 1) {
            assert!(Instant::now() < deadline, "{:?}", a.exec.counts());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(status(&a, GuestExecStatusArgs { pid: p1 }).is_err());
        assert_eq!(out(&wait(&a, p2)), b"abcdefg\n");
        // Everything expires after the TTL, without anyone asking.
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(a.exec.counts(), (0, 0));
        // A running child is never discarded.
        let pid = run(&a, args("sleep", &["1.2"], None)).unwrap();
        std::thread::sleep(Duration::from_millis(900));
        assert!(!status(&a, GuestExecStatusArgs { pid }).unwrap().exited);
        assert!(wait(&a, pid).exited);
    }
}
