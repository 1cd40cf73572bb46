//! The Debian packages (scripts/build-deb.sh, sources in packaging/debian/): control
//! fields and file lists, lintian, the fsfreeze hook, the example configuration, the
//! man pages, and the installed result: dpkg -i into a debootstrapped chroot must give
//! an agent that answers the host (scripts/package/test-chroot.sh), and a systemd guest
//! booted from that image must start it through udev when the port appears
//! (scripts/package/test-vm.sh: a guest running Debian's qemu-ga 10.0.2 gets ours with a live
//! dpkg -i, then the port is hot-unplugged and re-plugged; 60-110 s under TCG).
//!
//! Nothing is installed on this host. Prerequisites (lintian, shellcheck, debootstrap,
//! dash, busybox, QEMU, the guest kernel, the reference qemu-ga .deb) come from
//! .ci/install-deps.sh; a missing one fails the test with a pointer to it.

mod common;

use common::{reference_binary, workspace_root, TempDir};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Runs a command to completion; panics if it cannot be started at all.
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run .ci/install-deps.sh)"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fails with the tool's output unless it exited 0; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The chroot and VM tests are heavy on two cores: one at a time.
fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Debs {
    dir: PathBuf,
    agent: PathBuf,
    cli: PathBuf,
}

/// Builds both packages once per test process (release build + dpkg-deb).
fn debs() -> &'static Debs {
    static DEBS: OnceLock<Debs> = OnceLock::new();
    DEBS.get_or_init(|| {
        let root = workspace_root();
        let dir = root.join("target/debian");
        let t = Instant::now();
        let out = ok(Command::new(root.join("scripts/build-deb.sh"))
            .arg("--out")
            .arg(&dir));
        eprintln!("build-deb.sh: {:.1}s", t.elapsed().as_secs_f64());
        let paths: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
        let find = |prefix: &str| {
            paths
                .iter()
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
                .unwrap_or_else(|| panic!("build-deb.sh printed no {prefix}*.deb: {out}"))
                .clone()
        };
        Debs {
            agent: find("qga-agent_"),
            cli: find("qga_"),
            dir,
        }
    })
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim_end()
        .to_string()
}

/// `dpkg-deb --contents` as "<type><mode> <path>[ -> <target>]" lines.
fn contents(deb: &Path) -> BTreeSet<String> {
    ok(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let path = cols[5].trim_start_matches('.');
            let link = cols.get(7).map(|t| format!(" -> {t}")).unwrap_or_default();
            assert_eq!(cols[1], "root/root", "owner of {path}");
            format!("{} {path}{link}", cols[0])
        })
        .collect()
}

#[test]
fn agent_package_fields() {
    let d = debs();
    let arch = ok(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field(&d.agent, "Package"), "qga-agent");
    assert_eq!(field(&d.agent, "Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(&d.agent, "Architecture"), arch.trim());
    for rel in ["Provides", "Conflicts", "Replaces"] {
        assert_eq!(field(&d.agent, rel), "qemu-guest-agent", "{rel}");
    }
    let depends = field(&d.agent, "Depends");
    assert!(depends.starts_with("libc6 (>= 2."), "{depends}");
    assert_eq!(field(&d.agent, "Section"), "admin");
    assert!(field(&d.agent, "Maintainer").ends_with(">"));
    let size: u64 = field(&d.agent, "Installed-Size").parse().unwrap();
    assert!((300..5000).contains(&size), "Installed-Size {size}");
    let info = ok(Command::new("dpkg-deb").arg("--info").arg(&d.agent));
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        assert!(
            info.lines()
                .any(|l| l.contains(&format!(" {script} ")) && l.contains("#!/bin/sh")),
            "{script} missing or not a sh script:\n{info}"
        );
    }
    let conffiles = ok(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&d.agent)
        .arg("conffiles"));
    assert_eq!(
        conffiles,
        "/etc/qemu/fsfreeze-hook\n/etc/qemu/qemu-ga.conf\n"
    );
}

