//! The fsfreeze state machine on the fake kernel: qemu-ga's semantics first, then the
//! safety features (freeze bound, thaw overtaking a stuck freeze, watchdog).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qga_proto::{Dict, ToQapi, Value};

use super::*;
use crate::agent::{Agent, FIRST_HANDLE};
use crate::config::Config;
use crate::log::Logger;
use crate::sys::fsfreeze::fake::FakeKernel;
use crate::sys::fsfreeze::Trimmed;

mod safety;

const MOUNTS: &[&str] = &["/", "/boot", "/data"];

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An agent on a fake kernel, with its state directory (and hook) in a temp dir.
struct Fx {
    agent: Agent,
    kernel: Arc<FakeKernel>,
    dir: PathBuf,
    log: LogBuf,
}

impl Drop for Fx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone)]
struct Opts {
    mounts: &'static [&'static str],
    /// Body of the hook script; it also appends its argument to `hook.log`.
    hook: Option<&'static str>,
    bound: Duration,
    timeout: Option<Duration>,
    frozen: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            mounts: MOUNTS,
            hook: None,
            bound: Duration::from_secs(10),
            timeout: None,
            frozen: false,
        }
    }
}

fn fx(o: Opts) -> Fx {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("qga-fsfreeze-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hook = o.hook.map(|body| {
        let path = dir.join("hook");
        let script = format!("#!/bin/sh\necho \"$1\" >> \"$(dirname \"$0\")/hook.log\"\n{body}\n");
        // Written by a child process, so no descriptor of ours can make exec fail with
        // ETXTBSY while other tests fork.
        let ok = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
                "sh",
            ])
            .arg(&script)
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        path.to_string_lossy().into_owned()
    });
    if o.frozen {
        std::fs::write(dir.join("qga.state.isfrozen"), "").unwrap();
    }
    let config = Config {
        statedir: dir.to_string_lossy().into_owned(),
        fsfreeze_hook: hook,
        fsfreeze_timeout: o.timeout,
        ..Config::default()
    };
    let log = LogBuf::default();
    let mut agent = Agent::new(
        config,
        Logger::new(Box::new(log.clone()), true),
        o.frozen,
        FIRST_HANDLE,
    );
    let kernel = FakeKernel::new(o.mounts);
    agent.freeze = FreezeState::with_kernel(kernel.clone(), o.bound);
    Fx {
        agent,
        kernel,
        dir,
        log,
    }
}

impl Fx {
    fn freeze(&self) -> Result<i64> {
        freeze(&self.agent, GuestFsfreezeFreezeArgs {})
    }
    fn freeze_list(&self, l: &[&str]) -> Result<i64> {
        let mountpoints = Some(l.iter().map(|s| s.to_string()).collect());
        freeze_list(&self.agent, GuestFsfreezeFreezeListArgs { mountpoints })
    }
    fn thaw(&self) -> Result<i64> {
        thaw(&self.agent, GuestFsfreezeThawArgs {})
    }
    fn status(&self) -> &'static str {
        status(&self.agent, GuestFsfreezeStatusArgs {})
            .unwrap()
            .as_str()
    }
    fn marker(&self) -> bool {
        self.dir.join("qga.state.isfrozen").exists()
    }
    fn hook_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hook.log")).unwrap_or_default()
    }
    /// Log lines without their timestamps.
    fn log_lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.log.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| l.split_once(": ").map_or(l, |(_, r)| r).to_string())
            .collect()
    }
    fn wait_worker_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.agent.freeze.lock().worker {
            assert!(Instant::now() < deadline, "freeze worker still running");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    /// A request through the dispatcher, as the host would send it.
    fn request(&self, name: &str) -> String {
        let mut req = Dict::new();
        req.insert("execute", Value::str(name));
        let reply = crate::dispatch::handle(&self.agent, Ok(Value::Dict(req))).unwrap();
        String::from_utf8(reply.json).unwrap()
    }
}

