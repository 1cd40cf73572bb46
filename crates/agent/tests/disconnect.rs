//! The host going away at every point of a request, on a unix-listen agent on this
//! machine (only side-effect-free commands and guest-exec of harmless shell in the
//! agent's temporary directory; freezes are tested in the VM, `vm_restart.rs`):
//! - mid-request: every prefix of a request that has strings, escapes, numbers and
//!   nesting, then the connection closed;
//! - mid-reply: a 17 MiB guest-file-read whose reply is abandoned after a few bytes
//!   (up to most of it);
//! - right after a command was sent: guest-exec of a slow child and a burst of
//!   pipelined requests, the connection closed before any reply.
//!
//! After each, a new connection's 0xFF + guest-sync-delimited handshake must work and
//! the next reply must be the one asked for (nothing from the old connection leaks
//! in). Commands sent before a disconnect run exactly once. The agent's RSS, threads and
//! descriptors stay flat across the rounds; its exec children are all reaped.

mod common;
mod reliability;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::AgentProc;
use qga_agent::sys::base64;
use qga_proto::cmds::file::GuestFileRead;
use reliability::{host_usage, record, ret, settled};

/// A request with a bit of everything the lexer has states for.
const REQUEST: &[u8] = br#"{"execute":"guest-sync","arguments":{"id":[1,-2.5e3,"x\"\u00e9\\y",{"k":null,"t":true,"f":false}]},"id":'q'}"#;

const BIG: usize = 17 << 20;
const TAIL: usize = 3000;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Zombie children of `pid`.
fn zombies_of(pid: u32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let mut f = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let (state, ppid) = (f.next(), f.next());
        if state == Some("Z") && ppid == Some(&pid.to_string()) {
            n += 1;
        }
    }
    n
}

