//! A host that sends garbage at full speed for a bounded time (random bytes with 0xFF
//! and control bytes, nesting past the limit, megabyte strings, long token runs, broken
//! escapes and UTF-8, requests with wrong members, interleaved with valid requests),
//! on a unix-listen agent on this machine. The agent must stay up with bounded memory,
//! and after 0xFF + guest-sync-delimited the next valid request is answered, on the same
//! connection and on a new one.
//!
//! Only side-effect-free commands are enabled (`-a`), so no byte sequence can do
//! anything to this machine. The budget is `QGA_GARBAGE_SECS` (default 20).

mod common;
mod reliability;

use common::Rng;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::AgentProc;
use reliability::{host_usage, record};

const SAFE: &[&str] = &[
    "guest-sync",
    "guest-sync-delimited",
    "guest-ping",
    "guest-info",
    "guest-get-time",
    "guest-get-osinfo",
    "guest-get-host-name",
    "guest-get-timezone",
    "guest-fsfreeze-status",
];

/// Peak RSS allowed during the run: QEMU's JSON limits let one message hold up to
/// 64 MiB of token text or 2 Mi tokens, which the garbage here stays well below.
const PEAK_RSS_MAX_KIB: u64 = 128 << 10;

/// One chunk of garbage.
fn chunk(r: &mut Rng, out: &mut Vec<u8>) {
    match r.below(12) {
        // Raw random bytes: 0xFF, NUL, control bytes, invalid UTF-8.
        0..=2 => {
            let n = 1 + r.below(4096);
            out.extend((0..n).map(|_| r.next() as u8));
        }
        // JSON-ish token soup.
        3 | 4 => {
            let alphabet = b"{}[]:,\"'\\ \t\n0123456789.eE+-truefalsnul\x00\x1f\xff";
            let n = 1 + r.below(8192);
            out.extend((0..n).map(|_| *r.pick(alphabet)));
        }
        // Nesting past the 1024 limit, sometimes closed.
        5 => {
            let depth = 1000 + r.below(3000);
            let open = if r.below(2) == 0 { "[" } else { "{\"a\":" };
            out.extend(open.repeat(depth).bytes());
            if r.below(2) == 0 {
                let close = if open == "[" { "]" } else { "}" };
                out.extend(close.repeat(depth).bytes());
            }
        }
        // A big string (up to 1 MiB), with escapes, sometimes unterminated.
        6 => {
            let n = r.below(1 << 20) + 1;
            out.extend_from_slice(br#"{"execute":"guest-sync","arguments":{"id":""#);
            let alphabet = b"abc\\\"u0123456789\xc3\xa9\xed\xa0\x80\x01 ";
            out.extend((0..n).map(|_| *r.pick(alphabet)));
            if r.below(2) == 0 {
                out.extend_from_slice(b"\"}}");
            }
        }
        // A long run of small tokens in one array.
        7 => {
            let n = 10_000 + r.below(200_000);
            out.push(b'[');
            out.extend("1,".repeat(n).bytes());
            out.extend_from_slice(b"2]");
        }
        // A lone 0xFF.
        8 => out.push(0xFF),
        // Requests with wrong, missing or extra members, and unknown commands.
        9 | 10 => {
            let cmd = r.pick(SAFE);
            let s = match r.below(6) {
                0 => format!(r#"{{"execute":"{cmd}","arguments":{{"id":{}}}}}"#, r.next()),
                1 => format!(r#"{{"execute":"{cmd}","arguments":[1]}}"#),
                2 => format!(r#"{{"execute":"{cmd}","id":{{"x":[null,1e999]}},"extra":1}}"#),
                3 => format!(r#"{{"exec-oob":"{cmd}"}}"#),
                4 => format!(r#"{{"execute":"{cmd}x{}"}}"#, r.next()),
                _ => r#"{"execute":"guest-exec","arguments":{"path":"/bin/false"}}"#.into(),
            };
            out.extend_from_slice(s.as_bytes());
        }
        // A valid request.
        _ => {
            let cmd = r.pick(&SAFE[2..]);
            out.extend_from_slice(
                format!(r#"{{"execute":"{cmd}","id":{}}}"#, r.next() >> 1).as_bytes(),
            );
        }
    }
}

#[test]
fn host_garbage_then_a_valid_request() {
    let secs: u64 = std::env::var("QGA_GARBAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("QGA_GARBAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let allow = SAFE.join(",");
    let a = AgentProc::ours(&["-a", &allow]);
    let pid = a.pid();
    let start = reliability::settled(|| host_usage(pid), 10);
    let mut c = a.connect();

    // A reader drains replies, so the agent never blocks writing them.
    let replies = Arc::new(AtomicU64::new(0));
    let mut rd = c.stream.try_clone().unwrap();
    rd.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let reader = {
        let replies = replies.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut tail = Vec::new();
            loop {
                match rd.read(&mut buf) {
                    Ok(0) => panic!("the agent closed the connection"),
                    Ok(n) => {
                        let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                        replies.fetch_add(lines as u64, Ordering::Relaxed);
                        tail.extend_from_slice(&buf[..n]);
                        if tail.len() > 256 {
                            tail.drain(..tail.len() - 256);
                        }
                        // The handshake's reply ends the garbage phase.
                        if tail.ends_with(b"\xff{\"return\": 424242}\n") {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("reading replies: {e}"),
                }
            }
        })
    };

    let mut rng = Rng(seed);
    let mut sent: u64 = 0;
    let mut peak = start.rss_kib;
    let mut buf = Vec::new();
    let t0 = Instant::now();
    let mut last_sample = t0;
    let mut series = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        buf.clear();
        while buf.len() < 256 << 10 {
            chunk(&mut rng, &mut buf);
        }
        c.stream.write_all(&buf).expect("the agent stopped reading");
        sent += buf.len() as u64;
        if last_sample.elapsed() > Duration::from_millis(100) {
            let rss = host_usage(pid).rss_kib;
            peak = peak.max(rss);
            if series.len() < (t0.elapsed().as_secs() / 5) as usize {
                series.push(rss.to_string());
            }
            last_sample = Instant::now();
        }
    }
    let garbage_time = t0.elapsed();
    // Resynchronise on the same connection, then a valid request.
    c.send(b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":424242}}");
    let t1 = Instant::now();
    while !reader.is_finished() {
        assert!(
            t1.elapsed() < Duration::from_secs(120),
            "no handshake reply"
        );
        peak = peak.max(host_usage(pid).rss_kib);
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap();
    assert_eq!(
        c.cmd(r#"{"execute":"guest-ping","id":"after garbage"}"#),
        r#"{"return": {}, "id": "after garbage"}"#
    );
    drop(c);
    let mut c = a.connect();
    c.handshake(7);
    assert_eq!(
        c.cmd(r#"{"execute":"guest-sync","arguments":{"id":8}}"#),
        r#"{"return": 8}"#
    );
    let end = host_usage(pid);
    peak = peak.max(end.hwm_kib);
    record(
        "garbage (host, unix-listen)",
        &[
            format!(
                "{:.1} MiB of garbage in {:.1} s ({:.1} MiB/s), {} replies; handshake after {:.2} s",
                sent as f64 / (1 << 20) as f64,
                garbage_time.as_secs_f64(),
                sent as f64 / (1 << 20) as f64 / garbage_time.as_secs_f64(),
                replies.load(Ordering::Relaxed),
                t1.elapsed().as_secs_f64()
            ),
            format!("start: {start}"),
            format!("end: {end}; peak rss {peak} KiB"),
            format!("rss every 5 s (KiB): {}", series.join(" ")),
        ],
    );
    assert!(peak <= PEAK_RSS_MAX_KIB, "peak RSS {peak} KiB");
}