/// The recorded calls that are `prefix` or start with `prefix` and a space.
fn calls(k: &FakeKernel, prefix: &str) -> Vec<String> {
    k.calls()
        .into_iter()
        .filter(|c| c == prefix || c.starts_with(&format!("{prefix} ")))
        .collect()
}

#[test]
fn freeze_in_reverse_order_thaw_in_forward_order() {
    let f = fx(Opts::default());
    assert_eq!(f.status(), "thawed");
    assert_eq!(f.freeze(), Ok(3));
    assert_eq!(
        calls(&f.kernel, "freeze"),
        ["freeze /data", "freeze /boot", "freeze /"]
    );
    assert_eq!(f.status(), "frozen");
    assert!(f.marker());
    let mode = std::fs::metadata(f.dir.join("qga.state.isfrozen"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    assert_eq!(f.kernel.frozen(), ["/", "/boot", "/data"]);

    f.kernel.take_calls();
    assert_eq!(f.thaw(), Ok(3));
    // FITHAW until it fails, mount by mount, in mount order.
    assert_eq!(
        f.kernel.calls(),
        [
            "open /",
            "thaw /",
            "thaw / EINVAL",
            "open /boot",
            "thaw /boot",
            "thaw /boot EINVAL",
            "open /data",
            "thaw /data",
            "thaw /data EINVAL"
        ]
    );
    assert_eq!(f.status(), "thawed");
    assert!(!f.marker());
    assert!(f.kernel.frozen().is_empty());
}

#[test]
fn only_thaw_and_status_are_enabled_while_frozen() {
    let f = fx(Opts::default());
    assert_eq!(f.request("guest-fsfreeze-freeze"), "{\"return\": 3}\n");
    assert_eq!(
        f.request("guest-fsfreeze-status"),
        "{\"return\": \"frozen\"}\n"
    );
    for name in [
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-freeze-list",
        "guest-fstrim",
    ] {
        assert_eq!(
            f.request(name),
            format!("{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"Command {name} has been disabled: the command is not allowed\"}}}}\n")
        );
    }
    assert_eq!(f.request("guest-fsfreeze-thaw"), "{\"return\": 3}\n");
    assert_eq!(
        f.request("guest-fsfreeze-status"),
        "{\"return\": \"thawed\"}\n"
    );
}

#[test]
fn ebusy_and_eopnotsupp_are_skipped_and_not_counted() {
    let f = fx(Opts::default());
    f.kernel.fail_freeze("/boot", libc::EOPNOTSUPP);
    f.kernel.pre_freeze("/data", 1); // FIFREEZE gives EBUSY
    assert_eq!(f.freeze(), Ok(1));
    assert_eq!(
        calls(&f.kernel, "freeze"),
        ["freeze /data EBUSY", "freeze /boot EOPNOTSUPP", "freeze /"]
    );
    assert_eq!(f.status(), "frozen");
}

#[test]
fn freezing_nothing_returns_to_thawed_without_the_thaw_hook() {
    let f = fx(Opts {
        hook: Some(""),
        ..Opts::default()
    });
    for m in MOUNTS {
        f.kernel.fail_freeze(m, libc::EOPNOTSUPP);
    }
    assert_eq!(f.freeze(), Ok(0));
    assert_eq!(f.status(), "thawed");
    assert!(!f.marker());
    assert_eq!(f.hook_log(), "freeze\n");
    assert!(calls(&f.kernel, "thaw").is_empty());

    let empty = fx(Opts {
        mounts: &[],
        ..Opts::default()
    });
    assert_eq!(empty.freeze(), Ok(0));
    assert_eq!(empty.status(), "thawed");
}

#[test]
fn a_freeze_error_thaws_everything_and_runs_the_thaw_hook() {
    let f = fx(Opts {
        hook: Some(""),
        ..Opts::default()
    });
    f.kernel.fail_freeze("/boot", libc::EIO);
    assert_eq!(
        f.freeze().unwrap_err().desc(),
        "failed to freeze /boot: Input/output error"
    );
    assert_eq!(
        calls(&f.kernel, "freeze"),
        ["freeze /data", "freeze /boot EIO"]
    );
    assert_eq!(
        calls(&f.kernel, "thaw /data"),
        ["thaw /data", "thaw /data EINVAL"]
    );
    assert!(f.kernel.frozen().is_empty());
    assert_eq!(f.status(), "thawed");
    assert!(!f.marker());
    assert_eq!(f.hook_log(), "freeze\nthaw\n");
}

#[test]
fn an_open_error_thaws_everything() {
    let f = fx(Opts::default());
    f.kernel.fail_open("/boot", libc::ENOENT);
    assert_eq!(
        f.freeze().unwrap_err().desc(),
        "failed to open /boot: No such file or directory"
    );
    assert!(f.kernel.frozen().is_empty());
    assert_eq!(f.status(), "thawed");
}

#[test]
fn freeze_list_takes_exact_mount_points_in_mount_order() {
    let f = fx(Opts::default());
    assert_eq!(
        f.freeze_list(&["/", "/nonexistent", "/dat", "/data/", "/data\0junk"]),
        Ok(2)
    );
    assert_eq!(calls(&f.kernel, "freeze"), ["freeze /data", "freeze /"]);
    assert_eq!(f.kernel.frozen(), ["/", "/data"]);
    assert_eq!(f.thaw(), Ok(2));

    f.kernel.take_calls();
    assert_eq!(f.freeze_list(&["/nonexistent"]), Ok(0));
    assert_eq!(f.freeze_list(&[]), Ok(0));
    assert!(calls(&f.kernel, "freeze").is_empty());
    assert_eq!(f.status(), "thawed");
}

#[test]
fn a_failing_freeze_hook_freezes_nothing() {
    let f = fx(Opts {
        hook: Some("[ \"$1\" = freeze ] && { echo not now; exit 1; }; exit 0"),
        ..Opts::default()
    });
    assert_eq!(
        f.freeze().unwrap_err().desc(),
        "child process has failed to execute fsfreeze hook: not now\n"
    );
    assert!(f.kernel.calls().is_empty());
    assert_eq!(f.status(), "thawed");
    assert!(!f.marker());
    assert_eq!(f.hook_log(), "freeze\n");
}

#[test]
fn a_failing_thaw_hook_makes_the_reply_an_error_but_thaws() {
    let f = fx(Opts {
        hook: Some("[ \"$1\" = thaw ] && exit 3; exit 0"),
        ..Opts::default()
    });
    assert_eq!(f.freeze(), Ok(3));
    assert_eq!(
        f.thaw().unwrap_err().desc(),
        "child process has failed to execute fsfreeze hook: exit status 3"
    );
    assert!(f.kernel.frozen().is_empty());
    assert_eq!(f.status(), "thawed");
    assert!(!f.marker());
    assert_eq!(f.hook_log(), "freeze\nthaw\n");
}

#[test]
fn thaw_when_not_frozen_returns_0_and_runs_the_hook() {
    let f = fx(Opts {
        hook: Some(""),
        ..Opts::default()
    });
    assert_eq!(f.thaw(), Ok(0));
    assert_eq!(f.hook_log(), "thaw\n");
    assert_eq!(f.status(), "thawed");
}

#[test]
fn thaw_after_a_restart_thaws_every_mount() {
    // The agent starts frozen from the marker and knows nothing about what was frozen;
    // someone else froze /data twice.
    let f = fx(Opts {
        frozen: true,
        ..Opts::default()
    });
    f.kernel.pre_freeze("/", 1);
    f.kernel.pre_freeze("/data", 2);
    assert_eq!(f.status(), "frozen");
    assert_eq!(f.thaw(), Ok(2));
    assert_eq!(
        calls(&f.kernel, "thaw /data"),
        ["thaw /data", "thaw /data", "thaw /data EINVAL"]
    );
    assert!(f.kernel.frozen().is_empty());
    assert_eq!(f.status(), "thawed");
    assert!(!f.marker());
}

#[test]
fn an_unreadable_mount_list_fails_freeze_and_keeps_thaw_frozen() {
    let f = fx(Opts {
        hook: Some(""),
        ..Opts::default()
    });
    f.kernel.fail_mounts(libc::ENOENT);
    let e = "failed to open mtab file: '/proc/self/mounts': No such file or directory";
    assert_eq!(f.freeze().unwrap_err().desc(), e);
    assert_eq!(f.status(), "thawed");
    assert_eq!(f.hook_log(), "freeze\n");

    let g = fx(Opts {
        frozen: true,
        ..Opts::default()
    });
    g.kernel.fail_mounts(libc::ENOENT);
    assert_eq!(g.thaw().unwrap_err().desc(), e);
    assert_eq!(g.status(), "frozen");
    assert!(g.marker());
}

#[test]
fn audit_lines_and_no_logging_while_frozen() {
    let f = fx(Opts {
        hook: Some(""),
        ..Opts::default()
    });
    assert_eq!(f.freeze(), Ok(3));
    let before = f.log_lines();
    assert_eq!(
        before,
        [
            "info: guest-fsfreeze called",
            "info: executing fsfreeze hook with arg 'freeze'"
        ]
    );
    f.agent.log.log(Level::Critical, "written while frozen");
    assert_eq!(f.log_lines(), before);
    assert_eq!(f.thaw(), Ok(3));
    assert_eq!(
        f.log_lines()[2..],
        [
            "info: guest-fsthaw called",
            "info: executing fsfreeze hook with arg 'thaw'"
        ]
    );
}

#[test]
fn fstrim_results_in_reverse_mount_order() {
    let f = fx(Opts {
        mounts: &["/", "/boot", "/data", "/x", "/y"],
        ..Opts::default()
    });
    f.kernel.set_trim(
        "/",
        Ok(Trimmed {
            len: 256216375296,
            minlen: 4096,
        }),
    );
    f.kernel.set_trim("/boot", Err(libc::ENOTTY));
    f.kernel.set_trim("/data", Err(libc::EIO));
    f.kernel.fail_open("/x", libc::EACCES);
    f.kernel.set_trim("/y", Err(libc::EOPNOTSUPP));
    let r = fstrim(&f.agent, GuestFstrimArgs { minimum: Some(1) }).unwrap();
    assert_eq!(
        String::from_utf8(r.to_qapi().to_json()).unwrap(),
        concat!(
            r#"{"paths": [{"path": "/y", "error": "trim not supported"}, "#,
            r#"{"path": "/x", "error": "failed to open: Permission denied"}, "#,
            r#"{"path": "/data", "error": "failed to trim: Input/output error"}, "#,
            r#"{"path": "/boot", "error": "trim not supported"}, "#,
            r#"{"minimum": 4096, "path": "/", "trimmed": 256216375296}]}"#
        )
    );
    assert_eq!(calls(&f.kernel, "trim /"), ["trim / 1"]);
    assert_eq!(f.log_lines(), ["info: guest-fstrim called"]);

    // No minimum means 0; a negative one wraps as C's assignment does.
    f.kernel.take_calls();
    fstrim(&f.agent, GuestFstrimArgs { minimum: None }).unwrap();
    fstrim(&f.agent, GuestFstrimArgs { minimum: Some(-1) }).unwrap();
    assert_eq!(
        calls(&f.kernel, "trim /y"),
        [
            "trim /y 0 EOPNOTSUPP",
            "trim /y 18446744073709551615 EOPNOTSUPP"
        ]
    );
    let r = fstrim(&f.agent, GuestFstrimArgs { minimum: Some(-1) }).unwrap();
    assert_eq!(r.paths[4].minimum, Some(4096));
    f.kernel.set_trim("/", Err(libc::EIO));
    f.kernel.take_calls();
    let r = fstrim(&f.agent, GuestFstrimArgs { minimum: Some(-1) }).unwrap();
    assert_eq!(r.paths[4].trimmed, None);
    f.kernel.fail_mounts(libc::ENOENT);
    assert!(fstrim(&f.agent, GuestFstrimArgs { minimum: None }).is_err());
}
