//! The benchmark's client: raw requests out, replies split and parsed by the same
//! streaming JSON parser the agent uses (`qga_proto::json::Streamer`), and a pipelined
//! mode that keeps up to `window` requests in flight while it reads and checks the
//! replies, so client work overlaps the agent's.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use qga_proto::json::{Message, Streamer};
use qga_proto::{Dict, Value};

/// Bytes read from the socket at once.
const READ_SIZE: usize = 1 << 20;
/// Small requests are gathered into writes of about this size.
const BATCH: usize = 64 << 10;
/// A reply that takes longer than this is a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to an agent.
pub struct Conn {
    stream: UnixStream,
    streamer: Streamer,
    pending: VecDeque<Message>,
    buf: Vec<u8>,
}

/// Takes the i-th reply, parsed.
type OnReply<'f> = &'f mut dyn FnMut(usize, Value) -> Result<(), String>;
/// Takes received bytes as they come; returns how many replies they completed.
type OnBytes<'f> = &'f mut dyn FnMut(&[u8]) -> Result<usize, String>;

/// How replies are split off the stream during a pipeline, and who gets them.
enum Framing<'f> {
    /// Parsed by the JSON streamer.
    Json(OnReply<'f>),
    /// As raw bytes, the moment they arrive: the caller decodes a large reply while
    /// the rest of it is still on its way.
    Stream(OnBytes<'f>),
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(stream: UnixStream) -> Result<Conn, String> {
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            // Replies are not bound by the agent's 64 MiB request limit: a 48 MiB
            // guest-file-read comes back as a 64 MiB string.
            streamer: Streamer::with_token_limit(1 << 40),
            pending: VecDeque::new(),
            buf: vec![0; READ_SIZE],
        })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        (&self.stream)
            .write_all(bytes)
            .map_err(|e| format!("send: {e}"))
    }

    /// The next reply, parsed.
    pub fn recv(&mut self) -> Result<Value, String> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return m
                    .map_err(|e| format!("bad JSON from agent: {}", String::from_utf8_lossy(&e)));
            }
            let n = match (&self.stream).read(&mut self.buf) {
                Ok(0) => return Err("agent closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("recv: {e}")),
            };
            let pending = &mut self.pending;
            self.streamer
                .feed(&self.buf[..n], &mut |m| pending.push_back(m));
        }
    }

    /// Sends one request and returns the `return` member of its reply.
    pub fn cmd(&mut self, request: &[u8]) -> Result<Value, String> {
        self.send(request)?;
        returned(self.recv()?)
    }

    /// Sends `n` requests (`request(i)` gives the bytes of the i-th) with at most
    /// `window` unanswered at any time, and hands each reply in order to `on_reply`.
    ///
    /// One thread does both directions over a non-blocking socket with `poll`: no
    /// hand-off between a writer and a reader thread per request, which on a small
    /// machine cost the client more than the agent spent answering. Small requests
    /// that the window allows are gathered into one write.
    pub fn pipeline<'a, R, F>(
        &mut self,
        n: usize,
        window: usize,
        request: R,
        mut on_reply: F,
    ) -> Result<(), String>
    where
        R: Fn(usize) -> &'a [u8],
        F: FnMut(usize, Value) -> Result<(), String>,
    {
        self.run_pipeline(n, window, &request, Framing::Json(&mut on_reply))
    }

    /// [`Conn::pipeline`], handing the received bytes to `on_bytes` as they arrive
    /// (it returns how many replies they completed), for callers that decode large
    /// replies on the fly.
    pub fn pipeline_stream<'a, R, F>(
        &mut self,
        n: usize,
        window: usize,
        request: R,
        mut on_bytes: F,
    ) -> Result<(), String>
    where
        R: Fn(usize) -> &'a [u8],
        F: FnMut(&[u8]) -> Result<usize, String>,
    {
        self.run_pipeline(n, window, &request, Framing::Stream(&mut on_bytes))
    }

    fn run_pipeline<'a>(
        &mut self,
        n: usize,
        window: usize,
        request: &dyn Fn(usize) -> &'a [u8],
        framing: Framing<'_>,
    ) -> Result<(), String> {
        self.stream
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let result = self.pipeline_nonblocking(n, window.max(1), request, framing);
        let restored = self.stream.set_nonblocking(false);
        result.and(restored.map_err(|e| e.to_string()))
    }

    fn pipeline_nonblocking<'a>(
        &mut self,
        n: usize,
        window: usize,
        request: &dyn Fn(usize) -> &'a [u8],
        mut framing: Framing<'_>,
    ) -> Result<(), String> {
        let (mut started, mut replied) = (0, 0);
        // What is being written: a batch of small requests, or one large request
        // written from where it lies; and how much of it went out.
        let mut batch = Vec::with_capacity(BATCH * 2);
        let mut big: &[u8] = &[];
        let mut off = 0;
        while replied < n {
            // Write as much as the window and the socket take.
            loop {
                let out = if big.is_empty() { &batch[..] } else { big };
                if off == out.len() {
                    batch.clear();
                    big = &[];
                    off = 0;
                    // Refill once half the window is free, not after every reply:
                    // requests then go out (and wake the agent) in groups.
                    let low = window / 2;
                    if started - replied > low && started < n {
                        break;
                    }
                    while started < n && started - replied < window {
                        let req = request(started);
                        if req.len() >= BATCH {
                            if batch.is_empty() {
                                big = req;
                                started += 1;
                            }
                            break;
                        }
                        batch.extend_from_slice(req);
                        started += 1;
                        if batch.len() >= BATCH {
                            break;
                        }
                    }
                    if batch.is_empty() && big.is_empty() {
                        break;
                    }
                    continue;
                }
                match (&self.stream).write(&out[off..]) {
                    Ok(k) => off += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("send: {e}")),
                }
            }
            // Hand over a reply already parsed.
            if let Framing::Json(on_reply) = &mut framing {
                if let Some(m) = self.pending.pop_front() {
                    let v = m.map_err(|e| {
                        format!("bad JSON from agent: {}", String::from_utf8_lossy(&e))
                    })?;
                    on_reply(replied, v)?;
                    replied += 1;
                    continue;
                }
            }
            let unsent = off
                < if big.is_empty() {
                    batch.len()
                } else {
                    big.len()
                };
            self.wait(unsent)?;
            match (&self.stream).read(&mut self.buf) {
                Ok(0) => return Err("agent closed the connection".into()),
                Ok(k) => match &mut framing {
                    Framing::Json(_) => {
                        let pending = &mut self.pending;
                        self.streamer
                            .feed(&self.buf[..k], &mut |m| pending.push_back(m));
                    }
                    Framing::Stream(on_bytes) => replied += on_bytes(&self.buf[..k])?,
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(format!("recv: {e}")),
            }
        }
        Ok(())
    }

    /// Waits until the socket is readable (or writable too, when `write` is set).
    fn wait(&self, write: bool) -> Result<(), String> {
        let mut pfd = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN | if write { libc::POLLOUT } else { 0 },
            revents: 0,
        };
        let ms = i32::try_from(REPLY_TIMEOUT.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one pollfd we own, for the connection's open descriptor.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r == 0 {
            return Err("no reply within the time limit".into());
        }
        let e = std::io::Error::last_os_error();
        if r < 0 && e.kind() != ErrorKind::Interrupted {
            return Err(format!("poll: {e}"));
        }
        Ok(())
    }
}

