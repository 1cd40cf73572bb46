//! Process lifecycle and the serving loop.
//!
//! Startup follows qemu-ga: configuration, socket activation, the frozen marker, the
//! log file, `qga.state`, signals, the channel. Then three threads, all asleep in the
//! kernel when nothing happens:
//! - `qga-reader` (the main thread) reads the channel and feeds the one JSON streamer
//!   that lives for the whole process (a client's half-sent request is continued by the
//!   next client's bytes, as in qemu-ga), so a 0xFF resync is seen even while a slow
//!   command runs;
//! - `qga-exec` runs requests one by one in arrival order and writes each reply, so
//!   replies keep request order (libvirt and Proxmox rely on it);
//! - `qga-signal` waits for SIGTERM/SIGINT: exit 0, except while frozen (ignored, as
//!   qemu-ga does, so the agent stays to thaw).
//!
//! The queue between reader and executor is bounded in bytes and count, so a host
//! that floods requests is slowed down instead of growing the agent's memory; and the
//! reader reads nothing more while 2 MiB of requests wait or 16 MiB wait or run, so it
//! parses about one guest-file-write ahead of the one being written (that keeps both
//! threads busy) and a 64 MiB one is held once, not once running and once more being
//! read (the bytes stay in the channel, parsed in the same order a moment later).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use qga_proto::json::{Message, Streamer};
use qga_proto::Value;

use crate::agent::{read_state_file, write_state_file, Agent, FIRST_HANDLE};
use crate::channel::{Channel, Conn};
use crate::config::Config;
use crate::dispatch;
use crate::log::{Level, Logger};

/// Bytes read from the channel at once: first `READ_FIRST`, which holds any ordinary
/// request, then `READ_CHUNK` once a read has filled the buffer (a guest-file-write
/// stream). Starting small keeps an idle agent from holding 64 KiB it never used.
const READ_FIRST: usize = 4 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Replies are written in pieces of this size (one write for all but big replies).
const WRITE_PIECE: usize = 256 * 1024;
/// The reader waits before reading more while requests of `QUEUED_AHEAD_MAX` bytes are
/// queued, or of `READ_AHEAD_MAX` bytes are queued or running. The first bounds what a
/// stream of writes holds while keeping a request parsed ahead of the one running
/// (1 MiB chunks: peak RSS 15 -> 10 MB at the same speed; with no request parsed
/// ahead 4 MiB writes lost 30-70% of their speed); the second keeps a request over
/// 16 MiB from being read while another one runs.
const QUEUED_AHEAD_MAX: usize = 2 << 20;
const READ_AHEAD_MAX: usize = 16 << 20;
/// Requests waiting for the executor, at most (count and approximate bytes).
const QUEUE_MAX_COUNT: usize = 1024;
const QUEUE_MAX_BYTES: usize = 160 << 20;
/// `--retry-path` interval.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Entry point of the `qga-agent` binary.
pub fn main() -> u8 {
    let config = match crate::config::from_command_line() {
        Ok(config) => config,
        Err(status) => return status,
    };
    match run(config) {
        Ok(()) => 0,
        Err(msg) => {
            // Startup failures are logged as qemu-ga does: critical lines on stderr.
            let log = Logger::stderr(false);
            for line in msg.lines() {
                log.log(Level::Critical, line);
            }
            1
        }
    }
}

