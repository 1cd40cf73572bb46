//! guest-file-* against a spawned agent: QEMU's test-qga cases 11 and 12 byte for
//! byte, binary round trips, the 48 MiB read limit, handles shared across
//! connections, no descriptor leak, and a differential battery against qemu-ga 10.0.2
//! for every error reply (paths relative to each agent's own temporary directory).

mod common;

use common::{ret, AgentProc, Client};
use qga_agent::sys::base64;
use qga_proto::cmds::file::{GuestFileRead, GuestFileSeek, GuestFileWrite};
use std::os::unix::ffi::OsStrExt;

fn open(c: &mut Client, path: &str, mode: &str) -> i64 {
    ret(&c.cmd(&format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":"{path}","mode":"{mode}"}}}}"#
    )))
}

fn read(c: &mut Client, h: i64, count: usize) -> GuestFileRead {
    ret(&c.cmd(&format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":{count}}}}}"#
    )))
}

fn write(c: &mut Client, h: i64, data: &[u8]) -> GuestFileWrite {
    ret(&c.cmd(&format!(
        r#"{{"execute":"guest-file-write","arguments":{{"handle":{h},"buf-b64":"{}"}}}}"#,
        base64::encode(data)
    )))
}

fn close(c: &mut Client, h: i64) {
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-file-close","arguments":{{"handle":{h}}}}}"#
    ));
    assert_eq!(r, r#"{"return": {}}"#);
}

/// test-qga.c's payload: "Hello World!\n" and its NUL terminator.
const ENC: &str = "SGVsbG8gV29ybGQhCgA=";

#[test]
fn case11_file_ops() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    let cmd = |c: &mut Client, s: &str| c.cmd(&s.replace('\'', "\""));
    assert_eq!(
        cmd(
            &mut c,
            "{'execute': 'guest-file-open', 'arguments': {'path': 'foo', 'mode': 'w+'}}"
        ),
        r#"{"return": 1000}"#
    );
    assert_eq!(
        cmd(&mut c, &format!("{{'execute': 'guest-file-write', 'arguments': {{'handle': 1000, 'buf-b64': '{ENC}'}}}}")),
        r#"{"return": {"count": 14, "eof": false}}"#
    );
    assert_eq!(
        cmd(
            &mut c,
            "{'execute': 'guest-file-flush', 'arguments': {'handle': 1000}}"
        ),
        r#"{"return": {}}"#
    );
    close(&mut c, 1000);
    assert_eq!(
        std::fs::read(a.dir.join("foo")).unwrap(),
        b"Hello World!\n\0"
    );
    assert_eq!(
        cmd(
            &mut c,
            "{'execute': 'guest-file-open', 'arguments': {'path': 'foo', 'mode': 'r'}}"
        ),
        r#"{"return": 1001}"#
    );
    assert_eq!(
        cmd(
            &mut c,
            "{'execute': 'guest-file-read', 'arguments': {'handle': 1001}}"
        ),
        format!(r#"{{"return": {{"count": 14, "buf-b64": "{ENC}", "eof": true}}}}"#)
    );
    assert_eq!(
        cmd(
            &mut c,
            "{'execute': 'guest-file-read', 'arguments': {'handle': 1001}}"
        ),
        r#"{"return": {"count": 0, "buf-b64": "", "eof": true}}"#
    );
    assert_eq!(
        cmd(&mut c, "{'execute': 'guest-file-seek', 'arguments': {'handle': 1001, 'offset': 6, 'whence': 'set'}}"),
        r#"{"return": {"eof": false, "position": 6}}"#
    );
    let r: GuestFileRead = ret(&cmd(
        &mut c,
        "{'execute': 'guest-file-read', 'arguments': {'handle': 1001}}",
    ));
    assert_eq!((r.count, r.eof), (8, true));
    assert_eq!(
        base64::decode(r.buf_b64.text().as_bytes()).unwrap(),
        b"World!\n\0"
    );
    close(&mut c, 1001);
    assert_eq!(
        std::fs::read_to_string(a.dir.join("qga.state")).unwrap(),
        "[global]\nfd_counter=1002\n"
    );
}