#[test]
fn agent_package_files() {
    let want: BTreeSet<String> = [
        "drwxr-xr-x /",
        "drwxr-xr-x /etc/",
        "drwxr-xr-x /etc/qemu/",
        "-rwxr-xr-x /etc/qemu/fsfreeze-hook",
        "drwxr-xr-x /etc/qemu/fsfreeze-hook.d/",
        "-rw-r--r-- /etc/qemu/qemu-ga.conf",
        "drwxr-xr-x /lib/",
        "drwxr-xr-x /lib/systemd/",
        "drwxr-xr-x /lib/systemd/system/",
        "-rw-r--r-- /lib/systemd/system/qemu-guest-agent.service",
        "drwxr-xr-x /lib/udev/",
        "drwxr-xr-x /lib/udev/rules.d/",
        "-rw-r--r-- /lib/udev/rules.d/60-qemu-guest-agent.rules",
        "drwxr-xr-x /usr/",
        "drwxr-xr-x /usr/sbin/",
        "-rwxr-xr-x /usr/sbin/qemu-ga",
        "lrwxrwxrwx /usr/sbin/qga-agent -> qemu-ga",
        "drwxr-xr-x /usr/share/",
        "drwxr-xr-x /usr/share/doc/",
        "drwxr-xr-x /usr/share/doc/qga-agent/",
        "-rw-r--r-- /usr/share/doc/qga-agent/changelog.gz",
        "-rw-r--r-- /usr/share/doc/qga-agent/copyright",
        "drwxr-xr-x /usr/share/lintian/",
        "drwxr-xr-x /usr/share/lintian/overrides/",
        "-rw-r--r-- /usr/share/lintian/overrides/qga-agent",
        "drwxr-xr-x /usr/share/man/",
        "drwxr-xr-x /usr/share/man/man8/",
        "-rw-r--r-- /usr/share/man/man8/qemu-ga.8.gz",
        "lrwxrwxrwx /usr/share/man/man8/qga-agent.8.gz -> qemu-ga.8.gz",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(contents(&debs().agent), want);
}

#[test]
fn cli_package_fields_and_files() {
    let d = debs();
    assert_eq!(field(&d.cli, "Package"), "qga");
    assert_eq!(field(&d.cli, "Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(&d.cli, "Provides"), "");
    assert_eq!(field(&d.cli, "Conflicts"), "");
    assert!(field(&d.cli, "Depends").starts_with("libc6 (>= 2."));
    let want: BTreeSet<String> = [
        "drwxr-xr-x /",
        "drwxr-xr-x /usr/",
        "drwxr-xr-x /usr/bin/",
        "-rwxr-xr-x /usr/bin/qga",
        "drwxr-xr-x /usr/share/",
        "drwxr-xr-x /usr/share/doc/",
        "drwxr-xr-x /usr/share/doc/qga/",
        "-rw-r--r-- /usr/share/doc/qga/README.md",
        "-rw-r--r-- /usr/share/doc/qga/changelog.gz",
        "-rw-r--r-- /usr/share/doc/qga/copyright",
        "drwxr-xr-x /usr/share/man/",
        "drwxr-xr-x /usr/share/man/man1/",
        "-rw-r--r-- /usr/share/man/man1/qga.1.gz",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(contents(&d.cli), want);
}

/// The unit and the udev rule are Debian's qemu-guest-agent's, byte for byte, and the
/// packaged binary is the workspace's agent.
#[test]
fn unit_and_rule_are_debians() {
    let d = debs();
    let tmp = TempDir::new();
    ok(Command::new("dpkg-deb").arg("-x").arg(&d.agent).arg(&tmp.0));
    let reference = reference_binary();
    let debian = reference
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    for f in [
        "lib/systemd/system/qemu-guest-agent.service",
        "lib/udev/rules.d/60-qemu-guest-agent.rules",
    ] {
        let theirs = std::fs::read(debian.join(f)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run .ci/install-deps.sh)",
                debian.join(f).display()
            )
        });
        assert_eq!(std::fs::read(tmp.join(f)).unwrap(), theirs, "{f}");
    }
    let help = ok(Command::new(tmp.join("usr/sbin/qemu-ga")).arg("--help"));
    assert!(
        help.contains("qga-agent, a drop-in replacement for qemu-ga"),
        "{help}"
    );
}

#[test]
fn lintian_is_clean() {
    let d = debs();
    let out = run(Command::new("lintian")
        .args(["--pedantic", "--fail-on", "warning,error"])
        .arg(&d.agent)
        .arg(&d.cli));
    let report: String = text(&out.stdout)
        .lines()
        .filter(|l| !l.contains("running with root privileges"))
        .collect();
    assert!(
        out.status.success() && report.is_empty(),
        "lintian ({}):\n{report}{}",
        out.status,
        text(&out.stderr)
    );
}

/// Every long option of `--help` is documented in qemu-ga(8), every command of
/// `qga --help` in qga(1), and both render without groff warnings.
#[test]
fn man_pages_match_the_help_and_render_cleanly() {
    debs(); // builds the release binaries whose --help is checked
    let src = workspace_root().join("packaging/debian");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let release = target.join("release"); // where build-deb.sh built them
    let cases = [
        ("qemu-ga.8", release.join("qga-agent"), "--"),
        ("qga.1", release.join("qga"), "cmd"),
    ];
    for (page, bin, kind) in cases {
        let roff = std::fs::read_to_string(src.join(page)).unwrap();
        let help = ok(Command::new(&bin).arg("--help"));
        let names: BTreeSet<String> = if kind == "--" {
            help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=')
                .filter_map(|w| w.strip_prefix("--"))
                .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .map(|w| format!("\\-\\-{}", w.replace('-', "\\-")))
                .collect()
        } else {
            let cmds = help
                .split("Commands:")
                .nth(1)
                .expect("Commands: in qga --help");
            let cmds = cmds.split("Exit status:").next().unwrap();
            cmds.lines()
                .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
                .flat_map(|l| l.split_whitespace().take_while(|w| !w.starts_with('[')))
                .map(|w| w.trim_end_matches(',').to_string())
                .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .take_while(|w| !w.is_empty())
                .collect()
        };
        assert!(names.len() > 10, "{page}: too few names parsed: {names:?}");
        for n in &names {
            let plain = n.replace('\\', "");
            assert!(
                roff.contains(n.as_str()) || roff.contains(&plain.replace('-', "\\-")),
                "{page} does not document {plain}"
            );
        }
        let out = run(Command::new("groff")
            .args(["-man", "-ww", "-z", "-Tutf8"])
            .arg(src.join(page))
            .env("LC_ALL", "C.UTF-8"));
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff warnings for {page}:\n{}",
            text(&out.stderr)
        );
    }
}

