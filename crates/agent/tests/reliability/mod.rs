//! Helpers shared by the long-run reliability tests (soak, disconnects, restarts,
//! garbage, fuzz smoke): typed replies, guest-exec / guest-file-* round trips, the
//! agent's own resource usage seen from inside, and the figures file.
//!
//! Figures go to stderr (shown with `--nocapture` or on failure) and to
//! `target/reliability.txt`, one section per test, so a run leaves them behind
//! whether or not output was captured.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::Client;
use qga_agent::sys::base64;
use qga_proto::{FromQapi, Path, Value};

/// The `return` member of a reply, decoded as `T`; panics on an error reply.
pub fn ret<T: FromQapi>(reply: &str) -> T {
    let v = qga_proto::json::parse_one(reply.as_bytes())
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("not JSON: {reply:.300}"));
    let r = v
        .as_dict()
        .and_then(|d| d.get("return"))
        .unwrap_or_else(|| panic!("no return: {reply:.300}"));
    T::from_qapi(Some(r), Path::REPLY).unwrap_or_else(|e| panic!("{e:?}: {reply:.300}"))
}

/// The `desc` of an error reply.
pub fn error_desc(reply: &str) -> String {
    let v = qga_proto::json::parse_one(reply.as_bytes())
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("not JSON: {reply:.300}"));
    let e = v
        .as_dict()
        .and_then(|d| d.get("error"))
        .and_then(Value::as_dict);
    match e.and_then(|e| e.get("desc")) {
        Some(Value::Str(s)) => String::from_utf8_lossy(s).into_owned(),
        _ => panic!("not an error reply: {reply:.300}"),
    }
}

/// The string value of `"key": "..."` in a reply, found textually (fast on multi-MiB
/// base64 replies, which contain no escapes).
pub fn member<'a>(reply: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": \"");
    let start = reply.find(&pat)? + pat.len();
    let len = reply[start..].find('"')?;
    Some(&reply[start..start + len])
}

/// guest-file-open; the handle.
pub fn file_open(c: &mut Client, path: &str, mode: &str) -> i64 {
    ret(&c.cmd(&format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"{path}","mode":"{mode}"}}}}"#
    )))
}

/// guest-file-close.
pub fn file_close(c: &mut Client, handle: i64) {
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-file-close","arguments":{{"handle":{handle}}}}}"#
    ));
    assert_eq!(r, r#"{"return": {}}"#);
}

/// A whole (small) file of the guest, read through guest-file-*.
pub fn read_guest_file(c: &mut Client, path: &str) -> Vec<u8> {
    let h = file_open(c, path, "r");
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":65536}}}}"#
    ));
    file_close(c, h);
    let b64 = member(&r, "buf-b64").unwrap_or_else(|| panic!("{r:.300}"));
    base64::decode(b64).expect("base64")
}

/// guest-exec of `/bin/sh -c script` with captured output, waited for (at most 60 s);
/// returns (exit code, stdout).
pub fn sh(c: &mut Client, script: &str) -> (i64, Vec<u8>) {
    let script = script.replace('\\', "\\\\").replace('"', "\\\"");
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-exec","arguments":{{"path":"/bin/sh","arg":["-c","{script}"],"capture-output":true}}}}"#
    ));
    let pid: qga_proto::cmds::exec::GuestExec = ret(&r);
    let st = exec_wait(c, pid.pid);
    let out = st
        .out_data
        .as_deref()
        .map(|d| base64::decode(d).expect("base64"))
        .unwrap_or_default();
    (st.exitcode.unwrap_or(-1), out)
}

/// Polls guest-exec-status until the process exited (at most 60 s).
pub fn exec_wait(c: &mut Client, pid: i64) -> qga_proto::cmds::exec::GuestExecStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st: qga_proto::cmds::exec::GuestExecStatus = ret(&c.cmd(&format!(
            r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#
        )));
        if st.exited {
            return st;
        }
        assert!(Instant::now() < deadline, "exec pid {pid} did not finish");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The agent's pid, from its own `/proc/self/stat`.
pub fn agent_pid(c: &mut Client) -> u32 {
    let stat = read_guest_file(c, "/proc/self/stat");
    let text = String::from_utf8_lossy(&stat);
    text.split(' ').next().unwrap().parse().expect("pid")
}

/// Resource usage of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS so far), KiB.
    pub hwm_kib: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rss {} KiB, peak rss {} KiB, {} threads, {} fds",
            self.rss_kib, self.hwm_kib, self.threads, self.fds
        )
    }
}

/// A `Name:   value kB` field of a `/proc/<pid>/status` text.
pub fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in status:\n{status}"))
}

/// The agent's usage seen from inside the guest: its own `/proc/self/status` through
/// guest-file-read, and its descriptors listed by `ls -l /proc/<pid>/fd` through
/// guest-exec (which counts the capture pipes of that very exec: the same at every
/// sample; its pidfd, there or not depending on timing, is left out).
pub fn guest_usage(c: &mut Client, pid: u32) -> Usage {
    let status = String::from_utf8(read_guest_file(c, "/proc/self/status")).unwrap();
    let (code, out) = sh(c, &format!("ls -l /proc/{pid}/fd"));
    assert_eq!(code, 0);
    let out = String::from_utf8_lossy(&out);
    let fds: Vec<&str> = out.lines().filter(|l| l.contains(" -> ")).collect();
    // The shell doing the listing is the agent's child: its output pipes are open in
    // the agent every time, and so is its pidfd once the agent watches its exit (10 ms
    // after its start), so only sometimes. Every other child has been reaped by now.
    let pidfds = fds.iter().filter(|l| l.ends_with("[pidfd]")).count();
    assert!(pidfds <= 1, "pidfds open in the agent:\n{out}");
    Usage {
        rss_kib: status_field(&status, "VmRSS"),
        hwm_kib: status_field(&status, "VmHWM"),
        threads: status_field(&status, "Threads"),
        fds: (fds.len() - pidfds) as u64,
    }
}

/// The usage of a host process (an agent spawned by the test).
pub fn host_usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    Usage {
        rss_kib: status_field(&status, "VmRSS"),
        hwm_kib: status_field(&status, "VmHWM"),
        threads: status_field(&status, "Threads"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fd dir")
            .count() as u64,
    }
}

/// Samples until two consecutive samples agree on threads and fds (a helper thread
/// that has just answered may still be exiting), at most `tries` times.
pub fn settled(mut sample: impl FnMut() -> Usage, tries: usize) -> Usage {
    let mut prev = sample();
    for _ in 1..tries {
        std::thread::sleep(Duration::from_millis(100));
        let next = sample();
        if next.threads == prev.threads && next.fds == prev.fds {
            return next;
        }
        prev = next;
    }
    prev
}

/// `cargo`'s target directory: the test binary lives in `<target>/<profile>/deps/`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Records one test's figures: stderr, `target/reliability/<section>.txt`, and the
/// concatenation of every section in `target/reliability.txt`.
pub fn record(section: &str, lines: &[String]) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut text = format!("== {section}\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    eprint!("{text}");
    let dir = target_dir().join("reliability");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let file = section.replace(['/', '\0'], "-");
    let _ = std::fs::write(dir.join(format!("{file}.txt")), &text);
    let mut sections: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    sections.sort();
    let all: String = sections
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    let _ = std::fs::write(target_dir().join("reliability.txt"), all);
}
