//! guest-shutdown, guest-suspend-*, guest-set-time, guest-set-user-password through
//! the dispatcher, against fakes only (see `fakeguest`): nothing here may touch the
//! real machine.

mod common;
mod fakeguest;

use fakeguest::{err, s, FakeClock, Guest, OK};
use qga_proto::Value;

#[test]
fn shutdown_prefers_the_direct_program_and_sends_no_reply() {
    let g = Guest::new();
    for p in ["poweroff", "halt", "reboot", "shutdown"] {
        g.program(&format!("sbin/{p}"), "exit 0", 0o755);
    }
    assert_eq!(g.run("guest-shutdown", &[]), None);
    assert_eq!(g.run("guest-shutdown", &[("mode", s("powerdown"))]), None);
    assert_eq!(g.run("guest-shutdown", &[("mode", s("halt"))]), None);
    assert_eq!(g.run("guest-shutdown", &[("mode", s("reboot"))]), None);
    assert_eq!(g.log(), "poweroff\npoweroff\nhalt\nreboot\n");
    let audit = String::from_utf8(g.agent_log.0.lock().unwrap().clone()).unwrap();
    let modes: Vec<_> = audit
        .lines()
        .filter_map(|l| l.split_once(": info: guest-shutdown called, mode: "))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(modes, ["(null)", "powerdown", "halt", "reboot"]);
}

#[test]
fn shutdown_falls_back_to_sbin_shutdown() {
    let g = Guest::new();
    g.program("sbin/poweroff", "exit 0", 0o644); // present but not executable
    g.program("sbin/shutdown", "exit 0", 0o755);
    assert_eq!(g.run("guest-shutdown", &[]), None);
    assert_eq!(g.run("guest-shutdown", &[("mode", s("halt"))]), None);
    assert_eq!(g.run("guest-shutdown", &[("mode", s("reboot"))]), None);
    let msg = "[hypervisor initiated shutdown]";
    assert_eq!(
        g.log(),
        format!("shutdown [-h] [-P] [+0] {msg}\nshutdown [-h] [-H] [+0] {msg}\nshutdown [-h] [-r] [+0] {msg}\n")
    );
}

#[test]
fn shutdown_errors() {
    let g = Guest::new();
    g.program("sbin/poweroff", "exit 0", 0o755);
    for bad in ["", "POWERDOWN", "poweroff", "halt "] {
        assert_eq!(
            g.run("guest-shutdown", &[("mode", s(bad))]),
            err("mode is invalid (valid values are: halt|powerdown|reboot")
        );
    }
    assert_eq!(g.log(), "", "validation happens before anything runs");
    assert_eq!(
        g.run("guest-shutdown", &[("mode", Value::Int(1))]),
        err("Invalid parameter type for 'mode', expected: string")
    );

    let sbin = g.dir.join("sbin");
    assert_eq!(
        g.run("guest-shutdown", &[("mode", s("halt"))]),
        err(&format!(
            "child process has failed to shutdown: failed to exec '{}/shutdown': No such file or directory\\n",
            sbin.display()
        ))
    );
    g.program("sbin/reboot", "echo going down; echo no >&2; exit 1", 0o755);
    assert_eq!(
        g.run("guest-shutdown", &[("mode", s("reboot"))]),
        err("child process has failed to shutdown: going down\\nno\\n")
    );
    g.program("sbin/poweroff", "exit 2", 0o755);
    assert_eq!(
        g.run("guest-shutdown", &[]),
        err("child process has failed to shutdown: exit status 2")
    );
}

/// `systemctl` answering `status` with `st` and the action with `act`.
fn systemctl(g: &Guest, st: i32, act: i32) {
    g.program(
        "bin/systemctl",
        &format!("[ \"$1\" = status ] && exit {st}; exit {act}"),
        0o755,
    );
}

#[test]
fn suspend_via_systemd() {
    let g = Guest::new();
    systemctl(&g, 3, 0);
    g.program("bin/pm-is-supported", "exit 0", 0o755);
    assert_eq!(g.run("guest-suspend-ram", &[]), None);
    assert_eq!(g.run("guest-suspend-disk", &[]), None);
    assert_eq!(g.run("guest-suspend-hybrid", &[]), None);
    assert_eq!(
        g.log(),
        "systemctl [status] [systemd-suspend]\nsystemctl [suspend]\n\
         systemctl [status] [systemd-hibernate]\nsystemctl [hibernate]\n\
         systemctl [status] [systemd-hybrid-sleep]\nsystemctl [hybrid-sleep]\n"
    );
}

