//! Differential tests of the system-info and network commands against the real qemu-ga
//! 10.0.2: the same requests to both agents, replies compared byte for byte where they
//! do not move, and by shape (same keys, order and types; counters never smaller in
//! the later reply) where they do (cpustats, load, interface counters on the host).
//!
//! The namespace tests feed both agents the recorded fixtures: a private mount
//! namespace bind-mounts them over `/sys/devices/system/{cpu,memory}`, `/proc/stat`,
//! `/run` (utmp) and `/etc`, a private network namespace holds veth links with IPv4,
//! IPv6-only, an address label and routes, and a private UTS namespace a host name. They need root, `unshare`, `nsenter`
//! and `ip`; set `QGA_SKIP_NAMESPACE_TESTS=1` to skip them where that is impossible.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{reference_binary, AgentProc, TempDir};
use qga_proto::Value;

const OURS: &str = env!("CARGO_BIN_EXE_qga-agent");

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysinfo")
        .join(p)
}

/// Asks every command of `cmds` in turn and returns the replies.
fn ask(agent: &AgentProc, cmds: &[&str]) -> Vec<String> {
    let mut c = agent.connect();
    cmds.iter()
        .map(|cmd| c.cmd(&format!(r#"{{"execute":"{cmd}"}}"#)))
        .collect()
}

/// The replies of the reference and of our agent, each started with `bin_ref` /
/// `bin_ours` (the binaries, or namespace wrappers) and `env` as the whole environment.
fn both(
    bin_ref: &Path,
    bin_ours: &Path,
    env: Option<&[(&str, &str)]>,
    cmds: &[&str],
) -> (Vec<String>, Vec<String>) {
    assert!(
        reference_binary().exists(),
        "reference qemu-ga not found at {} (run .ci/install-deps.sh or set QGA_REFERENCE)",
        reference_binary().display()
    );
    // The reference is killed, not stopped: qemu-ga 10.0.2 calls g_main_loop_quit()
    // from its SIGTERM handler and now and then deadlocks there.
    let r = AgentProc::spawn(bin_ref, &[], env);
    let a = ask(&r, cmds);
    drop(r);
    let mut o = AgentProc::spawn(bin_ours, &[], env);
    let b = ask(&o, cmds);
    assert_eq!(o.stop(), Some(0), "our exit status");
    (a, b)
}

fn assert_same(cmds: &[&str], a: &[String], b: &[String], what: &str) {
    for ((cmd, x), y) in cmds.iter().zip(a).zip(b) {
        assert_eq!(y, x, "{what}: {cmd}: ours (left) vs qemu-ga (right)");
    }
}

fn parse(s: &str) -> Value {
    qga_proto::json::parse_one(s.as_bytes())
        .expect("complete reply")
        .unwrap_or_else(|e| panic!("bad JSON {s}: {}", String::from_utf8_lossy(&e)))
}

/// Same shape: objects with the same keys in the same order, lists of the same length,
/// equal strings and booleans, numbers of the same kind; `counters` names object keys
/// whose integers may only grow from `old` (the reference, asked first) to `new`.
fn assert_shape(old: &Value, new: &Value, counters: &[&str], path: &str) {
    match (old, new) {
        (Value::Dict(a), Value::Dict(b)) => {
            let ka: Vec<&[u8]> = a.iter().map(|(k, _)| k).collect();
            let kb: Vec<&[u8]> = b.iter().map(|(k, _)| k).collect();
            assert_eq!(ka, kb, "{path}: keys");
            for ((k, va), (_, vb)) in a.iter().zip(b.iter()) {
                let key = String::from_utf8_lossy(k);
                let p = format!("{path}.{key}");
                if counters.contains(&key.as_ref()) {
                    match (va, vb) {
                        (Value::Int(x), Value::Int(y)) => assert!(y >= x, "{p}: {y} < {x}"),
                        (Value::Double(_), Value::Double(_)) => {}
                        _ => panic!("{p}: {va:?} vs {vb:?}"),
                    }
                } else {
                    assert_shape(va, vb, counters, &p);
                }
            }
        }
        (Value::List(a), Value::List(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_shape(x, y, counters, &format!("{path}[{i}]"));
            }
        }
        (Value::Double(_), Value::Double(_)) => {}
        _ => assert_eq!(old, new, "{path}"),
    }
}

const STABLE: &[&str] = &[
    "guest-get-host-name",
    "guest-get-timezone",
    "guest-get-osinfo",
    "guest-get-users",
    "guest-get-vcpus",
    "guest-get-memory-blocks",
    "guest-get-memory-block-info",
    "guest-network-get-route",
];

const CPU_COUNTERS: &[&str] = &[
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guestnice",
];
const NET_COUNTERS: &[&str] = &[
    "rx-bytes",
    "rx-packets",
    "rx-errs",
    "rx-dropped",
    "tx-bytes",
    "tx-packets",
    "tx-errs",
    "tx-dropped",
];

#[test]
fn host_replies_match_reference() {
    let moving = [
        "guest-get-cpustats",
        "guest-get-load",
        "guest-network-get-interfaces",
    ];
    let cmds: Vec<&str> = STABLE.iter().chain(&moving).copied().collect();
    let (a, b) = both(&reference_binary(), Path::new(OURS), None, &cmds);
    assert_same(STABLE, &a, &b, "host");
    let n = STABLE.len();
    assert_shape(&parse(&a[n]), &parse(&b[n]), CPU_COUNTERS, "cpustats");
    assert_shape(&parse(&a[n + 1]), &parse(&b[n + 1]), &[], "load");
    assert_shape(
        &parse(&a[n + 2]),
        &parse(&b[n + 2]),
        NET_COUNTERS,
        "interfaces",
    );
    // §8.2 cases 5, 6, 8-10, 27-29: the members the QEMU unit tests look for.
    for (i, needle) in [
        (0, r#"{"return": {"host-name": "#),
        (1, r#""offset": "#),
        (3, r#"{"return": ["#),
        (4, r#""logical-id": "#),
        (6, r#"{"return": {"size": "#),
        (n + 1, r#"{"return": {"load15m": "#),
        (n + 2, r#"{"return": [{"name": "#),
    ] {
        assert!(b[i].contains(needle), "{}: {}", cmds[i], b[i]);
    }
}

#[test]
fn osinfo_with_only_qga_os_release_in_environment() {
    let mut files: Vec<String> = std::fs::read_dir(fixture("os-release"))
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| !p.ends_with(".expected"))
        .collect();
    files.sort();
    // Missing file and empty value: qemu-ga reports only the uname fields, no error.
    files.push("/nonexistent/os-release".into());
    files.push(String::new());
    for f in &files {
        let env = [("QGA_OS_RELEASE", f.as_str())];
        let cmds = ["guest-get-osinfo"];
        let (a, b) = both(&reference_binary(), Path::new(OURS), Some(&env), &cmds);
        assert_same(&cmds, &a, &b, f);
    }
    // §8.2 case 26 with QEMU's own test data.
    let env = [("QGA_OS_RELEASE", fixture("os-release/qemu-test-data"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
    let mut o = AgentProc::spawn(Path::new(OURS), &[], Some(&env));
    let r = ask(&o, &["guest-get-osinfo"]).remove(0);
    o.stop();
    for field in [
        r#""id": "qemu-ga-test""#,
        r#""name": "QEMU-GA""#,
        r#""pretty-name": "QEMU Guest Agent test""#,
        r#""version": "Test 1""#,
        r#""version-id": "1""#,
        r#""variant": "Unit test \"'$`\\ and \\\\ etc.""#,
        r#""variant-id": "unit-test""#,
    ] {
        assert!(r.contains(field), "{field} in {r}");
    }
}

#[test]
fn timezone_for_tz_values() {
    // TZ naming an existing file that is not TZif is left out: qemu-ga 10.0.2 (GLib
    // 2.74) deadlocks on it (a g_critical logged under GLib's time zone lock).
    for tz in [
        "UTC",
        ":UTC",
        "",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        ":Europe/Paris",
        "/usr/share/zoneinfo/Asia/Tokyo",
        "right/UTC",
        "Foo/Bar",
        "+05:30",
        "-8",
        "5",
        "Z",
        "+25",
        "EST5EDT",
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "<+0330>-3:30",
        "ABC3DEF,M3.2.0,M11.1.0,junk",
        "ABC3DEF",
        "XYZ-5",
    ] {
        let env = [("TZ", tz)];
        let cmds = ["guest-get-timezone"];
        let (a, b) = both(&reference_binary(), Path::new(OURS), Some(&env), &cmds);
        assert_same(&cmds, &a, &b, &format!("TZ={tz:?}"));
    }
}

/// A shell guard that refuses to run the setup unless the mount, network and UTS
/// namespaces really differ from this test process's own (the setup mounts, adds links
/// and sets the host name).
fn guard() -> String {
    let mut g = String::new();
    for ns in ["mnt", "net", "uts"] {
        let own = std::fs::read_link(format!("/proc/self/ns/{ns}")).expect("own namespace");
        g.push_str(&format!(
            "[ -n \"$(readlink /proc/self/ns/{ns})\" ] && [ \"$(readlink /proc/self/ns/{ns})\" != '{}' ] \\\n  || {{ echo 'not in a private {ns} namespace' >&2; exit 1; }}\n",
            own.display()
        ));
    }
    g
}

/// A private mount + network + UTS namespace prepared by a shell script, held open by a
/// sleeping process, and wrapper scripts that start an agent inside it.
struct Namespace {
    holder: Child,
    wrap_ref: PathBuf,
    wrap_ours: PathBuf,
    _dir: TempDir,
}

impl Namespace {
    /// `None` when the tests are skipped by `QGA_SKIP_NAMESPACE_TESTS`.
    fn new(setup: &str) -> Option<Self> {
        if std::env::var_os("QGA_SKIP_NAMESPACE_TESTS").is_some() {
            eprintln!("namespace test skipped (QGA_SKIP_NAMESPACE_TESTS)");
            return None;
        }
        let dir = TempDir::new();
        let script = format!(
            "set -e\nexport FIX='{}' TMP='{}'\n{}{setup}\necho ready\nexec sleep 100000\n",
            fixture("").display(),
            dir.0.display(),
            guard()
        );
        let mut holder = Command::new("unshare")
            .args([
                "-m",
                "-n",
                "-u",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                &script,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare (needs root and util-linux; QGA_SKIP_NAMESPACE_TESTS=1 skips)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line, "ready\n",
            "namespace setup failed (needs root, unshare, ip)"
        );
        let wrap = |name: &str, bin: &Path| {
            let p = dir.join(name);
            let body = format!(
                "#!/bin/sh\nexec /usr/bin/nsenter -t {} -m -n -u -- '{}' \"$@\"\n",
                holder.id(),
                bin.display()
            );
            std::fs::write(&p, body).unwrap();
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
            std::fs::set_permissions(&p, mode).unwrap();
            p
        };
        let wrap_ref = wrap("ref.sh", &reference_binary());
        let wrap_ours = wrap("ours.sh", Path::new(OURS));
        Some(Namespace {
            holder,
            wrap_ref,
            wrap_ours,
            _dir: dir,
        })
    }

    fn both(&self, env: Option<&[(&str, &str)]>, cmds: &[&str]) -> (Vec<String>, Vec<String>) {
        both(&self.wrap_ref, &self.wrap_ours, env, cmds)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn fixtures_in_namespace_match_reference_exactly() {
    let Some(ns) = Namespace::new(
        r#"
mount --bind "$FIX/cpu" /sys/devices/system/cpu
mount --bind "$FIX/memory" /sys/devices/system/memory
mount --bind "$FIX/stat/few-fields" /proc/stat
mkdir "$TMP/run" && cp "$FIX/utmp/utmp" "$TMP/run/utmp" && mount --bind "$TMP/run" /run
sysctl -qw net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.router_solicitations=0
ip link set lo up
ip link add vA type veth peer name vB
ip link add vC type veth peer name vD
ip link set vA up
ip link set vC up
ip addr add 10.9.8.7/20 dev vA
ip addr add 10.9.9.9/24 label vA:1 dev vA
ip -6 addr add 2001:db8:1::7/64 dev vA nodad
ip -6 addr add 2001:db8:2::1/48 dev vC nodad
ip route add 192.168.50.0/24 via 10.9.8.1 dev vA metric 77 mtu 1400 window 1000 rtt 30
ip -6 route add 2001:db8:99::/64 via 2001:db8:1::1 dev vA metric 5
"#,
    ) else {
        return;
    };
    // The links have no carrier, but the kernel still tries (and drops) a few IPv6
    // multicast reports after link-up, so only the interface counters may move.
    let cmds = [
        "guest-get-vcpus",
        "guest-get-memory-blocks",
        "guest-get-memory-block-info",
        "guest-get-cpustats",
        "guest-get-users",
        "guest-network-get-interfaces",
        "guest-network-get-route",
    ];
    let (a, b) = ns.both(None, &cmds);
    let exact: Vec<usize> = (0..cmds.len()).filter(|&i| i != 5).collect();
    for &i in &exact {
        assert_same(&cmds[i..=i], &a[i..=i], &b[i..=i], "namespace");
    }
    assert_shape(
        &parse(&a[5]),
        &parse(&b[5]),
        NET_COUNTERS,
        "namespace interfaces",
    );
    assert!(a[5].contains(r#""name": "vA:1""#), "{}", a[5]);
    assert!(
        a[5].contains(r#""ip-address": "2001:db8:2::1", "prefix": 48"#),
        "{}",
        a[5]
    );
    assert!(
        a[6].contains(r#""window": 1000"#) && a[6].contains(r#""metric": 77"#),
        "{}",
        a[6]
    );
    assert!(
        a[4].contains("abcdefghijklmnopqrstuvwxyz012345host.example"),
        "{}",
        a[4]
    );
}

#[test]
fn error_paths_in_namespace_match_reference() {
    let Some(ns) = Namespace::new(
        r#"
mkdir -p "$TMP/cpu/cpu0" "$TMP/cpu/cpu3" "$TMP/mem" && : > "$TMP/cpu/cpu3/online"
mount --bind "$TMP/cpu" /sys/devices/system/cpu
mount --bind "$TMP/mem" /sys/devices/system/memory
hostname aaaaaaaaaabbbbbbbbbbccccccccccddddddddddeeeeeeeeeeffffffffff1234
"#,
    ) else {
        return;
    };
    let cmds = [
        "guest-get-vcpus",
        "guest-get-memory-blocks",
        "guest-get-memory-block-info",
        "guest-get-users",
        "guest-network-get-interfaces",
        "guest-get-host-name",
    ];
    let (a, b) = ns.both(None, &cmds);
    assert_same(&cmds, &a, &b, "errors");
    // A 64-byte host name does not fit gethostname's buffer of HOST_NAME_MAX bytes.
    assert!(
        a[5].contains("cannot get hostname: File name too long"),
        "{}",
        a[5]
    );
    assert!(a[0].contains("unexpected EOF"), "{}", a[0]);
    assert!(
        a[1].contains("guest reported zero memory blocks!"),
        "{}",
        a[1]
    );
    // Only lo, down and without addresses in a fresh network namespace.
    assert_eq!(
        a[4],
        r#"{"return": [{"name": "lo", "hardware-address": "00:00:00:00:00:00"}]}"#
    );
}

#[test]
fn etc_quirks_in_namespace_match_reference() {
    // /etc/localtime as a regular file without /etc/timezone: GLib 2.74 ignores it.
    // /etc/os-release not UTF-8: qemu-ga falls back to /usr/lib/os-release.
    let Some(ns) = Namespace::new(
        r#"
cp -a /etc "$TMP/etc"
rm -f "$TMP/etc/localtime" "$TMP/etc/timezone" "$TMP/etc/os-release"
cp /usr/share/zoneinfo/Europe/Berlin "$TMP/etc/localtime"
printf 'ID=\351\n' > "$TMP/etc/os-release"
mount --bind "$TMP/etc" /etc
"#,
    ) else {
        return;
    };
    let cmds = ["guest-get-timezone", "guest-get-osinfo"];
    let (a, b) = ns.both(Some(&[]), &cmds);
    assert_same(&cmds, &a, &b, "etc quirks");
    assert_eq!(a[0], r#"{"return": {"zone": "UTC", "offset": 0}}"#);
}
