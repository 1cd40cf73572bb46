//! The package's scripts and example configuration, run on the host in temporary
//! directories: the fsfreeze hook under dash and busybox sh (POSIX, no bashisms), the
//! maintainer scripts through shellcheck, and qemu-ga.conf against both agents.

use super::{ok, run, text};
use crate::common::{reference_binary, workspace_root, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn src(name: &str) -> std::path::PathBuf {
    workspace_root().join("packaging/debian").join(name)
}

fn write_exec(path: &Path, body: &str, mode: u32) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A hook installed as DIR/fsfreeze-hook with scripts in DIR/fsfreeze-hook.d.
struct Hook {
    dir: TempDir,
}

impl Hook {
    fn new() -> Hook {
        let dir = TempDir::new();
        let hook = dir.join("fsfreeze-hook");
        std::fs::copy(src("fsfreeze-hook"), &hook).unwrap();
        std::fs::create_dir(dir.join("fsfreeze-hook.d")).unwrap();
        std::fs::create_dir(dir.join("bin")).unwrap();
        // logger stand-in: records its arguments and standard input.
        write_exec(
            &dir.join("bin/logger"),
            &format!(
                "#!/bin/sh\n{{ echo \"args: $*\"; [ $# -gt 2 ] || sed 's/^/stdin: /'; }} >>{}\n",
                dir.join("syslog").display()
            ),
            0o755,
        );
        Hook { dir }
    }

    fn script(&self, name: &str, body: &str, mode: u32) {
        write_exec(
            &self.dir.join(&format!("fsfreeze-hook.d/{name}")),
            body,
            mode,
        );
    }

    /// Runs `SHELL hook ARGS` with the log at `log`; returns its exit code and output.
    fn run(&self, shell: &[&str], log: &Path, args: &[&str]) -> (i32, String) {
        let path = format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.dir.join("bin").display()
        );
        let out = run(Command::new(shell[0])
            .args(&shell[1..])
            .arg(self.dir.join("fsfreeze-hook"))
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("LC_ALL", "C")
            .env("QGA_FSFREEZE_HOOK_LOG", log));
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout) + &text(&out.stderr),
        )
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

const SHELLS: [&[&str]; 2] = [&["dash"], &["busybox", "sh"]];

/// The "<date>: " prefix of the hook's own lines removed; other lines as they are.
fn messages(log: &str, d: &Path) -> Vec<String> {
    let d = format!("{}/fsfreeze-hook.d/", d.display());
    log.lines()
        .map(|l| match l.find(": ") {
            Some(i) if l[..i].ends_with(|c: char| c.is_ascii_digit()) && l[..i].contains(':') => {
                l[i + 2..].to_string()
            }
            _ => l.to_string(),
        })
        .map(|l| l.replace(&d, "D/"))
        .collect()
}

#[test]
fn fsfreeze_hook_runs_scripts_in_order_and_logs_to_the_file() {
    for shell in SHELLS {
        let h = Hook::new();
        h.script("20-b", "#!/bin/sh\necho \"b $*\" >&2\nexit 7\n", 0o755);
        h.script("10-a", "#!/bin/sh\necho \"a $*\"\n", 0o755);
        h.script("30-c", "#!/bin/sh\necho \"c $# $1\"\n", 0o755);
        h.script("05-not-executable", "#!/bin/sh\necho never\n", 0o644);
        std::fs::create_dir(h.dir.join("fsfreeze-hook.d/06-a-directory")).unwrap();
        for leftover in [
            "~",
            ".bak",
            ".orig",
            ".rpmnew",
            ".rpmorig",
            ".rpmsave",
            ".sample",
            ".dpkg-old",
            ".dpkg-new",
            ".dpkg-tmp",
            ".dpkg-dist",
            ".dpkg-bak",
            ".dpkg-backup",
            ".dpkg-remove",
        ] {
            h.script(&format!("15-x{leftover}"), "#!/bin/sh\necho never\n", 0o755);
        }
        let log = h.dir.join("hook.log");
        let (code, out) = h.run(shell, &log, &["freeze"]);
        assert_eq!((code, out.as_str()), (0, ""), "{shell:?}");
        let (code, _) = h.run(shell, &log, &["thaw"]);
        assert_eq!(code, 0, "{shell:?}");
        let mut want = Vec::new();
        for arg in ["freeze", "thaw"] {
            want.extend([
                format!("Executing D/10-a {arg}"),
                format!("a {arg}"),
                "D/10-a finished successfully".to_string(),
                format!("Executing D/20-b {arg}"),
                format!("b {arg}"),
                "Error: D/20-b finished with status=7".to_string(),
                format!("Executing D/30-c {arg}"),
                format!("c 1 {arg}"),
                "D/30-c finished successfully".to_string(),
            ]);
        }
        assert_eq!(messages(&h.read("hook.log"), &h.dir.0), want, "{shell:?}");
        assert!(
            h.read("hook.log").lines().next().unwrap().contains(" 20"),
            "date prefix"
        );
        assert_eq!(h.read("syslog"), "", "{shell:?}: nothing to syslog");
    }
}