fn ping(c: &mut common::Client, id: u64) {
    assert_eq!(
        c.cmd(&format!(r#"{{"execute":"guest-ping","id":{id}}}"#)),
        format!(r#"{{"return": {{}}, "id": {id}}}"#)
    );
}

/// One round of small disconnects (mid-request at every byte, right after a slow
/// exec, right after a pipelined burst); returns how many it made. Waits for the exec.
fn round(a: &AgentProc, round: u32) -> u64 {
    let mut disconnects = 0;
    for cut in 1..REQUEST.len() {
        let mut c = a.connect();
        c.send(&REQUEST[..cut]);
        drop(c);
        disconnects += 1;
        let mut c = a.connect();
        c.handshake(cut as u32);
        ping(&mut c, cut as u64);
    }
    let mut c = a.connect();
    c.handshake(3);
    let marker = a.dir.join(&format!("done.{round}"));
    c.send(
        format!(
            r#"{{"execute":"guest-exec","arguments":{{"path":"/bin/sh","arg":["-c","sleep 0.3; echo {round} >> {}"]}}}}{{"execute":"guest-exec-status","arguments":{{"pid":1}}}}"#,
            marker.display()
        )
        .as_bytes(),
    );
    drop(c);
    disconnects += 1;
    let mut c = a.connect();
    c.handshake(4);
    c.send(
        r#"{"execute":"guest-get-osinfo"}{"execute":"guest-info"}"#
            .repeat(100)
            .as_bytes(),
    );
    drop(c);
    disconnects += 1;
    let mut c = a.connect();
    c.handshake(5);
    ping(&mut c, 5);
    // The exec ran exactly once and its child was reaped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&marker).ok() != Some(format!("{round}\n"))
        || zombies_of(a.pid()) > 0
    {
        assert!(
            Instant::now() < deadline,
            "exec {round} did not run or was not reaped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    disconnects
}

#[test]
fn host_disconnects_mid_request_and_after_sending() {
    let secs: u64 = std::env::var("QGA_DISCONNECT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let a = AgentProc::ours(&[]);
    let pid = a.pid();
    let start = host_usage(pid);
    let t0 = Instant::now();
    let mut disconnects = round(&a, 0);
    let warm = settled(|| host_usage(pid), 20);
    let mut rounds = 1;
    while t0.elapsed() < Duration::from_secs(secs) {
        disconnects += round(&a, rounds);
        rounds += 1;
    }
    let end = settled(|| host_usage(pid), 20);
    assert!(alive(pid));
    record(
        "disconnects mid-request and after sending (host, unix-listen)",
        &[
            format!(
                "{disconnects} disconnects survived in {rounds} rounds, {:.1} s",
                t0.elapsed().as_secs_f64()
            ),
            format!("start: {start}"),
            format!("after round 1: {warm}"),
            format!("end: {end}"),
        ],
    );
    assert!(
        end.rss_kib <= warm.rss_kib + 256,
        "RSS grew from {} to {} KiB",
        warm.rss_kib,
        end.rss_kib
    );
    assert_eq!((end.fds, end.threads), (warm.fds, warm.threads));
}

/// A 17 MiB guest-file-read whose reply is abandoned after `keep` bytes; then the read
/// is known to have run in full (the handle is past it) and nothing of it reaches the
/// next connection.
fn abandon_big_read(a: &AgentProc, keep: usize, tail_b64: &str) {
    let mut c = a.connect();
    c.handshake(1);
    let h: i64 =
        ret(&c.cmd(r#"{"execute":"guest-file-open","arguments":{"path":"big","mode":"r"}}"#));
    c.send(
        format!(r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":{BIG}}}}}"#)
            .as_bytes(),
    );
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    while got < keep {
        let n = c
            .stream
            .read(&mut buf[..(keep - got).min(1 << 16)])
            .unwrap();
        assert!(n > 0);
        got += n;
    }
    drop(c);
    let mut c = a.connect();
    c.handshake(2);
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":65536}}}}"#
    ));
    let rd: GuestFileRead = ret(&r);
    assert_eq!((rd.count, rd.eof), (TAIL as i64, true));
    assert_eq!(rd.buf_b64.text(), tail_b64);
    reliability::file_close(&mut c, h);
}

#[test]
fn host_disconnects_mid_reply_of_a_17_mib_read() {
    // glibc with a fixed mmap threshold: every buffer of 128 KiB or more is mapped
    // and unmapped, instead of the default's heap reuse after the first big free,
    // whose retained memory and realloc-copy peaks vary from run to run by tens of
    // MiB. So RSS returns to its baseline after each read, and a leak shows.
    let path = std::env::var("PATH").unwrap_or_default();
    let env = [
        ("PATH", path.as_str()),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
    ];
    let a = AgentProc::spawn(Path::new(env!("CARGO_BIN_EXE_qga-agent")), &[], Some(&env));
    let data = pattern(BIG + TAIL);
    std::fs::write(a.dir.join("big"), &data).unwrap();
    let tail = base64::encode(&data[BIG..]);
    // `{"return": {"count": 17825792, "buf-b64": "<23767724 chars>", "eof": false}}\n`
    let reply_len = BIG.div_ceil(3) * 4 + 61;
    let pid = a.pid();
    let start = host_usage(pid);
    let t0 = Instant::now();
    abandon_big_read(&a, 1, &tail);
    let warm = settled(|| host_usage(pid), 20);
    let points = [4096, 12 << 20, reply_len - 10, 1 << 20];
    for keep in points {
        abandon_big_read(&a, keep, &tail);
    }
    let end = settled(|| host_usage(pid), 20);
    assert!(alive(pid));
    record(
        "disconnects mid-reply (host, unix-listen, 17 MiB guest-file-read)",
        &[
            format!(
                "{} replies abandoned after 1 B ... {} of {reply_len} B, {:.1} s",
                points.len() + 1,
                reply_len - 10,
                t0.elapsed().as_secs_f64()
            ),
            format!("start: {start} (glibc mmap threshold fixed at 128 KiB)"),
            format!("after the first: {warm}"),
            format!("end: {end}"),
        ],
    );
    // Nothing of an abandoned reply stays, and every read peaks at the same height.
    assert!(
        end.rss_kib <= warm.rss_kib + 1024,
        "RSS grew from {} to {} KiB",
        warm.rss_kib,
        end.rss_kib
    );
    assert!(
        end.hwm_kib <= warm.hwm_kib + 1024,
        "peak RSS grew from {} to {} KiB",
        warm.hwm_kib,
        end.hwm_kib
    );
    assert_eq!((end.fds, end.threads), (warm.fds, warm.threads));
}
