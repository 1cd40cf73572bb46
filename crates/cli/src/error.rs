//! Everything that can go wrong talking to a guest agent, each case worded for an
//! operator reading one line at 3 a.m., and mapped to the CLI's documented exit codes.

use std::path::PathBuf;
use std::time::Duration;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code: the guest command failed (an error reply, a disabled or unknown command,
/// a failed check after a copy, a local file problem).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad command line.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: could not reach the agent, or it did not answer in time.
pub const EXIT_CONNECTION: u8 = 3;

/// A failure, with enough context to say what to do about it.
#[derive(Debug)]
pub enum Error {
    /// The socket path does not exist.
    NoSocket {
        /// The path given.
        path: PathBuf,
    },
    /// `connect()` failed for another reason (refused: nothing listens; permission).
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Connected, but the guest-sync-delimited handshake got no answer in time.
    NoHandshake {
        /// What we connected to.
        target: String,
        /// How long we waited.
        waited: Duration,
    },
    /// A request got no reply in time (the connection is resynchronised before the
    /// next request).
    Timeout {
        /// The command sent.
        command: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The connection broke: EOF or an I/O error while talking.
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command exists but the guest's allow/block list (or the frozen state)
    /// disables it.
    Disabled {
        /// The command.
        command: String,
    },
    /// This agent version does not know the command.
    Unknown {
        /// The command.
        command: String,
    },
    /// The agent answered with an error.
    Guest {
        /// The command.
        command: String,
        /// The error class (`GenericError`, ...).
        class: String,
        /// The agent's description.
        desc: String,
    },
    /// The reply could not be understood (bad JSON, unexpected shape).
    Protocol {
        /// The command.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// libvirt (`virsh`) could not be run, or reported a failure of its own.
    Libvirt {
        /// The domain.
        domain: String,
        /// virsh's message.
        detail: String,
    },
    /// The guest program did not finish within the time allowed.
    ExecStillRunning {
        /// Its pid in the guest.
        pid: i64,
        /// How long we waited.
        waited: Duration,
    },
    /// Something failed on this side or a check failed (local file, size or checksum
    /// mismatch after a copy).
    Failed(String),
}

impl Error {
    /// The CLI exit code for this error (see `qga --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoSocket { .. }
            | Error::Connect { .. }
            | Error::NoHandshake { .. }
            | Error::Timeout { .. }
            | Error::Io { .. }
            | Error::Protocol { .. }
            | Error::Libvirt { .. }
            | Error::ExecStillRunning { .. } => EXIT_CONNECTION,
            Error::Disabled { .. }
            | Error::Unknown { .. }
            | Error::Guest { .. }
            | Error::Failed(_) => EXIT_FAILED,
        }
    }

    /// A short machine-readable kind, used in `--json` error objects.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoSocket { .. } => "no-socket",
            Error::Connect { .. } => "connect",
            Error::NoHandshake { .. } => "no-answer",
            Error::Timeout { .. } => "timeout",
            Error::Io { .. } => "io",
            Error::Disabled { .. } => "disabled",
            Error::Unknown { .. } => "unknown-command",
            Error::Guest { .. } => "guest-error",
            Error::Protocol { .. } => "protocol",
            Error::Libvirt { .. } => "libvirt",
            Error::ExecStillRunning { .. } => "still-running",
            Error::Failed(_) => "failed",
        }
    }

    /// Builds the error for an `{"error": {"class", "desc"}}` reply to `command`,
    /// recognising qemu-ga's CommandNotFound texts for disabled and unknown commands.
    pub fn from_reply(command: &str, class: &str, desc: &str) -> Error {
        let command = command.to_string();
        if class == "CommandNotFound" || class == "CommandDisabled" {
            if desc.contains("has been disabled") || class == "CommandDisabled" {
                return Error::Disabled { command };
            }
            if desc.contains("has not been found") {
                return Error::Unknown { command };
            }
        }
        Error::Guest {
            command,
            class: class.to_string(),
            desc: desc.to_string(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

fn secs(d: &Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s:.1}s")
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoSocket { path } => write!(
                f,
                "no such socket: {} (is the VM running, with a guest-agent channel at this path?)",
                path.display()
            ),
            Error::Connect { path, source } => {
                if source.kind() == std::io::ErrorKind::ConnectionRefused {
                    write!(
                        f,
                        "nothing is listening on {} (connection refused: the agent or VM is not running)",
                        path.display()
                    )
                } else {
                    write!(f, "cannot connect to {}: {source}", path.display())
                }
            }
            Error::NoHandshake { target, waited } => write!(
                f,
                "{target}: connected, but no answer to guest-sync-delimited within {}: the guest agent \
                 is not running in the guest, or it is busy with another client (qemu-ga serves one at a time)",
                secs(waited)
            ),
            Error::Timeout { command, waited } => write!(
                f,
                "{command}: no reply within {} (raise it with --timeout)",
                secs(waited)
            ),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Disabled { command } => write!(
                f,
                "{command} is disabled on this guest (agent started with a block/allow list, or filesystems are frozen)"
            ),
            Error::Unknown { command } => write!(
                f,
                "{command} is not supported by this guest agent version"
            ),
            Error::Guest { command, desc, .. } => write!(f, "{command} failed in the guest: {desc}"),
            Error::Protocol { command, detail } => write!(f, "{command}: unexpected reply: {detail}"),
            Error::Libvirt { domain, detail } => write!(f, "libvirt domain {domain}: {detail}"),
            Error::ExecStillRunning { pid, waited } => write!(
                f,
                "guest process {pid} still running after {} (the agent cannot kill it; it keeps running in the guest)",
                secs(waited)
            ),
            Error::Failed(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_not_found_is_split_into_disabled_and_unknown() {
        let e = Error::from_reply(
            "guest-exec",
            "CommandNotFound",
            "Command guest-exec has been disabled: the command is not allowed",
        );
        assert!(matches!(e, Error::Disabled { .. }), "{e:?}");
        assert_eq!(e.exit_code(), EXIT_FAILED);
        let e = Error::from_reply(
            "guest-x",
            "CommandNotFound",
            "The command guest-x has not been found",
        );
        assert!(matches!(e, Error::Unknown { .. }), "{e:?}");
        let e = Error::from_reply("guest-file-open", "GenericError", "failed to open");
        assert_eq!(
            e.to_string(),
            "guest-file-open failed in the guest: failed to open"
        );
    }

    #[test]
    fn messages_are_one_line() {
        let e = Error::NoHandshake {
            target: "/run/x.sock".into(),
            waited: Duration::from_millis(1500),
        };
        let s = e.to_string();
        assert!(!s.contains('\n'));
        assert!(s.contains("within 1.5s"), "{s}");
        assert_eq!(e.exit_code(), EXIT_CONNECTION);
    }
}
