//! [`Client`]: typed, raw and pipelined calls to one guest agent, over a unix socket or
//! through libvirt.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::Path;
use std::time::{Duration, Instant};

use qga_proto::{Command, Dict, FromQapi, Value};

use crate::conn::SocketConn;
use crate::error::{Error, Result};
use crate::libvirt::Libvirt;

/// The default time to wait for one reply (and for the handshake).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One reply, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The parsed reply object (`{"return": ...}` or `{"error": ...}`).
    pub value: Value,
    /// Its bytes on the wire, without the trailing newline.
    pub raw: Vec<u8>,
}

impl Reply {
    fn parse(command: &str, raw: Vec<u8>) -> Result<Reply> {
        let value = parse_value(command, &raw)?;
        Ok(Reply { value, raw })
    }

    /// The `return` value, or the error the reply carries.
    pub fn into_return(self, command: &str) -> Result<Value> {
        returned(command, self.value)
    }
}

/// Parses one reply line.
fn parse_value(command: &str, raw: &[u8]) -> Result<Value> {
    // Replies are not bound by the agent's 64 MiB request limit (a 48 MiB
    // guest-file-read comes back as a 64 MiB string); only whole lines get here.
    let streamer = qga_proto::json::Streamer::with_token_limit(1 << 40);
    let out = qga_proto::json::parse_one_with(streamer, raw);
    match out {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(Error::Protocol {
            command: command.to_string(),
            detail: String::from_utf8_lossy(&e).into_owned(),
        }),
        None => Err(Error::Protocol {
            command: command.to_string(),
            detail: format!("incomplete JSON: {}", String::from_utf8_lossy(raw)),
        }),
    }
}

/// The `return` value of a parsed reply, or the error the reply carries.
fn returned(command: &str, value: Value) -> Result<Value> {
    let Value::Dict(mut d) = value else {
        return Err(protocol(command, "the reply is not an object"));
    };
    if let Some(v) = d.remove("return") {
        return Ok(v);
    }
    if let Some(Value::Dict(e)) = d.get("error") {
        let s = |k: &str| {
            e.get(k)
                .and_then(Value::as_bytes)
                .map(qga_proto::qapi::string_from_bytes)
                .unwrap_or_default()
        };
        return Err(Error::from_reply(command, &s("class"), &s("desc")));
    }
    Err(protocol(
        command,
        "neither \"return\" nor \"error\" in the reply",
    ))
}

fn protocol(command: &str, detail: impl Into<String>) -> Error {
    Error::Protocol {
        command: command.to_string(),
        detail: detail.into(),
    }
}

/// A request sent with [`Client::send`] whose reply has not been read yet. Replies come
/// back in request order, so these must be received in the order they were sent.
#[must_use = "every sent request's reply must be received (or the client drained)"]
#[derive(Debug)]
pub struct Pending<R> {
    seq: u64,
    command: &'static str,
    _returns: PhantomData<fn() -> R>,
}

impl<R> Pending<R> {
    /// The command's wire name.
    pub fn command(&self) -> &'static str {
        self.command
    }
}

#[derive(Debug)]
enum Transport {
    Socket {
        conn: SocketConn,
        synced: bool,
    },
    Libvirt {
        virsh: Libvirt,
        /// Replies of requests already run (virsh is synchronous).
        done: VecDeque<Result<Vec<u8>>>,
    },
}

/// A connection to one guest agent.
#[derive(Debug)]
pub struct Client {
    transport: Transport,
    name: String,
    timeout: Duration,
    next_seq: u64,
    /// (sequence number, command) of requests whose replies are owed, oldest first.
    in_flight: VecDeque<(u64, String)>,
}

impl Client {
    /// Connects to an agent's unix socket (QEMU's `org.qemu.guest_agent.0` chardev, or
    /// an agent run with `-m unix-listen`) and synchronises with guest-sync-delimited.
    pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Client> {
        let path = path.as_ref();
        let mut conn = SocketConn::connect(path)?;
        conn.handshake(timeout)?;
        Ok(Client {
            transport: Transport::Socket { conn, synced: true },
            name: path.display().to_string(),
            timeout,
            next_seq: 0,
            in_flight: VecDeque::new(),
        })
    }

