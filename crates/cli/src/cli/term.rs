//! The terminal: password prompts without echo, and the copy progress bar.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

/// Bytes for people: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Restores the terminal's echo flag when dropped.
struct EchoOff {
    fd: i32,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: i32) -> Option<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is an open terminal descriptor and `t` a valid out-pointer.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return None;
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        t.c_lflag |= libc::ECHONL;
        // SAFETY: as above, with a termios obtained from tcgetattr.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
            return None;
        }
        Some(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

fn read_line_no_echo(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let _guard = EchoOff::new(0);
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The password for `user`: typed twice on the terminal without echo, or the first
/// line of stdin when it is not a terminal.
pub fn read_password(user: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password from stdin: {e}"))?;
        let pw = line.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err("no password on stdin".into());
        }
        return Ok(pw);
    }
    let a = read_line_no_echo(&format!("New password for {user}: "))
        .map_err(|e| format!("reading the password: {e}"))?;
    let b = read_line_no_echo("Retype it: ").map_err(|e| format!("reading the password: {e}"))?;
    if a != b {
        return Err("the passwords do not match".into());
    }
    if a.is_empty() {
        return Err("empty password".into());
    }
    Ok(a)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub struct Progress {
    label: String,
    enabled: bool,
    start: Instant,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A bar labelled `label`; `wanted` false (fan-out, --json) keeps it silent.
    pub fn new(label: &str, wanted: bool) -> Progress {
        Progress {
            label: label.to_string(),
            enabled: wanted && std::io::stderr().is_terminal(),
            start: Instant::now(),
            last: None,
            drawn: false,
        }
    }

    /// Redraws (at most 10 times a second).
    pub fn update(&mut self, done: u64, total: Option<u64>) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now - l < Duration::from_millis(100))
            && total != Some(done)
        {
            return;
        }
        self.last = Some(now);
        self.drawn = true;
        let secs = (now - self.start).as_secs_f64().max(1e-3);
        let rate = format!("{}/s", human_bytes((done as f64 / secs) as u64));
        let line = match total {
            Some(t) if t > 0 => {
                let frac = (done as f64 / t as f64).min(1.0);
                let width = 20;
                let fill = (frac * width as f64) as usize;
                format!(
                    "{} [{}{}] {:3.0}% {}/{} {}",
                    self.label,
                    "#".repeat(fill),
                    ".".repeat(width - fill),
                    frac * 100.0,
                    human_bytes(done),
                    human_bytes(t),
                    rate
                )
            }
            _ => format!("{} {} {}", self.label, human_bytes(done), rate),
        };
        let line: String = line.chars().take(79).collect();
        eprint!("\r{line:<79}");
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.drawn {
            eprint!("\r{:79}\r", "");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
