//! Soak: our static agent in the test VM under a compressed day of real host traffic
//! for a fixed time budget, with its memory, descriptors and threads sampled from
//! inside the guest at the start, after a warm-up and at the end; they must stay flat.
//!
//! One cycle is what the management stacks send, without their sleeps:
//! - KubeVirt through libvirt (every 10 s): guest-network-get-interfaces,
//!   guest-get-osinfo, guest-get-host-name, guest-get-timezone, guest-get-users, each
//!   preceded by a guest-sync; guest-fsfreeze-status twice (every 5 s); guest-info and
//!   guest-get-fsinfo every 30th cycle (every 300 s);
//! - exec probes: guest-exec of a small command, guest-exec-status until it exited;
//! - file traffic: open / write / seek / read / close of a file under /tmp, 4 KiB to
//!   1 MiB, read back in Proxmox's 1 MiB chunks and compared;
//! - Proxmox: the main connection closed, then one connection per command, each
//!   carrying guest-sync-delimited and the command in a single write (no 0xFF).
//!
//! The budget is `QGA_SOAK_SECS` seconds (default 90; the VM boot comes on top).

mod common;
mod reliability;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{static_agent, vm_lock, Client, Vm};
use qga_agent::sys::base64;
use qga_proto::cmds::file::GuestFileRead;
use reliability::{guest_usage, member, record, ret, settled, Usage};

/// RSS the agent may gain between the warm-up sample and the end.
const RSS_SLACK_KIB: u64 = 512;

/// Counts replies received.
struct Counter {
    commands: u64,
}

impl Counter {
    fn cmd(&mut self, c: &mut Client, json: &str) -> String {
        self.commands += 1;
        c.cmd(json)
    }

    /// A request that must succeed; its reply.
    fn ok(&mut self, c: &mut Client, json: &str) -> String {
        let r = self.cmd(c, json);
        assert!(r.starts_with("{\"return\": "), "{json}: {r:.300}");
        r
    }
}