    /// Talks to the agent of a libvirt domain through `virsh qemu-agent-command`
    /// (libvirt owns the socket). Nothing is run until the first call.
    pub fn libvirt(domain: &str, timeout: Duration) -> Client {
        Client {
            transport: Transport::Libvirt {
                virsh: Libvirt::new(domain),
                done: VecDeque::new(),
            },
            name: domain.to_string(),
            timeout,
            next_seq: 0,
            in_flight: VecDeque::new(),
        }
    }

    /// Whether requests go through libvirt (one `virsh` run each, request on its
    /// command line: no pipelining, and each request under
    /// [`LIBVIRT_MAX_REQUEST`](crate::LIBVIRT_MAX_REQUEST)).
    pub fn is_libvirt(&self) -> bool {
        matches!(self.transport, Transport::Libvirt { .. })
    }

    /// Transfer settings that suit the transport: through libvirt, one request at a
    /// time, and upload chunks small enough for virsh's command line.
    pub fn transfer_options(&self, upload: bool) -> crate::TransferOptions {
        if self.is_libvirt() && !upload {
            crate::TransferOptions {
                chunk: 1 << 20,
                window: 1,
                ..Default::default()
            }
        } else if self.is_libvirt() {
            crate::TransferOptions {
                chunk: 48 << 10,
                window: 1,
                ..Default::default()
            }
        } else {
            crate::TransferOptions::default()
        }
    }

    /// What this client talks to (socket path or domain), for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time allowed for each reply.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the time allowed for each reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Calls a command and decodes its return value.
    pub fn call<C: Command>(&mut self, args: C) -> Result<C::Returns> {
        let p = self.send(&args)?;
        self.receive(p)
    }

    /// Calls a command by name with an optional arguments object; returns the `return`
    /// value as is.
    pub fn execute(&mut self, command: &str, arguments: Option<Dict>) -> Result<Value> {
        let mut req = Dict::new();
        req.insert("execute", Value::str(command));
        if let Some(a) = arguments {
            req.insert("arguments", Value::Dict(a));
        }
        self.call_raw(&Value::Dict(req))?.into_return(command)
    }