#[path = "package/scripts.rs"]
mod scripts;

#[test]
fn installs_into_a_debian_chroot_and_answers_the_host() {
    let d = debs();
    let _g = heavy();
    let t = Instant::now();
    let out =
        run(Command::new(workspace_root().join("scripts/package/test-chroot.sh")).arg(&d.dir));
    let report = text(&out.stdout);
    eprintln!("{report}{}", text(&out.stderr));
    assert!(out.status.success(), "test-chroot.sh failed:\n{report}");
    assert!(report.contains(" passed, 0 failed"), "{report}");
    eprintln!("chroot test: {:.1}s", t.elapsed().as_secs_f64());
}

#[test]
fn systemd_guest_starts_the_agent_when_the_port_appears() {
    let d = debs();
    let _g = heavy();
    let t = Instant::now();
    let out = run(Command::new(workspace_root().join("scripts/package/test-vm.sh")).arg(&d.dir));
    let report = text(&out.stdout);
    eprintln!("{report}{}", text(&out.stderr));
    assert!(out.status.success(), "test-vm.sh failed:\n{report}");
    assert!(report.contains(" passed, 0 failed"), "{report}");
    eprintln!("VM test: {:.1}s", t.elapsed().as_secs_f64());
    assert!(t.elapsed() < Duration::from_secs(600));
}
