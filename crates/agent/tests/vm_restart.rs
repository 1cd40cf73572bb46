//! In the test VM, where freezing is safe:
//! - the host disconnecting right after sending guest-fsfreeze-freeze (or thaw), or in
//!   the middle of a thaw request, many times: after the reconnect handshake the
//!   status is what was last asked for, the frozen filter agrees, and thaw works;
//! - the agent killed (SIGKILL) in the middle of a stream of file writes, and while
//!   the guest is frozen; the guest's /init respawns it 1 s later. Then guest-sync
//!   works, a handle from before answers "handle '<n>' has not been found", new handles
//!   are larger than old ones (the counter in qga.state survived), and a frozen guest
//!   comes back frozen and thaws.

mod common;
mod reliability;

use std::time::{Duration, Instant};

use common::{static_agent, vm_lock, Client, Vm};
use reliability::{agent_pid, error_desc, file_open, read_guest_file, record, ret};

const FREEZE: &str = r#"{"execute":"guest-fsfreeze-freeze"}"#;
const THAW: &str = r#"{"execute":"guest-fsfreeze-thaw"}"#;
const STATUS: &str = r#"{"execute":"guest-fsfreeze-status"}"#;
const DISABLED: &str = r#"{"error": {"class": "CommandNotFound", "desc": "Command guest-get-time has been disabled: the command is not allowed"}}"#;

fn status(c: &mut Client) -> String {
    c.cmd(STATUS)
}