    /// Sends any request object and returns the reply as received, error replies
    /// included (only transport failures are `Err`).
    pub fn call_raw(&mut self, request: &Value) -> Result<Reply> {
        let command = request
            .as_dict()
            .and_then(|d| d.get("execute"))
            .and_then(Value::as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_else(|| "request".into());
        let seq = self.send_bytes(&command, &request.to_json())?;
        let raw = self.receive_bytes(seq, &command)?;
        Reply::parse(&command, raw)
    }

    /// Sends a command without waiting for its reply (pipelining: send several, then
    /// [`receive`](Self::receive) them in the same order).
    pub fn send<C: Command>(&mut self, args: &C) -> Result<Pending<C::Returns>> {
        let mut req = Dict::new();
        req.insert("execute", Value::str(C::NAME));
        let a = args.to_qapi();
        if a.as_dict().is_some_and(|d| !d.is_empty()) {
            req.insert("arguments", a);
        }
        let seq = self.send_bytes(C::NAME, &Value::Dict(req).to_json())?;
        Ok(Pending {
            seq,
            command: C::NAME,
            _returns: PhantomData,
        })
    }

    /// Reads the reply of a request sent with [`send`](Self::send).
    pub fn receive<R: FromQapi>(&mut self, pending: Pending<R>) -> Result<R> {
        let raw = self.receive_bytes(pending.seq, pending.command)?;
        let v = Reply::parse(pending.command, raw)?.into_return(pending.command)?;
        R::from_qapi(Some(&v), qga_proto::Path::REPLY)
            .map_err(|e| protocol(pending.command, e.to_string()))
    }

    /// How many replies are owed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Reads and discards every owed reply (after an error in the middle of a
    /// pipeline), so the next call starts clean.
    pub fn drain(&mut self) {
        while let Some((seq, command)) = self.in_flight.front().cloned() {
            if self.receive_bytes(seq, &command).is_err() {
                break;
            }
        }
    }

    /// Sends a command that answers only on failure (guest-shutdown): waits up to
    /// `wait` for an error reply; silence or a closed connection count as success.
    pub fn call_no_reply<C: Command>(&mut self, args: C, wait: Duration) -> Result<()> {
        if let Transport::Libvirt { virsh, .. } = &self.transport {
            let mut req = Dict::new();
            req.insert("execute", Value::str(C::NAME));
            req.insert("arguments", args.to_qapi());
            virsh.request(C::NAME, &Value::Dict(req).to_json(), None)?;
            return Ok(());
        }
        let saved = self.timeout;
        self.timeout = wait;
        let r = self.call(args);
        self.timeout = saved;
        match r {
            Ok(_) => Ok(()),
            Err(Error::Timeout { .. }) => Ok(()),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn send_bytes(&mut self, command: &str, json: &[u8]) -> Result<u64> {
        let timeout = self.timeout;
        let seq = self.next_seq;
        match &mut self.transport {
            Transport::Socket { conn, synced } => {
                if !*synced {
                    if !self.in_flight.is_empty() {
                        return Err(Error::Failed(
                            "internal: request sent while abandoned replies are owed".into(),
                        ));
                    }
                    conn.handshake(timeout)?;
                    *synced = true;
                }
                let mut owned;
                let line = if json.ends_with(b"\n") {
                    json
                } else {
                    owned = json.to_vec();
                    owned.push(b'\n');
                    &owned[..]
                };
                if let Err(e) = conn.write_all(line, Instant::now() + timeout) {
                    *synced = false;
                    self.in_flight.clear();
                    return Err(if SocketConn::is_timeout(&e) {
                        Error::Timeout {
                            command: command.to_string(),
                            waited: timeout,
                        }
                    } else {
                        Error::io(format!("{}: sending {command}", conn.path().display()), e)
                    });
                }
            }
            Transport::Libvirt { virsh, done } => {
                let json = json.strip_suffix(b"\n").unwrap_or(json);
                done.push_back(virsh.request(command, json, Some(timeout)));
            }
        }
        self.next_seq += 1;
        self.in_flight.push_back((seq, command.to_string()));
        Ok(seq)
    }

    fn receive_bytes(&mut self, seq: u64, command: &str) -> Result<Vec<u8>> {
        self.receive_with(seq, command, <[u8]>::to_vec)
    }

    /// The reply of the request numbered `seq`, handed to `f` as its bytes on the
    /// wire without the newline (in place: the connection's buffer, not a copy).
    fn receive_with<T>(
        &mut self,
        seq: u64,
        command: &str,
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        match self.in_flight.front() {
            Some((s, _)) if *s == seq => {}
            _ => {
                return Err(Error::Failed(format!(
                    "internal: reply to {command} requested out of order or after it was abandoned"
                )))
            }
        }
        self.in_flight.pop_front();
        let timeout = self.timeout;
        match &mut self.transport {
            Transport::Socket { conn, synced } => {
                match conn.with_line(Instant::now() + timeout, f) {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        // The stream position is unknown now: resync before reuse.
                        *synced = false;
                        self.in_flight.clear();
                        Err(if SocketConn::is_timeout(&e) {
                            Error::Timeout {
                                command: command.to_string(),
                                waited: timeout,
                            }
                        } else {
                            Error::io(
                                format!("{}: waiting for {command}", conn.path().display()),
                                e,
                            )
                        })
                    }
                }
            }
            Transport::Libvirt { done, .. } => match done.pop_front() {
                Some(r) => r.map(|raw| f(&raw)),
                None => Err(Error::Failed("internal: libvirt reply missing".into())),
            },
        }
    }

    /// The `return` value of a request sent with [`send`](Self::send) or
    /// [`send_line`](Self::send_line), parsed straight from the receive buffer.
    pub(crate) fn receive_value<R>(&mut self, pending: Pending<R>) -> Result<Value> {
        let command = pending.command;
        let value = self.receive_with(pending.seq, command, |raw| parse_value(command, raw))??;
        returned(command, value)
    }

    /// Sends a request already serialized by the caller as one JSON line (ending in
    /// `\n` for the socket; libvirt gets it without): for multi-megabyte requests that
    /// would otherwise be built as a [`Value`] and copied twice.
    pub(crate) fn send_line<C: Command>(&mut self, line: &[u8]) -> Result<Pending<C::Returns>> {
        let seq = self.send_bytes(C::NAME, line)?;
        Ok(Pending {
            seq,
            command: C::NAME,
            _returns: PhantomData,
        })
    }
}