/// Runs the agent until the channel fails (without `--retry-path`) or a signal stops it.
pub fn run(mut config: Config) -> Result<(), String> {
    // Socket activation was checked while parsing (it decides -D's output, as in qemu-ga).
    let activated = config
        .listen_fd
        .map(Channel::from_activation_fd)
        .transpose()?;
    let frozen = match std::fs::metadata(
        std::path::Path::new(&config.statedir).join("qga.state.isfrozen"),
    ) {
        Ok(_) => {
            eprintln!(
                "qemu-ga: previous instance left the guest frozen ({}/qga.state.isfrozen exists): \
                 starting frozen; only guest-fsfreeze-thaw and the safe commands are enabled",
                config.statedir
            );
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // qemu-ga starts frozen on any other stat error (upstream quirk kept: it errs safe).
        Err(_) => true,
    };
    let log = Logger::stderr(config.verbose);
    log.set_syslog(crate::sys::syslog::Syslog::from_env());
    if !frozen {
        if let Some(path) = &config.logfile {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| format!("unable to open specified log file: {e}"))?;
            log.set_sink(Box::new(f));
        }
    }
    let state_path = std::path::Path::new(&config.statedir).join("qga.state");
    let fd_counter = match read_state_file(&state_path) {
        Ok(Some(n)) => n,
        Ok(None) if frozen => FIRST_HANDLE,
        Ok(None) => {
            if let Err(e) = write_state_file(&state_path, FIRST_HANDLE) {
                let p = state_path.display();
                let why = crate::error::strerror(e.raw_os_error().unwrap_or(0));
                return Err(format!(
                    "failed to write persistent state to {p}: Failed to create file \u{201c}{p}.tmp\u{201d}: {why}\n\
                     unable to create state file at path {p}\nfailed to load persistent state\n\
                     error initializing guest agent"
                ));
            }
            FIRST_HANDLE
        }
        Err(e) => {
            return Err(format!(
                "failed to load persistent state: {e}\nerror initializing guest agent"
            ))
        }
    };
    if frozen {
        log.set_enabled(false);
    }

    let channel = match activated {
        Some(ch) => ch,
        None => open_channel(&config, &log)?,
    };
    if config.daemonize {
        // As qemu-ga 10: after the channel is open (a bad path fails in the foreground)
        // and before any thread starts; no pidfile while frozen (written at thaw).
        let pidfile = std::path::Path::new(&config.pidfile);
        crate::sys::daemon::daemonize((!frozen).then_some(pidfile))?;
    }
    if config.path.is_none() {
        config.path = config.method.default_path().map(String::from);
    }
    if config.harden {
        // Before any thread exists: capabilities are per thread, new ones inherit them.
        let plan = crate::policy::hardening_plan(&config, frozen);
        let done = crate::sys::harden::apply(&plan)
            .map_err(|e| format!("failed to harden the agent: {e}"))?;
        log.log(Level::Info, &done);
    }
    let agent = Arc::new(Agent::new(config, log, frozen, fd_counter));
    start_signal_thread(agent.clone())?;
    if agent.config.fsfreeze_timeout.is_some() {
        let agent = agent.clone();
        std::thread::Builder::new()
            .name("qga-fsfreeze-watchdog".into())
            .spawn(move || crate::commands::fsfreeze::run_watchdog(&agent))
            .map_err(|e| format!("failed to start the fsfreeze watchdog: {e}"))?;
    }

    let queue = Arc::new(Queue::default());
    {
        let (agent, queue) = (agent.clone(), queue.clone());
        std::thread::Builder::new()
            .name("qga-exec".into())
            .spawn(move || executor(&agent, &queue))
            .map_err(|e| format!("failed to start executor thread: {e}"))?;
    }
    serve(&agent, channel, &queue);
    Ok(())
}

/// Opens the configured channel; with `--retry-path` failures are retried every 5 s.
fn open_channel(config: &Config, log: &Logger) -> Result<Channel, String> {
    let path = config
        .path
        .clone()
        .or_else(|| config.method.default_path().map(String::from))
        .ok_or("must specify a path for this channel")?;
    loop {
        match Channel::open(config.method, &path) {
            Ok(ch) => return Ok(ch),
            Err(e) if config.retry_path => {
                let why = crate::error::strerror(e.raw_os_error().unwrap_or(0));
                log.log(
                    Level::Critical,
                    &format!("error opening channel '{path}': {why}; retrying in 5 s"),
                );
                std::thread::sleep(RETRY_INTERVAL);
            }
            Err(e) => {
                let why = crate::error::strerror(e.raw_os_error().unwrap_or(0));
                return Err(format!(
                    "error opening channel '{path}': {why}\nfailed to create guest agent channel\n\
                     failed to initialize guest agent channel\nerror initializing guest agent"
                ));
            }
        }
    }
}

