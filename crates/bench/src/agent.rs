//! One agent under test: spawned on a unix socket in its own temporary directory, timed
//! from spawn to its first reply, observed through `/proc/<pid>`, and killed by pid
//! when dropped.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Conn;

/// How long an agent may take to answer its first ping (generous: it may run under
/// valgrind).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Kernel clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// A temporary directory, removed with its contents on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/qga-bench.<pid>.<n>.<tag>`.
    pub fn new(tag: &str) -> Result<TempDir, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("qga-bench.{}.{n}.{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running agent.
pub struct Agent {
    /// Short name for messages ("ours", "qemu-ga").
    pub name: &'static str,
    /// Its directory: socket, state files, benchmark files.
    pub dir: TempDir,
    sock: PathBuf,
    child: Child,
    /// Time from `spawn()` to the end of the first reply.
    pub startup: Duration,
}

impl Agent {
    /// Spawns `bin -m unix-listen -p DIR/sock -t DIR` and returns it with the connection
    /// that got the first reply (to a `guest-ping`, sent as soon as `connect` succeeds).
    pub fn spawn(name: &'static str, bin: &Path) -> Result<(Agent, Conn), String> {
        Agent::spawn_with(name, bin, &[])
    }

    /// [`Agent::spawn`] with `lead` before the agent arguments (a subcommand).
    pub fn spawn_with(
        name: &'static str,
        bin: &Path,
        lead: &[&str],
    ) -> Result<(Agent, Conn), String> {
        let dir = TempDir::new(name)?;
        let sock = dir.0.join("sock");
        let log = std::fs::File::create(dir.0.join("agent.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.args(lead)
            .args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(&dir.0)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        let mut agent = Agent {
            name,
            dir,
            sock,
            child,
            startup: Duration::ZERO,
        };
        let stream = loop {
            match UnixStream::connect(&agent.sock) {
                Ok(s) => break s,
                Err(_) if t0.elapsed() < START_TIMEOUT => {
                    if let Ok(Some(status)) = agent.child.try_wait() {
                        return Err(format!(
                            "{name} exited at startup ({status}){}",
                            agent.log()
                        ));
                    }
                    std::thread::sleep(Duration::from_micros(20));
                }
                Err(e) => return Err(format!("{name}: no socket after 60 s: {e}{}", agent.log())),
            }
        };
        let mut conn = Conn::new(stream)?;
        conn.cmd(br#"{"execute":"guest-ping"}"#)?;
        agent.startup = t0.elapsed();
        Ok((agent, conn))
    }

    /// A new client connection (the agent serves one at a time: drop the previous one).
    pub fn connect(&self) -> Result<Conn, String> {
        let s = UnixStream::connect(&self.sock)
            .map_err(|e| format!("{}: connect: {e}{}", self.name, self.log()))?;
        Conn::new(s)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The tail of the agent's stderr, for error messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.0.join("agent.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        if tail.is_empty() {
            String::new()
        } else {
            let lines: Vec<&str> = tail.into_iter().rev().collect();
            format!("; its stderr: {}", lines.join(" | "))
        }
    }

    fn proc_path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid()))
    }

    /// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM), in KiB.
    pub fn status_kib(&self, field: &str) -> Result<u64, String> {
        let text = std::fs::read_to_string(self.proc_path("status")).map_err(|e| e.to_string())?;
        status_field(&text, field).ok_or_else(|| format!("no {field} in /proc/pid/status"))
    }

    /// Resets VmHWM to the current RSS (`clear_refs` 5); false when the kernel refuses.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(self.proc_path("clear_refs"), b"5").is_ok()
    }

    /// CPU time used so far by all threads, dead ones included (utime + stime).
    pub fn cpu_secs(&self) -> Result<f64, String> {
        cpu_secs_of(&self.proc_path("stat"))
    }

    /// Threads, and the sum of their voluntary context switches.
    pub fn threads_and_switches(&self) -> Result<(usize, u64), String> {
        let tasks = std::fs::read_dir(self.proc_path("task")).map_err(|e| e.to_string())?;
        let (mut threads, mut switches) = (0, 0);
        for t in tasks.flatten() {
            // A thread may end between listing and reading: skip it.
            if let Ok(text) = std::fs::read_to_string(t.path().join("status")) {
                threads += 1;
                switches += status_field(&text, "voluntary_ctxt_switches").unwrap_or(0);
            }
        }
        Ok((threads, switches))
    }
}

impl Drop for Agent {
    /// SIGTERM (both agents exit cleanly on it, and a profiler gets to write its
    /// output), then SIGKILL after 10 s. Our own child, by pid.
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) has no memory effects; the pid is our unreaped child's,
            // so it cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of the process whose `/proc/<pid>/stat` is at `path`, in seconds.
pub fn cpu_secs_of(path: &Path) -> Result<f64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    match (num(11), num(12)) {
        (Some(u), Some(s)) => Ok((u + s) as f64 / TICKS_PER_SEC),
        _ => Err("unreadable /proc/pid/stat".into()),
    }
}

/// The number in `Field:\t<n> kB` (or without unit) of a `/proc/<pid>/status` text.
fn status_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// The spawn-to-first-reply times of `n` fresh agents.
pub fn startup_times(name: &'static str, bin: &Path, n: usize) -> Result<Vec<Duration>, String> {
    (0..n)
        .map(|_| Agent::spawn(name, bin).map(|(a, _)| a.startup))
        .collect()
}

/// The shared libraries `ldd` resolves for `bin`, with their file sizes (vdso and the
/// dynamic loader left out).
pub fn shared_libs(bin: &Path) -> Vec<(String, u64)> {
    let Ok(out) = Command::new("ldd").arg(bin).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(" => ")?;
            let path = rest.split_whitespace().next()?;
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            Some((name.to_string(), size))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields() {
        let text = "Name:\tqemu-ga\nVmHWM:\t    4412 kB\nVmRSS:\t    4400 kB\nvoluntary_ctxt_switches:\t17\n";
        assert_eq!(status_field(text, "VmHWM"), Some(4412));
        assert_eq!(status_field(text, "VmRSS"), Some(4400));
        assert_eq!(status_field(text, "voluntary_ctxt_switches"), Some(17));
        assert_eq!(status_field(text, "VmSwap"), None);
    }
}
