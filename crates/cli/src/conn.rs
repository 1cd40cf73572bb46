//! The unix-socket connection: reply framing, deadlines and the
//! guest-sync-delimited handshake.
//!
//! qemu-ga writes each reply as one JSON object followed by `\n`, and escapes every
//! control byte inside strings, so a reply is exactly one line. The one exception is
//! the raw 0xFF that precedes the guest-sync-delimited reply; the handshake consumes it.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qga_proto::Value;

use crate::error::{Error, Result};

/// A connected agent socket with its read buffer.
#[derive(Debug)]
pub(crate) struct SocketConn {
    stream: UnixStream,
    path: PathBuf,
    /// Received bytes in `buf[pos..end]`; the rest is room for the next read, kept
    /// initialised so that reading a multi-megabyte reply does not zero memory again.
    buf: Vec<u8>,
    /// Start of unread data in `buf`.
    pos: usize,
    /// End of received data in `buf`.
    end: usize,
    /// How far past `pos` we already looked for a newline.
    scanned: usize,
}

/// The first `\n` in `s`, 64 bytes per step with a branch-free test the compiler
/// vectorises (a byte-at-a-time search cost 14% of a download).
fn find_newline(s: &[u8]) -> Option<usize> {
    let mut chunks = s.chunks_exact(64);
    let mut base = 0;
    for c in &mut chunks {
        if c.iter().fold(false, |acc, &b| acc | (b == b'\n')) {
            break;
        }
        base += 64;
    }
    s[base..].iter().position(|&b| b == b'\n').map(|i| base + i)
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(ErrorKind::TimedOut, "timed out")
}

/// Time left until `deadline`, or a TimedOut error.
fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(timed_out())
    } else {
        Ok(left)
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

/// A fresh handshake id: random enough that a stale reply from someone else's
/// handshake cannot match, and below 2^53 so any JSON reader keeps it exact.
pub(crate) fn random_id() -> i64 {
    let mut b = [0u8; 8];
    let from_urandom = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    let mut n = u64::from_ne_bytes(b);
    if !from_urandom {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        n = (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32);
    }
    (n & ((1 << 53) - 1)) as i64
}

impl SocketConn {
    /// Connects, turning the common failures into operator-level errors.
    pub fn connect(path: &Path) -> Result<SocketConn> {
        let stream = UnixStream::connect(path).map_err(|source| {
            if source.kind() == ErrorKind::NotFound {
                Error::NoSocket {
                    path: path.to_path_buf(),
                }
            } else {
                Error::Connect {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Ok(SocketConn {
            stream,
            path: path.to_path_buf(),
            buf: Vec::new(),
            pos: 0,
            end: 0,
            scanned: 0,
        })
    }

    /// Resynchronises: sends 0xFF (which resets the agent's parser) and
    /// guest-sync-delimited with a fresh id, skips everything up to a 0xFF byte, and
    /// repeats until the reply carries our id. Stale replies (of an earlier client, or
    /// of our own abandoned requests) are thrown away on the way.
    pub fn handshake(&mut self, timeout: Duration) -> Result<()> {
        let id = random_id();
        let mut req = vec![0xFF];
        req.extend_from_slice(
            format!(r#"{{"execute":"guest-sync-delimited","arguments":{{"id":{id}}}}}"#).as_bytes(),
        );
        req.push(b'\n');
        let deadline = Instant::now() + timeout;
        let no_answer = |e: std::io::Error, this: &SocketConn| {
            if is_timeout(&e) {
                Error::NoHandshake {
                    target: this.path.display().to_string(),
                    waited: timeout,
                }
            } else {
                Error::io(format!("{}: handshake", this.path.display()), e)
            }
        };
        self.write_all(&req, deadline)
            .map_err(|e| no_answer(e, self))?;
        loop {
            self.skip_past_delimiter(deadline)
                .map_err(|e| no_answer(e, self))?;
            let line = self.read_line(deadline).map_err(|e| no_answer(e, self))?;
            if let Some(Ok(Value::Dict(d))) = qga_proto::json::parse_one(&line) {
                if d.get("return") == Some(&Value::Int(id)) {
                    return Ok(());
                }
            }
        }
    }

    /// Writes all of `bytes` before `deadline`.
    pub fn write_all(&mut self, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
        while !bytes.is_empty() {
            self.stream.set_write_timeout(Some(remaining(deadline)?))?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(timed_out()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; EOF is an error (the agent never closes first
    /// while a reply is owed).
    fn fill(&mut self, deadline: Instant) -> std::io::Result<()> {
        if self.pos > 0 && self.pos * 2 >= self.end {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let want = (self.end - self.pos).clamp(64 << 10, 8 << 20);
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        loop {
            remaining(deadline).and_then(|t| self.stream.set_read_timeout(Some(t)))?;
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the agent closed the connection",
                    ))
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(timed_out()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Discards input up to and including the next 0xFF byte.
    fn skip_past_delimiter(&mut self, deadline: Instant) -> std::io::Result<()> {
        loop {
            if let Some(i) = self.buf[self.pos..self.end].iter().position(|&b| b == 0xFF) {
                self.pos += i + 1;
                self.scanned = 0;
                return Ok(());
            }
            self.pos = self.end;
            self.scanned = 0;
            self.fill(deadline)?;
        }
    }

    /// The next reply line, without its `\n`.
    pub fn read_line(&mut self, deadline: Instant) -> std::io::Result<Vec<u8>> {
        self.with_line(deadline, |line| line.to_vec())
    }

    /// Hands the next reply line, without its `\n`, to `f` in place (no copy of a
    /// multi-megabyte reply).
    pub fn with_line<T>(
        &mut self,
        deadline: Instant,
        f: impl FnOnce(&[u8]) -> T,
    ) -> std::io::Result<T> {
        loop {
            let start = self.pos + self.scanned;
            if let Some(i) = find_newline(&self.buf[start..self.end]) {
                let end = start + i;
                let line = &self.buf[self.pos..end];
                self.pos = end + 1;
                self.scanned = 0;
                return Ok(f(line));
            }
            self.scanned = self.end - self.pos;
            self.fill(deadline)?;
        }
    }

    /// Whether the error means "no reply in time".
    pub fn is_timeout(e: &std::io::Error) -> bool {
        is_timeout(e)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::find_newline;

    #[test]
    fn newline_found_in_every_position() {
        for len in [0, 1, 63, 64, 65, 127, 128, 200] {
            let mut s = vec![b'x'; len];
            assert_eq!(find_newline(&s), None, "len {len}");
            for at in 0..len {
                s[at] = b'\n';
                assert_eq!(find_newline(&s), Some(at), "len {len} at {at}");
                // The first of two.
                if at + 1 < len {
                    s[len - 1] = b'\n';
                    assert_eq!(find_newline(&s), Some(at), "len {len} at {at}");
                    s[len - 1] = b'x';
                }
                s[at] = b'x';
            }
        }
    }
}
