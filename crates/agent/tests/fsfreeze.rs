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
