//! Running a program in the guest to completion: guest-exec with separated output
//! capture, then guest-exec-status polled with a short backoff, output decoded.

use std::time::{Duration, Instant};

use crate::b64;
use crate::error::{Error, Result};
use crate::wire::{
    GuestExecArgs, GuestExecCaptureOutput, GuestExecCaptureOutputMode, GuestExecStatusArgs,
};
use crate::Client;

/// The PATH given to the guest program when `--env` replaces its environment and does
/// not set PATH itself (guest-exec's `env` replaces everything, PATH lookup included).
pub const DEFAULT_GUEST_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// Program (searched in the guest's PATH).
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// `K=V` entries; when non-empty they replace the guest program's environment
    /// (a default PATH is added unless one is given).
    pub env: Vec<String>,
    /// Standard input; `/dev/null` when `None`.
    pub stdin: Option<Vec<u8>>,
}

impl ExecRequest {
    /// The guest-exec arguments.
    pub fn to_args(&self) -> GuestExecArgs {
        let env = if self.env.is_empty() {
            None
        } else {
            let mut env = self.env.clone();
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.push(DEFAULT_GUEST_PATH.to_string());
            }
            Some(env)
        };
        GuestExecArgs {
            path: self.program.clone(),
            arg: (!self.args.is_empty()).then(|| self.args.clone()),
            env,
            input_data: self.stdin.as_deref().map(b64::encode),
            capture_output: Some(GuestExecCaptureOutput::Mode(
                GuestExecCaptureOutputMode::Separated,
            )),
        }
    }
}

/// How a guest program ended, with its output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its pid in the guest.
    pub pid: i64,
    /// Exit status, if it exited.
    pub exitcode: Option<i64>,
    /// The signal that killed it, if any.
    pub signal: Option<i64>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// The agent dropped stdout beyond its cap (16 MiB for qemu-ga).
    pub stdout_truncated: bool,
    /// The agent dropped stderr beyond its cap.
    pub stderr_truncated: bool,
}

impl ExecOutput {
    /// The shell-style status: the exit code, or 128 + signal.
    pub fn status(&self) -> i64 {
        match (self.exitcode, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 0,
        }
    }
}

/// The polling schedule: 5 ms, growing by half each time, capped at 250 ms.
pub fn next_poll_delay(prev: Duration) -> Duration {
    if prev.is_zero() {
        Duration::from_millis(5)
    } else {
        (prev * 3 / 2).min(Duration::from_millis(250))
    }
}

fn decode(command: &str, field: &str, data: Option<String>) -> Result<Vec<u8>> {
    match data {
        None => Ok(Vec::new()),
        Some(s) => b64::decode(s.as_bytes()).ok_or_else(|| Error::Protocol {
            command: command.into(),
            detail: format!("{field} is not valid base64"),
        }),
    }
}

impl Client {
    /// Runs a program in the guest and waits for it (at most `limit`, if given).
    pub fn exec(&mut self, req: &ExecRequest, limit: Option<Duration>) -> Result<ExecOutput> {
        self.exec_polling(req, limit, Duration::MAX)
    }

    /// [`exec`](Self::exec), polling at least every `max_delay`: for a program whose
    /// end the caller waits on with nothing else to do (a 250 ms backoff step can add
    /// a quarter of a second to `qga cp`'s checksum in the guest).
    pub(crate) fn exec_polling(
        &mut self,
        req: &ExecRequest,
        limit: Option<Duration>,
        max_delay: Duration,
    ) -> Result<ExecOutput> {
        let started = Instant::now();
        let pid = self.call(req.to_args())?.pid;
        let mut delay = Duration::ZERO;
        loop {
            let st = self.call(GuestExecStatusArgs { pid })?;
            if st.exited {
                return Ok(ExecOutput {
                    pid,
                    exitcode: st.exitcode,
                    signal: st.signal,
                    stdout: decode("guest-exec-status", "out-data", st.out_data)?,
                    stderr: decode("guest-exec-status", "err-data", st.err_data)?,
                    stdout_truncated: st.out_truncated.unwrap_or(false),
                    stderr_truncated: st.err_truncated.unwrap_or(false),
                });
            }
            delay = next_poll_delay(delay).min(max_delay);
            if let Some(limit) = limit {
                let spent = started.elapsed();
                if spent >= limit {
                    return Err(Error::ExecStillRunning { pid, waited: limit });
                }
                delay = delay.min(limit - spent);
            }
            std::thread::sleep(delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qga_proto::ToQapi;

    #[test]
    fn request_json() {
        let r = ExecRequest {
            program: "sh".into(),
            args: vec!["-c".into(), "cat".into()],
            env: vec!["A=1".into()],
            stdin: Some(b"hi".to_vec()),
        };
        let v = r.to_args().to_qapi();
        let d = v.as_dict().unwrap();
        let keys: Vec<_> = d.iter_inserted().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(
            keys,
            [
                &b"path"[..],
                b"arg",
                b"env",
                b"input-data",
                b"capture-output"
            ]
        );
        assert_eq!(d.get("input-data").unwrap().as_bytes().unwrap(), b"aGk=");
        assert_eq!(
            d.get("capture-output").unwrap().as_bytes().unwrap(),
            b"separated"
        );
        let env = d.get("env").unwrap().to_json();
        assert!(
            env.starts_with(br#"["A=1", "PATH=/usr/local/sbin"#),
            "{env:?}"
        );
        let r = ExecRequest {
            program: "true".into(),
            ..Default::default()
        };
        let v = r.to_args().to_qapi();
        assert_eq!(
            v.to_json(),
            br#"{"path": "true", "capture-output": "separated"}"#
        );
    }

    #[test]
    fn status_and_backoff() {
        let o = ExecOutput {
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(o.status(), 137);
        let mut d = Duration::ZERO;
        let mut total = Duration::ZERO;
        for _ in 0..10 {
            d = next_poll_delay(d);
            total += d;
        }
        assert_eq!(
            next_poll_delay(Duration::from_secs(1)),
            Duration::from_millis(250)
        );
        assert!(total < Duration::from_secs(2), "{total:?}");
    }
}
