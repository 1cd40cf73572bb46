//! The request/response workloads: ping latency, pipelined throughput, exec latency,
//! and the idle observations (RSS, threads, wakeups).

use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::client::{self, Conn};

/// Figures of one workload: (key, value) in the units [`crate::report`] gives the key.
pub type Figures = Vec<(String, f64)>;

/// Sequential `guest-ping` round trips: p50 and p99 in µs.
pub fn ping(agent: &Agent, n: usize) -> Result<Figures, String> {
    let mut lat = ping_times(&mut agent.connect()?, n, Duration::ZERO)?;
    Ok(vec![
        ("ping_p50".into(), micros(percentile(&mut lat, 50.0))),
        ("ping_p99".into(), micros(percentile(&mut lat, 99.0))),
    ])
}

/// `n` guest-ping round trips, `pause` apart, after a warm-up of a tenth as many
/// (first-use page faults and allocator growth do not count).
fn ping_times(conn: &mut Conn, n: usize, pause: Duration) -> Result<Vec<Duration>, String> {
    let req = br#"{"execute":"guest-ping"}"#;
    for _ in 0..n / 10 + 1 {
        conn.cmd(req)?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        let t = Instant::now();
        conn.cmd(req)?;
        lat.push(t.elapsed());
    }
    Ok(lat)
}

/// guest-ping while every CPU runs a busy loop (one `sh` per CPU), as in a guest whose
/// programs keep all its CPUs busy: p50 and p99 of `n` round trips, 1 ms apart, in µs.
/// The client thread runs under SCHED_FIFO, so what is measured is how soon the
/// agent gets a CPU and not the client: even at nice -10 the client waited up to 4 ms
/// behind the busy loops (`perf sched latency`: client max 4.3 ms, agent 0.02 ms, in a
/// run whose p99 was 1.4 ms). That needs CAP_SYS_NICE; without it the client stays a
/// normal thread (the figure `loaded_client_rt` says which).
pub fn ping_loaded(agent: &Agent, n: usize) -> Result<Figures, String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut hogs = Vec::new();
    for _ in 0..cpus {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "while :; do :; done"]).stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no memory of ours. Killed with
        // this process even if it dies (Ctrl-C) before `stop`: no busy loop left behind.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let hog = cmd
            .spawn()
            .map_err(|e| format!("starting a busy loop: {e}"));
        match hog {
            Ok(h) => hogs.push(h),
            Err(e) => {
                stop(hogs);
                return Err(e);
            }
        }
    }
    // A thread of its own, so the real-time policy ends with it.
    let measured = std::thread::scope(|s| {
        s.spawn(|| -> Result<Figures, String> {
            // SAFETY: sched_setscheduler(0, ..) changes only the calling thread's policy;
            // `param` is a valid sched_param. The thread never spins: it sleeps or
            // blocks on the socket between pings.
            let realtime = unsafe {
                let param = libc::sched_param { sched_priority: 10 };
                libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0
            };
            let mut conn = agent.connect()?;
            // The busy loops settle on their CPUs.
            std::thread::sleep(Duration::from_millis(100));
            let mut lat = ping_times(&mut conn, n, Duration::from_millis(1))?;
            Ok(vec![
                ("loaded_p50".into(), micros(percentile(&mut lat, 50.0))),
                ("loaded_p99".into(), micros(percentile(&mut lat, 99.0))),
                ("loaded_client_rt".into(), if realtime { 1.0 } else { 0.0 }),
            ])
        })
        .join()
        .unwrap_or_else(|_| Err("the loaded-ping client panicked".into()))
    });
    stop(hogs);
    measured
}

/// Kills and reaps the busy loops.
fn stop(hogs: Vec<std::process::Child>) {
    for mut h in hogs {
        let _ = h.kill();
        let _ = h.wait();
    }
}

/// `n` pings written back to back, as fast as the socket takes them: commands per
/// second.
pub fn pipelined(agent: &Agent, n: usize) -> Result<Figures, String> {
    let mut conn = agent.connect()?;
    let req: &[u8] = br#"{"execute":"guest-ping"}"#;
    let t = Instant::now();
    conn.pipeline(n, n, |_| req, |_, v| client::returned(v).map(drop))?;
    let secs = t.elapsed().as_secs_f64();
    Ok(vec![("pipelined".into(), n as f64 / secs)])
}