#[test]
fn suspend_via_pm_utils_when_systemd_lacks_the_unit() {
    let g = Guest::new();
    systemctl(&g, 4, 0); // 4: no such unit
    g.program("bin/pm-is-supported", "exit 0", 0o755);
    for p in ["pm-suspend", "pm-hibernate", "pm-suspend-hybrid"] {
        g.program(&format!("bin/{p}"), "exit 0", 0o755);
    }
    assert_eq!(g.run("guest-suspend-ram", &[]), None);
    assert_eq!(g.run("guest-suspend-hybrid", &[]), None);
    assert_eq!(
        g.log(),
        "systemctl [status] [systemd-suspend]\npm-is-supported [--suspend]\npm-suspend\n\
         systemctl [status] [systemd-hybrid-sleep]\npm-is-supported [--suspend-hybrid]\npm-suspend-hybrid\n"
    );
}

#[test]
fn suspend_via_sysfs() {
    let g = Guest::new();
    let state = g.dir.join("power-state");
    std::fs::write(&state, "freeze mem").unwrap();
    assert_eq!(g.run("guest-suspend-ram", &[]), None);
    // One write(2) of the word at offset 0, no truncation (sysfs does not care).
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "memeze mem");
    std::fs::write(&state, "freeze disk").unwrap();
    assert_eq!(g.run("guest-suspend-disk", &[]), None);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "diskze disk");
    // Never for hybrid, whatever the file says.
    let unsupported = err("the requested suspend mode is not supported by the guest");
    assert_eq!(g.run("guest-suspend-hybrid", &[]), unsupported);
    // Only the first 31 bytes are looked at.
    std::fs::write(&state, format!("{}mem", "x".repeat(29))).unwrap();
    assert_eq!(g.run("guest-suspend-ram", &[]), unsupported);
    std::fs::write(&state, "freeze disk").unwrap();
    assert_eq!(g.run("guest-suspend-ram", &[]), unsupported);
    std::fs::remove_file(&state).unwrap();
    assert_eq!(g.run("guest-suspend-disk", &[]), unsupported);
}

#[test]
fn suspend_failures_fall_through_like_qemu_ga() {
    // systemd claims support but its action fails, and nothing after it is supported:
    // qemu-ga drops the error and reports success (no reply).
    let g = Guest::new();
    systemctl(&g, 1, 5);
    g.program("bin/pm-is-supported", "exit 1", 0o755);
    assert_eq!(g.run("guest-suspend-ram", &[]), None);
    assert_eq!(
        g.log(),
        "systemctl [status] [systemd-suspend]\nsystemctl [suspend]\npm-is-supported [--suspend]\n"
    );
    // For hybrid the sysfs step itself fails with "unknown guest suspend mode".
    assert_eq!(
        g.run("guest-suspend-hybrid", &[]),
        err("unknown guest suspend mode")
    );
    // pm-utils supported but its program missing: on to sysfs, whose error is reported.
    systemctl(&g, 4, 0);
    g.program("bin/pm-is-supported", "exit 0", 0o755);
    std::fs::create_dir(g.dir.join("power-state")).unwrap();
    assert_eq!(
        g.run("guest-suspend-disk", &[]),
        None,
        "a directory reads as unsupported"
    );
    // A non-executable systemctl is a spawn error, dropped like any other.
    std::fs::remove_dir(g.dir.join("power-state")).unwrap();
    g.program("bin/systemctl", "exit 3", 0o644);
    g.program("bin/pm-is-supported", "exit 1", 0o755);
    assert_eq!(
        g.run("guest-suspend-ram", &[]),
        err("the requested suspend mode is not supported by the guest")
    );
}

#[test]
fn set_time_validates_then_sets_then_syncs_the_rtc() {
    let g = Guest::new();
    g.program("sbin/hwclock", "exit 0", 0o755);
    let t = 1_700_000_000_123_456_789;
    assert_eq!(
        g.run("guest-set-time", &[("time", Value::Int(t))])
            .as_deref(),
        OK
    );
    assert_eq!(
        g.run(
            "guest-set-time",
            &[("time", Value::Int(1_700_000_000_000_000_999))]
        )
        .as_deref(),
        OK
    );
    assert_eq!(g.run("guest-set-time", &[]).as_deref(), OK);
    assert_eq!(
        *g.clock.calls.lock().unwrap(),
        [(1_700_000_000, 123_456), (1_700_000_000, 0)]
    );
    assert_eq!(g.log(), "hwclock [-w]\nhwclock [-w]\nhwclock [-s]\n");

    // Outside 1970..2069 (local time; two days of margin for any time zone). The
    // zone is loaded by now, so localtime_r leaves no errno for the message.
    qga_agent::sys::clock::local_year(0);
    let day = 86_400_000_000_000i64;
    for bad in [-2 * day, 36_525 * day + 2 * day, i64::MAX, i64::MIN] {
        assert_eq!(
            g.run("guest-set-time", &[("time", Value::Int(bad))]),
            err("Invalid time"),
            "{bad}"
        );
    }
    assert_eq!(g.clock.calls.lock().unwrap().len(), 2, "nothing set");
    assert_eq!(g.log().lines().count(), 3, "hwclock not run");
    assert_eq!(
        g.run("guest-set-time", &[("time", Value::Double(1e18))]),
        err("Invalid parameter type for 'time', expected: integer")
    );

    g.program(
        "sbin/hwclock",
        "echo 'cannot access the RTC'; exit 1",
        0o755,
    );
    assert_eq!(
        g.run("guest-set-time", &[]),
        err("child process has failed to set hardware clock to system time: cannot access the RTC\\n")
    );
}

