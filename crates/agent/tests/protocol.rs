//! Wire-protocol tests against a spawned agent: QEMU's own test-qga.c protocol cases
//! (§8.2 cases 1–4, 13–20), and a differential battery that sends the same bytes to
//! our agent and to the real qemu-ga 10.0.2 and requires identical bytes back.

mod common;

use common::{AgentProc, Client};
use std::time::Duration;

fn ours() -> (AgentProc, Client) {
    let a = AgentProc::ours(&[]);
    let c = a.connect();
    (a, c)
}

#[test]
fn case01_sync_delimited() {
    let (_a, mut c) = ours();
    let r: u32 = 0x1234_5678 ^ std::process::id();
    c.send(b"\xff");
    c.send(
        format!("{{'execute': 'guest-sync-delimited', 'arguments': {{'id': {r}}}}}\n").as_bytes(),
    );
    // Skip everything up to the 0xFF sentinel; the error reply for our own 0xFF must
    // not contain a raw 0xFF.
    let first = c.recv();
    assert!(!first.contains(&0xFF), "{first:?}");
    assert_eq!(first, b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n");
    let mut want = vec![0xFF];
    want.extend_from_slice(format!("{{\"return\": {r}}}\n").as_bytes());
    assert_eq!(c.recv(), want);
}

#[test]
fn cases_02_to_04_13_14_sync_ping_info_time_id() {
    let (_a, mut c) = ours();
    assert_eq!(
        c.cmd("{'execute': 'guest-sync', 'arguments': {'id': 4242}}"),
        r#"{"return": 4242}"#
    );
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    let info = c.cmd(r#"{"execute":"guest-info"}"#);
    assert!(
        info.starts_with(&format!(
            "{{\"return\": {{\"version\": \"{}\", \"supported_commands\": [",
            env!("CARGO_PKG_VERSION")
        )),
        "{info}"
    );
    let t = c.cmd(r#"{"execute":"guest-get-time"}"#);
    let ns: i64 = t
        .trim_start_matches("{\"return\": ")
        .trim_end_matches('}')
        .parse()
        .expect(&t);
    assert!(ns > 1_600_000_000_000_000_000 && ns % 1000 == 0, "{t}");
    assert_eq!(
        c.cmd("{'execute': 'guest-ping', 'id': 1}"),
        r#"{"return": {}, "id": 1}"#
    );
}

#[test]
fn cases_15_to_17_invalid_requests() {
    let (_a, mut c) = ours();
    assert_eq!(
        c.cmd("{'exec-oob': 'guest-ping'}"),
        r#"{"error": {"class": "GenericError", "desc": "QMP input member 'exec-oob' is unexpected"}}"#
    );
    assert_eq!(
        c.cmd("{'execute': 'guest-invalid-cmd'}"),
        r#"{"error": {"class": "CommandNotFound", "desc": "The command guest-invalid-cmd has not been found"}}"#
    );
    assert_eq!(
        c.cmd("{'execute': 'guest-ping', 'arguments': {'foo': 42}}"),
        r#"{"error": {"class": "GenericError", "desc": "Parameter 'foo' is unexpected"}}"#
    );
}

#[test]
fn case19_blocked_rpcs() {
    let mut a = AgentProc::ours(&["-b", "guest-ping,guest-get-time"]);
    let mut c = a.connect();
    for cmd in ["guest-ping", "guest-get-time"] {
        assert_eq!(
            c.cmd(&format!("{{\"execute\":\"{cmd}\"}}")),
            format!(
                r#"{{"error": {{"class": "CommandNotFound", "desc": "Command {cmd} has been disabled: the command is not allowed"}}}}"#
            )
        );
    }
    let info = c.cmd(r#"{"execute":"guest-info"}"#);
    assert!(
        info.contains(r#"{"enabled": false, "name": "guest-ping", "success-response": true}"#),
        "{info}"
    );
    assert!(
        info.contains(r#"{"enabled": true, "name": "guest-sync", "success-response": true}"#),
        "{info}"
    );
    drop(c);
    assert_eq!(a.stop(), Some(0));
}

#[test]
fn case20_allowed_rpcs() {
    let mut a = AgentProc::ours(&["-a", "guest-ping,guest-get-time"]);
    let mut c = a.connect();
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    assert!(c
        .cmd(r#"{"execute":"guest-get-time"}"#)
        .starts_with(r#"{"return": "#));
    assert_eq!(
        c.cmd(r#"{"execute":"guest-sync","arguments":{"id":1}}"#),
        r#"{"error": {"class": "CommandNotFound", "desc": "Command guest-sync has been disabled: the command is not allowed"}}"#
    );
    drop(c);
    assert_eq!(a.stop(), Some(0));
}

#[test]
fn one_client_at_a_time_and_parser_state_survives_reconnect() {
    let a = AgentProc::ours(&[]);
    let mut c1 = a.connect();
    let mut c2 = a.connect(); // accepted by the kernel, not served yet
    c2.send(br#"{"execute":"guest-sync","arguments":{"id":2}}"#);
    assert_eq!(
        c1.cmd(r#"{"execute":"guest-sync","arguments":{"id":1}}"#),
        r#"{"return": 1}"#
    );
    assert!(
        c2.recv_within(Duration::from_millis(300)).is_none(),
        "second client served too early"
    );
    drop(c1);
    assert_eq!(c2.recv(), b"{\"return\": 2}\n".to_vec());
    // A half request left by one client is continued by the next one's bytes.
    c2.send(br#"{"execute":"guest-sync","arguments":{"id":"#);
    drop(c2);
    let mut c3 = a.connect();
    assert_eq!(c3.cmd("7}}"), r#"{"return": 7}"#);
}

#[test]
fn sigterm_exits_zero() {
    let mut a = AgentProc::ours(&[]);
    let mut c = a.connect();
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    assert_eq!(a.stop(), Some(0));
}

/// The differential battery: protocol edge cases whose replies do not depend on the
/// machine. Each case is followed by a 0xFF and a guest-sync marker, and everything up
/// to the marker's reply is compared byte for byte.
fn battery() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let one = |s: &[u8]| vec![s.to_vec()];
    let mut cases: Vec<(&'static str, Vec<Vec<u8>>)> = vec![
        ("ping", one(br#"{"execute":"guest-ping"}"#)),
        ("ping-nested-id", one(br#"{"execute":"guest-ping","id":{"a":[1,2]}}"#)),
        ("unknown-with-id", one(br#"{"execute":"nope","id":7}"#)),
        ("sync-wrong-type", one(br#"{"execute":"guest-sync","arguments":{"id":"x"}}"#)),
        ("sync-missing", one(br#"{"execute":"guest-sync"}"#)),
        ("sync-unexpected", one(br#"{"execute":"guest-sync","arguments":{"id":1,"zz":2}}"#)),
        ("sync-float", one(br#"{"execute":"guest-sync","arguments":{"id":1.0}}"#)),
        ("sync-too-big", one(br#"{"execute":"guest-sync","arguments":{"id":9223372036854775808}}"#)),
        ("sync-negative", one(br#"{"execute":"guest-sync","arguments":{"id":-9223372036854775808}}"#)),
        ("sync-null", one(br#"{"execute":"guest-sync","arguments":{"id":null}}"#)),
        ("sync-delimited", one(br#"{"execute":"guest-sync-delimited","arguments":{"id":5},"id":"d"}"#)),
        ("sync-delimited-bad", one(br#"{"execute":"guest-sync-delimited","arguments":{}}"#)),
        ("dup-key", one(br#"{"execute":"guest-ping","execute":"guest-info"}"#)),
        ("execute-not-string", one(br#"{"execute":1,"id":3}"#)),
        ("lacks-execute", one(br#"{"arguments":{},"id":[]}"#)),
        ("arguments-null", one(br#"{"execute":"guest-ping","arguments":null}"#)),
        ("arguments-list", one(br#"{"execute":"guest-ping","arguments":[]}"#)),
        ("exec-oob", one(br#"{"exec-oob":"guest-ping"}"#)),
        ("two-unexpected-members", one(br#"{"execute":"guest-ping","foo":1,"bar":2}"#)),
        ("unexpected-arg", one(br#"{"execute":"guest-ping","arguments":{"a":1}}"#)),
        ("non-object-list", one(b"[]")),
        ("non-object-string", one(br#""str""#)),
        ("non-object-number", one(b"1 ")),
        ("non-object-true", one(b"true ")),
        ("non-object-null", one(b"null ")),
        ("incomplete-scalar", one(b"1")),
        ("lone-open", one(b"{")),
        ("lone-close", one(b"}")),
        ("lone-bracket", one(b"]")),
        ("unbalanced", one(br#"{"a":[}"#)),
        ("stray-then-ping", one(br#"@abc{"execute":"guest-ping"}"#)),
        ("stray-inside", one(br#"{"execute":"guest-ping", @}"#)),
        ("control-01", one(b"\x01")),
        ("nul", one(b"\x00")),
        ("fe", one(b"\xfe")),
        ("leading-zero", one(b"01")),
        ("missing-colon", one(br#"{"a" 1}"#)),
        ("list-separator", one(b"[1 2]")),
        ("bad-keyword", one(b"nul ")),
        ("bad-escape", one(br#""\x""#)),
        ("lone-surrogate", one(br#""\ud800""#)),
        ("bad-utf8", one(b"\"\xc3(\"")),
        ("non-string-key", one(b"{1:2}")),
        ("single-quotes", one(b"{'execute':'guest-sync','arguments':{'id':'x'}}")),
        ("newline-in-string", one(b"{\"execute\":\"guest-\nping\"}")),
        ("ff-mid-request", one(b"{\"execute\":\"guest-pi\xffng\"}")),
        ("ff-before-close", one(b"{\"execute\":\"guest-ping\"\xff}")),
        ("utf8-command", one("{\"execute\":\"\u{e9}\u{1F600}\"}".as_bytes())),
        ("nul-escape-command", one(br#"{"execute":"guest-ping\u0000x"}"#)),
        ("noncharacter", one(br#"{"execute":"\uffff"}"#)),
        ("many-in-one-write", one(br#"{"execute":"guest-ping","id":1}{"execute":"guest-ping","id":2} {"execute":"guest-sync","arguments":{"id":3}}"#)),
        ("split-writes", br#"{"execute":"guest-sync","arguments":{"id":99},"id":"s"}"#.iter().map(|b| vec![*b]).collect()),
    ];
    for (name, id) in [
        ("id-int", "1"),
        ("id-negative", "-1"),
        ("id-double", "1.0"),
        ("id-fraction", "0.1"),
        ("id-exp", "1e5"),
        ("id-huge", "1e400"),
        ("id-neg-zero", "-0.0"),
        ("id-uint64", "18446744073709551615"),
        ("id-beyond-uint64", "18446744073709551616"),
        ("id-string", r#""abc""#),
        ("id-sq-string", "'a\"b'"),
        ("id-null", "null"),
        ("id-bool", "true"),
        ("id-list", "[1,[2,[]],{}]"),
        ("id-object", r#"{"b":1,"a":2,"execute":3,"zz":{"q":null}}"#),
        ("id-unicode", r#""\u00e9\ud83d\ude00/\t\u001f""#),
    ] {
        cases.push((
            name,
            vec![format!("{{\"execute\":\"guest-ping\",\"id\":{id}}}").into_bytes()],
        ));
    }
    // Several unknown members: QEMU names the first one of its GHashTable's iteration.
    for (name, args) in [
        ("unexpected-3", r#"{"a":1,"b":2,"c":3}"#),
        (
            "unexpected-with-known",
            r#"{"zz":1,"id":5,"foo":2,"bar":3}"#,
        ),
        (
            "unexpected-many",
            r#"{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k11":1,"k12":1,"id":1}"#,
        ),
        ("unexpected-high-bytes", r#"{"\u00e9":1,"\u00ff":2,"id":1}"#),
    ] {
        cases.push((
            name,
            vec![format!(r#"{{"execute":"guest-sync","arguments":{args}}}"#).into_bytes()],
        ));
    }
    let deep_ok = format!(
        "{{\"execute\":\"guest-ping\",\"id\":{}{}}}",
        "[".repeat(1022),
        "]".repeat(1022)
    );
    let deep_bad = format!(
        "{{\"execute\":\"guest-ping\",\"id\":{}{}}}",
        "[".repeat(1024),
        "]".repeat(1024)
    );
    cases.push(("depth-1024", vec![deep_ok.into_bytes()]));
    cases.push(("depth-1025", vec![deep_bad.into_bytes()]));
    let mut big = br#"{"execute":"guest-sync","arguments":{"id":1},"x":""#.to_vec();
    big.extend(std::iter::repeat_n(b'A', 64 << 20));
    big.extend_from_slice(b"\"}");
    cases.push(("token-size", vec![big]));
    let mut many = b"[".to_vec();
    for _ in 0..(1 << 20) {
        many.extend_from_slice(b"1,");
    }
    many.extend_from_slice(b"1]");
    cases.push(("token-count", vec![many]));
    cases
}

fn run_case(c: &mut Client, marker: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    for p in parts {
        c.send(p);
    }
    c.send(b"\xff");
    c.send(format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{marker}}}}}").as_bytes());
    let want = format!("{{\"return\": {marker}}}\n").into_bytes();
    let mut out = Vec::new();
    loop {
        let r = c.recv();
        let done = r == want;
        out.extend_from_slice(&r);
        if done {
            return out;
        }
    }
}

#[test]
fn differential_protocol_battery_against_qemu_ga() {
    let ours = AgentProc::ours(&[]);
    let reference = AgentProc::reference(&[]);
    let (mut co, mut cr) = (ours.connect(), reference.connect());
    let mut mismatches = Vec::new();
    for (i, (name, parts)) in battery().iter().enumerate() {
        let marker = 100_000 + i as u32;
        let a = run_case(&mut co, marker, parts);
        let b = run_case(&mut cr, marker, parts);
        if a != b {
            let show = |v: &[u8]| String::from_utf8_lossy(&v[..v.len().min(4000)]).into_owned();
            mismatches.push(format!(
                "{name}:\n  ours: {}\n  qemu: {}",
                show(&a),
                show(&b)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Voluntary context switches of every thread of a process.
fn voluntary_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[test]
fn idle_agent_with_a_silent_client_makes_no_wakeups() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    std::thread::sleep(Duration::from_millis(200));
    let before = voluntary_switches(a.pid());
    std::thread::sleep(Duration::from_secs(3));
    let after = voluntary_switches(a.pid());
    assert_eq!(
        after,
        before,
        "the idle agent woke up {} times in 3 s",
        after - before
    );
    // And it still answers.
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
}

/// The command list, order and policy as guest-info reports them, without the version.
fn command_list(c: &mut Client) -> String {
    let info = c.cmd(r#"{"execute":"guest-info"}"#);
    info.split("\"supported_commands\": ")
        .nth(1)
        .expect(&info)
        .to_string()
}

#[test]
fn guest_info_lists_the_same_43_commands_as_qemu_ga() {
    let ours = AgentProc::ours(&[]);
    let reference = AgentProc::reference(&[]);
    let a = command_list(&mut ours.connect());
    let b = command_list(&mut reference.connect());
    assert_eq!(a, b);
    assert_eq!(a.matches("\"name\"").count(), 43);
    // And with a block list, the same commands are disabled.
    let ours = AgentProc::ours(&["-b", "guest-exec,guest-file-open,guest-shutdown"]);
    let reference = AgentProc::reference(&["-b", "guest-exec,guest-file-open,guest-shutdown"]);
    assert_eq!(
        command_list(&mut ours.connect()),
        command_list(&mut reference.connect())
    );
}