/// The first `b` in `s`, eight bytes a time (a 64 MiB reply is scanned once).
pub fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(b);
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ pattern;
        if v.wrapping_sub(LO) & !v & HI != 0 {
            return c.iter().position(|&x| x == b).map(|i| at + i);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&x| x == b)
        .map(|i| at + i)
}

/// The `return` member of a reply, or its error's `desc` as the error.
pub fn returned(reply: Value) -> Result<Value, String> {
    let Value::Dict(mut d) = reply else {
        return Err(format!("reply is not an object: {}", show(&reply)));
    };
    if let Some(v) = d.remove("return") {
        return Ok(v);
    }
    let desc = d
        .get("error")
        .and_then(Value::as_dict)
        .and_then(|e| e.get("desc"))
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned());
    Err(desc.unwrap_or_else(|| format!("unexpected reply {}", show(&Value::Dict(d)))))
}

/// An integer member of an object.
pub fn int(d: &Dict, key: &str) -> Result<i64, String> {
    match d.get(key) {
        Some(Value::Int(i)) => Ok(*i),
        _ => Err(format!("no integer '{key}' in reply")),
    }
}

/// The object inside a `return`.
pub fn dict(v: &Value) -> Result<&Dict, String> {
    v.as_dict()
        .ok_or_else(|| format!("return is not an object: {}", show(v)))
}

/// A reply shortened for messages.
fn show(v: &Value) -> String {
    let json = v.to_json();
    let s = String::from_utf8_lossy(&json[..json.len().min(200)]).into_owned();
    s
}
