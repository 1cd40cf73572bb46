//! guest-exec and guest-exec-status.
//!
//! guest-exec starts the program (GLib `g_spawn` semantics, see [`crate::sys::spawn`])
//! and returns its PID at once. One monitor thread, `qga-children`, then does all the
//! waiting, so no command ever blocks on a child: it feeds `input-data` to the child's
//! stdin through a non-blocking pipe, collects captured stdout/stderr (16 MiB per
//! stream are kept; the rest is read and discarded and the stream marked truncated),
//! and reaps the child as soon as it exits (pidfd; on kernels without pidfd a sweep
//! every 50 ms), so no zombie is ever left. It never waits for "any child", only for
//! its own PIDs.
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
use crate::commands::file::c_str;
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
    let mut argv: Vec<String> = vec![c_str(&args.path).to_owned()];
    argv.extend(args.arg.iter().flatten().map(|a| c_str(a).to_owned()));
    agent
        .log
        .audit(&format!("guest-exec called: \"{}\"", argv.join(" ")));
    let env: Option<Vec<String>> = args
        .env
        .as_ref()
        .map(|e| e.iter().map(|v| c_str(v).to_owned()).collect());
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
        env: env.as_deref(),
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
