//! Ten thousand exec and file cycles against one agent: no zombie, no descriptor and no
//! memory growth (the "Done when" of the file/exec work).

mod common;

use common::{AgentProc, Client};
use std::time::{Duration, Instant};

fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect(field)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

fn zombies(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
            let mut f = rest.split(' ');
            f.next() == Some("Z") && f.next() == Some(pid.to_string().as_str())
        })
        .count()
}

fn number(reply: &str) -> i64 {
    reply
        .trim_start_matches("{\"return\": ")
        .trim_start_matches("{\"pid\": ")
        .trim_end_matches('}')
        .parse()
        .unwrap_or_else(|_| panic!("not a number reply: {reply}"))
}

/// One exec of `true`, collected, and one file written, read back and closed.
fn cycle(c: &mut Client, i: usize) {
    let pid = number(
        &c.cmd(r#"{"execute":"guest-exec","arguments":{"path":"true","capture-output":true}}"#),
    );
    loop {
        let s = c.cmd(&format!(
            r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#
        ));
        if s.contains("\"exited\": true") {
            assert!(s.contains("\"exitcode\": 0"), "{s}");
            break;
        }
    }
    let h = number(&c.cmd(&format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"f{}","mode":"w+"}}}}"#,
        i % 8
    )));
    let w = c.cmd(&format!(
        r#"{{"execute":"guest-file-write","arguments":{{"handle":{h},"buf-b64":"aGVsbG8="}}}}"#
    ));
    assert_eq!(w, r#"{"return": {"count": 5, "eof": false}}"#);
    c.cmd(&format!(
        r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h},"offset":0,"whence":"set"}}}}"#
    ));
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{h}}}}}"#
    ));
    assert_eq!(
        r,
        r#"{"return": {"count": 5, "buf-b64": "aGVsbG8=", "eof": true}}"#
    );
    assert_eq!(
        c.cmd(&format!(
            r#"{{"execute":"guest-file-close","arguments":{{"handle":{h}}}}}"#
        )),
        r#"{"return": {}}"#
    );
}

#[test]
fn ten_thousand_exec_and_file_cycles_leave_no_zombies_fds_or_memory_growth() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    for i in 0..1000 {
        cycle(&mut c, i);
    }
    let (rss0, fds0) = (status_field(a.pid(), "VmRSS:"), fds(a.pid()));
    let t = Instant::now();
    for i in 0..10_000 {
        cycle(&mut c, i);
    }
    let elapsed = t.elapsed();
    // Children are reaped by the agent's monitor thread right after they exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while zombies(a.pid()) > 0 {
        assert!(Instant::now() < deadline, "{} zombies", zombies(a.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (rss1, fds1) = (status_field(a.pid(), "VmRSS:"), fds(a.pid()));
    eprintln!("10000 cycles in {elapsed:?}: RSS {rss0} -> {rss1} kB, fds {fds0} -> {fds1}");
    assert_eq!(fds1, fds0, "descriptor leak");
    assert!(rss1 <= rss0 + 1024, "RSS grew from {rss0} kB to {rss1} kB");
}