#[test]
fn case12_file_write_read() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    let h = open(&mut c, "foo", "w+");
    assert_eq!(
        c.cmd(&format!(
            r#"{{"execute":"guest-file-write","arguments":{{"handle":{h},"buf-b64":"{ENC}"}}}}"#
        )),
        r#"{"return": {"count": 14, "eof": false}}"#
    );
    // No seek: the implicit flush leaves the position at the end.
    assert_eq!(
        c.cmd(&format!(
            r#"{{"execute":"guest-file-read","arguments":{{"handle":{h}}}}}"#
        )),
        r#"{"return": {"count": 0, "buf-b64": "", "eof": true}}"#
    );
    assert_eq!(
        c.cmd(&format!(
            r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h},"offset":0,"whence":0}}}}"#
        )),
        r#"{"return": {"eof": false, "position": 0}}"#
    );
    assert_eq!(
        c.cmd(&format!(
            r#"{{"execute":"guest-file-read","arguments":{{"handle":{h}}}}}"#
        )),
        format!(r#"{{"return": {{"count": 14, "buf-b64": "{ENC}", "eof": true}}}}"#)
    );
    close(&mut c, h);
}

#[test]
fn binary_round_trip_and_handles_shared_across_connections() {
    let a = AgentProc::ours(&[]);
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend((0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    data.extend_from_slice(&[0xFF, 0xFE, 0xC0, 0x80, 0xED, 0xA0, 0x80, 0]);
    let h = {
        let mut c = a.connect();
        let h = open(&mut c, "bin", "wb+");
        assert_eq!(write(&mut c, h, &data).count, data.len() as i64);
        h
        // The connection closes; the handle stays.
    };
    let mut c = a.connect();
    let s: GuestFileSeek = ret(&c.cmd(&format!(
        r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h},"offset":0,"whence":"set"}}}}"#
    )));
    assert_eq!(s.position, 0);
    assert_eq!(std::fs::read(a.dir.join("bin")).unwrap(), data);
    let r = read(&mut c, h, data.len() + 1);
    assert_eq!((r.count, r.eof), (data.len() as i64, true));
    assert_eq!(base64::decode(r.buf_b64.text().as_bytes()).unwrap(), data);
    close(&mut c, h);
}

/// Drops the pages of `p` from `offset` on from the page cache.
fn evict(p: &std::path::Path, offset: i64) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(p).unwrap();
    f.sync_all().unwrap();
    // SAFETY: advice on a descriptor we own.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), offset, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
}

/// Small reads are answered by the reader thread when their data is in the page
/// cache and by the executor otherwise (or after a write on the handle); the replies
/// must not tell the difference.
#[test]
fn small_reads_whether_cached_or_not() {
    let a = AgentProc::ours(&[]);
    let data: Vec<u8> = (0..(300u32 << 10))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let path = a.dir.join("small");
    std::fs::write(&path, &data).unwrap();
    let mut c = a.connect();
    for cached in [0, 100 << 10, data.len() as i64] {
        let _ = std::fs::read(&path).unwrap();
        evict(&path, cached);
        let h = open(&mut c, "small", "r");
        let mut got = Vec::new();
        for count in [4096, 65536, 1, 4096 * 3 + 7].iter().cycle() {
            let r = read(&mut c, h, *count);
            assert_eq!(r.count as usize, (*count).min(data.len() - got.len()));
            got.extend(base64::decode(r.buf_b64.text().as_bytes()).unwrap());
            assert_eq!(r.eof, got.len() == data.len() && r.count < *count as i64);
            if r.eof {
                break;
            }
        }
        assert_eq!(got, data, "cached from {cached}");
        close(&mut c, h);
    }
    // Buffered output is flushed before a read (the reader leaves that to the
    // executor), and the read goes on after what was written.
    let h = open(&mut c, "small", "r+");
    assert_eq!(write(&mut c, h, b"abc").count, 3);
    let r = read(&mut c, h, 4);
    assert_eq!((r.count, r.eof), (4, false));
    assert_eq!(
        base64::decode(r.buf_b64.text().as_bytes()).unwrap(),
        data[3..7]
    );
    let s: GuestFileSeek = ret(&c.cmd(&format!(
        r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h},"offset":0,"whence":"set"}}}}"#
    )));
    assert_eq!(s.position, 0);
    let r = read(&mut c, h, 5);
    assert_eq!(
        base64::decode(r.buf_b64.text().as_bytes()).unwrap(),
        [b"abc", &data[3..5]].concat()
    );
    close(&mut c, h);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The buffer of a large read is kept for the next one, and freed about a second
