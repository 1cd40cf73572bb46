//! Tests inside a real guest: the agent on a virtio-serial port under QEMU (TCG),
//! driven from the host through the chardev socket (scripts/vm). Commands that change
//! the machine are only ever tested here.

mod common;

use common::{decode_b64, static_agent, vm_lock, Vm};

#[test]
fn vm_agent_answers_on_virtio_serial() {
    let _g = vm_lock();
    let vm = Vm::boot(&static_agent(), &[]);
    let mut c = vm.connect();
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    let info = c.cmd(r#"{"execute":"guest-info"}"#);
    assert!(info.contains(r#""name": "guest-sync-delimited""#), "{info}");
    // The host leaving and coming back: the same port, the parser state intact.
    c.send(br#"{"execute":"guest-sync","arguments":"#);
    drop(c);
    let mut c = vm.connect(); // the handshake's 0xFF discards the half request
    assert_eq!(
        c.cmd(r#"{"execute":"guest-sync","arguments":{"id":77}}"#),
        r#"{"return": 77}"#
    );
}

/// The agent's main-thread voluntary context switches, read through its own
/// guest-file-* commands (`/proc/self/status` is the agent's).
fn agent_wakeups(c: &mut common::Client) -> u64 {
    let open = c.cmd(r#"{"execute":"guest-file-open","arguments":{"path":"/proc/self/status"}}"#);
    let handle: i64 = open
        .trim_start_matches("{\"return\": ")
        .trim_end_matches('}')
        .parse()
        .expect(&open);
    let read = c.cmd(&format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{handle},"count":65536}}}}"#
    ));
    c.cmd(&format!(
        r#"{{"execute":"guest-file-close","arguments":{{"handle":{handle}}}}}"#
    ));
    let b64 = read
        .split("\"buf-b64\": \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect(&read);
    let text = decode_b64(b64);
    text.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// Wakeups of an agent while the host side of its virtio-serial port is closed for
/// `secs` seconds (the read before and the reconnect after cost a handful).
fn wakeups_while_host_away(agent: &std::path::Path, secs: u64) -> u64 {
    let vm = Vm::boot(agent, &[]);
    let mut c = vm.connect();
    let before = agent_wakeups(&mut c);
    drop(c);
    std::thread::sleep(std::time::Duration::from_secs(secs));
    let mut c = vm.connect();
    agent_wakeups(&mut c) - before
}

#[test]
fn vm_no_polling_while_the_host_is_away() {
    let _g = vm_lock();
    let ours = wakeups_while_host_away(&static_agent(), 4);
    let theirs = wakeups_while_host_away(&common::reference_binary(), 4);
    eprintln!("wakeups during 4 s with the host away: ours {ours}, qemu-ga 10.0.2 {theirs}");
    // qemu-ga sleeps 100 ms and polls again: about 40 wakeups here.
    assert!(
        theirs >= 20,
        "the reference should show its polling ({theirs})"
    );
    assert!(
        ours <= 10,
        "our agent woke {ours} times while the host was away"
    );
}

#[test]
fn vm_vsock_listen_serves_a_vsock_client() {
    let _g = vm_lock();
    let probe = common::static_example("vsock_probe");
    let add = format!("{}:/usr/bin/vsock-probe", probe.display());
    let vm = Vm::boot_with(
        &static_agent(),
        &["--add", &add, "--module", "vsock_loopback"],
        &[],
    );
    let mut c = vm.connect();
    // A second agent on vsock, started through the first one; then a vsock client.
    let start = c.cmd(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","mkdir -p /tmp/v && /usr/sbin/qemu-ga -m vsock-listen -p 1:5000 -t /tmp/v >/tmp/v/log 2>&1 &"]}}"#,
    );
    assert!(start.starts_with(r#"{"return": {"pid": "#), "{start}");
    let mut reply = String::new();
    for _ in 0..50 {
        let run = c.cmd(
            r#"{"execute":"guest-exec","arguments":{"path":"/usr/bin/vsock-probe","arg":["1","5000","{\"execute\":\"guest-sync\",\"arguments\":{\"id\":55}}"],"capture-output":true}}"#,
        );
        let pid = run
            .trim_start_matches(r#"{"return": {"pid": "#)
            .trim_end_matches("}}")
            .to_string();
        let status = loop {
            let s = c.cmd(&format!(
                r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#
            ));
            if s.contains(r#""exited": true"#) {
                break s;
            }
        };
        if status.contains(r#""exitcode": 0"#) {
            let b64 = status
                .split(r#""out-data": ""#)
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            reply = decode_b64(b64);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(reply, "{\"return\": 55}\n");
}

#[test]
fn vm_freeze_hook_runs_and_the_watchdog_thaws_a_forgotten_freeze() {
    let _g = vm_lock();
    let dir = common::TempDir::new();
    let hook = dir.join("hook");
    std::fs::write(&hook, "#!/bin/sh\necho \"hook $*\" >> /tmp/hook.log\n").expect("write hook");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&hook, mode).expect("chmod hook");
    let add = format!("{}:/usr/local/bin/qga-hook", hook.display());
    let vm = Vm::boot_with(
        &static_agent(),
        &["--add", &add],
        &["-F/usr/local/bin/qga-hook", "--fsfreeze-timeout=3"],
    );
    let mut c = vm.connect();
    assert_eq!(
        c.cmd(r#"{"execute":"guest-fsfreeze-freeze"}"#),
        r#"{"return": 1}"#
    );
    assert_eq!(
        c.cmd(r#"{"execute":"guest-fsfreeze-status"}"#),
        r#"{"return": "frozen"}"#
    );
    // The host "forgets" the guest; the watchdog thaws it after 3 s.
    let start = std::time::Instant::now();
    while c.cmd(r#"{"execute":"guest-fsfreeze-status"}"#) != r#"{"return": "thawed"}"# {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "watchdog never thawed"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(2),
        "thawed too early"
    );
    // The hook saw the freeze and the watchdog's thaw, in that order.
    let open = c.cmd(r#"{"execute":"guest-file-open","arguments":{"path":"/tmp/hook.log"}}"#);
    let handle = open
        .trim_start_matches("{\"return\": ")
        .trim_end_matches('}')
        .to_string();
    let read = c.cmd(&format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{handle}}}}}"#
    ));
    let b64 = read
        .split("\"buf-b64\": \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect(&read);
    assert_eq!(decode_b64(b64), "hook freeze\nhook thaw\n");
    // And the data disk is writable again.
    let w =
        c.cmd(r#"{"execute":"guest-file-open","arguments":{"path":"/mnt/data/after","mode":"w"}}"#);
    assert!(w.starts_with("{\"return\": "), "{w}");
}

fn return_int(reply: &str) -> i64 {
    reply
        .trim_start_matches("{\"return\": ")
        .trim_start_matches("{\"pid\": ")
        .trim_end_matches('}')
        .parse()
        .unwrap_or_else(|_| panic!("not an integer reply: {reply}"))
}

#[test]
fn vm_freeze_blocks_writers_until_thaw_and_set_time_moves_the_clock() {
    let _g = vm_lock();
    let vm = Vm::boot(&static_agent(), &[]);
    let mut c = vm.connect();
    let t0 = return_int(&c.cmd(r#"{"execute":"guest-get-time"}"#));
    // A writer that starts one second from now and records when its write reached
    // the disk; the filesystem is frozen before then.
    let w = c.cmd(
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","sleep 1; echo data > /mnt/data/w; sync /mnt/data/w; date +%s > /tmp/done"]}}"#,
    );
    assert!(w.starts_with(r#"{"return": {"pid": "#), "{w}");
    assert_eq!(
        c.cmd(r#"{"execute":"guest-fsfreeze-freeze"}"#),
        r#"{"return": 1}"#
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        c.cmd(r#"{"execute":"guest-fsfreeze-thaw"}"#),
        r#"{"return": 1}"#
    );
    let mut done = String::new();
    for _ in 0..50 {
        let open = c.cmd(r#"{"execute":"guest-file-open","arguments":{"path":"/tmp/done"}}"#);
        if open.starts_with("{\"return\": ") {
            let h = return_int(&open);
            let read = c.cmd(&format!(
                r#"{{"execute":"guest-file-read","arguments":{{"handle":{h}}}}}"#
            ));
            let b64 = read
                .split("\"buf-b64\": \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            done = decode_b64(b64);
            if !done.is_empty() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let done_s: i64 = done
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("writer never finished: {done:?}"));
    // Without the freeze it would have finished about 1 s after t0.
    assert!(
        done_s >= t0 / 1_000_000_000 + 4,
        "the write went through while frozen: done at {done_s}, started at {}",
        t0 / 1_000_000_000
    );

    // guest-set-time moves the clock, checked with guest-get-time...
    let target: i64 = 1_700_000_000_000_000_000;
    assert_eq!(
        c.cmd(&format!(
            r#"{{"execute":"guest-set-time","arguments":{{"time":{target}}}}}"#
        )),
        r#"{"return": {}}"#
    );
    let now = return_int(&c.cmd(r#"{"execute":"guest-get-time"}"#));
    assert!(
        (target..target + 5_000_000_000).contains(&now),
        "clock at {now}"
    );
    // ... and it also went to the RTC (hwclock -w): reading the clock back from the
    // RTC (no time given: hwclock -s) keeps the new time.
    assert_eq!(
        c.cmd(r#"{"execute":"guest-set-time"}"#),
        r#"{"return": {}}"#
    );
    let now = return_int(&c.cmd(r#"{"execute":"guest-get-time"}"#));
    assert!(
        (target..target + 30_000_000_000).contains(&now),
        "RTC not written: {now}"
    );
}
