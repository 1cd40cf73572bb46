//! Our freeze-safety additions on the fake kernel: the freeze bound, a thaw overtaking
//! a stuck freeze or a running freeze hook, and the watchdog.

use std::time::{Duration, Instant};

use super::*;

#[test]
fn a_freeze_past_the_bound_fails_thaws_and_the_late_freeze_is_undone() {
    let f = fx(Opts {
        hook: Some(""),
        bound: Duration::from_millis(300),
        ..Opts::default()
    });
    f.kernel.block_freeze("/boot");
    let t = Instant::now();
    assert_eq!(
        f.freeze().unwrap_err().desc(),
        "failed to freeze /boot: timed out after 300ms; the filesystems were thawed"
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(5));
    // /data was frozen before /boot got stuck, and is thawed; / was never reached.
    assert!(f.kernel.frozen().is_empty());
    assert!(calls(&f.kernel, "thaw /data").contains(&"thaw /data".to_string()));
    assert_eq!(f.status(), "thawed");
    assert!(!f.marker());
    assert_eq!(f.hook_log(), "freeze\nthaw\n");

    // Another freeze is refused while the first is stuck.
    assert_eq!(
        f.freeze().unwrap_err().desc(),
        "an earlier freeze is still stuck in the kernel on /boot; try again later"
    );
    assert_eq!(f.hook_log(), "freeze\nthaw\n");

    // The stuck FIFREEZE returns: the worker thaws it and stops.
    f.kernel.release("/boot");
    f.kernel
        .wait_calls("the late thaw", |c| c.iter().any(|c| c == "thaw /boot"));
    f.wait_worker_idle();
    assert!(f.kernel.frozen().is_empty());
    assert!(
        calls(&f.kernel, "freeze /").is_empty(),
        "/ was never frozen"
    );
    assert_eq!(f.status(), "thawed");

    assert_eq!(f.freeze(), Ok(3));
    assert_eq!(f.thaw(), Ok(3));
}

#[test]
fn thaw_overtakes_a_stuck_freeze() {
    let f = fx(Opts {
        bound: Duration::from_secs(60),
        ..Opts::default()
    });
    f.kernel.block_freeze("/boot");
    std::thread::scope(|s| {
        let freezer = s.spawn(|| (f.freeze(), Instant::now()));
        f.kernel.wait_blocked("/boot");
        assert_eq!(f.status(), "frozen");
        let t = Instant::now();
        // Only /data was frozen; /boot is left to the worker, / was never frozen.
        assert_eq!(f.thaw(), Ok(1));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(
            calls(&f.kernel, "open /boot").len() == 1,
            "thaw skipped /boot"
        );
        assert_eq!(f.status(), "thawed");
        assert!(!f.marker());
        let (r, done) = freezer.join().unwrap();
        assert_eq!(
            r.unwrap_err().desc(),
            "the freeze was cancelled by guest-fsfreeze-thaw; the filesystems were thawed"
        );
        assert!(done.duration_since(t) < Duration::from_secs(5));
    });
    f.kernel.release("/boot");
    f.kernel
        .wait_calls("the late thaw", |c| c.iter().any(|c| c == "thaw /boot"));
    f.wait_worker_idle();
    assert!(f.kernel.frozen().is_empty());
    assert!(
        calls(&f.kernel, "freeze /").is_empty(),
        "/ was never frozen"
    );
    assert_eq!(f.status(), "thawed");
}

#[test]
fn a_thaw_during_the_freeze_hook_cancels_the_freeze() {
    let f = fx(Opts {
        hook: Some("[ \"$1\" = freeze ] && sleep 1; exit 0"),
        ..Opts::default()
    });
    std::thread::scope(|s| {
        let freezer = s.spawn(|| f.freeze());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f.hook_log().starts_with("freeze") {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(f.thaw(), Ok(0));
        assert_eq!(
            freezer.join().unwrap().unwrap_err().desc(),
            "the freeze was cancelled by guest-fsfreeze-thaw; the filesystems were thawed"
        );
    });
    assert!(calls(&f.kernel, "freeze").is_empty());
    assert_eq!(f.status(), "thawed");
    assert_eq!(f.hook_log(), "freeze\nthaw\nthaw\n");
}

fn wait_thawed(f: &Fx, within: Duration) -> Duration {
    let t = Instant::now();
    while f.status() == "frozen" {
        assert!(t.elapsed() < within, "the watchdog did not thaw");
        std::thread::sleep(Duration::from_millis(5));
    }
    t.elapsed()
}

#[test]
fn the_watchdog_thaws_a_guest_left_frozen() {
    let f = fx(Opts {
        hook: Some(""),
        timeout: Some(Duration::from_millis(300)),
        ..Opts::default()
    });
    std::thread::scope(|s| {
        let dog = s.spawn(|| run_watchdog(&f.agent));
        assert_eq!(f.freeze(), Ok(3));
        let waited = wait_thawed(&f, Duration::from_secs(10));
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(f.kernel.frozen().is_empty());
        assert!(!f.marker());
        // A thaw by the host before the timeout disarms it.
        assert_eq!(f.freeze(), Ok(3));
        assert_eq!(f.thaw(), Ok(3));
        f.agent.freeze.stop_watchdog();
        dog.join().unwrap();
    });
    let lines = f.log_lines();
    let dog: Vec<_> = lines.iter().filter(|l| l.contains("watchdog")).collect();
    assert_eq!(
        dog,
        ["critical: fsfreeze watchdog: the guest stayed frozen longer than 300ms; thawed 3 filesystem(s)"]
    );
    assert_eq!(f.hook_log(), "freeze\nthaw\nfreeze\nthaw\n");
    // The watchdog's thaw is not a guest-fsthaw call.
    assert_eq!(
        lines.iter().filter(|l| l.contains("guest-fsthaw")).count(),
        1
    );
}

#[test]
fn the_watchdog_thaws_an_agent_that_started_frozen() {
    let f = fx(Opts {
        frozen: true,
        timeout: Some(Duration::from_millis(200)),
        ..Opts::default()
    });
    f.kernel.pre_freeze("/boot", 1);
    std::thread::scope(|s| {
        let dog = s.spawn(|| run_watchdog(&f.agent));
        wait_thawed(&f, Duration::from_secs(10));
        f.agent.freeze.stop_watchdog();
        dog.join().unwrap();
    });
    assert!(f.kernel.frozen().is_empty());
    assert!(!f.marker());
}

#[test]
fn without_a_timeout_there_is_no_watchdog() {
    let f = fx(Opts {
        frozen: true,
        ..Opts::default()
    });
    run_watchdog(&f.agent); // returns at once
    assert_eq!(f.status(), "frozen");
}