/// KubeVirt's 10 s set, each preceded by libvirt's guest-sync, and its 5 s
/// fsfreeze-status (twice per 10 s).
fn kubevirt_poll(n: &mut Counter, c: &mut Client, cycle: u64) {
    for (i, cmd) in [
        "guest-network-get-interfaces",
        "guest-get-osinfo",
        "guest-get-host-name",
        "guest-get-timezone",
        "guest-get-users",
    ]
    .iter()
    .enumerate()
    {
        let id = cycle * 10 + i as u64;
        let r = n.cmd(
            c,
            &format!(r#"{{"execute":"guest-sync","arguments":{{"id":{id}}}}}"#),
        );
        assert_eq!(r, format!("{{\"return\": {id}}}"));
        n.ok(c, &format!(r#"{{"execute":"{cmd}"}}"#));
    }
    for _ in 0..2 {
        let r = n.cmd(c, r#"{"execute":"guest-fsfreeze-status"}"#);
        assert_eq!(r, r#"{"return": "thawed"}"#);
    }
    if cycle.is_multiple_of(30) {
        let info = n.ok(c, r#"{"execute":"guest-info"}"#);
        assert!(info.contains(r#""name": "guest-exec""#));
        let fs = n.ok(c, r#"{"execute":"guest-get-fsinfo"}"#);
        assert!(fs.contains(r#""mountpoint": "/mnt/data""#), "{fs}");
    }
}

/// One small guest-exec, polled until it exited, its output checked.
fn exec_probe(n: &mut Counter, c: &mut Client, cycle: u64) {
    let (args, out, code) = match cycle % 3 {
        0 => (
            format!(r#"{{"path":"/bin/echo","arg":["soak","{cycle}"],"capture-output":true}}"#),
            format!("soak {cycle}\n"),
            0,
        ),
        1 => {
            let input = format!("input of cycle {cycle}");
            (
                format!(
                    r#"{{"path":"/bin/cat","input-data":"{}","capture-output":true}}"#,
                    base64::encode(input.as_bytes())
                ),
                input,
                0,
            )
        }
        _ => (
            r#"{"path":"/bin/sh","arg":["-c","exit 3"],"capture-output":true}"#.to_string(),
            String::new(),
            3,
        ),
    };
    let r = n.ok(
        c,
        &format!(r#"{{"execute":"guest-exec","arguments":{args}}}"#),
    );
    let pid = ret::<qga_proto::cmds::exec::GuestExec>(&r).pid;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = n.ok(
            c,
            &format!(r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#),
        );
        let st: qga_proto::cmds::exec::GuestExecStatus = ret(&r);
        if st.exited {
            assert_eq!(st.exitcode, Some(code), "{r}");
            let got = st.out_data.map(|d| base64::decode(d).unwrap());
            assert_eq!(got.unwrap_or_default(), out.as_bytes(), "{r}");
            return;
        }
        assert!(Instant::now() < deadline, "exec {pid} did not finish");
    }
}

/// File sizes with their contents' base64; [`Payloads::pick`] says which one a cycle uses.
struct Payloads(Vec<(usize, String)>);

impl Payloads {
    fn new() -> Self {
        let mut x: u32 = 0x2545_f491;
        let sizes = [4 << 10, 16 << 10, 64 << 10, 200 << 10, 1 << 20];
        Payloads(
            sizes
                .iter()
                .map(|&len| {
                    let data: Vec<u8> = (0..len)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            x as u8
                        })
                        .collect();
                    (len, base64::encode(&data))
                })
                .collect(),
        )
    }

    /// Mostly small files, as configuration and key files are: 200 KiB every 8th
    /// cycle, 1 MiB every 16th.
    fn pick(&self, cycle: u64) -> &(usize, String) {
        let i = match cycle % 16 {
            15 => 4,
            7 => 3,
            c if c % 4 == 1 => 2,
            c => (c % 2) as usize,
        };
        &self.0[i]
    }
}

/// open "w+", write (in 64 KiB pieces up to 256 KiB, else whole), seek to 0, read back
/// in 1 MiB chunks until EOF, compare, close.
fn file_round_trip(n: &mut Counter, c: &mut Client, cycle: u64, p: &Payloads) {
    let (len, b64) = p.pick(cycle);
    let path = format!("/tmp/soak-{}", cycle % 4);
    let h: i64 = ret(&n.ok(
        c,
        &format!(r#"{{"execute":"guest-file-open","arguments":{{"path":"{path}","mode":"w+"}}}}"#),
    ));
    let piece = if *len <= 256 << 10 { 64 << 10 } else { *len };
    // Whole base64 quanta: 3 bytes become 4 characters.
    let step = piece.div_ceil(3) * 4;
    let mut written = 0;
    for chunk in b64.as_bytes().chunks(step) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        let r = n.ok(
            c,
            &format!(r#"{{"execute":"guest-file-write","arguments":{{"handle":{h},"buf-b64":"{chunk}"}}}}"#),
        );
        let w: qga_proto::cmds::file::GuestFileWrite = ret(&r);
        written += w.count as usize;
    }
    assert_eq!(written, *len);
    n.ok(
        c,
        &format!(r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h},"offset":0,"whence":"set"}}}}"#),
    );
    let mut got = String::new();
    loop {
        let r = n.ok(
            c,
            &format!(
                r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":1048576}}}}"#
            ),
        );
        got.push_str(member(&r, "buf-b64").unwrap_or(""));
        if r.contains(r#""eof": true"#) {
            break;
        }
        let rd: GuestFileRead = ret(&r);
        assert!(rd.count > 0, "{r:.300}");
    }
    // Chunks concatenate as base64: only the last (or a single) chunk is not empty.
    assert!(got == *b64, "cycle {cycle}: {len} bytes did not read back");
    n.ok(
        c,
        &format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{h}}}}}"#),
    );
}

/// Proxmox's transport: a fresh connection, guest-sync-delimited and the command in one
/// write, `\xff<sync reply>\n<reply>\n` back, then close.
fn proxmox(n: &mut Counter, vm: &Vm, id: u64, cmd: &str) -> String {
    let mut s = UnixStream::connect(vm.dir.join("qga.sock")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.write_all(
        format!(
            "{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}\n{{\"execute\":\"{cmd}\"}}\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut sync = Vec::new();
    r.read_until(b'\n', &mut sync).unwrap();
    let mut want = vec![0xFF];
    want.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
    assert_eq!(sync, want, "{}", String::from_utf8_lossy(&sync));
    let mut reply = String::new();
    r.read_line(&mut reply).unwrap();
    n.commands += 2;
    assert!(reply.starts_with("{\"return\": "), "{cmd}: {reply}");
    reply
}

fn usage(c: &mut Client, pid: u32) -> Usage {
    settled(|| guest_usage(c, pid), 10)
}

#[test]
fn vm_soak_polling_exec_and_files_stay_flat() {
    let _g = vm_lock();
    let secs: u64 = std::env::var("QGA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    let vm = Vm::boot(&static_agent(), &[]);
    let mut c = vm.connect();
    let pid = reliability::agent_pid(&mut c);
    let start = usage(&mut c, pid);
    let payloads = Payloads::new();
    let mut n = Counter { commands: 0 };
    let mut proxmox_conns = 0;
    let mut cycle: u64 = 0;
    let t0 = Instant::now();
    let warmup_cycles = 48; // three of each file size, three guest-info and fsinfo
    let mut warm = None;
    let mut max_rss = start.rss_kib;
    let mut series = Vec::new();
    // Samples are taken at the same point of the 16-cycle file-size rotation (right
    // after the 1 MiB round trip): glibc's heap holds a varying amount of freed memory
    // between its trims, so RSS is only comparable phase for phase.
    while warm.is_none() || t0.elapsed() < Duration::from_secs(secs) || !cycle.is_multiple_of(16) {
        kubevirt_poll(&mut n, &mut c, cycle);
        exec_probe(&mut n, &mut c, cycle);
        file_round_trip(&mut n, &mut c, cycle, &payloads);
        drop(c);
        for (i, cmd) in ["guest-ping", "guest-get-time", "guest-fsfreeze-status"]
            .iter()
            .enumerate()
        {
            proxmox(&mut n, &vm, cycle * 10 + i as u64, cmd);
            proxmox_conns += 1;
        }
        c = vm.connect();
        n.commands += 1; // the handshake's guest-sync-delimited
        cycle += 1;
        if cycle == warmup_cycles {
            let u = usage(&mut c, pid);
            max_rss = max_rss.max(u.rss_kib);
            warm = Some(u);
        } else if cycle.is_multiple_of(192) {
            let u = usage(&mut c, pid);
            max_rss = max_rss.max(u.rss_kib);
            series.push(format!("{}", u.rss_kib));
        }
    }
    let elapsed = t0.elapsed();
    let end = usage(&mut c, pid);
    let warm = warm.unwrap();
    max_rss = max_rss.max(end.rss_kib);
    let starts = reliability::read_guest_file(&mut c, "/run/agent.starts");
    record(
        "soak (VM, TCG)",
        &[
            format!(
                "{cycle} cycles, {} commands in {:.1} s ({:.0} commands/s), {proxmox_conns} Proxmox connections",
                n.commands,
                elapsed.as_secs_f64(),
                n.commands as f64 / elapsed.as_secs_f64()
            ),
            format!("start:   {start}"),
            format!("warm-up: {warm} (after {warmup_cycles} cycles)"),
            format!("end:     {end}"),
            format!("largest sampled rss {max_rss} KiB; every 192 cycles: {}", series.join(" ")),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&starts).trim(),
        "1",
        "the agent restarted"
    );
    assert!(
        end.rss_kib <= warm.rss_kib + RSS_SLACK_KIB,
        "RSS grew from {} KiB to {} KiB",
        warm.rss_kib,
        end.rss_kib
    );
    assert!(
        end.hwm_kib <= warm.hwm_kib + RSS_SLACK_KIB,
        "peak RSS grew from {} KiB to {} KiB",
        warm.hwm_kib,
        end.hwm_kib
    );
    assert_eq!(end.fds, warm.fds, "descriptor count changed");
    assert_eq!(end.threads, warm.threads, "thread count changed");
}
