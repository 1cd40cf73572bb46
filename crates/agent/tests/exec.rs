//! guest-exec and guest-exec-status against a spawned agent: QEMU's test-qga cases
//! 22–25, the 16 MiB capture limit, children that never exit, never read stdin or
//! flood their output, no zombies and no descriptor leaks after thousands of execs,
//! and a differential battery against qemu-ga 10.0.2 for the error replies.

mod common;

use std::time::{Duration, Instant};

use common::{ret, AgentProc, Client};
use qga_agent::sys::base64;
use qga_proto::cmds::exec::{GuestExec, GuestExecStatus};

fn exec(c: &mut Client, args: &str) -> i64 {
    let r: GuestExec = ret(&c.cmd(&format!(r#"{{"execute":"guest-exec","arguments":{args}}}"#)));
    assert!(r.pid > 0);
    r.pid
}

fn status_reply(c: &mut Client, pid: i64) -> String {
    c.cmd(&format!(
        r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#
    ))
}

/// test-qga.c's wait_for_guest_exec_completion: poll until `exited` (here 30 s).
fn wait(c: &mut Client, pid: i64) -> GuestExecStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st: GuestExecStatus = ret(&status_reply(c, pid));
        if st.exited {
            return st;
        }
        assert!(Instant::now() < deadline, "pid {pid} did not finish");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn decoded(data: &Option<String>) -> Vec<u8> {
    data.as_deref()
        .map(|d| base64::decode(d).unwrap())
        .unwrap_or_default()
}

const ALTERNATE: &str =
    "for i in $(seq 4); do if (( $i % 2 )); then echo stdout; else echo stderr 1>&2; fi; done;";

#[test]
fn cases_22_to_25_guest_exec() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    // 22: PATH lookup, argument quoting, capture-output true.
    let pid = exec(
        &mut c,
        r#"{"path": "echo", "arg": ["-n", "\" test_str \""], "capture-output": true}"#,
    );
    let st = wait(&mut c, pid);
    assert_eq!(st.exitcode, Some(0));
    assert_eq!(decoded(&st.out_data), b"\" test_str \"");
    // 23: separated.
    let pid = exec(
        &mut c,
        &format!(
            r#"{{"path": "bash", "arg": ["-c", "{ALTERNATE}"], "capture-output": "separated"}}"#
        ),
    );
    let st = wait(&mut c, pid);
    assert_eq!(st.exitcode, Some(0));
    assert_eq!(decoded(&st.out_data), b"stdout\nstdout\n");
    assert_eq!(decoded(&st.err_data), b"stderr\nstderr\n");
    // 24: merged, in order, and no err-data.
    let pid = exec(
        &mut c,
        &format!(r#"{{"path": "bash", "arg": ["-c", "{ALTERNATE}"], "capture-output": "merged"}}"#),
    );
    let r = loop {
        let r = status_reply(&mut c, pid);
        if r.contains("\"exited\": true") {
            break r;
        }
    };
    assert_eq!(
        r,
        format!(
            r#"{{"return": {{"exitcode": 0, "out-data": "{}", "out-truncated": false, "exited": true}}}}"#,
            base64::encode(b"stdout\nstderr\nstdout\nstderr\n")
        )
    );
    // 25: invalid program, invalid pid.
    assert_eq!(
        c.cmd(r#"{"execute": "guest-exec", "arguments": {"path": "/bin/invalid-cmd42"}}"#),
        r#"{"error": {"class": "GenericError", "desc": "Failed to execute child process \u201C/bin/invalid-cmd42\u201D (No such file or directory)"}}"#
    );
    assert_eq!(
        status_reply(&mut c, 0),
        r#"{"error": {"class": "GenericError", "desc": "PID 0 does not exist"}}"#
    );
    // The result is gone after the first exited:true.
    assert_eq!(
        status_reply(&mut c, pid),
        format!(r#"{{"error": {{"class": "GenericError", "desc": "PID {pid} does not exist"}}}}"#)
    );
}

/// A string member of a reply, taken out by hand (big replies are slow to parse in a
/// debug build); base64 has no characters that need escaping.
fn member<'r>(reply: &'r str, name: &str) -> Option<&'r str> {
    let start = reply.find(&format!("\"{name}\": "))? + name.len() + 4;
    let rest = &reply[start..];
    let end = if let Some(s) = rest.strip_prefix('"') {
        return s.find('"').map(|e| &s[..e]);
    } else {
        rest.find([',', '}'])?
    };
    Some(&rest[..end])
}

#[test]
fn capture_keeps_16_mib_per_stream() {
    const MAX: usize = 16 << 20;
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    for (n, truncated) in [(MAX, false), (MAX + 1, true), (MAX + 100_000, true)] {
        let script = format!("head -c {n} /dev/zero; head -c {} /dev/zero >&2", n - 1);
        let pid = exec(
            &mut c,
            &format!(r#"{{"path":"sh","arg":["-c","{script}"],"capture-output":true}}"#),
        );
        let r = loop {
            let r = c.cmd(&format!(
                r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#
            ));
            if r.ends_with(r#""exited": true}}"#) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let zeros = |len: usize| base64::encode(&vec![0u8; len]);
        assert_eq!(member(&r, "exitcode"), Some("0"));
        assert!(member(&r, "out-data") == Some(zeros(MAX).as_str()), "{n}");
        let err_len = (n - 1).min(MAX);
        assert!(
            member(&r, "err-data") == Some(zeros(err_len).as_str()),
            "{n}"
        );
        let flag = |b: bool| if b { "true" } else { "false" };
        assert_eq!(member(&r, "out-truncated"), Some(flag(truncated)), "{n}");
        assert_eq!(member(&r, "err-truncated"), Some(flag(n - 1 > MAX)), "{n}");
    }
}

fn zombies_of(pid: u32) -> Vec<String> {
    let mut z = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split(' ');
        let (state, ppid) = (f.next(), f.next());
        if state == Some("Z") && ppid == Some(&pid.to_string()) {
            z.push(stat);
        }
    }
    z
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn thousands_of_execs_leave_no_zombies_and_no_descriptors() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    let warm = exec(&mut c, r#"{"path":"true"}"#);
    wait(&mut c, warm);
    let fds = fd_count(a.pid());
    // Collected ones, with every kind of pipe.
    for i in 0..300 {
        let pid = exec(
            &mut c,
            &format!(
                r#"{{"path":"sh","arg":["-c","cat; echo {i} >&2"],"input-data":"eHl6","capture-output":true}}"#
            ),
        );
        let st = wait(&mut c, pid);
        assert_eq!(decoded(&st.out_data), b"xyz");
        assert_eq!(decoded(&st.err_data), format!("{i}\n").as_bytes());
    }
    // Never collected: 2000 more, faster than they finish.
    let pids: Vec<i64> = (0..2000)
        .map(|_| exec(&mut c, r#"{"path":"true","capture-output":"merged"}"#))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let z = zombies_of(a.pid());
        if z.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "zombies: {z:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // All reaped and closed: the agent holds no descriptor for them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while fd_count(a.pid()) != fds {
        assert!(Instant::now() < deadline, "{} != {fds}", fd_count(a.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    // At most 1024 finished results are kept, the most recent ones.
    let mut kept = 0;
    for (i, pid) in pids.iter().enumerate() {
        let r = status_reply(&mut c, *pid);
        if r.contains("\"exited\": true") {
            kept += 1;
        } else {
            assert!(r.contains("does not exist"), "{i}: {r}");
            assert!(i < 2000 - 1024 + 64, "a recent result was dropped: {i}");
        }
    }
    assert_eq!(kept, 1024);
    assert!(zombies_of(a.pid()).is_empty());
}

/// A `SigXxx:` mask of a /proc status text.
fn sig_mask(status: &str, name: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

#[test]
fn children_start_with_no_blocked_signals_and_sigpipe_at_its_default() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    let agent = std::fs::read_to_string(format!("/proc/{}/status", a.pid())).unwrap();
    // What the children must not inherit: the agent ignores SIGPIPE.
    assert_ne!(sig_mask(&agent, "SigIgn:") & sigpipe, 0, "{agent}");
    // Twice: the first spawn looks up the agent's signal handlers, the second reuses it.
    for _ in 0..2 {
        let pid = exec(
            &mut c,
            r#"{"path":"cat","arg":["/proc/self/status"],"capture-output":true}"#,
        );
        let st = wait(&mut c, pid);
        assert_eq!(st.exitcode, Some(0));
        let child = String::from_utf8(decoded(&st.out_data)).unwrap();
        assert_eq!(sig_mask(&child, "SigBlk:"), 0, "{child}");
        assert_eq!(sig_mask(&child, "SigIgn:") & sigpipe, 0, "{child}");
        assert_eq!(sig_mask(&child, "SigCgt:"), 0, "{child}");
    }
}

fn kill(pid: i64) {
    // SAFETY: plain syscall on a child of the agent this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

#[test]
fn stuck_children_never_block_the_agent() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    let input = base64::encode(&vec![b'i'; 4 << 20]);
    let t = Instant::now();
    // Never exits, never reads its 4 MiB of input.
    let sleeper = exec(
        &mut c,
        &format!(r#"{{"path":"sleep","arg":["600"],"input-data":"{input}"}}"#),
    );
    // Floods stdout forever.
    let flood = exec(&mut c, r#"{"path":"yes","capture-output":true}"#);
    for _ in 0..20 {
        assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
        assert_eq!(
            status_reply(&mut c, sleeper),
            r#"{"return": {"exited": false}}"#
        );
        assert_eq!(
            status_reply(&mut c, flood),
            r#"{"return": {"exited": false}}"#
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // A second client is served too (after the first leaves).
    drop(c);
    let mut c = a.connect();
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    kill(sleeper);
    kill(flood);
    let st = wait(&mut c, sleeper);
    assert_eq!((st.signal, st.exitcode), (Some(9), None));
    let r = loop {
        let r = c.cmd(&format!(
            r#"{{"execute":"guest-exec-status","arguments":{{"pid":{flood}}}}}"#
        ));
        if r.ends_with(r#""exited": true}}"#) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(member(&r, "signal"), Some("9"));
    assert_eq!(member(&r, "out-truncated"), Some("true"));
    assert!(member(&r, "out-data") == Some(base64::encode(&b"y\n".repeat(8 << 20)).as_str()));
}

#[test]
fn differential_exec_errors_against_qemu_ga() {
    let ours = AgentProc::ours(&[]);
    let reference = AgentProc::reference(&[]);
    let (mut o, mut r) = (ours.connect(), reference.connect());
    let mut same = |args: &str| {
        let req = format!(r#"{{"execute":"guest-exec","arguments":{args}}}"#);
        let (a, b) = (o.cmd(&req), r.cmd(&req));
        assert_eq!(a, b, "request: {req}");
        assert!(a.starts_with(r#"{"error""#), "{a}");
    };
    same(r#"{"path":"/bin/invalid-cmd42"}"#);
    same(r#"{"path":""}"#);
    same(r#"{"path":"."}"#);
    same(r#"{"path":"nodir/prog"}"#);
    same(r#"{"path":"true","env":["PATH=/nonexistent"]}"#);
    same(r#"{"path":"true","env":["PATH="]}"#);
    same(r#"{"path":"true","capture-output":"x"}"#);
    same(r#"{"path":"true","capture-output":"MERGED"}"#);
    for v in ["3", "null", "[]", "{}", "1.5"] {
        same(&format!(r#"{{"path":"true","capture-output":{v}}}"#));
    }
    same(r#"{"path":"true","input-data":"a b"}"#);
    same(r#"{"path":"true","input-data":"YQ==\u0000"}"#);
    same(r#"{"path":"true","input-data":1}"#);
    same(r#"{"path":"true","arg":["a",1]}"#);
    same(r#"{"path":"true","arg":"a"}"#);
    same(r#"{"path":"true","env":[null]}"#);
    same(r#"{"arg":[]}"#);
    same(r#"{"path":"true","bogus":1}"#);
    let status = |c: &mut Client, args: &str| {
        c.cmd(&format!(
            r#"{{"execute":"guest-exec-status","arguments":{args}}}"#
        ))
    };
    for args in [r#"{"pid":"1"}"#, r#"{}"#, r#"{"pid":1,"x":2}"#] {
        assert_eq!(status(&mut o, args), status(&mut r, args), "{args}");
    }
    // The one intended difference: qemu-ga's format string lacks its '%'.
    assert_eq!(
        status(&mut r, r#"{"pid":4242}"#),
        r#"{"error": {"class": "GenericError", "desc": "PID ld does not exist"}}"#
    );
    assert_eq!(
        status(&mut o, r#"{"pid":4242}"#),
        r#"{"error": {"class": "GenericError", "desc": "PID 4242 does not exist"}}"#
    );
}

#[test]
fn differential_exec_results_against_qemu_ga() {
    // Same program, same output: the replies differ only in the 10.2 truncation flags
    // (10.0.2 leaves out `*-truncated: false`).
    let ours = AgentProc::ours(&[]);
    let reference = AgentProc::reference(&[]);
    let (mut o, mut r) = (ours.connect(), reference.connect());
    for (args, mode) in [
        (r#"["-c","echo out; echo err >&2; exit 7"]"#, "true"),
        (r#"["-c","echo out; echo err >&2; exit 7"]"#, r#""merged""#),
        (
            r#"["-c","echo out; echo err >&2; kill -TERM $$"]"#,
            r#""separated""#,
        ),
        (r#"["-c","cat"]"#, "false"),
        (r#"["-c","cat; printf '\\377\\000'"]"#, r#""separated""#),
    ] {
        let req =
            format!(r#"{{"path":"sh","arg":{args},"capture-output":{mode},"input-data":"aW4K"}}"#);
        let (po, pr) = (exec(&mut o, &req), exec(&mut r, &req));
        let (so, sr) = (wait(&mut o, po), wait(&mut r, pr));
        assert_eq!(
            (so.exitcode, so.signal, &so.out_data, &so.err_data),
            (sr.exitcode, sr.signal, &sr.out_data, &sr.err_data),
            "{req}"
        );
        assert_eq!(so.out_truncated, so.out_data.as_ref().map(|_| false));
        assert_eq!(so.err_truncated, so.err_data.as_ref().map(|_| false));
    }
}

#[test]
fn differential_search_path_without_any_path_against_qemu_ga() {
    use std::os::unix::fs::PermissionsExt;
    // Neither the agent nor `env` has PATH: GLib searches /bin:/usr/bin:. (cwd last).
    let env: &[(&str, &str)] = &[("LANG", "C")];
    let ours = AgentProc::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_qga-agent")),
        &[],
        Some(env),
    );
    let reference = AgentProc::spawn(&common::reference_binary(), &[], Some(env));
    for a in [&ours, &reference] {
        let p = a.dir.join("here-only");
        std::fs::write(&p, "#!/bin/sh\necho found \"$0\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (mut o, mut r) = (ours.connect(), reference.connect());
    for args in [
        r#"{"path":"here-only","capture-output":true}"#,
        r#"{"path":"sh","arg":["-c","echo $0"],"capture-output":true}"#,
        r#"{"path":"here-only","env":["A=1"],"capture-output":true}"#,
    ] {
        let (po, pr) = (exec(&mut o, args), exec(&mut r, args));
        let (so, sr) = (wait(&mut o, po), wait(&mut r, pr));
        assert_eq!(
            (so.exitcode, &so.out_data),
            (sr.exitcode, &sr.out_data),
            "{args}"
        );
        assert_eq!(so.exitcode, Some(0));
    }
    let req = r#"{"execute":"guest-exec","arguments":{"path":"no-such-prog-42"}}"#;
    assert_eq!(o.cmd(req), r.cmd(req));
}
