//! guest-fsfreeze-status on a spawned agent, compared byte for byte with qemu-ga 10.0.2.
//!
//! Only guest-fsfreeze-status is ever sent here: freeze, thaw and fstrim act on this
//! machine's real filesystems, so they are tested on the fake kernel (unit tests) and
//! inside the test VM.

mod common;

use common::{AgentProc, TempDir};

const REQUESTS: &[&str] = &[
    r#"{"execute":"guest-fsfreeze-status"}"#,
    r#"{"execute":"guest-fsfreeze-status","id":7}"#,
    r#"{"execute":"guest-fsfreeze-status","arguments":{}}"#,
    r#"{"execute":"guest-fsfreeze-status","arguments":{"x":1}}"#,
    r#"{"execute":"guest-get-time","id":"t"}"#,
];

fn replies(agent: &AgentProc) -> Vec<String> {
    let mut c = agent.connect();
    REQUESTS
        .iter()
        .map(|r| {
            let reply = c.cmd(r);
            // The time differs between the two agents; whether it is an error does not.
            if r.contains("get-time") && reply.starts_with("{\"return\": ") {
                "time".to_string()
            } else {
                reply
            }
        })
        .collect()
}

#[test]
fn status_is_thawed_as_in_qemu_ga() {
    let ours = replies(&AgentProc::ours(&[]));
    assert_eq!(ours[0], r#"{"return": "thawed"}"#);
    assert_eq!(ours[1], r#"{"return": "thawed", "id": 7}"#);
    assert_eq!(ours[4], "time");
    assert_eq!(ours, replies(&AgentProc::reference(&[])));
}

/// An agent started while `qga.state.isfrozen` exists is frozen. Neither agent is asked
/// to thaw; both are killed (SIGTERM is ignored while frozen).
#[test]
fn status_is_frozen_after_a_restart_with_the_marker() {
    let run = |bin: fn(&[&str]) -> AgentProc| {
        let state = TempDir::new();
        std::fs::write(state.join("qga.state.isfrozen"), "").unwrap();
        let statedir = state.0.to_string_lossy().into_owned();
        // A second -t wins over the harness's own.
        let agent = bin(&["-t", &statedir]);
        let r = replies(&agent);
        assert!(state.join("qga.state.isfrozen").exists());
        r
    };
    let ours = run(AgentProc::ours);
    assert_eq!(ours[0], r#"{"return": "frozen"}"#);
    assert_eq!(
        ours[4],
        r#"{"id": "t", "error": {"class": "CommandNotFound", "desc": "Command guest-get-time has been disabled: the command is not allowed"}}"#
    );
    assert_eq!(ours, run(AgentProc::reference));
}

/// Tests inside the test VM (`scripts/vm/`), where freezing is safe: the real
/// FIFREEZE/FITHAW/FITRIM. They boot QEMU under TCG (about 1.5 minutes in all).
mod vm {
    use super::common::{reference_binary, TempDir};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Instant;

    fn script(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/vm")
            .join(name)
    }

    /// Test helper run in the guest before the agent: the third time the agent enters
    /// the frozen state, kill -9 it, so /init restarts it with the marker present.
    const KILLER: &str = r#"#!/bin/sh
(
  n=0; prev=0
  while sleep 0.1; do
    if [ -e /run/qga.state.isfrozen ]; then cur=1; else cur=0; fi
    if [ $cur = 1 ] && [ $prev = 0 ]; then
      n=$((n + 1))
      if [ $n = 3 ]; then sleep 1; kill -9 $(pidof qemu-ga); fi
    fi
    prev=$cur
  done
) &
"#;

    /// Test helper run in the guest: mounts the throttled second disk on /mnt/slow
    /// and leaves 24 MB dirty there, so a FIFREEZE of it syncs for minutes.
    const SLOW: &str = r#"#!/bin/sh
mkdir -p /mnt/slow
mount -t ext4 /dev/vdb /mnt/slow
dd if=/dev/zero of=/mnt/slow/big bs=1M count=24 2>/dev/null &
"#;

    /// A VM running `agent`, stopped (by the pid run-vm.sh saved) on drop.
    struct Vm {
        dir: TempDir,
    }

    impl Vm {
        fn boot(agent: &Path, helpers: &[(&str, &str)], qemu_extra: &[String]) -> Vm {
            let dir = TempDir::new();
            let mut build = Command::new(script("build-initramfs.sh"));
            for (name, body) in helpers {
                let p = dir.join(name);
                std::fs::write(&p, body).unwrap();
                let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
                std::fs::set_permissions(&p, mode).unwrap();
                build
                    .arg("--add")
                    .arg(format!("{}:/etc/qga-test/init.d/{name}", p.display()));
            }
            let ok = build
                .arg(agent)
                .arg(&dir.0)
                .args(["--", "-t", "/run"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "build-initramfs.sh failed");
            let vm = Vm { dir };
            let ok = Command::new(script("run-vm.sh"))
                .args(["--fresh-disk", "--lifetime", "900", "--timeout", "180"])
                .arg(&vm.dir.0)
                .arg("--")
                .args(qemu_extra)
                .status()
                .unwrap()
                .success();
            assert!(ok, "run-vm.sh failed");
            vm
        }

        /// Sends requests through qga_send.py; returns the reply lines.
        fn send(&self, requests: &[&str]) -> Vec<String> {
            let out = Command::new("python3")
                .arg(script("qga_send.py"))
                .args(["--timeout", "300", "--wait", "30"])
                .arg(self.dir.join("qga.sock"))
                .args(requests)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from)
                .collect()
        }

        fn qmp(&self, cmd: &str) {
            let code = "import json, socket, sys\n\
                s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile('rw')\n\
                f.readline()\n\
                for c in ['{\"execute\": \"qmp_capabilities\"}', sys.argv[2]]:\n\
                \x20   f.write(c + '\\n'); f.flush()\n\
                \x20   r = json.loads(f.readline())\n\
                \x20   while 'event' in r: r = json.loads(f.readline())\n\
                \x20   assert 'return' in r, r\n";
            let ok = Command::new("python3")
                .args(["-c", code])
                .arg(self.dir.join("qmp.sock"))
                .arg(cmd)
                .status()
                .unwrap()
                .success();
            assert!(ok, "QMP {cmd} failed");
        }
    }

    impl Drop for Vm {
        fn drop(&mut self) {
            let _ = Command::new(script("stop-vm.sh")).arg(&self.dir.0).status();
        }
    }

    /// freeze / freeze-list / thaw / fstrim, and a restart while frozen, on the real
    /// kernel: the same replies as qemu-ga 10.0.2 in the same VM.
    fn sequence(agent: &Path) -> Vec<String> {
        let vm = Vm::boot(agent, &[("10-killer", KILLER)], &[]);
        let mut r = vm.send(&[
            "guest-fsfreeze-status",
            "guest-fstrim {\"minimum\": 0}",
            "guest-fsfreeze-freeze",
            "guest-fsfreeze-status",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(600));
        r.extend(vm.send(&["guest-fsfreeze-thaw", "guest-fsfreeze-status"]));
        r.extend(
            vm.send(&["guest-fsfreeze-freeze-list {\"mountpoints\": [\"/mnt/data\", \"/nope\"]}"]),
        );
        std::thread::sleep(std::time::Duration::from_millis(600));
        r.extend(vm.send(&["guest-fsfreeze-thaw"]));
        // Third freeze: the guest kills the agent; /init restarts it frozen.
        r.extend(vm.send(&["guest-fsfreeze-freeze"]));
        std::thread::sleep(std::time::Duration::from_secs(4));
        r.extend(vm.send(&[
            "guest-fsfreeze-status",
            "guest-get-time",
            "guest-fsfreeze-thaw",
            "guest-fsfreeze-status",
            "guest-fsfreeze-freeze-list {\"mountpoints\": [\"/nope\"]}",
            "guest-fsfreeze-status",
            "guest-fsfreeze-thaw",
            "guest-fstrim {\"minimum\": 4096}",
        ]));
        r
    }

    #[test]
    fn vm_freeze_thaw_trim_and_restart_match_qemu_ga() {
        let _g = super::common::vm_lock();
        let ours = sequence(Path::new(env!("CARGO_BIN_EXE_qga-agent")));
        assert_eq!(ours[0], r#"{"return": "thawed"}"#);
        assert!(
            ours[1].starts_with(
                r#"{"return": {"paths": [{"minimum": 0, "path": "/mnt/data", "trimmed": "#
            ),
            "{}",
            ours[1]
        );
        assert_eq!(
            ours[2..6],
            [
                r#"{"return": 1}"#,
                r#"{"return": "frozen"}"#,
                r#"{"return": 1}"#,
                r#"{"return": "thawed"}"#
            ]
        );
        assert_eq!(
            ours[9], r#"{"return": "frozen"}"#,
            "restarted frozen: {ours:?}"
        );
        assert_eq!(
            ours[11..13],
            [r#"{"return": 1}"#, r#"{"return": "thawed"}"#]
        );
        assert_eq!(ours, sequence(&reference_binary()));
    }

    /// The freeze bound on the real kernel: a FIFREEZE stuck syncing a throttled disk is
    /// abandoned after 60 s, the other filesystem is thawed, and the late FIFREEZE is
    /// thawed by the worker once the disk is unthrottled.
    #[test]
    fn vm_a_stuck_freeze_is_abandoned_after_the_bound() {
        let _g = super::common::vm_lock();
        let slow = TempDir::new();
        let img = slow.join("slow.img");
        let ok = Command::new("qemu-img")
            .args(["create", "-q", "-f", "raw"])
            .arg(&img)
            .arg("64M")
            .status()
            .unwrap()
            .success()
            && Command::new("mkfs.ext4")
                .arg("-q")
                .arg(&img)
                .status()
                .unwrap()
                .success();
        assert!(ok, "could not make the slow disk");
        let vm = Vm::boot(
            Path::new(env!("CARGO_BIN_EXE_qga-agent")),
            &[("20-slow", SLOW)],
            &[
                "-drive".into(),
                format!(
                    "file={},if=none,id=d1,format=raw,throttling.bps-write=65536",
                    img.display()
                ),
                "-device".into(),
                "virtio-blk-pci,drive=d1,serial=QGASLOW".into(),
            ],
        );
        std::thread::sleep(std::time::Duration::from_secs(3));
        let t = Instant::now();
        assert_eq!(
            vm.send(&["guest-fsfreeze-freeze", "guest-fsfreeze-status"]),
            [
                r#"{"error": {"class": "GenericError", "desc": "failed to freeze /mnt/slow: timed out after 60 seconds; the filesystems were thawed"}}"#,
                r#"{"return": "thawed"}"#
            ]
        );
        let took = t.elapsed().as_secs();
        assert!((59..90).contains(&took), "{took} s");
        assert_eq!(
            vm.send(&["guest-fsfreeze-freeze"]),
            [
                r#"{"error": {"class": "GenericError", "desc": "an earlier freeze is still stuck in the kernel on /mnt/slow; try again later"}}"#
            ]
        );
        vm.qmp(r#"{"execute": "block_set_io_throttle", "arguments": {"device": "d1", "bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0}}"#);
        // Once the late FIFREEZE returned and was thawed, both filesystems freeze again.
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let r = vm.send(&["guest-fsfreeze-freeze"]);
            if r == [r#"{"return": 2}"#] {
                break;
            }
            assert!(
                Instant::now() < deadline && r[0].contains("still stuck"),
                "{r:?}"
            );
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        assert_eq!(
            vm.send(&["guest-fsfreeze-thaw", "guest-fsfreeze-status"]),
            [r#"{"return": 2}"#, r#"{"return": "thawed"}"#]
        );
    }
}