fn assert_frozen(c: &mut Client) {
    assert_eq!(status(c), r#"{"return": "frozen"}"#);
    assert_eq!(c.cmd(r#"{"execute":"guest-get-time"}"#), DISABLED);
}

fn assert_thawed(c: &mut Client) {
    assert_eq!(status(c), r#"{"return": "thawed"}"#);
    assert!(c
        .cmd(r#"{"execute":"guest-get-time"}"#)
        .starts_with(r#"{"return": "#));
}

#[test]
fn vm_disconnects_around_freeze_and_thaw() {
    let _g = vm_lock();
    let rounds: u32 = std::env::var("QGA_FREEZE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let vm = Vm::boot(&static_agent(), &[]);
    let t0 = Instant::now();
    let mut disconnects = 0;
    for i in 0..rounds {
        // Freeze, hang up before the reply.
        let mut c = vm.connect();
        c.send(FREEZE.as_bytes());
        drop(c);
        let mut c = vm.connect();
        assert_frozen(&mut c);
        // Half a thaw, hang up: nothing happens.
        let cut = 1 + (i as usize * 5) % (THAW.len() - 1);
        c.send(&THAW.as_bytes()[..cut]);
        drop(c);
        let mut c = vm.connect();
        assert_frozen(&mut c);
        // Thaw, hang up before the reply.
        c.send(THAW.as_bytes());
        drop(c);
        let mut c = vm.connect();
        assert_thawed(&mut c);
        // And the plain way round, on one connection.
        assert_eq!(c.cmd(FREEZE), r#"{"return": 1}"#);
        assert_frozen(&mut c);
        assert_eq!(c.cmd(THAW), r#"{"return": 1}"#);
        assert_thawed(&mut c);
        disconnects += 3;
    }
    record(
        "disconnects around freeze/thaw (VM)",
        &[format!(
            "{disconnects} disconnects in {rounds} rounds ({:.1} s), status consistent, thaw worked",
            t0.elapsed().as_secs_f64()
        )],
    );
}

/// Waits until the guest's /init started the agent for the `n`th time.
fn wait_for_start(vm: &Vm, n: u32) {
    let want = format!("starting agent (#{n})");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let console = std::fs::read_to_string(vm.dir.join("console.log")).unwrap_or_default();
        if console.contains(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "no '{want}' on the console");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a background child that SIGKILLs the agent (its parent) once `cond` holds.
fn arm_killer(c: &mut Client, cond: &str) {
    let script = format!("until {cond}; do sleep 0.05; done; kill -9 $PPID");
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-exec","arguments":{{"path":"/bin/sh","arg":["-c","{script}"]}}}}"#
    ));
    assert!(r.starts_with(r#"{"return": {"pid": "#), "{r}");
}

#[test]
fn vm_agent_killed_mid_write_and_while_frozen_comes_back() {
    let _g = vm_lock();
    let vm = Vm::boot(&static_agent(), &[]);
    let mut c = vm.connect();
    let pid1 = agent_pid(&mut c);

    // 1. Killed in the middle of a stream of 256 KiB writes (after about 1 s of them).
    let h1 = file_open(&mut c, "/tmp/killed-mid-write", "w");
    arm_killer(&mut c, "[ -e /tmp/go ] && sleep 1");
    let go = file_open(&mut c, "/tmp/go", "w");
    let chunk = qga_agent::sys::base64::encode(&vec![b'k'; 256 << 10]);
    let write = format!(
        r#"{{"execute":"guest-file-write","arguments":{{"handle":{h1},"buf-b64":"{chunk}"}}}}"#
    );
    // Back to the start every 32 writes, so the file stays within 8 MiB of the VM's
    // tmpfs however long the killer takes to fire.
    let rewind = format!(
        r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h1},"offset":0,"whence":"set"}}}}"#
    );
    let mut writes = 0;
    loop {
        if writes % 32 == 31 {
            c.send(rewind.as_bytes());
            match c.recv_within(Duration::from_secs(10)) {
                Some(r) if r.starts_with(br#"{"return": {"eof": false, "position": 0}"#) => {}
                Some(r) if r.starts_with(br#"{"error": "#) => break,
                Some(r) => panic!("{}", String::from_utf8_lossy(&r)),
                None => break,
            }
        }
        c.send(write.as_bytes());
        match c.recv_within(Duration::from_secs(10)) {
            Some(r) if r.starts_with(br#"{"return": {"count": 262144"#) => writes += 1,
            // The agent is gone, and its successor read what it left of the stream: our
            // last request whole (its handle is unknown there), or the tail of one the
            // old agent had started to read (a JSON error). pid and start count below
            // show it was a restart.
            Some(r) if r.starts_with(br#"{"error": "#) => break,
            Some(r) => panic!("{}", String::from_utf8_lossy(&r)),
            None => break, // the agent is gone
        }
        assert!(writes < 100_000, "the agent was not killed");
    }
    drop(c);
    wait_for_start(&vm, 2);
    let mut c = vm.connect();
    let pid2 = agent_pid(&mut c);
    assert_ne!(pid1, pid2);
    for h in [h1, go] {
        let r = c.cmd(&format!(
            r#"{{"execute":"guest-file-write","arguments":{{"handle":{h},"buf-b64":"eA=="}}}}"#
        ));
        assert_eq!(error_desc(&r), format!("handle '{h}' has not been found"));
    }
    let h2 = file_open(&mut c, "/tmp/after-restart", "w");
    assert!(h2 > go, "handle {h2} after the restart, {go} before");
    assert_eq!(read_guest_file(&mut c, "/run/agent.starts"), b"2\n");

    // 2. Killed while frozen: 2 s after the marker appeared (qemu-ga's order: the
    // marker first, then FIFREEZE, which takes milliseconds here).
    arm_killer(&mut c, "[ -e /run/qga.state.isfrozen ] && sleep 2");
    assert_eq!(c.cmd(FREEZE), r#"{"return": 1}"#);
    drop(c);
    wait_for_start(&vm, 3);
    let mut c = vm.connect();
    assert_frozen(&mut c);
    assert_eq!(c.cmd(THAW), r#"{"return": 1}"#);
    assert_thawed(&mut c);
    let pid3 = agent_pid(&mut c);
    assert!(pid3 != pid2);
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-file-close","arguments":{{"handle":{h2}}}}}"#
    ));
    assert_eq!(error_desc(&r), format!("handle '{h2}' has not been found"));
    let h3: i64 = ret(&c.cmd(
        r#"{"execute":"guest-file-open","arguments":{"path":"/tmp/after-second-restart","mode":"w"}}"#,
    ));
    assert!(h3 > h2);
    assert_eq!(read_guest_file(&mut c, "/run/agent.starts"), b"3\n");
    record(
        "agent killed and respawned (VM)",
        &[format!(
            "killed after {writes} writes of 256 KiB and while frozen; handles {h1} {go} -> {h2} -> {h3}; came back frozen, thawed"
        )],
    );
}
