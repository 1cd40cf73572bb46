//! The libvirt transport: one `virsh qemu-agent-command DOMAIN JSON` per request.
//! libvirt owns the agent socket (and does its own guest-sync), so requests cannot be
//! pipelined here; the [`Client`](crate::Client) queue hides that.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};

/// The largest request passed to virsh: Linux limits one command-line argument to
/// 128 KiB (`MAX_ARG_STRLEN`).
pub const LIBVIRT_MAX_REQUEST: usize = 120 << 10;

/// How to run virsh for one domain.
#[derive(Debug, Clone)]
pub(crate) struct Libvirt {
    pub domain: String,
    /// `virsh`, or `$QGA_VIRSH` (used by tests with a stand-in script).
    pub virsh: PathBuf,
}

impl Libvirt {
    pub fn new(domain: &str) -> Libvirt {
        let virsh = std::env::var_os("QGA_VIRSH").map_or_else(|| "virsh".into(), PathBuf::from);
        Libvirt {
            domain: domain.to_string(),
            virsh,
        }
    }

    /// Runs one request; returns the reply line virsh printed. `timeout` None means
    /// "do not wait for a reply" (`--async`, for commands that send none on success).
    pub fn request(
        &self,
        command: &str,
        json: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>> {
        if json.len() > LIBVIRT_MAX_REQUEST {
            return Err(Error::Libvirt {
                domain: self.domain.clone(),
                detail: format!(
                    "{command}: the request is {} KiB, more than virsh's command line takes ({} KiB)",
                    json.len() >> 10,
                    LIBVIRT_MAX_REQUEST >> 10
                ),
            });
        }
        let mut cmd = Command::new(&self.virsh);
        cmd.arg("qemu-agent-command").arg(&self.domain);
        match timeout {
            Some(t) => {
                cmd.arg("--timeout").arg(t.as_secs().max(1).to_string());
            }
            None => {
                cmd.arg("--async");
            }
        }
        cmd.arg(String::from_utf8_lossy(json).as_ref());
        cmd.stdin(Stdio::null());
        let out = cmd.output().map_err(|e| Error::Libvirt {
            domain: self.domain.clone(),
            detail: format!("cannot run {}: {e}", self.virsh.display()),
        })?;
        if out.status.success() {
            let mut line = out.stdout;
            while line.last().is_some_and(|b| b.is_ascii_whitespace()) {
                line.pop();
            }
            return Ok(line);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(classify(&self.domain, command, stderr.trim()))
    }
}

/// Turns virsh's `error: ...` text into the same errors a direct connection gives.
fn classify(domain: &str, command: &str, stderr: &str) -> Error {
    let text = stderr
        .lines()
        .map(|l| l.trim_start_matches("error: "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    const EXEC: &str = "unable to execute QEMU agent command '";
    if let Some(at) = text.find(EXEC) {
        let rest = &text[at + EXEC.len()..];
        let desc = rest.split_once("': ").map_or(rest, |(_, d)| d);
        let class = if desc.contains("has been disabled") || desc.contains("has not been found") {
            "CommandNotFound"
        } else {
            "GenericError"
        };
        return Error::from_reply(command, class, desc);
    }
    // Everything else (agent not connected or not responding, no such domain, ...)
    // is libvirt's own report: keep its words; it is a connection-level failure.
    Error::Libvirt {
        domain: domain.to_string(),
        detail: text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virsh_errors_map_to_agent_errors() {
        let e = classify(
            "vm1",
            "guest-exec",
            "error: internal error: unable to execute QEMU agent command 'guest-exec': \
             Command guest-exec has been disabled: the command is not allowed",
        );
        assert!(matches!(e, Error::Disabled { .. }), "{e:?}");
        let e = classify(
            "vm1",
            "guest-file-open",
            "error: internal error: unable to execute QEMU agent command 'guest-file-open': \
             failed to open file '/x' (mode: 'r'): No such file or directory",
        );
        match e {
            Error::Guest { desc, .. } => {
                assert_eq!(
                    desc,
                    "failed to open file '/x' (mode: 'r'): No such file or directory"
                )
            }
            e => panic!("{e:?}"),
        }
        let e = classify(
            "vm1",
            "guest-ping",
            "error: Guest agent is not responding: QEMU guest agent is not connected",
        );
        assert_eq!(
            e.to_string(),
            "libvirt domain vm1: Guest agent is not responding: QEMU guest agent is not connected"
        );
        assert_eq!(e.exit_code(), crate::error::EXIT_CONNECTION);
        let e = classify("vm1", "guest-ping", "error: failed to get domain 'vm1'");
        assert_eq!(
            e.to_string(),
            "libvirt domain vm1: failed to get domain 'vm1'"
        );
    }
}