/// after the last read used it, even while other requests keep coming.
#[test]
fn a_large_read_buffer_is_freed_soon_after() {
    const SIZE: usize = 40 << 20;
    let a = AgentProc::ours(&[]);
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    std::fs::write(a.dir.join("large"), &data).unwrap();
    let mut c = a.connect();
    let h = open(&mut c, "large", "r");
    let before = rss_kib(a.pid());
    for _ in 0..2 {
        let r = c.cmd(&format!(
            r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":{SIZE}}}}}"#
        ));
        assert!(r.len() > SIZE);
        let s: GuestFileSeek = ret(&c.cmd(&format!(
            r#"{{"execute":"guest-file-seek","arguments":{{"handle":{h},"offset":0,"whence":"set"}}}}"#
        )));
        assert_eq!(s.position, 0);
    }
    let kept = rss_kib(a.pid());
    assert!(kept > before + 30_000, "{before} -> {kept} KiB");
    // Pings every 100 ms do not keep it alive.
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_millis(2500) {
        assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let after = rss_kib(a.pid());
    assert!(after < before + 5_000, "{before} -> {kept} -> {after} KiB");
    close(&mut c, h);
}

#[test]
fn read_count_limit_is_48_mib() {
    const MAX: usize = 48 << 20;
    let a = AgentProc::ours(&[]);
    let mut big: Vec<u8> = (0..MAX + 1).map(|i| (i % 251) as u8).collect();
    big[MAX] = 0xAA;
    std::fs::write(a.dir.join("big"), &big).unwrap();
    let mut c = a.connect();
    let h = open(&mut c, "big", "r");
    assert_eq!(
        c.cmd(&format!(
            r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":{}}}}}"#,
            MAX + 1
        )),
        r#"{"error": {"class": "GenericError", "desc": "value '50331649' is invalid for argument count"}}"#
    );
    // The reply is larger than a JSON token may be (64 MiB), so it is taken apart by
    // hand rather than parsed.
    let r = c.cmd(&format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{h},"count":{MAX}}}}}"#
    ));
    let b64 = r
        .strip_prefix(r#"{"return": {"count": 50331648, "buf-b64": ""#)
        .and_then(|r| r.strip_suffix(r#"", "eof": false}}"#))
        .unwrap_or_else(|| panic!("{:.100}...{}", r, &r[r.len() - 40..]));
    assert_eq!(b64.len(), MAX / 3 * 4);
    assert!(b64 == base64::encode(&big[..MAX]));
    drop(r);
    let r = read(&mut c, h, MAX);
    assert_eq!((r.count, r.eof, &*r.buf_b64.text()), (1, true, "qg=="));
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn no_descriptor_leaks_over_1000_open_close_cycles() {
    let a = AgentProc::ours(&[]);
    let mut c = a.connect();
    // Warm up (state file, lazily opened things), then count.
    let h = open(&mut c, "f", "w+");
    close(&mut c, h);
    let before = fd_count(a.pid());
    for i in 0..1000 {
        let mode = ["r", "w", "a+", "r+b"][i % 4];
        let h = open(&mut c, "f", mode);
        if mode != "r" {
            write(&mut c, h, b"x");
        }
        close(&mut c, h);
        // Failures must not leak either.
        let r = c.cmd(r#"{"execute":"guest-file-open","arguments":{"path":"nodir/f","mode":"w"}}"#);
        assert!(r.contains("No such file or directory"), "{r}");
    }
    assert_eq!(fd_count(a.pid()), before);
}

/// Sends the same requests to both agents; every reply must be byte-identical.
struct Pair {
    ours: AgentProc,
    reference: AgentProc,
    o: Client,
    r: Client,
}

impl Pair {
    fn new() -> Self {
        let ours = AgentProc::ours(&[]);
        let reference = AgentProc::reference(&[]);
        let (o, r) = (ours.connect(), reference.connect());
        Pair {
            ours,
            reference,
            o,
            r,
        }
    }

    fn same(&mut self, req: &str) -> String {
        let (a, b) = (self.o.cmd(req), self.r.cmd(req));
        assert_eq!(a, b, "request: {req}");
        a
    }

    fn mkfifo(&self, name: &str) {
        for dir in [&self.ours.dir, &self.reference.dir] {
            let p = std::ffi::CString::new(dir.join(name).to_str().unwrap()).unwrap();
            // SAFETY: p is a valid path.
            assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
        }
    }
}

#[test]
fn differential_file_errors_against_qemu_ga() {
    let mut p = Pair::new();
    let req = |cmd: &str, args: &str| format!(r#"{{"execute":"{cmd}","arguments":{args}}}"#);
    // Unknown handles, for every command.
    for cmd in ["guest-file-read", "guest-file-flush", "guest-file-close"] {
        p.same(&req(cmd, r#"{"handle":4242}"#));
    }
    p.same(&req("guest-file-write", r#"{"handle":-1,"buf-b64":""}"#));
    p.same(&req(
        "guest-file-seek",
        r#"{"handle":7,"offset":0,"whence":9}"#,
    ));
    // Open failures.
    for (path, mode) in [
        ("nodir/x", "r"),
        ("nodir/x", "w"),
        ("foo", "rw"),
        ("foo", ""),
        (".", "w"),
        ("", "r"),
        ("missing", "r+"),
    ] {
        p.same(&req(
            "guest-file-open",
            &format!(r#"{{"path":"{path}","mode":"{mode}"}}"#),
        ));
    }
    p.same(&req("guest-file-open", r#"{"mode":"r"}"#));
    p.same(&req("guest-file-open", r#"{"path":1}"#));
    // A working handle: argument and state errors, and the successes around them.
    assert_eq!(
        p.same(&req("guest-file-open", r#"{"path":"foo","mode":"w+"}"#)),
        r#"{"return": 1000}"#
    );
    for args in [
        r#"{"handle":1000,"count":-1}"#,
        r#"{"handle":1000,"count":50331649}"#,
        r#"{"handle":1000,"count":"1"}"#,
        r#"{"handle":1000,"count":0}"#,
        r#"{"handle":1000}"#,
    ] {
        p.same(&req("guest-file-read", args));
    }
    for args in [
        r#"{"handle":1000,"buf-b64":"SGVsbG8=","count":6}"#,
        r#"{"handle":1000,"buf-b64":"SGVsbG8=","count":-1}"#,
        r#"{"handle":1000,"buf-b64":"SGV sbG8="}"#,
        r#"{"handle":1000,"buf-b64":"SGVsbG8=\r\n"}"#,
        r#"{"handle":1000,"buf-b64":"SGVsbG8=SGVs"}"#,
        r#"{"handle":1000,"buf-b64":"S"}"#,
        r#"{"handle":1000,"buf-b64":"YWJj\u0000YWJj"}"#,
        r#"{"handle":1000,"buf-b64":"===="}"#,
        r#"{"handle":1000,"buf-b64":"SGVsbG8=","count":2}"#,
        r#"{"handle":1000}"#,
    ] {
        p.same(&req("guest-file-write", args));
    }
    for whence in [
        "3", "-1", "\"bad\"", "true", "1.5", "null", "[]", "{}", "\"SET\"", "2", "\"cur\"",
    ] {
        p.same(&req(
            "guest-file-seek",
            &format!(r#"{{"handle":1000,"offset":0,"whence":{whence}}}"#),
        ));
    }
    p.same(&req(
        "guest-file-seek",
        r#"{"handle":1000,"offset":-100,"whence":"cur"}"#,
    ));
    p.same(&req("guest-file-seek", r#"{"handle":1000,"offset":0}"#));
    p.same(&req(
        "guest-file-seek",
        r#"{"handle":1000,"offset":3,"whence":"set"}"#,
    ));
    p.same(&req("guest-file-read", r#"{"handle":1000,"count":3}"#));
    p.same(&req(
        "guest-file-write",
        r#"{"handle":1000,"buf-b64":"WFla"}"#,
    ));
    p.same(&req(
        "guest-file-seek",
        r#"{"handle":1000,"offset":0,"whence":"set"}"#,
    ));
    p.same(&req("guest-file-read", r#"{"handle":1000,"count":100}"#));
    p.same(&req("guest-file-close", r#"{"handle":1000}"#));
    p.same(&req("guest-file-close", r#"{"handle":1000}"#));
    // A \u0000 is the pair C0 80 to QEMU: part of the name, and not base64.
    p.same(&req(
        "guest-file-open",
        r#"{"path":"nul\u0000name","mode":"w"}"#,
    ));
    p.same(&req("guest-file-close", r#"{"handle":1001}"#));
    for dir in [&p.ours.dir, &p.reference.dir] {
        assert!(dir
            .0
            .join(std::ffi::OsStr::from_bytes(b"nul\xC0\x80name"))
            .exists());
    }
    // Wrong direction, directories.
    p.same(&req("guest-file-open", r#"{"path":"foo"}"#));
    p.same(&req(
        "guest-file-write",
        r#"{"handle":1002,"buf-b64":"eA=="}"#,
    ));
    p.same(&req("guest-file-write", r#"{"handle":1002,"buf-b64":""}"#));
    p.same(&req("guest-file-open", r#"{"path":"foo","mode":"a"}"#));
    p.same(&req("guest-file-read", r#"{"handle":1003}"#));
    p.same(&req(
        "guest-file-seek",
        r#"{"handle":1003,"offset":0,"whence":"cur"}"#,
    ));
    p.same(&req("guest-file-open", r#"{"path":".","mode":"r"}"#));
    p.same(&req("guest-file-read", r#"{"handle":1004}"#));
    // FIFOs: no reader yet, an empty pipe, seeking, and a flush into a closed pipe.
    p.mkfifo("fifo");
    p.same(&req("guest-file-open", r#"{"path":"fifo","mode":"w"}"#));
    assert_eq!(
        p.same(&req("guest-file-open", r#"{"path":"fifo","mode":"r"}"#)),
        r#"{"return": 1005}"#
    );
    p.same(&req("guest-file-read", r#"{"handle":1005}"#));
    p.same(&req("guest-file-open", r#"{"path":"fifo","mode":"w"}"#));
    p.same(&req(
        "guest-file-write",
        r#"{"handle":1006,"buf-b64":"YWJj"}"#,
    ));
    p.same(&req(
        "guest-file-seek",
        r#"{"handle":1006,"offset":0,"whence":"cur"}"#,
    ));
    p.same(&req(
        "guest-file-write",
        r#"{"handle":1006,"buf-b64":"ZGVm"}"#,
    ));
    p.same(&req("guest-file-read", r#"{"handle":1005,"count":2}"#));
    p.same(&req("guest-file-read", r#"{"handle":1005,"count":10}"#));
    p.same(&req(
        "guest-file-seek",
        r#"{"handle":1005,"offset":0,"whence":"set"}"#,
    ));
    p.same(&req("guest-file-close", r#"{"handle":1005}"#));
    p.same(&req(
        "guest-file-write",
        r#"{"handle":1006,"buf-b64":"eHl6"}"#,
    ));
    p.same(&req("guest-file-flush", r#"{"handle":1006}"#));
    p.same(&req(
        "guest-file-write",
        r#"{"handle":1006,"buf-b64":"eHl6"}"#,
    ));
    p.same(&req(
        "guest-file-write",
        r#"{"handle":1006,"buf-b64":"eHl6"}"#,
    ));
    p.same(&req("guest-file-close", r#"{"handle":1006}"#));
    // qemu-ga keeps a handle whose fclose failed, pointing to a freed FILE; ours is gone.
    assert_eq!(
        p.o.cmd(&req("guest-file-close", r#"{"handle":1006}"#)),
        r#"{"error": {"class": "GenericError", "desc": "handle '1006' has not been found"}}"#
    );
    // Both created 'foo' with mode 0666 regardless of umask.
    use std::os::unix::fs::PermissionsExt;
    for dir in [&p.ours.dir, &p.reference.dir] {
        let m = std::fs::metadata(dir.join("foo")).unwrap().permissions();
        assert_eq!(m.mode() & 0o777, 0o666);
    }
    assert_eq!(p.ours.stop(), Some(0));
}
