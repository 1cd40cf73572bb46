//! guest-network-get-interfaces inside a real guest, for the interface kinds the
//! development host's kernel cannot make (bonds, VLANs, GRE/IPIP/SIT tunnels,
//! WireGuard): our agent, which reads them from rtnetlink dumps, and the reference
//! qemu-ga 10.0.2, which reads getifaddrs + SIOCGIFHWADDR + /proc/net/dev, run side by
//! side in one VM on two virtio-serial ports and must give the same reply.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{decode_b64, reference_binary, static_agent, vm_lock, Client, Vm};

const REQUEST: &str = r#"{"execute":"guest-network-get-interfaces"}"#;
/// The virtio-serial port the reference agent serves (fixtures/netlink/vm/reference.sh).
const REF_PORT: &str = "qga.ref";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/netlink/vm")
        .join(name)
}

/// Runs `script` with /bin/sh in the guest: `(exit code, stdout and stderr)`.
fn guest_sh(c: &mut Client, script: &str) -> (i64, String) {
    let quoted = script.replace('\\', "\\\\").replace('"', "\\\"");
    let start = c.cmd(&format!(
        r#"{{"execute":"guest-exec","arguments":{{"path":"/bin/sh","arg":["-c","{quoted}"],"capture-output":true}}}}"#
    ));
    let pid = start
        .strip_prefix(r#"{"return": {"pid": "#)
        .and_then(|r| r.strip_suffix("}}"))
        .unwrap_or_else(|| panic!("guest-exec: {start}"))
        .to_string();
    for _ in 0..200 {
        let s = c.cmd(&format!(
            r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#
        ));
        if s.contains(r#""exited": true"#) {
            let field = |k: &str| {
                s.split(&format!(r#""{k}": "#))
                    .nth(1)
                    .map(|r| r.trim_start_matches('"'))
                    .and_then(|r| r.split(['"', ',', '}']).next())
                    .unwrap_or("")
                    .to_string()
            };
            let code = field("exitcode").parse().unwrap_or(-1);
            let out = decode_b64(&field("out-data")) + &decode_b64(&field("err-data"));
            return (code, out);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("guest-exec of {script:?} did not finish in 10 s");
}

/// The reply cut into interfaces: `(name, the interface's text)`.
fn interfaces(reply: &str) -> Vec<(String, String)> {
    reply
        .split(r#"{"name": ""#)
        .skip(1)
        .map(|chunk| {
            let name = chunk.split('"').next().unwrap_or("").to_string();
            (name, chunk.to_string())
        })
        .collect()
}

/// The reply with the counters of the named interfaces blanked out.
fn without_counters(reply: &str, names: &[String]) -> Vec<(String, String)> {
    interfaces(reply)
        .into_iter()
        .map(|(name, text)| {
            if !names.contains(&name) {
                return (name, text);
            }
            let masked = match text.split_once(r#""statistics": {"#) {
                Some((head, tail)) => {
                    let rest = tail.split_once('}').map_or("", |(_, r)| r);
                    format!(r#"{head}"statistics": {{…}}{rest}"#)
                }
                None => text,
            };
            (name, masked)
        })
        .collect()
}

/// What differs between two replies, interface by interface.
fn differences(ours: &str, theirs: &str) -> String {
    let (a, b) = (interfaces(ours), interfaces(theirs));
    let mut out = String::new();
    for i in 0..a.len().max(b.len()) {
        if a.get(i) != b.get(i) {
            out += &format!(
                "ours:    {:?}\nqemu-ga: {:?}\n",
                a.get(i).map(|x| &x.1),
                b.get(i).map(|x| &x.1)
            );
        }
    }
    out
}

#[test]
fn vm_interfaces_of_bonds_vlans_tunnels_and_wireguard_match_qemu_ga() {
    let _g = vm_lock();
    let reference = reference_binary();
    assert!(
        reference.exists(),
        "reference qemu-ga not found at {} (run .ci/install-deps.sh or set QGA_REFERENCE)",
        reference.display()
    );
    let net = format!(
        "{}:/etc/qga-test/init.d/50-net",
        fixture("net.sh").display()
    );
    let refhook = format!(
        "{}:/etc/qga-test/init.d/60-reference",
        fixture("reference.sh").display()
    );
    let refbin = format!("{}:/usr/sbin/qemu-ga-ref", reference.display());
    let mut opts = vec!["--add", &net, "--add", &refhook, "--add", &refbin];
    for m in [
        "bonding",
        "8021q",
        "ip_gre",
        "ipip",
        "sit",
        "wireguard",
        "dummy",
    ] {
        opts.extend(["--module", m]);
    }
    // -v: our agent logs (at debug level) when netlink fails and getifaddrs answers.
    let vm = Vm::boot_with_ports(&static_agent(), &opts, &["-v"], &[REF_PORT]);
    let mut ours = vm.connect();
    let mut theirs = vm.connect_port(REF_PORT);

    // The setup made every interface, with its addresses.
    let (code, log) = guest_sh(&mut ours, "cat /tmp/netsetup.log; ip link");
    let first = ours.cmd(REQUEST);
    let names = interfaces(&first);
    let expected = [
        ("bond0", "192.168.10.1"),
        ("bond0:1", "192.168.11.1"),
        ("dummy0", ""),
        ("dum1", ""),
        ("bond1", "192.168.12.1"),
        ("eth0.100", "2001:db8:100::1"),
        ("vlan-bond0-4094", "192.168.94.1"),
        ("gre0", ""),
        ("gre1", "192.168.50.1"),
        ("gre2", "192.168.51.1"),
        ("gretap0", "192.168.52.1"),
        ("erspan0", ""),
        ("tunl0", ""),
        ("ipip1", "192.168.53.1"),
        ("sit0", ""),
        ("sit1", "2001:db8:54::1"),
        ("wg0", "fd00:77::1"),
        ("wg1", ""),
    ];
    for (name, addr) in expected {
        let found = names.iter().find(|(n, _)| n == name);
        assert!(
            found.is_some_and(
                |(_, t)| addr.is_empty() || t.contains(&format!(r#""ip-address": "{addr}""#))
            ),
            "{name} {addr} missing from\n{first}\nsetup (exit {code}):\n{log}"
        );
    }

    // Ours, theirs, ours: with nothing moved in between (both ours the same) the
    // reference must say exactly that. Packets (IPv6 DAD, MLD reports, a bond's
    // slaves) can move counters between two calls: then ask again a little later.
    let mut attempts = 0;
    loop {
        let a = ours.cmd(REQUEST);
        let r = theirs.cmd(REQUEST);
        let b = ours.cmd(REQUEST);
        if r == a || r == b {
            eprintln!("identical replies after {attempts} retries");
            break;
        }
        assert!(
            a != b,
            "the reference differs while nothing moved:\n{}",
            differences(&a, &r)
        );
        attempts += 1;
        if attempts == 10 {
            // Still moving after 10 tries: everything but the moving counters.
            let moving: Vec<String> = interfaces(&a)
                .into_iter()
                .zip(interfaces(&b))
                .filter(|(x, y)| x != y)
                .map(|(x, _)| x.0)
                .collect();
            eprintln!("counters kept moving on {moving:?}; compared without them");
            assert_eq!(
                without_counters(&r, &moving),
                without_counters(&a, &moving),
                "{}",
                differences(&a, &r)
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // Our replies came from the netlink dumps, not from the getifaddrs fallback.
    let (code, log) = guest_sh(&mut ours, "cat /tmp/agent.log");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("guest-exec called"), "no verbose log:\n{log}");
    assert!(
        !log.contains("netlink interface dump failed"),
        "the agent fell back to getifaddrs:\n{log}"
    );
}
