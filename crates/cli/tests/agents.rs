//! `qga` end to end against real agents on unix sockets: our `qga-agent` and the
//! reference qemu-ga 10.0.2, the same checks for both. Only read-only commands,
//! guest-exec and guest-file-* on files under temporary directories are sent.

mod common;

use common::{binary_data, get, json, qga, text, Agent, Which};
use qga_proto::Value;
use std::time::Duration;

fn exec_output_and_exit_code(w: Which) {
    let a = Agent::start(w, &[]);
    let s = a.sock.to_str().unwrap();
    let o = qga(
        &[
            "--socket",
            s,
            "exec",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(text(&o.stdout), "out\n");
    assert_eq!(text(&o.stderr), "err\n");
    assert_eq!(o.status.code(), Some(3));

    let o = qga(
        &["--socket", s, "exec", "--", "sh", "-c", "kill -KILL $$"],
        b"",
    );
    assert_eq!(o.status.code(), Some(128 + 9), "{}", text(&o.stderr));

    // A program that outlives `exec --timeout`: exit 3, and it keeps its pid.
    let o = qga(
        &["-s", s, "exec", "--timeout", "0.3", "--", "sleep", "2"],
        b"",
    );
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o.stderr);
    assert!(
        err.starts_with("qga: guest process ") && err.contains("still running after 0.3s"),
        "{err}"
    );

    // Options of the program are not qga's.
    let o = qga(&["-s", s, "exec", "printf", "%s|", "--json", "-x"], b"");
    assert_eq!(text(&o.stdout), "--json|-x|");
    assert_eq!(o.status.code(), Some(0));
}

fn exec_stdin_and_env(w: Which) {
    let a = Agent::start(w, &[]);
    let s = a.sock.to_str().unwrap();
    let data = binary_data(100_000);
    let o = qga(&["-s", s, "exec", "--stdin", "-", "--", "sha256sum"], &data);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        format!("{}  -\n", qga_cli::sha256::hex(&data))
    );

    let f = a.dir.join("input.txt");
    std::fs::write(&f, "from a file\n").unwrap();
    let o = qga(
        &[
            "-s",
            s,
            "exec",
            "--stdin",
            f.to_str().unwrap(),
            "--env",
            "GREETING=hi",
            "--",
            "sh",
            "-c",
            "read l; echo \"$GREETING $l\"",
        ],
        b"",
    );
    assert_eq!(text(&o.stdout), "hi from a file\n", "{}", text(&o.stderr));

    let o = qga(
        &[
            "-s",
            s,
            "--json",
            "exec",
            "--",
            "sh",
            "-c",
            "printf 'a\\tb'; echo e >&2; exit 4",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(4));
    let v = json(&o.stdout);
    assert_eq!(get(&v, "exitcode"), &Value::Int(4));
    assert_eq!(get(&v, "stdout"), &Value::str("a\tb"));
    assert_eq!(get(&v, "stderr"), &Value::str("e\n"));
    assert_eq!(get(&v, "signal"), &Value::Null);
}

fn cp_both_ways(w: Which) {
    let a = Agent::start(w, &[]);
    let s = a.sock.to_str().unwrap();
    let local = common::TempDir::new();
    // 2.5 chunks of 1 MiB, every byte value.
    let data = binary_data((5 << 20) / 2 + 7);
    let src = local.join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let guest = a.dir.join("guest.bin");
    let dst = format!(":{}", guest.display());
    let o = qga(&["-s", s, "cp", src.to_str().unwrap(), &dst], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("sha256 checked in the guest"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(std::fs::read(&guest).unwrap(), data);

    // Into a directory, keeping the name.
    let gdir = a.dir.join("d");
    std::fs::create_dir(&gdir).unwrap();
    let o = qga(
        &[
            "-s",
            s,
            "cp",
            src.to_str().unwrap(),
            &format!(":{}", gdir.display()),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(gdir.join("src.bin")).unwrap(), data);

    let back = local.join("back.bin");
    let o = qga(&["-s", s, "cp", &dst, back.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("size checked"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // To a local directory: keeps the guest file's name.
    let o = qga(
        &["-s", s, "--json", "cp", &dst, local.0.to_str().unwrap()],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v = json(&o.stdout);
    assert_eq!(get(&v, "bytes"), &Value::Int(data.len() as i64));
    assert_eq!(get(&v, "sha256"), &Value::str(qga_cli::sha256::hex(&data)));
    assert_eq!(std::fs::read(local.join("guest.bin")).unwrap(), data);

    let o = qga(&["-s", s, "cat", &dst], b"");
    assert_eq!(o.stdout, data);

    // A missing guest file: exit 1, one line, and no partial file left behind.
    let o = qga(
        &[
            "-s",
            s,
            "cp",
            &format!(":{}/nope", a.dir.0.display()),
            local.join("nope").to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(std::fs::read_dir(&local.0).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("partial")));
}

fn disabled_command(w: Which) {
    let a = Agent::start(w, &["-b", "guest-exec"]);
    let s = a.sock.to_str().unwrap();
    let o = qga(&["-s", s, "exec", "--", "true"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "qga: guest-exec is disabled on this guest (agent started with a block/allow list, or filesystems are frozen)\n"
    );
    let o = qga(&["-s", s, "info"], b"");
    assert!(
        text(&o.stdout).contains("disabled (1):\n  guest-exec\n"),
        "{}",
        text(&o.stdout)
    );
    // Upload verification falls back to reading the file back.
    let local = common::TempDir::new();
    let src = local.join("f");
    std::fs::write(&src, b"abc").unwrap();
    let o = qga(
        &[
            "-s",
            s,
            "cp",
            src.to_str().unwrap(),
            &format!(":{}", a.dir.join("f").display()),
        ],
        b"",
    );
    assert!(
        text(&o.stdout).contains("by reading it back"),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let o = qga(&["-s", s, "raw", r#"{"execute":"guest-no-such"}"#], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stdout),
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command guest-no-such has not been found\"}}\n"
    );
}

fn dead_and_busy(w: Which) {
    let mut a = Agent::start(w, &[]);
    let s = a.sock.to_str().unwrap().to_string();
    // Someone else holds the agent: it serves one client at a time.
    let holder = std::os::unix::net::UnixStream::connect(&a.sock).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let o = qga(&["-s", &s, "--timeout", "1", "ping"], b"");
    assert_eq!(o.status.code(), Some(3));
    let err = text(&o.stderr);
    assert!(err.contains("busy with another client"), "{err}");
    assert_eq!(err.lines().count(), 1);
    drop(holder);

    a.stop();
    let o = qga(&["-s", &s, "ping"], b"");
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).contains("nothing is listening"),
        "{}",
        text(&o.stderr)
    );
    let o = qga(&["-s", &format!("{s}.missing"), "--json", "ping"], b"");
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o.stderr).starts_with("qga: no such socket: "),
        "{}",
        text(&o.stderr)
    );
    let v = json(&o.stdout);
    assert_eq!(get(get(&v, "error"), "kind"), &Value::str("no-socket"));
}

fn fan_out_three(w: Which) {
    let agents: Vec<Agent> = (0..3).map(|_| Agent::start(w, &[])).collect();
    // One glob for all three: symlinks to their sockets in a directory of our own.
    let links = common::TempDir::new();
    for (i, a) in agents.iter().enumerate() {
        std::os::unix::fs::symlink(&a.sock, links.join(&format!("g{i}.sock"))).unwrap();
    }
    let pattern = format!("{}/*.sock", links.0.display());
    let socks: Vec<String> = agents
        .iter()
        .map(|a| a.sock.display().to_string())
        .collect();
    let o = qga(
        &[
            "-s", &socks[0], "-s", &socks[1], "-s", &socks[2], "exec", "--", "echo", "hi",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 3, "{out}");
    for s in &socks {
        assert!(out.contains(&format!("{s}: hi\n")), "{out}");
    }
    let o = qga(&["-s", &pattern, "--json", "ping"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v = json(&o.stdout);
    let Value::List(items) = &v else {
        panic!("{v:?}")
    };
    let names: Vec<&Value> = items.iter().map(|i| get(i, "guest")).collect();
    assert_eq!(
        names,
        [&Value::str("g0"), &Value::str("g1"), &Value::str("g2")]
    );
    assert!(items
        .iter()
        .all(|i| get(i, "result") == &Value::Dict(Default::default())));
    let o = qga(
        &["-s", &pattern, "exec", "--", "sh", "-c", "echo a; echo b"],
        b"",
    );
    assert_eq!(
        text(&o.stdout),
        "g0: a\ng0: b\ng1: a\ng1: b\ng2: a\ng2: b\n"
    );
    // One guest failing makes the whole run fail, and says which.
    let bad = format!("{}.gone", socks[2]);
    let o = qga(
        &[
            "-s", &socks[0], "-s", &socks[1], "-s", &bad, "--json", "ping",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(3));
    let v = json(&o.stdout);
    let Value::List(items) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(items.len(), 3);
    assert_eq!(get(&items[0], "exit"), &Value::Int(0));
    assert_eq!(
        get(get(&items[2], "error"), "kind"),
        &Value::str("no-socket")
    );
    assert!(
        text(&o.stderr).starts_with(&format!("{bad}: error: no such socket")),
        "{}",
        text(&o.stderr)
    );
}

fn json_queries(w: Which) {
    let a = Agent::start(w, &[]);
    let s = a.sock.to_str().unwrap();
    let o = qga(&["-s", s, "--json", "info"], b"");
    let v = json(&o.stdout);
    let Value::List(cmds) = get(&v, "supported_commands") else {
        panic!()
    };
    assert!(cmds
        .iter()
        .any(|c| get(c, "name") == &Value::str("guest-exec")));
    for q in ["osinfo", "vcpus", "ifaddr", "users", "time", "fsfreeze"] {
        let args: Vec<&str> = if q == "fsfreeze" {
            vec!["-s", s, "--json", q, "status"]
        } else {
            vec!["-s", s, "--json", q]
        };
        let o = qga(&args, b"");
        assert_eq!(o.status.code(), Some(0), "{q}: {}", text(&o.stderr));
        let v = json(&o.stdout);
        match q {
            "osinfo" => assert!(matches!(get(&v, "kernel-release"), Value::Str(_))),
            "vcpus" => assert!(matches!(v, Value::List(ref l) if !l.is_empty())),
            "time" => {
                assert!(matches!(get(&v, "time"), Value::Int(t) if *t > 1_600_000_000_000_000_000))
            }
            "fsfreeze" => assert_eq!(v, Value::str("thawed")),
            _ => {}
        }
    }
    let o = qga(&["-s", s, "ping"], b"");
    assert_eq!(
        (text(&o.stdout).as_str(), o.status.code()),
        ("ok\n", Some(0))
    );
}

/// Read-only storage queries and the freeze status, through the CLI, against both
/// agents at once: the same filesystems and disks must come back.
#[test]
fn storage_views_agree_between_agents() {
    let ours = Agent::start(Which::Ours, &[]);
    let reference = Agent::start(Which::Reference, &[]);
    let view = |a: &Agent, args: &[&str]| {
        let mut all = vec!["-s", a.sock.to_str().unwrap(), "--json"];
        all.extend_from_slice(args);
        let o = qga(&all, b"");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        json(&o.stdout)
    };
    let keys = |v: &Value, k: &[&str]| -> Vec<String> {
        let Value::List(items) = v else {
            panic!("{v:?}")
        };
        items
            .iter()
            .map(|i| {
                k.iter()
                    .map(|k| text(&get(i, k).to_json()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    for a in [&ours, &reference] {
        assert_eq!(view(a, &["fsfreeze", "status"]), Value::str("thawed"));
    }
    let (o, r) = (view(&ours, &["fsinfo"]), view(&reference, &["fsinfo"]));
    assert_eq!(
        keys(&o, &["mountpoint", "name", "type"]),
        keys(&r, &["mountpoint", "name", "type"])
    );
    let (o, r) = (view(&ours, &["disks"]), view(&reference, &["disks"]));
    assert_eq!(
        keys(&o, &["name", "partition"]),
        keys(&r, &["name", "partition"])
    );
    // Human tables: same rows (sizes may move between the two calls).
    let table = |a: &Agent| {
        let o = qga(&["-s", a.sock.to_str().unwrap(), "disks"], b"");
        text(&o.stdout)
    };
    assert_eq!(table(&ours), table(&reference));
}

/// The libvirt transport end to end: a stand-in `virsh` that hands each request to
/// the agent's socket with `qga raw` (a fresh connection per request, as libvirt's
/// own would be) and reports error replies the way virsh does.
fn libvirt_via_stand_in(w: Which) {
    let a = Agent::start(w, &[]);
    let tools = common::TempDir::new();
    let virsh = tools.join("virsh");
    std::fs::write(
        &virsh,
        format!(
            "#!/bin/sh\n\
             [ \"$1 $2 $3\" = \"qemu-agent-command vm1 --timeout\" ] || {{ echo \"error: bad args: $*\" >&2; exit 1; }}\n\
             out=$('{qga}' -s '{sock}' raw \"$5\")\n\
             case \"$out\" in *'\"error\"'*) echo \"error: internal error: unable to execute QEMU agent command 'x': $(printf '%s' \"$out\" | sed 's/.*\"desc\": \"\\(.*\\)\"}}}}$/\\1/')\" >&2; exit 1;; esac\n\
             printf '%s\\n' \"$out\"\n",
            qga = env!("CARGO_BIN_EXE_qga"),
            sock = a.sock.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&virsh)
        .status()
        .unwrap();
    let env = [("QGA_VIRSH", virsh.to_str().unwrap())];
    let data = binary_data(200_000);
    let src = tools.join("up.bin");
    std::fs::write(&src, &data).unwrap();
    let guest = a.dir.join("via-libvirt.bin");
    let o = common::qga_env(
        &[
            "-d",
            "vm1",
            "cp",
            src.to_str().unwrap(),
            &format!(":{}", guest.display()),
        ],
        b"",
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("sha256 checked in the guest"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(std::fs::read(&guest).unwrap(), data);
    let back = tools.join("back.bin");
    let o = common::qga_env(
        &[
            "-d",
            "vm1",
            "cp",
            &format!(":{}", guest.display()),
            back.to_str().unwrap(),
        ],
        b"",
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let o = common::qga_env(
        &[
            "-d",
            "vm1",
            "exec",
            "--",
            "sh",
            "-c",
            "echo via libvirt; exit 5",
        ],
        b"",
        &env,
    );
    assert_eq!(
        (text(&o.stdout).as_str(), o.status.code()),
        ("via libvirt\n", Some(5)),
        "{}",
        text(&o.stderr)
    );
    let o = common::qga_env(
        &[
            "-d",
            "vm1",
            "cat",
            &format!(":{}/missing", a.dir.0.display()),
        ],
        b"",
        &env,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("No such file or directory"),
        "{}",
        text(&o.stderr)
    );
}

mod reference {
    #[test]
    fn libvirt_via_stand_in() {
        super::libvirt_via_stand_in(super::Which::Reference)
    }
    use super::Which::Reference;
    #[test]
    fn exec_output_and_exit_code() {
        super::exec_output_and_exit_code(Reference)
    }
    #[test]
    fn exec_stdin_and_env() {
        super::exec_stdin_and_env(Reference)
    }
    #[test]
    fn cp_both_ways() {
        super::cp_both_ways(Reference)
    }
    #[test]
    fn disabled_command() {
        super::disabled_command(Reference)
    }
    #[test]
    fn dead_and_busy() {
        super::dead_and_busy(Reference)
    }
    #[test]
    fn fan_out_three() {
        super::fan_out_three(Reference)
    }
    #[test]
    fn json_queries() {
        super::json_queries(Reference)
    }
}

/// The same checks against our agent. Those that need command families not merged
/// into qga-agent yet (exec, file, system info) are ignored with the reason; run them
/// with `cargo test -p qga-cli --test agents -- --ignored` once those land, and drop
/// the `ignore` then.
mod ours {
    use super::Which::Ours;
    #[test]
    fn libvirt_via_stand_in() {
        super::libvirt_via_stand_in(Ours)
    }
    #[test]
    fn exec_output_and_exit_code() {
        super::exec_output_and_exit_code(Ours)
    }
    #[test]
    fn exec_stdin_and_env() {
        super::exec_stdin_and_env(Ours)
    }
    #[test]
    fn cp_both_ways() {
        super::cp_both_ways(Ours)
    }
    #[test]
    fn disabled_command() {
        super::disabled_command(Ours)
    }
    #[test]
    fn dead_and_busy() {
        super::dead_and_busy(Ours)
    }
    #[test]
    fn fan_out_three() {
        super::fan_out_three(Ours)
    }
    #[test]
    fn json_queries() {
        super::json_queries(Ours)
    }
    #[test]
    fn fan_out_ping_and_time() {
        // What our agent serves today: ping and time, on three agents at once.
        let agents: Vec<super::Agent> = (0..3).map(|_| super::Agent::start(Ours, &[])).collect();
        let mut args = vec!["--json".to_string(), "time".to_string()];
        for a in &agents {
            args.push("-s".into());
            args.push(a.sock.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = super::qga(&args, b"");
        assert_eq!(o.status.code(), Some(0), "{}", super::text(&o.stderr));
        let super::Value::List(items) = super::json(&o.stdout) else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        for i in &items {
            let r = super::get(i, "result");
            assert!(
                matches!(super::get(r, "time"), super::Value::Int(t) if *t > 1_600_000_000_000_000_000)
            );
        }
    }
}