/// dash only: busybox sh runs its own logger applet before any on PATH, so the
/// stand-in cannot see what it logs.
#[test]
fn fsfreeze_hook_falls_back_to_syslog_and_never_waits_for_leftover_processes() {
    let shell = SHELLS[0]; // dash
    let h = Hook::new();
    h.script("10-ok", "#!/bin/sh\necho \"ok $1\"\n", 0o755);
    // Keeps a process with its stdout open, as a lock holder until "thaw" would.
    let bg_pid = h.dir.join("bg.pid");
    h.script(
        "20-bg",
        &format!(
            "#!/bin/sh\nsleep 30 &\necho $! >{}\necho started\nexit 2\n",
            bg_pid.display()
        ),
        0o755,
    );
    let unwritable = h.dir.join("no-such-dir/hook.log");
    let t = Instant::now();
    let (code, out) = h.run(shell, &unwritable, &["freeze"]);
    assert_eq!((code, out.as_str()), (0, ""), "{shell:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "{shell:?} waited for sleep"
    );
    let d = h.dir.join("fsfreeze-hook.d");
    let d = d.display();
    assert_eq!(
        h.read("syslog"),
        format!(
            "args: -t qemu-ga-freeze-hook Executing {d}/10-ok freeze\n\
             args: -t qemu-ga-freeze-hook\nstdin: ok freeze\n\
             args: -t qemu-ga-freeze-hook {d}/10-ok finished successfully\n\
             args: -t qemu-ga-freeze-hook Executing {d}/20-bg freeze\n\
             args: -t qemu-ga-freeze-hook\nstdin: started\n\
             args: -t qemu-ga-freeze-hook Error: {d}/20-bg finished with status=2\n"
        ),
        "{shell:?}"
    );
    assert!(!unwritable.exists());
    // The leftover sleep is ours: stop it by its pid.
    let pid = std::fs::read_to_string(&bg_pid).unwrap();
    ok(Command::new("kill").arg(pid.trim()));
}

#[test]
fn fsfreeze_hook_without_its_directory_does_nothing() {
    let h = Hook::new();
    std::fs::remove_dir(h.dir.join("fsfreeze-hook.d")).unwrap();
    let (code, out) = h.run(&["dash"], &h.dir.join("hook.log"), &["freeze"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(h.read("syslog"), "");
}

#[test]
fn scripts_are_posix_sh() {
    let files = [
        "fsfreeze-hook",
        "qga-agent.preinst",
        "qga-agent.postinst",
        "qga-agent.prerm",
        "qga-agent.postrm",
    ];
    for f in files {
        let body = std::fs::read_to_string(src(f)).unwrap();
        assert!(body.starts_with("#!/bin/sh\n"), "{f}");
        ok(Command::new("dash").arg("-n").arg(src(f)));
    }
    ok(Command::new("shellcheck")
        .args(["-s", "sh", "-S", "style"])
        .args(files.map(src)));
}

/// qemu-ga.conf lists every §5.2 key plus our extensions, all commented out: both
/// agents read it and keep their defaults; uncommented, both accept every line.
#[test]
fn example_config_keeps_the_defaults() {
    let conf = src("qemu-ga.conf");
    let body = std::fs::read_to_string(&conf).unwrap();
    let keys: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    assert_eq!(
        keys,
        [
            "daemon",
            "method",
            "path",
            "logfile",
            "pidfile",
            "fsfreeze-hook",
            "statedir",
            "verbose",
            "retry-path",
            "block-rpcs",
            "allow-rpcs",
            "fsfreeze-timeout",
            "profile",
            "harden"
        ]
    );
    assert!(!body.lines().any(|l| !l.starts_with('#') && l.contains('=')));
    let tmp = TempDir::new();
    let uncommented = tmp.join("all.conf");
    let all: String = body
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(kv) if keys.iter().any(|k| kv.starts_with(&format!("{k}="))) => kv,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&uncommented, all).unwrap();
    let reference = reference_binary();
    assert!(
        reference.exists(),
        "{} missing: run .ci/install-deps.sh",
        reference.display()
    );
    let ours = Path::new(env!("CARGO_BIN_EXE_qga-agent"));
    for bin in [ours, reference.as_path()] {
        let dump = |args: &[&str], file: &Path| {
            ok(Command::new(bin)
                .args(args)
                .arg(file)
                .arg("-D")
                .env("QGA_CONF", "/nonexistent"))
        };
        let defaults = ok(Command::new(bin).arg("-D").env("QGA_CONF", "/nonexistent"));
        assert_eq!(dump(&["-c"], &conf), defaults, "{}", bin.display());
        let set = dump(&["-c"], &uncommented);
        assert!(set.contains("logfile=/var/log/qemu-ga.log\n"), "{set}");
        assert!(
            set.contains("fsfreeze-hook=/etc/qemu/fsfreeze-hook\n"),
            "{set}"
        );
    }
}
