//! What parsing has to say on stderr and stdout, and how qemu-ga prints it: getopt's
//! lines as they are, GLib's default log handler (pid, local clock, ASCII only) for
//! criticals raised before the agent's logger exists, and qemu-ga's own log format.

/// A message for stderr. Some carry the pid and the local time, so they are formatted
/// only when printed ([`Diagnostic::render`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnostic {
    /// A line printed as is: getopt's complaints, QEMU's `error_report`.
    Plain(String),
    /// `g_critical` before the agent's logger exists (GLib's default handler):
    /// `\n** (process:<pid>): CRITICAL **: <HH:MM:SS.mmm>: <msg>`.
    Critical(String),
    /// A warning of GLib itself: `\n(process:<pid>): GLib-WARNING **: <time>: <msg>`.
    GlibWarning(String),
    /// A critical message in the agent's log format: `<secs>.<usec>: critical: <msg>`.
    Logged(String),
}

impl Diagnostic {
    /// The message alone.
    pub fn message(&self) -> &str {
        match self {
            Diagnostic::Plain(m)
            | Diagnostic::Critical(m)
            | Diagnostic::GlibWarning(m)
            | Diagnostic::Logged(m) => m,
        }
    }

    /// The bytes qemu-ga writes for it (newline included). GLib converts messages to the
    /// C locale's ASCII, so every other character shows as `?`; it colours the level on a
    /// terminal (level and clock).
    pub fn render(&self, pid: u32, clock: &str, color: bool) -> String {
        let glib = |prefix: &str, level: &str, code: &str, msg: &str| {
            let (level, clock) = if color {
                (
                    format!("\x1b[{code}m{level}\x1b[0m"),
                    format!("\x1b[34m{clock}\x1b[0m"),
                )
            } else {
                (level.to_string(), clock.to_string())
            };
            let msg: String = msg
                .chars()
                .map(|c| if c.is_ascii() { c } else { '?' })
                .collect();
            format!("\n{prefix}(process:{pid}): {level} **: {clock}: {msg}\n")
        };
        match self {
            Diagnostic::Plain(m) => format!("{m}\n"),
            Diagnostic::Critical(m) => glib("** ", "CRITICAL", "1;35", m),
            Diagnostic::GlibWarning(m) => glib("", "GLib-WARNING", "1;33", m),
            Diagnostic::Logged(m) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                format!(
                    "{}.{:06}: critical: {m}\n",
                    now.as_secs(),
                    now.subsec_micros()
                )
            }
        }
    }

    /// Writes it to this process's stderr.
    pub fn emit(&self) {
        use std::io::Write;
        let text = self.render(
            std::process::id(),
            &crate::sys::daemon::local_clock(),
            crate::sys::daemon::is_tty(2),
        );
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// A command-line or config-file error: print `stderr` and `stdout`, exit 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// For stderr, in order.
    pub stderr: Vec<Diagnostic>,
    /// For stdout: qemu-ga prints its "Unknown option, try ..." hint there.
    pub stdout: String,
}

impl ConfigError {
    pub(super) fn critical(msg: impl Into<String>) -> Self {
        ConfigError {
            stderr: vec![Diagnostic::Critical(msg.into())],
            stdout: String::new(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut lines: Vec<&str> = self.stderr.iter().map(Diagnostic::message).collect();
        lines.extend(self.stdout.lines());
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ConfigError {}
