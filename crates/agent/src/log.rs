//! Logging as qemu-ga does it: lines `<unix-seconds>.<µs>: <level>: <msg>` to stderr or
//! the log file; only error and critical unless `-v`; nothing at all while frozen (a
//! write to a frozen filesystem would hang the agent).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// GLib's log levels, as qemu-ga prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `warning`
    Warning,
    /// `message`
    Message,
    /// `info`
    Info,
    /// `debug`
    Debug,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Warning => "warning",
            Level::Message => "message",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Where log lines go.
pub struct Logger {
    sink: Mutex<Box<dyn Write + Send>>,
    verbose: bool,
    enabled: AtomicBool,
}

impl Logger {
    /// A logger writing to `sink`.
    pub fn new(sink: Box<dyn Write + Send>, verbose: bool) -> Self {
        Logger {
            sink: Mutex::new(sink),
            verbose,
            enabled: AtomicBool::new(true),
        }
    }

    /// A logger writing to stderr.
    pub fn stderr(verbose: bool) -> Self {
        Self::new(Box::new(std::io::stderr()), verbose)
    }

    /// Replaces the sink (the log file is opened after a deferred start while frozen).
    pub fn set_sink(&self, sink: Box<dyn Write + Send>) {
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    }

    /// Turns all logging on or off (off while frozen).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// Logs one line at `level`.
    pub fn log(&self, level: Level, msg: &str) {
        if !self.enabled.load(Ordering::SeqCst) || (!self.verbose && level > Level::Critical) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = format!(
            "{}.{:06}: {}: {}\n",
            now.as_secs(),
            now.subsec_micros(),
            level.as_str(),
            msg
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = sink.write_all(line.as_bytes());
        let _ = sink.flush();
    }

    /// The audit line qemu-ga sends to syslog for each command ("guest-ping called").
    pub fn audit(&self, msg: &str) {
        self.log(Level::Info, msg);
    }
}