/// The reader: accept a connection, read it until EOF, feed the streamer, queue each
/// message with the connection its reply goes to and its description for the audit log.
fn serve(agent: &Agent, mut channel: Channel, queue: &Queue) {
    let mut streamer = Streamer::new();
    let mut buf = vec![0u8; READ_FIRST];
    let mut clients = 0u64;
    loop {
        let conn = match channel.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                agent.log.log(
                    Level::Critical,
                    &format!("failed to accept a connection: {e}"),
                );
                match reopen(agent, &mut channel) {
                    true => continue,
                    false => return,
                }
            }
        };
        clients += 1;
        let who: Arc<str> = describe(agent.config.method, &conn, clients).into();
        agent
            .log
            .log(Level::Debug, &format!("new client connected: {who}"));
        loop {
            queue.wait_for_read_room();
            match conn.read(&mut buf) {
                Ok(0) => {
                    agent.log.log(Level::Debug, "client disconnected");
                    break;
                }
                Ok(n) => {
                    streamer.feed(&buf[..n], &mut |msg| {
                        if !queue.is_idle() {
                            queue.push(msg, conn.clone(), who.clone());
                        } else if cheap(&msg) {
                            answer(agent, msg, &conn, &who);
                        } else if small_read(&msg) {
                            // Answered here only if the data is in the page cache.
                            let copy = msg.clone();
                            if !answer_cached_read(agent, msg, &conn, &who) {
                                queue.push(copy, conn.clone(), who.clone());
                            }
                        } else {
                            queue.push(msg, conn.clone(), who.clone());
                        }
                    });
                    if n == buf.len() && n < READ_CHUNK {
                        buf.resize(READ_CHUNK, 0);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if !channel.is_device() => {
                    // One client's connection on a listening socket failed: ECONNRESET
                    // when the host closed it with replies still unread. That ends the
                    // connection, not the agent (qemu-ga 10 exits 0 here, so a host that
                    // hangs up early could stop it); the next client is accepted.
                    agent.log.log(
                        Level::Warning,
                        &format!("error reading channel: {e}; closing the connection"),
                    );
                    break;
                }
                Err(e) => {
                    agent
                        .log
                        .log(Level::Critical, &format!("error reading channel: {e}"));
                    if !reopen(agent, &mut channel) {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Who is on `conn`, for the audit log: `virtio-serial host`, `unix-listen client #3
/// (pid 812, uid 0)`, `vsock-listen client #2 (cid 2, port 1234)`.
fn describe(method: crate::config::Method, conn: &Conn, n: u64) -> String {
    use std::os::fd::AsRawFd;
    let peer = match conn {
        Conn::Device { .. } => return format!("{} host", method.as_str()),
        Conn::Unix(s) => crate::sys::peer::unix_peer(s.as_raw_fd()),
        Conn::Vsock(f) => crate::sys::peer::vsock_peer(f.as_raw_fd()),
    };
    match peer {
        Some(p) => format!("{} client #{n} ({p})", method.as_str()),
        None => format!("{} client #{n}", method.as_str()),
    }
}

/// After a channel error: with `--retry-path`, reopen it every 5 s; otherwise stop.
fn reopen(agent: &Agent, channel: &mut Channel) -> bool {
    if !agent.config.retry_path {
        return false;
    }
    std::thread::sleep(RETRY_INTERVAL);
    match open_channel(&agent.config, &agent.log) {
        Ok(ch) => {
            *channel = ch;
            true
        }
        Err(_) => false,
    }
}

/// How long a large read's buffer is kept for the next read once the executor has
/// nothing to do.
const SPARE_LINGER: Duration = Duration::from_secs(1);

/// The executor: one request at a time, in order; each reply written in full.
fn executor(agent: &Agent, queue: &Queue) {
    loop {
        // A kept read buffer is freed once no read has used it for a moment (the
        // executor wakes up for that once); otherwise it sleeps until a request.
        let linger = agent.files.expire_spare(SPARE_LINGER);
        let Some((msg, conn, who, size)) = queue.pop(linger) else {
            continue;
        };
        answer(agent, msg, &conn, &who);
        queue.done(size);
    }
}

/// Dispatches one message and writes its reply (if it has one) to `conn`.
fn answer(agent: &Agent, msg: Message, conn: &Conn, who: &str) {
    if let Err(e) = &msg {
        agent.log.log(
            Level::Warning,
            &format!("failed to parse event: {}", String::from_utf8_lossy(e)),
        );
    }
    send(agent, dispatch::respond(agent, msg, who), conn);
}

/// Answers a guest-file-read on the reader thread if that needs no waiting: the data
/// all in the page cache (`preadv2(RWF_NOWAIT)`), no access-time update, no buffered
/// output to flush, the handle not busy. Returns false, with nothing done and nothing
/// sent, otherwise.
fn answer_cached_read(agent: &Agent, msg: Message, conn: &Conn, who: &str) -> bool {
    let outcome =
        crate::commands::file::without_waiting(|| dispatch::respond_or_defer(agent, msg, who));
    match outcome {
        Ok(reply) => {
            send(agent, reply, conn);
            true
        }
        Err(dispatch::Deferred) => false,
    }
}

/// Writes `reply`, if there is one, to `conn`; a file read's buffer goes back to be
/// reused.
fn send(agent: &Agent, reply: Option<dispatch::Response>, conn: &Conn) {
    if let Some(mut reply) = reply {
        // The 0xFF goes in a write of its own, as qemu-ga sends it; the reply is
        // serialized straight into the channel in pieces, so a 64 MiB file read
        // is never held twice.
        let sent = match reply.delimit {
            true => conn.write_all(&[0xFF]),
            false => Ok(()),
        };
        let sent = sent.and_then(|()| {
            reply
                .value
                .write_json_line(WRITE_PIECE, &mut |piece| conn.write_all(piece))
        });
        if let Err(e) = sent {
            agent
                .log
                .log(Level::Warning, &format!("error sending response: {e}"));
        }
        if let Some(buf) = read_data(&mut reply.value) {
            agent.files.recycle(buf);
        }
    }
}

/// The raw bytes of a guest-file-read reply (`{"return": {"buf-b64": ...}}`).
fn read_data(reply: &mut Value) -> Option<Vec<u8>> {
    let Value::Dict(reply) = reply else {
        return None;
    };
    let Some(Value::Dict(ret)) = reply.get_mut("return") else {
        return None;
    };
    match ret.get_mut("buf-b64") {
        Some(Value::Base64(data)) => Some(std::mem::take(data)),
        _ => None,
    }
}

/// Whether the reader may answer `msg` itself when nothing is queued or running: JSON
/// errors and the protocol and information commands that only read memory, `/proc`
/// or `/sys`, and guest-get-fsinfo, whose statvfs calls run on a helper thread with a
/// 2 s bound in all (not guest-get-disks, whose SMART queries may wait longer); and
/// guest-exec-status, which looks up the exec table and reaps with `WNOHANG`. This
/// saves the hand-off to the executor (two context switches) on the requests hosts
/// poll all day (and the polls of a running program, which take CPU from it), and
/// cannot reorder replies: nothing else is in flight.
fn cheap(msg: &Message) -> bool {
    let Ok(Value::Dict(d)) = msg else {
        return true;
    };
    let Some(Value::Str(name)) = d.get("execute") else {
        return true;
    };
    name == b"guest-exec-status"
        || dispatch::find(name).is_none_or(|c| {
            matches!(
                c.category,
                crate::policy::Category::Protocol | crate::policy::Category::Info
            ) && c.name != "guest-get-disks"
        })
}

/// Largest guest-file-read the reader thread tries to answer itself. Larger ones go to
/// the executor, so the reader keeps taking requests while their replies are written.
const INLINE_READ_MAX: i64 = 64 << 10;

/// A well-formed guest-file-read of at most [`INLINE_READ_MAX`] bytes (the default
/// count is 4096). Anything else, including bad arguments, goes to the executor.
fn small_read(msg: &Message) -> bool {
    let Ok(Value::Dict(d)) = msg else {
        return false;
    };
    if !matches!(d.get("execute"), Some(Value::Str(n)) if n == b"guest-file-read") {
        return false;
    }
    let Some(Value::Dict(args)) = d.get("arguments") else {
        return false;
    };
    let count_ok = match args.get("count") {
        None => true,
        Some(Value::Int(c)) => (0..=INLINE_READ_MAX).contains(c),
        Some(_) => false,
    };
    count_ok && matches!(args.get("handle"), Some(Value::Int(_)))
}

/// A queued request: the message, the connection its reply goes to, who is on it, its
/// size.
type Queued = (Message, Arc<Conn>, Arc<str>, usize);

/// Requests waiting for the executor, and the total size of those and the one running.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

/// Why the reader sleeps: for room in the queue, or for requests' bytes to go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReaderWait {
    Room,
    Bytes,
}

/// A wakeup is a system call and a context switch, so each side is woken only when
/// what it waits for has happened, and a reader blocked on a full queue only once half
/// of it has drained (pipelined requests would otherwise cost a wakeup each).
#[derive(Default)]
struct QueueState {
    items: VecDeque<Queued>,
    /// Bytes of the queued requests and of the one running.
    bytes: usize,
    /// Bytes of the one running (0: none).
    running: usize,
    /// The executor sleeps for a request.
    executor_asleep: bool,
    /// The reader sleeps, and why.
    reader_asleep: Option<ReaderWait>,
}

impl QueueState {
    /// Whether the reader may read more: less than `QUEUED_AHEAD_MAX` bytes queued and
    /// less than `READ_AHEAD_MAX` queued or running.
    fn reader_may_read(&self) -> bool {
        self.bytes - self.running < QUEUED_AHEAD_MAX && self.bytes < READ_AHEAD_MAX
    }
}

type Guard<'a> = std::sync::MutexGuard<'a, QueueState>;

impl Queue {
    fn lock(&self) -> Guard<'_> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: Guard<'a>) -> Guard<'a> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message; blocks while the queue is full (backpressure on the host).
    fn push(&self, msg: Message, conn: Arc<Conn>, who: Arc<str>) {
        // Never 0: `bytes` > 0 is what tells the reader that a request is still
        // running (its reply being written), so it must not answer one itself.
        let size = match &msg {
            Ok(v) => approx_size(v),
            Err(e) => e.len(),
        }
        .max(1);
        let mut g = self.lock();
        while !g.items.is_empty()
            && (g.items.len() >= QUEUE_MAX_COUNT || g.bytes + size > QUEUE_MAX_BYTES)
        {
            g.reader_asleep = Some(if g.items.len() >= QUEUE_MAX_COUNT {
                ReaderWait::Room
            } else {
                ReaderWait::Bytes
            });
            g = self.wait(g);
            g.reader_asleep = None;
        }
        g.bytes += size;
        g.items.push_back((msg, conn, who, size));
        let wake = g.executor_asleep;
        // Woken under the lock, the executor would find it held and sleep once more.
        drop(g);
        if wake {
            self.changed.notify_all();
        }
    }

    /// The next message (its size stays counted until [`Queue::done`]); `None` if
    /// `linger` is given and passes without one.
    fn pop(&self, linger: Option<Duration>) -> Option<Queued> {
        let deadline = linger.map(|d| Instant::now() + d);
        let mut g = self.lock();
        loop {
            if let Some(item) = g.items.pop_front() {
                g.running = item.3;
                let wake = match g.reader_asleep {
                    Some(ReaderWait::Room) => g.items.len() <= QUEUE_MAX_COUNT / 2,
                    Some(ReaderWait::Bytes) => g.reader_may_read(),
                    None => false,
                };
                drop(g);
                if wake {
                    self.changed.notify_all();
                }
                return Some(item);
            }
            g.executor_asleep = true;
            g = match deadline {
                None => self.wait(g),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        g.executor_asleep = false;
                        return None;
                    }
                    self.changed
                        .wait_timeout(g, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0)
                }
            };
            g.executor_asleep = false;
        }
    }

    /// The executor finished a message of `size` bytes (its request is freed).
    fn done(&self, size: usize) {
        let mut g = self.lock();
        g.bytes -= size;
        g.running = 0;
        let wake = g.reader_asleep == Some(ReaderWait::Bytes) && g.reader_may_read();
        drop(g);
        if wake {
            self.changed.notify_all();
        }
    }

    /// Nothing is queued or running (only the reader queues, so this stays true
    /// until it does).
    fn is_idle(&self) -> bool {
        let g = self.lock();
        g.items.is_empty() && g.bytes == 0
    }

    /// Waits while the reader has read far enough ahead ([`QueueState::reader_may_read`]).
    fn wait_for_read_room(&self) {
        let mut g = self.lock();
        while !g.reader_may_read() {
            g.reader_asleep = Some(ReaderWait::Bytes);
            g = self.wait(g);
            g.reader_asleep = None;
        }
    }
}

fn approx_size(v: &Value) -> usize {
    match v {
        Value::Str(s) => s.len() + 16,
        Value::List(l) => l.iter().map(approx_size).sum::<usize>() + 16,
        Value::Dict(d) => {
            d.iter_inserted()
                .map(|(k, v)| k.len() + approx_size(v))
                .sum::<usize>()
                + 16
        }
        _ => 16,
    }
}

/// SIGTERM / SIGINT: exit 0 unless frozen. The signals are blocked in every thread and
/// taken synchronously by one thread, so no handler runs in async-signal context.
fn start_signal_thread(agent: Arc<Agent>) -> Result<(), String> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; blocking signals in the
    // calling thread (inherited by threads spawned later) has no memory effects.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::Builder::new()
        .name("qga-signal".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: `set` is a valid signal set and `sig` a valid out-pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            if agent.is_frozen() {
                // qemu-ga ignores the request while frozen, so a thaw can still come.
                continue;
            }
            agent
                .log
                .log(Level::Debug, &format!("received signal {sig}, exiting"));
            std::process::exit(0);
        })
        .map(|_| ())
        .map_err(|e| format!("failed to start signal thread: {e}"))
}
