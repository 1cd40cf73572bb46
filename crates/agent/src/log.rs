//! Logging as qemu-ga does it: lines `<unix-seconds>.<µs>: <level>: <msg>` to stderr or
//! the log file; only error and critical unless `-v`; nothing at all while frozen (a
//! write to a frozen filesystem would hang the agent).
//!
//! Two kinds of lines go to syslog when a syslog socket is set ([`Logger::set_syslog`]):
//! - qemu-ga's own (`slog`, [`Logger::audit`]): facility user, severity info,
//!   `qemu-ga: info: guest-ping called`, byte for byte as qemu-ga sends them. Without a
//!   syslog socket (qemu-ga then loses them) they are logged at level info instead.
//! - the policy's audit lines ([`Logger::audit_event`], see [`crate::policy::audit`]):
//!   facility authpriv, severity notice (warning for errors and refusals), with the pid.
//!   Authpriv is where sudo logs the commands it runs as root: root-only files
//!   (`/var/log/auth.log`, `/var/log/secure`) that security tooling already watches,
//!   fitting lines that name users and paths. When syslog cannot take a line it goes to
//!   the log file (or stderr) as `message: audit: ...`, whatever `-v` says.
//!
//! While frozen, nothing is sent at all (journald itself may be stuck writing to a
//! frozen disk); audit lines are kept (at most [`HELD_MAX`]) and sent after the thaw.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sys::syslog::{self, Syslog};

/// Audit lines kept while frozen, at most; later ones are counted and dropped.
pub const HELD_MAX: usize = 64;

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
    syslog: OnceLock<Syslog>,
    held: Mutex<Held>,
}

/// Audit lines that arrived while logging was off.
#[derive(Default)]
struct Held {
    lines: Vec<(SystemTime, bool, String)>,
    dropped: usize,
}

impl Logger {
    /// A logger writing to `sink`.
    pub fn new(sink: Box<dyn Write + Send>, verbose: bool) -> Self {
        Logger {
            sink: Mutex::new(sink),
            verbose,
            enabled: AtomicBool::new(true),
            syslog: OnceLock::new(),
            held: Mutex::new(Held::default()),
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

    /// Sends qemu-ga's syslog lines and the audit lines to `syslog` from now on.
    pub fn set_syslog(&self, syslog: Syslog) {
        let _ = self.syslog.set(syslog);
    }

    /// Turns all logging on or off (off while frozen). Turning it on sends the audit
    /// lines held meanwhile.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
        if on {
            let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()));
            for (when, ok, line) in held.lines {
                self.emit_audit(when, ok, &line);
            }
            if held.dropped > 0 {
                let line = format!(
                    "audit: {} more audit lines were dropped while frozen",
                    held.dropped
                );
                self.emit_audit(SystemTime::now(), false, &line);
            }
        }
    }

    /// Logs one line at `level`.
    pub fn log(&self, level: Level, msg: &str) {
        if !self.enabled.load(Ordering::SeqCst) || (!self.verbose && level > Level::Critical) {
            return;
        }
        self.write_line(SystemTime::now(), level, msg);
    }

    fn write_line(&self, when: SystemTime, level: Level, msg: &str) {
        let t = when.duration_since(UNIX_EPOCH).unwrap_or_default();
        let line = format!(
            "{}.{:06}: {}: {}\n",
            t.as_secs(),
            t.subsec_micros(),
            level.as_str(),
            msg
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = sink.write_all(line.as_bytes());
        let _ = sink.flush();
    }

    /// qemu-ga's `slog` ("guest-ping called"): to syslog as `info: <msg>` (user.info),
    /// or at level info when there is no syslog socket. Nothing while frozen.
    pub fn audit(&self, msg: &str) {
        if !self.enabled.load(Ordering::SeqCst) {
            return;
        }
        if let Some(s) = self.syslog.get() {
            let pri = syslog::FACILITY_USER | syslog::SEVERITY_INFO;
            let line = format!("{}: {msg}", Level::Info.as_str());
            if s.send(pri, None, &line, SystemTime::now()).is_ok() {
                return;
            }
        }
        self.log(Level::Info, msg);
    }

    /// A policy audit line (see [`crate::policy::audit`]): `ok` is false for errors and
    /// refusals. Held while frozen, sent after the thaw.
    pub fn audit_event(&self, ok: bool, line: &str) {
        let now = SystemTime::now();
        if !self.enabled.load(Ordering::SeqCst) {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if held.lines.len() < HELD_MAX {
                held.lines.push((now, ok, line.to_string()));
            } else {
                held.dropped += 1;
            }
            return;
        }
        self.emit_audit(now, ok, line);
    }

    fn emit_audit(&self, when: SystemTime, ok: bool, line: &str) {
        if let Some(s) = self.syslog.get() {
            let severity = if ok {
                syslog::SEVERITY_NOTICE
            } else {
                syslog::SEVERITY_WARNING
            };
            let pri = syslog::FACILITY_AUTHPRIV | severity;
            if s.send(pri, Some(std::process::id()), line, when).is_ok() {
                return;
            }
        }
        self.write_line(when, Level::Message, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Collects datagrams on a thread, as a logger does (the socket queue is short).
    struct Collector(Arc<Mutex<Vec<String>>>);

    impl Collector {
        fn new(sock: UnixDatagram) -> Self {
            let got = Arc::new(Mutex::new(Vec::new()));
            let g = got.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.recv(&mut buf) {
                    g.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            });
            Collector(got)
        }

        fn take(&self) -> Vec<String> {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    #[test]
    fn frozen_holds_audit_lines_drops_qemu_ga_lines_and_sends_after_thaw() {
        let dir = std::env::temp_dir().join(format!("qga-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let sock = Collector::new(UnixDatagram::bind(&path).unwrap());
        let file = Shared::default();
        let log = Logger::new(Box::new(file.clone()), true);
        log.set_syslog(Syslog::new(&path, "t"));

        log.audit("guest-ping called");
        log.audit_event(true, "audit: before");
        let got = sock.take();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("<14>") && got[0].ends_with(" t: info: guest-ping called"));
        let pid = std::process::id();
        assert!(
            got[1].starts_with("<85>") && got[1].ends_with(&format!(" t[{pid}]: audit: before"))
        );

        log.set_enabled(false);
        log.audit("guest-fsfreeze called");
        log.audit_event(true, "audit: frozen ok");
        for i in 0..HELD_MAX + 5 {
            log.audit_event(false, &format!("audit: refused {i}"));
        }
        assert!(sock.take().is_empty());
        log.set_enabled(true);
        let got = sock.take();
        assert_eq!(got.len(), HELD_MAX + 1, "{got:?}");
        assert!(got[0].starts_with("<85>") && got[0].ends_with("audit: frozen ok"));
        assert!(got[1].starts_with("<84>") && got[1].ends_with("audit: refused 0"));
        assert!(got[HELD_MAX].ends_with("audit: 6 more audit lines were dropped while frozen"));
        assert!(file.0.lock().unwrap().is_empty(), "syslog took everything");

        // No logger: audit lines fall back to the file, whatever -v says.
        std::fs::remove_file(&path).unwrap();
        let quiet = Logger::new(Box::new(file.clone()), false);
        quiet.set_syslog(Syslog::new(&path, "t"));
        quiet.audit("guest-ping called");
        quiet.audit_event(true, "audit: to the file");
        let text = String::from_utf8(file.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with(": message: audit: to the file\n"), "{text}");
        assert!(!text.contains("guest-ping"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