/// `guest-exec` of /bin/true, then `guest-exec-status` polled back to back until
/// `exited`: p50 and p99 of the whole, in ms.
pub fn exec(agent: &Agent, n: usize) -> Result<Figures, String> {
    let mut conn = agent.connect()?;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let t = Instant::now();
        let ret = conn.cmd(br#"{"execute":"guest-exec","arguments":{"path":"/bin/true"}}"#)?;
        let pid = client::int(client::dict(&ret)?, "pid")?;
        let status = format!(r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#);
        loop {
            let st = conn.cmd(status.as_bytes())?;
            let st = client::dict(&st)?;
            if matches!(st.get("exited"), Some(qga_proto::Value::Bool(true))) {
                if client::int(st, "exitcode")? != 0 {
                    return Err("/bin/true exited non-zero".into());
                }
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err("/bin/true did not exit within 10 s".into());
            }
        }
        // The first two are warm-up.
        if i >= 2 {
            lat.push(t.elapsed());
        }
    }
    Ok(vec![
        (
            "exec_p50".into(),
            percentile(&mut lat, 50.0).as_secs_f64() * 1e3,
        ),
        (
            "exec_p99".into(),
            percentile(&mut lat, 99.0).as_secs_f64() * 1e3,
        ),
    ])
}

/// KubeVirt's polling set, as libvirt sends it every 10 s for every VM (each command
/// preceded by a guest-sync), plus what KubeVirt polls less often (guest-get-fsinfo,
/// guest-fsfreeze-status): `n` cycles back to back. Returns the agent's CPU time per
/// cycle in µs, measured from /proc around the whole run.
pub fn kubevirt(agent: &Agent, n: usize) -> Result<Figures, String> {
    const POLL: [&str; 7] = [
        "guest-network-get-interfaces",
        "guest-get-osinfo",
        "guest-get-host-name",
        "guest-get-timezone",
        "guest-get-users",
        "guest-get-fsinfo",
        "guest-fsfreeze-status",
    ];
    let mut conn = agent.connect()?;
    let requests: Vec<String> = POLL
        .iter()
        .map(|c| format!(r#"{{"execute":"{c}"}}"#))
        .collect();
    let cycle = |conn: &mut Conn, i: usize| -> Result<(), String> {
        for r in &requests {
            let sync = format!(r#"{{"execute":"guest-sync","arguments":{{"id":{i}}}}}"#);
            conn.cmd(sync.as_bytes())?;
            conn.cmd(r.as_bytes())?;
        }
        Ok(())
    };
    for i in 0..n / 10 + 1 {
        cycle(&mut conn, i)?;
    }
    let cpu0 = agent.cpu_secs()?;
    for i in 0..n {
        cycle(&mut conn, i)?;
    }
    let cpu = agent.cpu_secs()? - cpu0;
    Ok(vec![("kubevirt_cpu".into(), cpu / n as f64 * 1e6)])
}

/// The floor under exec latency: this client starting /bin/true itself (posix_spawn,
/// no pipes) and waiting for it, p50 in ms. No agent can report an exit sooner.
pub fn exec_floor(n: usize) -> Result<f64, String> {
    use std::process::{Command, Stdio};
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n + 2 {
        let t = Instant::now();
        let status = Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("running /bin/true: {e}"))?;
        if !status.success() {
            return Err("/bin/true failed".into());
        }
        lat.push(t.elapsed());
    }
    Ok(percentile(&mut lat[2..], 50.0).as_secs_f64() * 1e3)
}

/// The floor under any request/reply round trip here: this client writing a request
/// line to a thread of its own over a unix socketpair and reading the reply line back,
/// with no parsing on either side; p50 of `n` in ms. Beyond [`exec_floor`] an agent
/// needs two one-way trips to report an exit (the guest-exec request must reach it
/// before it can spawn, and an exit is only told in the reply to a guest-exec-status)
/// where the floor's client needs one wake-up: the bound printed under the exec limit
/// adds half of this.
pub fn round_trip_floor(n: usize) -> Result<f64, String> {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let (mut near, mut far) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(k) = far.read(&mut buf) {
            if k == 0 || far.write_all(b"{\"return\": {}}\n").is_err() {
                break;
            }
        }
    });
    let mut lat = Vec::with_capacity(n);
    let mut buf = [0u8; 256];
    for _ in 0..n + 10 {
        let t = Instant::now();
        near.write_all(br#"{"execute":"guest-ping"}"#)
            .and_then(|()| near.read(&mut buf))
            .map_err(|e| format!("socketpair round trip: {e}"))?;
        lat.push(t.elapsed());
    }
    drop(near);
    let _ = echo.join();
    Ok(percentile(&mut lat[10..], 50.0).as_secs_f64() * 1e3)
}

/// What an idle agent costs, observed together for all agents so the wait is paid once:
/// RSS and threads after a ping and a pause, then voluntary context switches of all
/// threads over `window` with a client connected and silent.
pub fn idle(agents: &[&Agent], window: Duration) -> Vec<Result<Figures, String>> {
    let conns: Vec<Result<Conn, String>> = agents
        .iter()
        .map(|a| {
            let mut c = a.connect()?;
            c.cmd(br#"{"execute":"guest-ping"}"#)?;
            Ok(c)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before: Vec<_> = agents
        .iter()
        .map(|a| {
            let rss = a.status_kib("VmRSS")?;
            let (threads, switches) = a.threads_and_switches()?;
            Ok::<_, String>((rss, threads, switches))
        })
        .collect();
    std::thread::sleep(window);
    let out = agents
        .iter()
        .zip(before)
        .zip(&conns)
        .map(|((a, before), conn)| {
            conn.as_ref().map_err(Clone::clone)?;
            let (rss, threads, s0) = before?;
            let (_, s1) = a.threads_and_switches()?;
            Ok(vec![
                ("idle_rss".into(), rss as f64 * 1024.0),
                ("idle_threads".into(), threads as f64),
                ("idle_wakeups".into(), (s1 - s0) as f64),
            ])
        })
        .collect();
    drop(conns);
    out
}

/// The `p`-th percentile (nearest rank) of `v`, which it sorts.
pub fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(percentile(&mut v, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&mut v, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&mut v, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&mut [], 50.0), Duration::ZERO);
    }
}
