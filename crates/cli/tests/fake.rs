//! The CLI's own behaviour against a fake agent that records requests and answers
//! with canned replies: the state-changing commands (never sent to a real agent on
//! this machine), the handshake with stale bytes, timeouts, pipelining, and the
//! libvirt transport through a stand-in `virsh`.

mod common;

use std::time::Duration;

use common::{get, json, qga, qga_env, text, Fake, TempDir};
use qga_cli::wire::{GuestFileReadArgs, GuestPingArgs};
use qga_cli::{Client, Error};
use qga_proto::Value;

fn run(fake: &Fake, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut all = vec!["-s", fake.sock.to_str().unwrap()];
    all.extend_from_slice(args);
    qga(&all, stdin)
}

#[test]
fn fsfreeze_requests_and_output() {
    let fake = Fake::start(&[
        ("guest-fsfreeze-freeze", r#"{"return": 3}"#),
        ("guest-fsfreeze-freeze-list", r#"{"return": 1}"#),
        ("guest-fsfreeze-thaw", r#"{"return": 3}"#),
        ("guest-fsfreeze-status", r#"{"return": "frozen"}"#),
    ]);
    assert_eq!(
        text(&run(&fake, &["fsfreeze", "freeze"], b"").stdout),
        "froze 3 filesystems\n"
    );
    assert_eq!(
        text(&run(&fake, &["fsfreeze", "freeze", "/data"], b"").stdout),
        "froze 1 filesystem\n"
    );
    assert_eq!(
        text(&run(&fake, &["fsfreeze", "status"], b"").stdout),
        "frozen\n"
    );
    assert_eq!(
        text(&run(&fake, &["--json", "fsfreeze", "thaw"], b"").stdout),
        "3\n"
    );
    assert_eq!(
        fake.seen(),
        [
            r#"{"execute": "guest-fsfreeze-freeze"}"#,
            r#"{"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": ["/data"]}}"#,
            r#"{"execute": "guest-fsfreeze-status"}"#,
            r#"{"execute": "guest-fsfreeze-thaw"}"#,
        ]
    );
    let o = run(&fake, &["fsfreeze", "thaw", "/x"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(fake.seen().len(), 4, "a usage error sends nothing");
}

#[test]
fn fstrim_and_shutdown() {
    let fake = Fake::start(&[
        (
            "guest-fstrim",
            r#"{"return": {"paths": [{"minimum": 4096, "path": "/data", "trimmed": 1048576}, {"path": "/boot", "error": "trim not supported"}]}}"#,
        ),
        ("guest-shutdown", ""),
    ]);
    let o = run(&fake, &["fstrim", "--minimum", "4096"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "PATH   TRIMMED  RESULT\n/boot  -        trim not supported\n/data  1.0 MiB  ok\n"
    );
    // No reply on success: silence within the wait counts as done.
    let o = run(&fake, &["-t", "1", "shutdown", "--mode", "reboot"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "reboot requested\n");
    assert_eq!(
        fake.seen(),
        [
            r#"{"execute": "guest-fstrim", "arguments": {"minimum": 4096}}"#,
            r#"{"execute": "guest-shutdown", "arguments": {"mode": "reboot"}}"#,
        ]
    );
    assert_eq!(
        run(&fake, &["shutdown", "--mode", "off"], b"")
            .status
            .code(),
        Some(2)
    );

    let failing = Fake::start(&[(
        "guest-shutdown",
        r#"{"error": {"class": "GenericError", "desc": "child process has failed to shutdown: exit status 1"}}"#,
    )]);
    let o = run(&failing, &["shutdown"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "qga: guest-shutdown failed in the guest: child process has failed to shutdown: exit status 1\n"
    );
}

#[test]
fn time_set_and_sync() {
    let fake = Fake::start(&[("guest-set-time", r#"{"return": {}}"#)]);
    let o = run(&fake, &["time", "--set", "1700000000123456789"], b"");
    assert_eq!(
        text(&o.stdout),
        "guest clock set to 2023-11-14 22:13:20.123456789 UTC\n"
    );
    let o = run(&fake, &["time", "--sync"], b"");
    assert_eq!(
        text(&o.stdout),
        "guest clock set from its hardware clock (RTC)\n"
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    run(&fake, &["time", "--set", "now"], b"");
    let seen = fake.seen();
    assert_eq!(
        seen[0],
        r#"{"execute": "guest-set-time", "arguments": {"time": 1700000000123456789}}"#
    );
    assert_eq!(seen[1], r#"{"execute": "guest-set-time"}"#);
    let sent: i64 = seen[2]
        .trim_start_matches(r#"{"execute": "guest-set-time", "arguments": {"time": "#)
        .trim_end_matches("}}")
        .parse()
        .unwrap();
    assert!((sent - before).abs() < 10_000_000_000, "{sent} vs {before}");
    assert_eq!(
        run(&fake, &["time", "--set", "1", "--sync"], b"")
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&fake, &["time", "--set", "soon"], b"").status.code(),
        Some(2)
    );
    assert_eq!(fake.seen().len(), 3);
}

#[test]
fn passwd_from_stdin_never_from_argv() {
    let fake = Fake::start(&[("guest-set-user-password", r#"{"return": {}}"#)]);
    let o = run(&fake, &["passwd", "alice"], b"s3cret\n");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "password for alice set\n");
    let o = run(&fake, &["passwd", "bob", "--crypted"], b"$6$salt$hash\n");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        fake.seen(),
        [
            r#"{"execute": "guest-set-user-password", "arguments": {"crypted": false, "username": "alice", "password": "czNjcmV0"}}"#,
            r#"{"execute": "guest-set-user-password", "arguments": {"crypted": true, "username": "bob", "password": "JDYkc2FsdCRoYXNo"}}"#,
        ]
    );
    // A password on the command line is a usage error, not a request.
    assert_eq!(
        run(&fake, &["passwd", "alice", "hunter2"], b"")
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&fake, &["passwd", "alice"], b"").status.code(), Some(1));
    assert_eq!(fake.seen().len(), 2);
}

#[test]
fn ssh_keys() {
    let fake = Fake::start(&[
        (
            "guest-ssh-get-authorized-keys",
            r#"{"return": {"keys": ["ssh-rsa BBB second", "ssh-ed25519 AAA first"]}}"#,
        ),
        ("guest-ssh-add-authorized-keys", r#"{"return": {}}"#),
        ("guest-ssh-remove-authorized-keys", r#"{"return": {}}"#),
    ]);
    let o = run(&fake, &["ssh-keys", "list", "root"], b"");
    assert_eq!(
        text(&o.stdout),
        "ssh-ed25519 AAA first\nssh-rsa BBB second\n"
    );
    let o = run(
        &fake,
        &["ssh-keys", "add", "root", "ssh-ed25519 K1 a", "--reset"],
        b"",
    );
    assert_eq!(
        text(&o.stdout),
        "added 1 key(s) for root\n",
        "{}",
        text(&o.stderr)
    );
    let o = run(
        &fake,
        &["ssh-keys", "remove", "root"],
        b"# mine\nssh-ed25519 K1 a\n\nssh-rsa K2 b\n",
    );
    assert_eq!(
        text(&o.stdout),
        "removed 2 key(s) for root\n",
        "{}",
        text(&o.stderr)
    );
    let seen = fake.seen();
    assert_eq!(
        seen[0],
        r#"{"execute": "guest-ssh-get-authorized-keys", "arguments": {"username": "root"}}"#
    );
    assert!(
        seen[1].contains(r#""reset": true"#) && seen[1].contains(r#""keys": ["ssh-ed25519 K1 a"]"#),
        "{}",
        seen[1]
    );
    assert!(
        seen[2].contains(r#""keys": ["ssh-ed25519 K1 a", "ssh-rsa K2 b"]"#),
        "{}",
        seen[2]
    );
    assert_eq!(
        run(&fake, &["ssh-keys", "remove", "root", "--reset", "k"], b"")
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn handshake_skips_stale_bytes_and_replies() {
    // A previous client's unread reply, a stale delimited sync reply with another id,
    // and garbage: all must be skipped.
    let fake = Fake::start_with(
        b"{\"return\": {}}\n\xff{\"return\": 12345}\ngarbage{",
        &[("guest-ping", r#"{"return": {}}"#)],
    );
    let o = run(&fake, &["ping"], b"");
    assert_eq!(
        (text(&o.stdout).as_str(), o.status.code()),
        ("ok\n", Some(0)),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn reply_timeout_is_exit_3_and_resyncs() {
    let fake = Fake::start(&[("guest-ping", ""), ("guest-get-time", r#"{"return": 5}"#)]);
    let o = run(&fake, &["-t", "0.5", "ping"], b"");
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        text(&o.stderr),
        "qga: guest-ping: no reply within 0.5s (raise it with --timeout)\n"
    );
    // In the library: after a timeout the next call resynchronises first.
    let mut c = Client::connect(&fake.sock, Duration::from_millis(300)).unwrap();
    assert!(matches!(
        c.call(GuestPingArgs {}),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(c.execute("guest-get-time", None).unwrap(), Value::Int(5));
}

#[test]
fn pipelined_calls_come_back_in_order() {
    let fake = Fake::start(&[(
        "guest-file-read",
        r#"{"return": {"count": 3, "buf-b64": "YWJj", "eof": false}}"#,
    )]);
    let mut c = Client::connect(&fake.sock, Duration::from_secs(5)).unwrap();
    let p: Vec<_> = (0..5)
        .map(|_| {
            c.send(&GuestFileReadArgs {
                handle: 1000,
                count: Some(3),
            })
            .unwrap()
        })
        .collect();
    assert_eq!(c.in_flight(), 5);
    for p in p {
        assert_eq!(c.receive(p).unwrap().buf_b64.text(), "YWJj");
    }
    assert_eq!(fake.seen().len(), 5);
    // Out of order is refused rather than mis-decoded.
    let a = c
        .send(&GuestFileReadArgs {
            handle: 1000,
            count: Some(3),
        })
        .unwrap();
    let b = c
        .send(&GuestFileReadArgs {
            handle: 1000,
            count: Some(3),
        })
        .unwrap();
    assert!(matches!(c.receive(b), Err(Error::Failed(_))));
    c.drain();
    drop(a);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn unknown_command_and_raw_passthrough() {
    let fake = Fake::start(&[(
        "guest-get-osinfo",
        r#"{"return": {"id": "debian", "name": "Debian"}}"#,
    )]);
    let o = run(&fake, &["disks"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "qga: guest-get-disks is not supported by this guest agent version\n"
    );
    let o = run(
        &fake,
        &["raw", r#"{"execute":"guest-get-osinfo","id":"x"}"#],
        b"",
    );
    assert_eq!(
        text(&o.stdout),
        "{\"return\": {\"id\": \"debian\", \"name\": \"Debian\"}}\n"
    );
    assert_eq!(
        fake.seen()[1],
        r#"{"execute": "guest-get-osinfo", "id": "x"}"#
    );
    assert_eq!(run(&fake, &["raw", "[1]"], b"").status.code(), Some(2));
    assert_eq!(run(&fake, &["raw", "{nope"], b"").status.code(), Some(2));
    let o = run(&fake, &["--json", "osinfo"], b"");
    assert_eq!(get(&json(&o.stdout), "id"), &Value::str("debian"));
}

#[test]
fn libvirt_transport_through_virsh() {
    let dir = TempDir::new();
    let log = dir.join("virsh.log");
    let virsh = dir.join("virsh");
    std::fs::write(
        &virsh,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\ncase \"$5\" in\n\
             *guest-ping*) echo '{{\"return\":{{}}}}' ;;\n\
             *guest-exec*) echo \"error: internal error: unable to execute QEMU agent command 'guest-exec': Command guest-exec has been disabled: the command is not allowed\" >&2; exit 1 ;;\n\
             *) echo 'error: Guest agent is not responding: QEMU guest agent is not connected' >&2; exit 1 ;;\n\
             esac\n",
            log.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&virsh)
        .status()
        .unwrap();
    let env = [("QGA_VIRSH", virsh.to_str().unwrap())];
    let o = qga_env(&["--libvirt", "vm1", "-t", "7", "ping"], b"", &env);
    assert_eq!(
        (text(&o.stdout).as_str(), o.status.code()),
        ("ok\n", Some(0)),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "qemu-agent-command vm1 --timeout 7 {\"execute\": \"guest-ping\"}\n"
    );
    let o = qga_env(&["--libvirt", "vm1", "exec", "--", "true"], b"", &env);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("guest-exec is disabled on this guest"),
        "{}",
        text(&o.stderr)
    );
    let o = qga_env(&["-d", "vm1", "-d", "vm2", "info"], b"", &env);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("vm2: error: libvirt domain vm2: Guest agent is not responding"),
        "{}",
        text(&o.stderr)
    );
}
