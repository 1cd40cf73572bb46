//! The benchmark's client: raw requests out, replies split and parsed by the same
//! streaming JSON parser the agent uses (`qga_proto::json::Streamer`), and a pipelined
//! mode where a writer thread keeps up to `window` requests in flight while the calling
//! thread reads and checks the replies, so client work overlaps the agent's.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
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
    pub fn pipeline<'a, R, F>(
        &mut self,
        n: usize,
        window: usize,
        request: R,
        mut on_reply: F,
    ) -> Result<(), String>
    where
        R: Fn(usize) -> &'a [u8] + Sync,
        F: FnMut(usize, Value) -> Result<(), String>,
    {
        let writer_stream = self.stream.try_clone().map_err(|e| e.to_string())?;
        // A window of at least `n` needs no credits: the socket's buffer and the agent's
        // own queue limit are the only brakes (no thread handoff per request).
        let window = window.min(n);
        let unlimited = window == n;
        let (credit_tx, credit_rx) = mpsc::sync_channel::<()>(window.max(1));
        for _ in 0..window.max(1) {
            let _ = credit_tx.send(());
        }
        let request = &request;
        std::thread::scope(|s| {
            let writer = s.spawn(move || {
                write_requests(
                    &writer_stream,
                    n,
                    request,
                    (!unlimited).then_some(&credit_rx),
                )
            });
            let mut result = Ok(());
            for i in 0..n {
                let reply = self.recv().and_then(|v| on_reply(i, v));
                if let Err(e) = reply {
                    result = Err(e);
                    break;
                }
                if !unlimited {
                    let _ = credit_tx.send(());
                }
            }
            if result.is_err() {
                // Unblock the writer: it may wait for a credit or on a full socket.
                drop(credit_tx);
                let _ = self.stream.shutdown(std::net::Shutdown::Both);
            }
            let written = writer
                .join()
                .unwrap_or_else(|_| Err("writer panicked".into()));
            result.and(written)
        })
    }
}

/// The writer side of [`Conn::pipeline`]: one credit per request; small requests that
/// have credits are batched into one `write`.
fn write_requests<'a>(
    mut stream: &UnixStream,
    n: usize,
    request: &(impl Fn(usize) -> &'a [u8] + Sync),
    credits: Option<&mpsc::Receiver<()>>,
) -> Result<(), String> {
    let mut batch = Vec::with_capacity(BATCH * 2);
    let mut i = 0;
    let take = |blocking: bool| match credits {
        None => true,
        Some(c) if blocking => c.recv().is_ok(),
        Some(c) => c.try_recv().is_ok(),
    };
    while i < n {
        if !take(true) {
            return Err("reader stopped".into());
        }
        let req = request(i);
        i += 1;
        if req.len() >= BATCH {
            stream.write_all(req).map_err(|e| format!("send: {e}"))?;
            continue;
        }
        batch.extend_from_slice(req);
        while i < n && batch.len() < BATCH && take(false) {
            batch.extend_from_slice(request(i));
            i += 1;
        }
        stream.write_all(&batch).map_err(|e| format!("send: {e}"))?;
        batch.clear();
    }
    Ok(())
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
