//! The command line, the config file and `-D`, run through the built `qga-agent` and,
//! differentially, through the real qemu-ga 10.0.2: same argv\[0\], same environment,
//! same files; stdout, stderr (pid and clock masked) and exit status must match.
//!
//! Every differential case ends in `-D`, `-h`, `-V`, `-b help` or an error, so neither
//! agent ever starts serving; a bounded wait kills one that would.

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{reference_binary, TempDir};

const OURS: &str = env!("CARGO_BIN_EXE_qga-agent");

#[derive(Debug, PartialEq)]
struct Out {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `bin` as `qemu-ga args...` with exactly `env`, in `cwd`, for at most 10 s.
fn run_in(bin: &Path, args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Out {
    let mut cmd = Command::new(bin);
    cmd.arg0("qemu-ga")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(cwd);
    run_cmd(cmd)
}

fn run_cmd(mut cmd: Command) -> Out {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            kill(pid, libc::SIGKILL);
            panic!("{cmd:?} did not exit: it must not start serving");
        }
    };
    Out {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: mask(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// Signals a process this test started, by its pid.
fn kill(pid: u32, sig: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) has no memory effects; the pid is one of our children.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Masks what differs between runs: GLib's `(process:<pid>)` and `HH:MM:SS.mmm`, and
/// the `<secs>.<usec>` of qemu-ga's log lines.
fn mask(s: &str) -> String {
    s.lines()
        .map(|line| {
            let mut l = line.to_string();
            if let Some(start) = l.find("(process:") {
                let end = l[start..].find(')').map_or(l.len(), |e| start + e);
                l.replace_range(start..end, "(process:PID");
                if let Some(t) = l.find(" **: ") {
                    let t = t + 5;
                    if l.len() >= t + 12 {
                        l.replace_range(t..t + 12, "HH:MM:SS.mmm");
                    }
                }
            }
            if let Some((stamp, rest)) = l.split_once(": ") {
                if stamp.split_once('.').is_some_and(|(a, b)| {
                    !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.len() == 6
                }) {
                    l = format!("TIMESTAMP: {rest}");
                }
            }
            l + "\n"
        })
        .collect()
}

/// One differential case: args, a file to create (name, bytes), env.
struct Case<'a> {
    args: &'a [&'a str],
    file: Option<(&'a str, &'a [u8])>,
    env: &'a [(&'a str, &'a str)],
}

const fn case<'a>(args: &'a [&'a str]) -> Case<'a> {
    Case {
        args,
        file: None,
        env: &[],
    }
}

const fn conf<'a>(args: &'a [&'a str], text: &'a [u8]) -> Case<'a> {
    Case {
        args,
        file: Some(("qga.conf", text)),
        env: &[],
    }
}

fn compare(c: &Case<'_>, stdout_too: bool) {
    let reference = reference_binary();
    assert!(
        reference.exists(),
        "reference qemu-ga not found at {} (run .ci/install-deps.sh or set QGA_REFERENCE)",
        reference.display()
    );
    let dir = TempDir::new();
    if let Some((name, text)) = c.file {
        std::fs::write(dir.join(name), text).unwrap();
    }
    // Never read the machine's /etc/qemu/qemu-ga.conf.
    let mut env = vec![("QGA_CONF", "/nonexistent/qemu-ga.conf")];
    for (k, v) in c.env {
        env.retain(|(e, _)| e != k);
        env.push((*k, *v));
    }
    let theirs = run_in(&reference, c.args, &env, &dir.0);
    let ours = run_in(Path::new(OURS), c.args, &env, &dir.0);
    assert_eq!(ours.status, theirs.status, "exit status of {:?}", c.args);
    assert_eq!(ours.stderr, theirs.stderr, "stderr of {:?}", c.args);
    if stdout_too {
        assert_eq!(ours.stdout, theirs.stdout, "stdout of {:?}", c.args);
    }
}

#[test]
fn dump_conf_matches_qemu_ga() {
    let cases = [
        case(&["-D"]),
        case(&["-D", "-v", "-d", "-r"]),
        case(&["-vdD"]),
        case(&["-vdmunix-listen", "-px", "-D"]),
        case(&["--method=unix-listen", "--path=x", "-D"]),
        case(&[
            "--meth",
            "vsock-listen",
            "--pa",
            "3:4",
            "--stat=/s",
            "--pid",
            "/p",
            "-D",
        ]),
        case(&["-m", "isa-serial", "-D"]),
        case(&["-m", "bogus", "-p", "x", "-D"]),
        case(&["-F", "-D"]),
        case(&["-F", "/x", "-D"]),
        case(&["-F/x", "-D"]),
        case(&["-vF/x", "-D"]),
        case(&["--fsfreeze-hook", "-D"]),
        case(&["--fsfreeze-hook=/y", "-D"]),
        case(&["--fs", "/z", "-D"]),
        case(&["--fsfreeze-hook=", "-D"]),
        case(&["--fsfreeze-hook=x=y", "-D"]),
        case(&["-b", "a,b", "-b", "c", "-a", "x", "--allow-rpcs=y,z", "-D"]),
        case(&["-b", "", "-D"]),
        case(&["-b", ",", "-D"]),
        case(&["-b", "a", "-b", ",,", "-D"]),
        case(&["-b", "a b", "-a", " a", "-D"]),
        case(&["-b", "guest-ping;guest-get-time", "-D"]),
        case(&["-l", "/log", "-f", "/pid", "-t", "/state", "-D"]),
        case(&[
            "-p",
            " a\\b\tc ",
            "-l",
            "x\ny\rz",
            "-f",
            "\tq",
            "-t",
            "\\",
            "-D",
        ]),
        case(&["-p", "", "-D"]),
        case(&["-p", "é ü", "-D"]),
        case(&["-s", "install", "-D"]),
        case(&["-D", "foo", "bar"]),
        case(&["foo", "-D", "--", "-x"]),
        case(&["-m", "-D", "-p", "-v", "-D"]),
        case(&[
            "-t",
            "/a",
            "-t",
            "/b",
            "-m",
            "unix-listen",
            "-m",
            "isa-serial",
            "-D",
        ]),
        Case {
            args: &["-D", "x", "-v"],
            file: None,
            env: &[("POSIXLY_CORRECT", "1")],
        },
    ];
    for c in &cases {
        compare(c, true);
    }
}

#[test]
fn config_file_matches_qemu_ga() {
    let cases = [
        conf(
            &["-c", "qga.conf", "-D"],
            b"# comment\n[general]\ndaemon=1\nmethod = unix-listen\npath=/conf\n\
              verbose=false\nretry-path=true\nblock-rpcs=a,b\nallow-rpcs=x\n\
              logfile=/l\npidfile=/p\nfsfreeze-hook=/h\nstatedir=/s\n[other]\npath=no\n",
        ),
        conf(
            &[
                "-c", "qga.conf", "-p", "/cli", "-v", "-b", "c,d", "-a", "y", "-F", "-D",
            ],
            b"[general]\npath=/conf\nverbose=false\nblock-rpcs=a,b\nallow-rpcs=x\n",
        ),
        conf(&["-c", "qga.conf", "-D"], b"[general]\npath = x  \n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\npath=a\npath=b\n"),
        conf(
            &["--config=qga.conf", "-D"],
            b"# c\n  \n\t[general]  \n  path   =  x\n[other]\npath=y\n[general]\nstatedir=z\n",
        ),
        conf(
            &["--co", "qga.conf", "-D"],
            b"[general]\npath=\\s\\ta\\tb\\n\\r\\\\\n",
        ),
        conf(
            &["-c", "qga.conf", "-D"],
            b"[general]\r\npath=x\r\nstatedir=y\r",
        ),
        conf(
            &["-c", "qga.conf", "-D"],
            b"[general]\n a b = x\npath[de]=x\n",
        ),
        conf(
            &["-c", "qga.conf", "-D"],
            b"[general]\nverbose=true  \ndaemon= 1\n",
        ),
        conf(
            &["-c", "qga.conf", "-D"],
            b"[general]\nfsfreeze-hook=\nlogfile=\n",
        ),
        conf(&["-c", "qga.conf", "-D"], b""),
        conf(
            &["-c", "qga.conf", "-D"],
            b"[general]\nblacklist=a\ndaemonize=1\n",
        ),
        conf(&["-c", "qga.conf", "-D"], b"[general]\nEncoding=UTF-8\n"),
        // Errors, with GLib's messages.
        conf(&["-c", "qga.conf", "-D"], b"[general]\nfoo\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\nverbose=yes\n"),
        conf(
            &["-c", "qga.conf", "-D"],
            b"[general]\ndaemon=yes\nverbose=no\n",
        ),
        conf(
            &["-c", "qga.conf", "-D"],
            b"[general]\nmethod=a\\q\npath=\\x\nverbose=maybe\n",
        ),
        conf(&["-c", "qga.conf", "-D"], b"[general]\npath=a\\\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\npath=a\\;b\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\nretry-path=0 x\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\nverbose=TRUE\n"),
        conf(&["-c", "qga.conf", "-D"], b"[]\n"),
        conf(&["-c", "qga.conf", "-D"], b"[a[b]\n"),
        conf(&["-c", "qga.conf", "-D"], b"path=x\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\n=x\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\npath[de=x\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general] x\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\npath=\xff\xfeab\n"),
        conf(&["-c", "qga.conf", "-D"], b"\xff\n"),
        conf(&["-c", "qga.conf", "-D"], b"[general]\nEncoding=latin1\n"),
        conf(
            &["-c", "qga.conf", "-D"],
            b"[general]\npath=\xc3\xa9t\xc3\xa9\nfoo bar\n",
        ),
        // Which file: -c must exist, the last -c wins, then $QGA_CONF.
        case(&["-c", "/nonexistent/x.conf", "-D"]),
        case(&["-c", "/nonexistent/x.conf", "-x", "-D"]),
        conf(
            &["-c", "qga.conf", "-c", "/nonexistent/x.conf", "-D"],
            b"[general]\n",
        ),
        conf(
            &["-c", "/nonexistent/x.conf", "-c", "qga.conf", "-D"],
            b"[general]\npath=c\n",
        ),
        case(&["-c", "/", "-D"]),
        case(&["-c", "/nonexistent/é.conf", "-D"]),
        case(&["-c", "", "-D"]),
        Case {
            args: &["-D"],
            file: Some(("qga.conf", b"[general]\npath=from-env\n")),
            env: &[("QGA_CONF", "qga.conf")],
        },
        Case {
            args: &["-D"],
            file: None,
            env: &[("QGA_CONF", "")],
        },
        Case {
            args: &["-D"],
            file: None,
            env: &[("QGA_CONF", "/")],
        },
    ];
    for c in &cases {
        compare(c, true);
    }
}

/// Our extension: a config key qemu-ga ignores, so the same file works with both; `-D`
/// adds its line after qemu-ga's only when set.
#[test]
fn extension_key_adds_one_dump_line() {
    let dir = TempDir::new();
    std::fs::write(dir.join("qga.conf"), "[general]\nfsfreeze-timeout=10\n").unwrap();
    let env = [("QGA_CONF", "qga.conf")];
    let theirs = run_in(&reference_binary(), &["-D"], &env, &dir.0);
    let ours = run_in(Path::new(OURS), &["-D"], &env, &dir.0);
    assert_eq!((ours.status, theirs.status), (Some(0), Some(0)));
    assert_eq!(ours.stdout, theirs.stdout + "fsfreeze-timeout=10\n");
    let ours = run_in(
        Path::new(OURS),
        &["--fsfreeze-timeout=0", "-D"],
        &env,
        &dir.0,
    );
    assert!(!ours.stdout.contains("fsfreeze-timeout"), "0 turns it off");
    let ours = run_in(
        Path::new(OURS),
        &["--fsfreeze-timeout=x", "-D"],
        &env,
        &dir.0,
    );
    assert_eq!(ours.status, Some(1));
    assert!(
        ours.stderr
            .contains("CRITICAL **: HH:MM:SS.mmm: invalid value for --fsfreeze-timeout: 'x'"),
        "{}",
        ours.stderr
    );
}

/// QEMU's test-qga case /qga/config: `-D` with only `QGA_CONF` set, empty stderr, exit 0,
/// and `block-rpcs` kept verbatim with its `;`.
#[test]
fn qemu_test_qga_config_case() {
    let text: &[u8] = b"[general]\ndaemon=false\nmethod=virtio-serial\n\
        path=/path/to/org.qemu.guest_agent.0\npidfile=/var/foo/qemu-ga.pid\n\
        statedir=/var/state\nverbose=true\nblock-rpcs=guest-ping;guest-get-time\n";
    let c = Case {
        args: &["-D"],
        file: Some(("test-qga-config", text)),
        env: &[("QGA_CONF", "test-qga-config")],
    };
    compare(&c, true);
    let dir = TempDir::new();
    std::fs::write(dir.join("test-qga-config"), text).unwrap();
    let out = run_in(
        Path::new(OURS),
        &["-D"],
        &[("QGA_CONF", "test-qga-config")],
        &dir.0,
    );
    assert_eq!(out.status, Some(0));
    assert_eq!(out.stderr, "");
    assert_eq!(
        out.stdout,
        "[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\n\
         pidfile=/var/foo/qemu-ga.pid\nstatedir=/var/state\nverbose=true\nretry-path=false\n\
         block-rpcs=guest-ping;guest-get-time\nallow-rpcs=\n"
    );
}

#[test]
fn errors_match_qemu_ga() {
    let cases = [
        case(&["-x"]),
        case(&["-x", "-y", "-D"]),
        case(&["--foo"]),
        case(&["--foo=bar", "-D"]),
        case(&["-m"]),
        case(&["-vdm"]),
        case(&["-c"]),
        case(&["--method"]),
        case(&["--p", "x", "-D"]),
        case(&["--p=x", "-D"]),
        case(&["--d", "-D"]),
        case(&["--ver"]),
        case(&["--v", "-D"]),
        case(&["--help=x"]),
        case(&["--=x"]),
        case(&["-m", "unix-listen", "-D"]),
        case(&["-m", "vsock-listen", "-D"]),
        case(&["-m", "bogus", "-D"]),
        case(&["-m", "unix-listen"]),
    ];
    for c in &cases {
        compare(c, true);
    }
}

#[test]
fn help_version_and_rpc_lists() {
    // -V and -h print our own version and text; what comes around them must match.
    for args in [
        &["-V"][..],
        &["-V", "-x"],
        &["-h"],
        &["--he", "-D"],
        &["-D", "-h"],
        &["-h", "-x"],
    ] {
        compare(&case(args), false);
    }
    let dir = TempDir::new();
    let ours = run_in(Path::new(OURS), &["-V"], &[], &dir.0);
    assert_eq!(
        ours.stdout,
        format!("QEMU Guest Agent {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = run_in(Path::new(OURS), &["--help"], &[], &dir.0).stdout;
    assert!(help.starts_with("Usage: qemu-ga [-m <method> -p <path>] [<options>]\n"));
    assert!(help.contains("--fsfreeze-timeout=SECONDS"));

    // -b help: our command table, in qemu-ga's registration order.
    let reference = reference_binary();
    for args in [
        &["-b", "help"][..],
        &["-a", "?"],
        &["--block-rpcs=help"],
        &["--allow-rpcs", "?"],
    ] {
        let ours = run_in(Path::new(OURS), args, &[], &dir.0);
        let theirs = run_in(&reference, args, &[], &dir.0);
        assert_eq!((ours.status, theirs.status), (Some(0), Some(0)));
        let ours: Vec<&str> = ours.stdout.lines().collect();
        let table: Vec<&str> = qga_agent::commands::COMMANDS
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(ours, table);
        let theirs_known: Vec<&str> = theirs.stdout.lines().filter(|n| ours.contains(n)).collect();
        assert_eq!(ours, theirs_known, "every name is qemu-ga's, in its order");
    }
}

/// systemd socket activation: fd 3, `LISTEN_PID` = the agent's pid (set by `sh` before
/// exec), checked before `-D` and the path check.
#[test]
fn socket_activation_matches_qemu_ga() {
    let dir = TempDir::new();
    let unix = std::os::unix::net::UnixListener::bind(dir.join("act.sock")).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    use std::os::fd::AsRawFd;
    let cases: [(Option<i32>, &str); 6] = [
        (Some(unix.as_raw_fd()), "1"),
        (Some(unix.as_raw_fd()), "01"),
        (Some(tcp.as_raw_fd()), "1"),
        (Some(unix.as_raw_fd()), "2"),
        (None, "1"),
        (Some(unix.as_raw_fd()), "0"),
    ];
    for (fd, count) in cases {
        let run = |bin: &Path| {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
                .arg(bin)
                .args(["-m", "isa-serial", "-p", "/q", "-D"])
                .env_clear()
                .env("LISTEN_FDS", count)
                .env("QGA_CONF", "/nonexistent/x.conf");
            // SAFETY: the closure only calls dup2, fcntl and close, which are
            // async-signal-safe as pre_exec requires, on descriptors of the child.
            unsafe {
                cmd.pre_exec(move || {
                    match fd {
                        Some(3) => {
                            libc::fcntl(3, libc::F_SETFD, 0);
                        }
                        Some(fd) => {
                            libc::dup2(fd, 3);
                        }
                        None => {
                            libc::close(3);
                        }
                    }
                    Ok(())
                });
            }
            run_cmd(cmd)
        };
        let theirs = run(&reference_binary());
        let ours = run(Path::new(OURS));
        assert_eq!(ours, theirs, "fd {fd:?}, LISTEN_FDS={count}");
    }
}

/// The agent on `sock` answers a guest-ping.
fn assert_pings(sock: &Path) {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"{\"execute\":\"guest-ping\"}\n").unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"{\"return\": {}}\n");
}

/// `-d` end to end: the parent exits 0, the daemon writes `<pid>\n` to the locked
/// pidfile, serves, and removes the pidfile when SIGTERM ends it.
#[test]
fn daemonize_writes_pidfile_and_cleans_up() {
    let dir = TempDir::new();
    let sock = dir.join("sock");
    let pidfile = dir.join("ga.pid");
    let out = run_in(
        Path::new(OURS),
        &[
            "-d",
            "-m",
            "unix-listen",
            "-p",
            sock.to_str().unwrap(),
            "-t",
            dir.0.to_str().unwrap(),
            "-f",
            pidfile.to_str().unwrap(),
        ],
        &[("QGA_CONF", "/nonexistent/x.conf")],
        &dir.0,
    );
    assert_eq!((out.status, out.stderr.as_str()), (Some(0), ""));
    let wait = |cond: &dyn Fn() -> bool| {
        (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            cond()
        })
    };
    assert!(wait(
        &|| std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    ));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait(&|| sock.exists()));
    assert_pings(&sock);
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, Path::new("/"));
    // The daemon this test started, by the pid it wrote.
    assert!(kill(pid, libc::SIGTERM));
    assert!(wait(&|| !pidfile.exists()), "pidfile removed at exit");
    assert!(wait(&|| !Path::new(&format!("/proc/{pid}")).exists()));
}

/// Started with descriptors 0–2 closed (some init scripts and `nohup`-less shells do
/// that), the agent puts /dev/null there before it opens anything, so no state file or
/// socket becomes its stdout/stderr; it serves normally. On glibc this is the agent's
/// own start-up code (`sys::rt`), not Rust's.
#[test]
fn closed_stdio_gets_dev_null() {
    let dir = TempDir::new();
    let sock = dir.join("sock");
    let mut cmd = Command::new(OURS);
    cmd.args(["-m", "unix-listen", "-p"])
        .arg(&sock)
        .arg("-t")
        .arg(&dir.0)
        .env("QGA_CONF", "/nonexistent/x.conf");
    // SAFETY: close(2) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            for fd in 0..3 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let up = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        sock.exists()
    });
    let result = std::panic::catch_unwind(|| {
        assert!(up, "agent did not create its socket");
        assert_pings(&sock);
        for fd in 0..3 {
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
            assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
        }
    });
    // The agent this test started, by its pid.
    assert!(kill(pid, libc::SIGTERM));
    let status = child.wait().expect("wait");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert_eq!(status.code(), Some(0));
}
