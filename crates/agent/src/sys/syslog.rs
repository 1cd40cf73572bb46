//! Syslog over `/dev/log`, as glibc's `syslog(3)` sends it, without its global state:
//! an RFC 3164 datagram `<PRI>Mmm dd hh:mm:ss IDENT[PID]: MSG` (local time, no hostname,
//! no trailing newline) on a connected `AF_UNIX` datagram socket.
//!
//! qemu-ga never calls `openlog`, so its lines are `<14>... qemu-ga: info: <msg>`
//! (facility user, severity info, no pid; recorded from qemu-ga 10.0.2 in a mount
//! namespace with a fake `/dev/log`). The agent sends those lines the same way and its
//! audit lines with facility authpriv and the pid (see [`crate::log`]).
//!
//! Unlike glibc, a send never blocks for long: the socket has a 1 s send timeout (a
//! journald that stopped reading must not stall the agent), and the caller learns of a
//! failure so it can write the line elsewhere. A socket that went away (journald
//! restarted) is reconnected once per message. The path is [`DEFAULT_PATH`] unless
//! `QGA_SYSLOG_PATH` is set (tests use it to listen in place of the system logger).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The system logger's socket.
pub const DEFAULT_PATH: &str = "/dev/log";
/// Environment variable naming another socket (for tests).
pub const PATH_ENV: &str = "QGA_SYSLOG_PATH";
/// How long a send may wait for a logger that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// `LOG_USER`: qemu-ga's facility (the default without `openlog`).
pub const FACILITY_USER: u8 = 1 << 3;
/// `LOG_AUTHPRIV`: security messages that may name users and paths.
pub const FACILITY_AUTHPRIV: u8 = 10 << 3;
/// `LOG_WARNING`.
pub const SEVERITY_WARNING: u8 = 4;
/// `LOG_NOTICE`.
pub const SEVERITY_NOTICE: u8 = 5;
/// `LOG_INFO`.
pub const SEVERITY_INFO: u8 = 6;

/// A syslog destination; connects on first use, like glibc.
pub struct Syslog {
    path: PathBuf,
    ident: String,
    state: Mutex<State>,
}

/// What sends share: the socket, the last time stamp (localtime once a second, not per
/// message: qemu-ga's ping sends one line per request) and the datagram buffer.
#[derive(Default)]
struct State {
    sock: Option<UnixDatagram>,
    stamp: Option<(u64, String)>,
    buf: Vec<u8>,
}

impl Syslog {
    /// Messages to the socket at `path`, tagged `ident`.
    pub fn new(path: impl Into<PathBuf>, ident: impl Into<String>) -> Self {
        Syslog {
            path: path.into(),
            ident: ident.into(),
            state: Mutex::new(State::default()),
        }
    }

    /// Messages to `$QGA_SYSLOG_PATH` or `/dev/log`, tagged with this program's name
    /// (glibc's default ident, `program_invocation_short_name`).
    pub fn from_env() -> Self {
        let path = std::env::var_os(PATH_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        Syslog::new(path, program_name())
    }

    /// Sends one message with priority `pri` (facility | severity), stamped `when`, with
    /// `pid` after the ident when given.
    pub fn send(&self, pri: u8, pid: Option<u32>, msg: &str, when: SystemTime) -> io::Result<()> {
        self.send_parts(pri, pid, &[msg], when)
    }

    /// [`Syslog::send`] of the message made of `parts` one after the other.
    pub fn send_parts(
        &self,
        pri: u8,
        pid: Option<u32>,
        parts: &[&str],
        when: SystemTime,
    ) -> io::Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let State { sock, stamp, buf } = &mut *guard;
        let secs = seconds(when);
        let stamp = match stamp {
            Some((s, text)) if *s == secs => text,
            _ => &mut stamp.insert((secs, timestamp(when))).1,
        };
        buf.clear();
        write_datagram(buf, pri, stamp, &self.ident, pid, parts);
        let data = &buf[..];
        for attempt in 0..2 {
            if sock.is_none() {
                *sock = Some(self.connect()?);
            }
            let Some(s) = sock.as_ref() else { break };
            match s.send(data) {
                Ok(_) => return Ok(()),
                Err(e)
                    if attempt == 0
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET)
                        ) =>
                {
                    // The logger went away and may be back on a new socket.
                    *sock = None;
                }
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        *sock = None;
                    }
                    return Err(e);
                }
            }
        }
        Err(io::Error::from_raw_os_error(libc::ECONNREFUSED))
    }

    fn connect(&self) -> io::Result<UnixDatagram> {
        // Without a logger (minimal guests) glibc makes, closes and fails to connect a
        // socket for every line, and a line goes out per ping: one stat instead.
        std::fs::metadata(&self.path)?;
        let s = UnixDatagram::unbound()?;
        s.set_write_timeout(Some(SEND_TIMEOUT))?;
        s.connect(&self.path)?;
        Ok(s)
    }
}

