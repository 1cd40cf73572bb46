//! The policy end to end, against spawned agents: audit lines on a fake syslog socket
//! (`QGA_SYSLOG_PATH`) naming the caller and never the secrets, the log-file fallback,
//! profiles in guest-info, and `--harden` per profile: the capability sets, bounding
//! set, no_new_privs and seccomp state in /proc, and every allowed command answering as
//! it does without hardening (the state-changing and credential commands run in a
//! private mount namespace against a fake user and a fake CPU sysfs tree).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{AgentProc, Client, TempDir};
use qga_agent::commands::COMMANDS;
use qga_agent::policy::{Category, Profile};

const AGENT: &str = env!("CARGO_BIN_EXE_qga-agent");
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A socket standing in for /dev/log, read continuously as a system logger does (the
/// kernel queues only a few datagrams on an unread socket).
struct FakeSyslog {
    _dir: TempDir,
    path: PathBuf,
    got: Arc<Mutex<Vec<String>>>,
}

impl FakeSyslog {
    fn new() -> Self {
        let dir = TempDir::new();
        let path = dir.join("log");
        let sock = UnixDatagram::bind(&path).expect("bind fake syslog");
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                g.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        FakeSyslog {
            _dir: dir,
            path,
            got,
        }
    }

    /// Every datagram so far, once none came for `quiet`.
    fn drain(&self, quiet: Duration) -> Vec<String> {
        let mut seen = usize::MAX;
        loop {
            std::thread::sleep(quiet);
            let got = self.got.lock().unwrap();
            if got.len() == seen {
                return got.clone();
            }
            seen = got.len();
        }
    }
}

/// Our agent with `extra` arguments, its syslog at `syslog` (a path nobody listens on
/// when `None`, so a test never writes to the real /dev/log).
fn agent(extra: &[&str], syslog: Option<&Path>) -> AgentProc {
    let log = syslog
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/nonexistent/qga-test-log".into());
    let env = [("PATH", PATH), ("QGA_SYSLOG_PATH", log.as_str())];
    AgentProc::spawn(Path::new(AGENT), extra, Some(&env))
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn has(name: &str) -> bool {
    COMMANDS.iter().any(|c| c.name == name)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no memory effects.
    unsafe { libc::geteuid() == 0 }
}

/// The value of a `Key:\tvalue` line of /proc/<pid>/status.
fn status(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} not in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap()
}

const SECRET: &str = "TOP-SECRET-CONTENT-7f3a";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEYMATERIALSHOULDNOTBELOGGED test@host";

#[test]
fn audit_lines_on_syslog_name_the_caller_and_hide_secrets() {
    let syslog = FakeSyslog::new();
    let logdir = TempDir::new();
    let logfile = logdir.join("agent.log");
    let logfile_s = logfile.to_string_lossy().into_owned();
    let mut ga = agent(&["-v", "-l", &logfile_s], Some(&syslog.path));
    let me = std::process::id();
    let pid = ga.pid();
    let mut c = ga.connect();
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    // Information is not audited.
    assert!(c
        .cmd(r#"{"execute":"guest-get-time"}"#)
        .starts_with(r#"{"return": "#));
    let add = format!(
        r#"{{"execute":"guest-ssh-add-authorized-keys","arguments":{{"username":"qga-no-such-user","keys":["{KEY}"]}}}}"#
    );
    assert!(c.cmd(&add).contains("GenericError"));

    let mut expected_audits = 1;
    let dir = ga.dir.0.to_string_lossy().into_owned();
    if has("guest-file-open") {
        let path = format!("{dir}/written");
        let open = format!(
            r#"{{"execute":"guest-file-open","arguments":{{"path":"{path}","mode":"w"}}}}"#
        );
        let handle = c.cmd(&open);
        let handle = handle
            .strip_prefix(r#"{"return": "#)
            .and_then(|h| h.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{handle}"))
            .to_string();
        let write = format!(
            r#"{{"execute":"guest-file-write","arguments":{{"handle":{handle},"buf-b64":"{}"}}}}"#,
            b64(SECRET.as_bytes())
        );
        assert!(c.cmd(&write).contains("\"count\": 23"));
        let close =
            format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{handle}}}}}"#);
        assert_eq!(c.cmd(&close), r#"{"return": {}}"#);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SECRET);
        // A failed read is audited on its own; successful reads and writes are summed
        // up on the close line.
        let bad = r#"{"execute":"guest-file-read","arguments":{"handle":999999}}"#;
        assert!(c.cmd(bad).contains("has not been found"));
        expected_audits += 3;
    }
    if has("guest-exec") {
        let exec = format!(
            r#"{{"execute":"guest-exec","arguments":{{"path":"/bin/cat","arg":["-"],"env":["TOKEN={SECRET}"],"input-data":"{}","capture-output":true}}}}"#,
            b64(SECRET.as_bytes())
        );
        let r = c.cmd(&exec);
        let child: String = r.chars().filter(char::is_ascii_digit).collect();
        let status = format!(r#"{{"execute":"guest-exec-status","arguments":{{"pid":{child}}}}}"#);
        let mut out = String::new();
        for _ in 0..100 {
            out = c.cmd(&status);
            if out.contains("\"exited\": true") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(out.contains(&b64(SECRET.as_bytes())), "{out}");
        // guest-exec, and the one exec-status poll that saw the end.
        expected_audits += 2;
    }
    // A second connection is another client.
    drop(c);
    let mut c2 = ga.connect();
    let rm = r#"{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"qga-no-such-user","keys":[]}}"#;
    assert!(c2.cmd(rm).contains("GenericError"));
    expected_audits += 1;
    drop(c2);
    let lines = syslog.drain(Duration::from_millis(200));
    assert_eq!(ga.stop(), Some(0));

    // qemu-ga's own line, as qemu-ga sends it (user.info, no pid).
    let ping = lines
        .iter()
        .find(|l| l.ends_with(" qga-agent: info: guest-ping called"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    // "<14>Nov 26 07:15:32 qga-agent: ...": glibc's RFC 3164 header, local time.
    assert!(
        ping.starts_with("<14>") && ping.as_bytes()[19] == b' ',
        "{ping}"
    );
    assert_eq!(&ping[19..], " qga-agent: info: guest-ping called");
    let audits: Vec<&String> = lines.iter().filter(|l| l.contains(": audit: ")).collect();
    assert_eq!(audits.len(), expected_audits, "{lines:#?}");
    let client1 = format!("by unix-listen client #1 (pid {me}, uid 0)");
    let tag = format!(" qga-agent[{pid}]: audit: ");
    for a in &audits {
        assert!(a.contains(&tag), "{a}");
    }
    let add_line = audits
        .iter()
        .find(|l| l.contains("guest-ssh-add-authorized-keys"))
        .unwrap();
    assert!(
        add_line.starts_with("<84>"),
        "authpriv.warning for an error: {add_line}"
    );
    assert!(
        add_line.contains(&format!(
            "audit: guest-ssh-add-authorized-keys username=\"qga-no-such-user\" keys=<1 items> \
             {client1}: error \"failed to lookup user 'qga-no-such-user': "
        )),
        "{add_line}"
    );
    let rm_line = audits
        .iter()
        .find(|l| l.contains("guest-ssh-remove-authorized-keys"))
        .unwrap();
    assert!(
        rm_line.contains(&format!(
            "by unix-listen client #2 (pid {me}, uid 0): error"
        )),
        "{rm_line}"
    );
    if has("guest-file-open") {
        let open = audits
            .iter()
            .find(|l| l.contains("guest-file-open"))
            .unwrap();
        assert!(open.starts_with("<85>"), "authpriv.notice: {open}");
        assert!(
            open.contains(&format!(
                "audit: guest-file-open path=\"{dir}/written\" mode=\"w\" {client1}: ok, returned "
            )),
            "{open}"
        );
        let handle = open.rsplit(' ').next().unwrap();
        assert!(!audits.iter().any(|l| l.contains("guest-file-write")));
        let close = audits
            .iter()
            .find(|l| l.contains("guest-file-close"))
            .unwrap();
        assert!(
            close.contains(&format!(
                "audit: guest-file-close handle={handle} {client1}: ok; \
                 read 0 bytes in 0 requests, wrote 23 bytes in 1 requests"
            )),
            "{close}"
        );
        let read = audits
            .iter()
            .find(|l| l.contains("guest-file-read"))
            .unwrap();
        assert!(
            read.contains("audit: guest-file-read handle=999999 ")
                && read.contains(": error \"handle '999999' has not been found\""),
            "{read}"
        );
    }
    if has("guest-exec") {
        let exec = audits
            .iter()
            .find(|l| l.contains("audit: guest-exec "))
            .unwrap();
        assert!(
            exec.contains(
                "audit: guest-exec path=\"/bin/cat\" arg=[\"-\"] env=<1 items> \
                 input-data=<redacted> capture-output=true by"
            ) && exec.contains(": ok, returned pid="),
            "{exec}"
        );
        let st = audits
            .iter()
            .find(|l| l.contains("audit: guest-exec-status"))
            .unwrap();
        assert!(
            st.contains("ok, returned exited=true exitcode=0 out-data=<redacted>"),
            "{st}"
        );
    }
    // No secret anywhere: not in syslog, not in the verbose log file.
    let file = std::fs::read_to_string(&logfile).unwrap_or_default();
    for text in lines.iter().map(String::as_str).chain([file.as_str()]) {
        for secret in [SECRET, &b64(SECRET.as_bytes()), "KEYMATERIAL", "test@host"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    // With a syslog socket, audit lines do not go to the file.
    assert!(!file.contains("audit:"), "{file}");
}

#[test]
fn without_syslog_audit_lines_go_to_the_log_file_whatever_the_verbosity() {
    let logdir = TempDir::new();
    let logfile = logdir.join("agent.log");
    let logfile_s = logfile.to_string_lossy().into_owned();
    let mut ga = agent(&["-l", &logfile_s, "--profile=read-only"], None);
    let mut c = ga.connect();
    assert_eq!(c.cmd(r#"{"execute":"guest-ping"}"#), r#"{"return": {}}"#);
    let add = format!(
        r#"{{"execute":"guest-ssh-add-authorized-keys","arguments":{{"username":"root","keys":["{KEY}"]}}}}"#
    );
    assert_eq!(
        c.cmd(&add),
        r#"{"error": {"class": "CommandNotFound", "desc": "Command guest-ssh-add-authorized-keys has been disabled: the command is not allowed"}}"#
    );
    // guest-info shows what the profile allows.
    let info = c.cmd(r#"{"execute":"guest-info"}"#);
    assert!(
        info.contains(r#"{"enabled": false, "name": "guest-ssh-add-authorized-keys""#)
            && info.contains(r#"{"enabled": true, "name": "guest-get-fsinfo""#),
        "{info}"
    );
    drop(c);
    assert_eq!(ga.stop(), Some(0));
    let file = std::fs::read_to_string(&logfile).unwrap();
    let me = std::process::id();
    let line = file
        .lines()
        .find(|l| l.contains("audit:"))
        .unwrap_or_else(|| panic!("{file}"));
    let (stamp, rest) = line.split_once(": ").unwrap();
    assert!(stamp.contains('.') && stamp.len() > 7, "{line}");
    assert_eq!(
        rest,
        format!(
            "message: audit: guest-ssh-add-authorized-keys username=\"root\" keys=<1 items> \
             by unix-listen client #1 (pid {me}, uid 0): denied (profile read-only)"
        )
    );
    // qemu-ga's info line stays behind -v, as it is qemu-ga's.
    assert!(!file.contains("guest-ping called"), "{file}");
}

/// Sends every protocol and information command the profile enables.
fn read_only_replies(c: &mut Client, profile: Profile) -> Vec<(String, String)> {
    COMMANDS
        .iter()
        .filter(|r| matches!(r.category, Category::Protocol | Category::Info))
        .filter(|r| profile.allows(r.category))
        .map(|r| {
            let req = match r.name {
                "guest-sync" | "guest-sync-delimited" => {
                    format!(r#"{{"execute":"{}","arguments":{{"id":7}}}}"#, r.name)
                }
                n => format!(r#"{{"execute":"{n}"}}"#),
            };
            (r.name.to_string(), common::zero_numbers(&c.cmd(&req)))
        })
        .collect()
}

#[test]
fn hardened_profiles_keep_their_capabilities_and_answer_as_unhardened() {
    if !is_root() {
        eprintln!("skipped: needs root (capabilities to drop)");
        return;
    }
    use qga_agent::sys::harden::cap;
    let full_is_root = has("guest-exec") || has("guest-file-open");
    let change = cap::SYS_ADMIN | cap::DAC_READ_SEARCH | cap::SYS_TIME;
    let creds = change | cap::DAC_OVERRIDE | cap::CHOWN | cap::FOWNER;
    for profile in Profile::ALL {
        let name = format!("--profile={}", profile.name());
        let mut plain = agent(&[&name], None);
        let mut hard = agent(&[&name, "--harden"], None);
        let (pid, plain_pid) = (hard.pid(), plain.pid());
        // Hardening happens after the socket appears: wait for an answer first.
        let (mut a, mut b) = (plain.connect(), hard.connect());
        let ping = r#"{"execute":"guest-ping"}"#;
        assert_eq!(a.cmd(ping), b.cmd(ping));
        let all_caps = status(plain_pid, "CapBnd");
        let eff = hex(&status(pid, "CapEff"));
        let bnd = status(pid, "CapBnd");
        let (want, locked) = match profile {
            Profile::ReadOnly => (cap::SYS_ADMIN | cap::DAC_READ_SEARCH, true),
            Profile::Lifecycle => (change, false),
            Profile::NoExecFiles => (creds, false),
            Profile::Full if full_is_root => (hex(&all_caps), false),
            Profile::Full => (creds, false),
        };
        assert_eq!(eff, want, "{name}: CapEff {eff:#x}");
        assert_eq!(hex(&status(pid, "CapPrm")), want, "{name}");
        assert_eq!(hex(&status(pid, "CapInh")), 0, "{name}");
        assert_eq!(status(pid, "CapAmb"), "0000000000000000", "{name}");
        if locked {
            assert_eq!(hex(&bnd), want, "{name}: bounding set");
            assert_eq!(status(pid, "NoNewPrivs"), "1", "{name}");
            assert_eq!(status(pid, "Seccomp"), "2", "{name}");
        } else {
            assert_eq!(bnd, all_caps, "{name}: helpers need the bounding set");
            assert_eq!(status(pid, "NoNewPrivs"), "0", "{name}");
            assert_eq!(status(pid, "Seccomp"), "0", "{name}");
        }
        // The unhardened agent is untouched.
        assert_eq!(status(plain_pid, "CapEff"), all_caps);

        let expected = read_only_replies(&mut a, profile);
        let got = read_only_replies(&mut b, profile);
        assert!(expected.len() >= 8, "{expected:?}");
        for ((n, e), (_, g)) in expected.iter().zip(&got) {
            assert_eq!(g, e, "{name}: {n} answers differently when hardened");
        }
        // The same commands are enabled and disabled.
        let info = r#"{"execute":"guest-info"}"#;
        assert_eq!(a.cmd(info), b.cmd(info), "{name}");
        drop((a, b));
        assert_eq!(hard.stop(), Some(0), "{name}");
        assert_eq!(plain.stop(), Some(0), "{name}");
    }
}

/// A wrapper that starts the agent in a private mount namespace where /etc/passwd has
/// a user `qgafake` (uid 4242, home `<dir>/home`, mode 0700) and
/// /sys/devices/system/cpu is a fake tree with an offline cpu1.
struct Namespace {
    dir: TempDir,
    wrapper: PathBuf,
}

impl Namespace {
    fn new() -> Self {
        let dir = TempDir::new();
        let home = dir.join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(4242), Some(4242)).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd.push_str(&format!(
            "qgafake:x:4242:4242::{}:/bin/sh\n",
            home.display()
        ));
        std::fs::write(dir.join("passwd"), passwd).unwrap();
        std::fs::create_dir_all(dir.join("cpu/cpu0")).unwrap();
        std::fs::create_dir_all(dir.join("cpu/cpu1")).unwrap();
        std::fs::write(dir.join("cpu/cpu1/online"), "0\n").unwrap();
        let wrapper = dir.join("wrap.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/unshare -m --propagation private /bin/sh -c '\
                 set -e; mount --bind {d}/passwd /etc/passwd; \
                 mount --bind {d}/cpu /sys/devices/system/cpu; exec {AGENT} \"$@\"' sh \"$@\"\n",
                d = dir.0.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Namespace { dir, wrapper }
    }

    fn spawn(&self, extra: &[&str]) -> AgentProc {
        let env = [
            ("PATH", PATH),
            ("QGA_SYSLOG_PATH", "/nonexistent/qga-test-log"),
        ];
        let ga = AgentProc::spawn(&self.wrapper, extra, Some(&env));
        // Never send set-vcpus unless the agent sees the fake tree.
        let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", ga.pid())).unwrap();
        assert!(
            mounts.contains(" /sys/devices/system/cpu ") && mounts.contains(" /etc/passwd "),
            "fake mounts missing: {mounts}"
        );
        ga
    }
}

/// ssh keys for the fake user and a vCPU online, as the profile allows; returns the
/// replies and the resulting files.
fn state_changes(ns: &Namespace, extra: &[&str]) -> (Vec<String>, String, String) {
    let mut ga = ns.spawn(extra);
    let mut c = ga.connect();
    let k2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC2 second@host";
    let mut replies = Vec::new();
    for req in [
        format!(
            r#"{{"execute":"guest-ssh-add-authorized-keys","arguments":{{"username":"qgafake","keys":["{KEY}","{k2}"]}}}}"#
        ),
        format!(
            r#"{{"execute":"guest-ssh-remove-authorized-keys","arguments":{{"username":"qgafake","keys":["{KEY}"]}}}}"#
        ),
        r#"{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"qgafake"}}"#.into(),
        r#"{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":true}]}}"#
            .into(),
    ] {
        replies.push(c.cmd(&req));
    }
    drop(c);
    assert_eq!(ga.stop(), Some(0));
    let keys = ns.dir.join("home/.ssh/authorized_keys");
    let keys_state = match std::fs::metadata(&keys) {
        Ok(m) => format!(
            "{:o} {}:{} {:?}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            std::fs::read_to_string(&keys).unwrap()
        ),
        Err(e) => e.to_string(),
    };
    let cpu = std::fs::read_to_string(ns.dir.join("cpu/cpu1/online")).unwrap();
    (replies, keys_state, cpu)
}

#[test]
fn hardened_agent_still_changes_state_and_credentials() {
    if !is_root() || !Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipped: needs root and unshare");
        return;
    }
    for profile in ["no-exec-files", "lifecycle", "full"] {
        let p = format!("--profile={profile}");
        let (plain, plain_keys, plain_cpu) = state_changes(&Namespace::new(), &[&p]);
        let (hard, hard_keys, hard_cpu) = state_changes(&Namespace::new(), &[&p, "--harden"]);
        assert_eq!(hard, plain, "{profile}");
        assert_eq!(hard_keys, plain_keys, "{profile}");
        assert_eq!(hard_cpu, plain_cpu, "{profile}");
        assert_eq!(plain[3], r#"{"return": 1}"#, "{profile}");
        assert_eq!(hard_cpu, "1\n", "{profile}");
        if profile == "lifecycle" {
            assert!(plain[0].contains("has been disabled"), "{}", plain[0]);
        } else {
            assert_eq!(plain[0], r#"{"return": {}}"#, "{profile}");
            assert_eq!(
                hard_keys,
                "600 4242:4242 \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC2 second@host\""
            );
            assert!(plain[2].contains("second@host") && !plain[2].contains("KEYMATERIAL"));
        }
    }
}

/// Runs `agent` (invoked by the name `qemu-ga`) in a private mount namespace whose
/// /dev is a tmpfs holding only `null` and `log`, a link to `syslog`; returns what
/// reached syslog for a fixed request sequence, time stamps cut out.
fn syslog_in_namespace(agent: &Path, requests: &[&str]) -> Vec<String> {
    let syslog = FakeSyslog::new();
    let dir = TempDir::new();
    let named = dir.join("qemu-ga");
    std::os::unix::fs::symlink(agent, &named).unwrap();
    let wrapper = dir.join("wrap.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/unshare -m --propagation private /bin/sh -c '\
             set -e; mount -t tmpfs tmpfs /dev; mknod -m 666 /dev/null c 1 3; \
             ln -s {} /dev/log; exec {} \"$@\"' sh \"$@\"\n",
            syslog.path.display(),
            named.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ga = AgentProc::spawn(&wrapper, &[], Some(&[("PATH", PATH)]));
    let mut c = ga.connect();
    for r in requests {
        c.cmd(r);
    }
    drop(c);
    let lines = syslog.drain(Duration::from_millis(300));
    // qemu-ga 10.0.2 can deadlock in its SIGTERM handler: kill both the same way.
    drop(ga);
    lines
        .into_iter()
        .map(|l| match l.split_once('>') {
            // "<14>Nov 26 07:15:32 qemu-ga: ...": keep the priority and what follows the stamp.
            Some((pri, rest)) if rest.len() > 15 => format!("{pri}> {}", &rest[16..]),
            _ => l,
        })
        .collect()
}

#[test]
fn qemu_ga_syslog_lines_are_qemu_gas_byte_for_byte() {
    let reference = common::reference_binary();
    if !is_root() || !Path::new("/usr/bin/unshare").exists() || !reference.exists() {
        eprintln!("skipped: needs root, unshare and the reference qemu-ga");
        return;
    }
    let requests = [
        r#"{"execute":"guest-ping"}"#,
        r#"{"execute":"guest-file-open","arguments":{"path":"/etc/hostname","mode":"r"}}"#,
        r#"{"execute":"guest-file-read","arguments":{"handle":1000,"count":3}}"#,
        r#"{"execute":"guest-file-seek","arguments":{"handle":1000,"offset":0,"whence":"set"}}"#,
        r#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"eA=="}}"#,
        r#"{"execute":"guest-file-flush","arguments":{"handle":1000}}"#,
        r#"{"execute":"guest-file-close","arguments":{"handle":1000}}"#,
        r#"{"execute":"guest-file-read","arguments":{"handle":1000}}"#,
        r#"{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"qga-no-such-user"}}"#,
        r#"{"execute":"guest-get-fsinfo"}"#,
        r#"{"execute":"guest-exec","arguments":{"path":"/bin/true","arg":["a b"]}}"#,
        r#"{"execute":"guest-get-osinfo"}"#,
    ];
    let theirs = syslog_in_namespace(&reference, &requests);
    let ours = syslog_in_namespace(Path::new(AGENT), &requests);
    assert!(
        theirs.len() >= 4 && theirs.iter().all(|l| l.starts_with("<14> qemu-ga: info: ")),
        "{theirs:#?}"
    );
    // Ours adds the audit lines (authpriv, with the pid); the rest is identical.
    let (audit, compat): (Vec<String>, Vec<String>) =
        ours.into_iter().partition(|l| l.contains(": audit: "));
    assert_eq!(compat, theirs);
    // open, the failed write, close (with what the handle moved), the failed read,
    // ssh keys and exec: successful reads, seeks and flushes leave no line.
    assert_eq!(audit.len(), 6, "{audit:#?}");
    assert!(
        audit[2].contains(": ok; read 3 bytes in 1 requests, wrote 0 bytes in 0 requests"),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .all(|l| l.starts_with("<85> qemu-ga[") || l.starts_with("<84> qemu-ga[")),
        "{audit:#?}"
    );
}