#[test]
fn set_time_reports_settimeofday_errors() {
    let g = Guest::with_clock(FakeClock {
        fail: Some(libc::EPERM),
        ..FakeClock::default()
    });
    g.program("sbin/hwclock", "exit 0", 0o755);
    assert_eq!(
        g.run(
            "guest-set-time",
            &[("time", Value::Int(1_700_000_000_000_000_000))]
        ),
        err("Failed to set time to guest: Operation not permitted")
    );
    assert_eq!(g.log(), "", "no hwclock after a failed settimeofday");
    assert_eq!(g.clock.calls.lock().unwrap().len(), 1);
}

#[test]
fn set_user_password_feeds_chpasswd() {
    let g = Guest::new();
    let stdin = g.dir.join("stdin");
    g.program(
        "bin/chpasswd",
        &format!("cat >> '{}'", stdin.display()),
        0o755,
    );
    let run = |user: &str, pw: &str, crypted: bool| {
        g.run(
            "guest-set-user-password",
            &[
                ("username", s(user)),
                ("password", s(pw)),
                ("crypted", Value::Bool(crypted)),
            ],
        )
    };
    assert_eq!(run("alice", "cGFzcw==", false).as_deref(), OK);
    assert_eq!(run("bob", "JDYkc2FsdCRoYXNo", true).as_deref(), OK);
    assert_eq!(run("carol", "", false).as_deref(), OK);
    // The decoded password is a C string: "ab\0\ncd" is "ab".
    assert_eq!(run("dave", "YWIACmNk", false).as_deref(), OK);
    // GLib's lenient decoding: a partial group is dropped.
    assert_eq!(run("erin", "cGFzcw", false).as_deref(), OK);
    assert_eq!(
        g.log(),
        "chpasswd\nchpasswd [-e]\nchpasswd\nchpasswd\nchpasswd\n"
    );
    assert_eq!(
        std::fs::read_to_string(&stdin).unwrap(),
        "alice:pass\nbob:$6$salt$hash\ncarol:\ndave:ab\nerin:pas\n"
    );

    // Checks, in qemu-ga's order, before anything runs.
    let before = g.log();
    assert_eq!(
        run("alice", "cGFz cw==", false),
        err("Base64 data contains invalid characters")
    );
    assert_eq!(
        run("a:b", "YQpi", false),
        err("forbidden characters in raw password")
    );
    assert_eq!(
        run("a:b", "cGFzcw==", false),
        err("forbidden characters in username")
    );
    assert_eq!(
        run("a\nb", "cGFzcw==", false),
        err("forbidden characters in username")
    );
    assert_eq!(g.log(), before);

    g.program(
        "bin/chpasswd",
        "echo \"chpasswd: line 1: user 'zed' does not exist\" >&2; exit 1",
        0o755,
    );
    assert_eq!(
        run("zed", "cGFzcw==", false),
        err("child process has failed to set user password: chpasswd: line 1: user 'zed' does not exist\\n")
    );
}

#[test]
fn info_lists_the_no_reply_commands() {
    let g = Guest::new();
    let info = g.run("guest-info", &[]).unwrap();
    for name in [
        "guest-shutdown",
        "guest-suspend-disk",
        "guest-suspend-ram",
        "guest-suspend-hybrid",
    ] {
        let entry =
            format!("{{\"enabled\": true, \"name\": \"{name}\", \"success-response\": false}}");
        assert!(info.contains(&entry), "{name}");
    }
    for name in [
        "guest-set-time",
        "guest-set-vcpus",
        "guest-set-user-password",
        "guest-set-memory-blocks",
        "guest-ssh-add-authorized-keys",
    ] {
        let entry =
            format!("{{\"enabled\": true, \"name\": \"{name}\", \"success-response\": true}}");
        assert!(info.contains(&entry), "{name}");
    }
}