/// `<pri>stamp ident[pid]: msg`, as glibc formats it for `/dev/log`.
pub fn datagram(pri: u8, stamp: &str, ident: &str, pid: Option<u32>, msg: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_datagram(&mut out, pri, stamp, ident, pid, &[msg]);
    out
}

/// [`datagram`] into `out`, the message made of `parts`.
fn write_datagram(
    out: &mut Vec<u8>,
    pri: u8,
    stamp: &str,
    ident: &str,
    pid: Option<u32>,
    parts: &[&str],
) {
    use std::io::Write as _;
    let _ = write!(out, "<{pri}>");
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(ident.as_bytes());
    if let Some(pid) = pid {
        let _ = write!(out, "[{pid}]");
    }
    out.extend_from_slice(b": ");
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
}

fn seconds(when: SystemTime) -> u64 {
    when.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The RFC 3164 time stamp glibc writes (`%h %e %T`, local time): `Nov  6 07:15:32`.
pub fn timestamp(when: SystemTime) -> String {
    let t = crate::sys::TimeT::try_from(seconds(when)).unwrap_or(0);
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for
    // the duration of the call, and localtime_r is thread-safe.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return "Jan  1 00:00:00".into();
        }
        tm
    };
    format_tm(tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

fn format_tm(mon: i32, mday: i32, hour: i32, min: i32, sec: i32) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .get(usize::try_from(mon).unwrap_or(0))
        .unwrap_or(&"Jan");
    format!("{month} {mday:>2} {hour:02}:{min:02}:{sec:02}")
}

/// The last component of argv\[0\], as glibc's `program_invocation_short_name`.
pub fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(|a| {
            let a = a.to_string_lossy().into_owned();
            a.rsplit('/').next().unwrap_or(&a).to_string()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "qemu-ga".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_is_glibcs_format() {
        // The bytes qemu-ga 10.0.2 sent for a ping (recorded with a fake /dev/log).
        assert_eq!(
            datagram(
                FACILITY_USER | SEVERITY_INFO,
                "Nov 26 07:15:32",
                "qemu-ga",
                None,
                "info: guest-ping called"
            ),
            b"<14>Nov 26 07:15:32 qemu-ga: info: guest-ping called"
        );
        assert_eq!(
            datagram(
                FACILITY_AUTHPRIV | SEVERITY_NOTICE,
                "Nov  6 07:15:32",
                "qemu-ga",
                Some(42),
                "audit: x"
            ),
            b"<85>Nov  6 07:15:32 qemu-ga[42]: audit: x"
        );
        assert_eq!(format_tm(10, 6, 7, 5, 3), "Nov  6 07:05:03");
        assert_eq!(timestamp(SystemTime::now()).len(), 15);
    }

    #[test]
    fn sends_reconnects_and_fails_without_a_listener() {
        let dir = std::env::temp_dir().join(format!("qga-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let log = Syslog::new(&path, "t");
        let now = SystemTime::now();
        assert!(log.send(14, None, "nobody", now).is_err());
        let listener = UnixDatagram::bind(&path).unwrap();
        log.send(14, None, "one", now).unwrap();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b" t: one"));
        // The logger restarts on a new socket at the same path.
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        let listener = UnixDatagram::bind(&path).unwrap();
        log.send(85, Some(7), "two", now).unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"<85>") && buf[..n].ends_with(b" t[7]: two"));
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
