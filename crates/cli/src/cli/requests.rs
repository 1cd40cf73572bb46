//! Turning command-line arguments into typed requests. Kept apart from the I/O so the
//! state-changing requests (freeze, trim, shutdown, set-time, passwords, ssh keys) are
//! checked by unit tests rather than by sending them to a real agent.

use qga_cli::b64;
use qga_cli::wire::{
    GuestFsfreezeFreezeArgs, GuestFsfreezeFreezeListArgs, GuestSetTimeArgs,
    GuestSetUserPasswordArgs, GuestShutdownArgs, GuestSshAddAuthorizedKeysArgs,
    GuestSshRemoveAuthorizedKeysArgs,
};

use super::args::TimeSet;

/// fsfreeze freeze: all filesystems, or the listed mountpoints.
pub enum Freeze {
    /// guest-fsfreeze-freeze.
    All(GuestFsfreezeFreezeArgs),
    /// guest-fsfreeze-freeze-list.
    List(GuestFsfreezeFreezeListArgs),
}

/// The freeze request for these mountpoints.
pub fn freeze(mountpoints: &[String]) -> Freeze {
    if mountpoints.is_empty() {
        Freeze::All(GuestFsfreezeFreezeArgs {})
    } else {
        Freeze::List(GuestFsfreezeFreezeListArgs {
            mountpoints: Some(mountpoints.to_vec()),
        })
    }
}

/// guest-shutdown.
pub fn shutdown(mode: Option<&str>) -> GuestShutdownArgs {
    GuestShutdownArgs {
        mode: mode.map(str::to_string),
    }
}

/// guest-set-time: `--set NS`, `--set now` (this host's clock, `now_ns`) or `--sync`
/// (no time: the guest reads its RTC).
pub fn set_time(set: Option<TimeSet>, now_ns: i64) -> GuestSetTimeArgs {
    GuestSetTimeArgs {
        time: match set {
            None => None,
            Some(TimeSet::Now) => Some(now_ns),
            Some(TimeSet::Ns(n)) => Some(n),
        },
    }
}

/// guest-set-user-password: the password goes base64-encoded, as the schema wants.
pub fn passwd(user: &str, password: &str, crypted: bool) -> GuestSetUserPasswordArgs {
    GuestSetUserPasswordArgs {
        username: user.to_string(),
        password: b64::encode(password.as_bytes()),
        crypted,
    }
}

/// Keys from the command line, or else one per line of `stdin_text` (blank lines and
/// `#` comments skipped).
pub fn keys(args: &[String], stdin_text: Option<&str>) -> Vec<String> {
    if !args.is_empty() {
        return args.to_vec();
    }
    stdin_text
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// guest-ssh-add-authorized-keys (`reset` only sent when asked for).
pub fn ssh_add(user: &str, keys: Vec<String>, reset: bool) -> GuestSshAddAuthorizedKeysArgs {
    GuestSshAddAuthorizedKeysArgs {
        username: user.to_string(),
        keys,
        reset: reset.then_some(true),
    }
}

/// guest-ssh-remove-authorized-keys.
pub fn ssh_remove(user: &str, keys: Vec<String>) -> GuestSshRemoveAuthorizedKeysArgs {
    GuestSshRemoveAuthorizedKeysArgs {
        username: user.to_string(),
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qga_proto::Command;

    fn json<C: Command>(c: &C) -> String {
        format!(
            "{} {}",
            C::NAME,
            String::from_utf8(c.to_qapi().to_json()).unwrap()
        )
    }

    #[test]
    fn freeze_requests() {
        match freeze(&[]) {
            Freeze::All(a) => assert_eq!(json(&a), "guest-fsfreeze-freeze {}"),
            Freeze::List(_) => panic!("no mountpoints means all"),
        }
        match freeze(&["/".into(), "/data".into()]) {
            Freeze::List(a) => assert_eq!(
                json(&a),
                r#"guest-fsfreeze-freeze-list {"mountpoints": ["/", "/data"]}"#
            ),
            Freeze::All(_) => panic!("mountpoints given"),
        }
    }

    #[test]
    fn shutdown_and_time_requests() {
        assert_eq!(json(&shutdown(None)), "guest-shutdown {}");
        assert_eq!(
            json(&shutdown(Some("reboot"))),
            r#"guest-shutdown {"mode": "reboot"}"#
        );
        assert_eq!(json(&set_time(None, 5)), "guest-set-time {}");
        assert_eq!(
            json(&set_time(Some(TimeSet::Now), 1_700_000_000_000_000_000)),
            r#"guest-set-time {"time": 1700000000000000000}"#
        );
        assert_eq!(
            json(&set_time(Some(TimeSet::Ns(42)), 5)),
            r#"guest-set-time {"time": 42}"#
        );
    }

    #[test]
    fn password_is_base64_and_crypted_is_explicit() {
        let j = json(&passwd("alice", "s3cr:t é", false));
        assert!(j.starts_with("guest-set-user-password {"), "{j}");
        assert!(j.contains(r#""username": "alice""#), "{j}");
        assert!(j.contains(r#""password": "czNjcjp0IMOp""#), "{j}");
        assert!(j.contains(r#""crypted": false"#), "{j}");
        assert!(json(&passwd("bob", "$6$x", true)).contains(r#""crypted": true"#));
    }

    #[test]
    fn ssh_key_requests() {
        let k = keys(
            &[],
            Some("# comment\nssh-ed25519 AAAA a@b\n\n  ssh-rsa BBBB c@d  \n"),
        );
        assert_eq!(k, ["ssh-ed25519 AAAA a@b", "ssh-rsa BBBB c@d"]);
        assert_eq!(keys(&["k1".into()], Some("k2")), ["k1"]);
        let j = json(&ssh_add("root", k.clone(), false));
        assert!(!j.contains("reset"), "{j}");
        assert!(
            j.contains(r#""keys": ["ssh-ed25519 AAAA a@b", "ssh-rsa BBBB c@d"]"#),
            "{j}"
        );
        assert!(json(&ssh_add("root", k.clone(), true)).contains(r#""reset": true"#));
        let j = json(&ssh_remove("root", vec!["k".into()]));
        assert!(j.starts_with("guest-ssh-remove-authorized-keys {"), "{j}");
        assert!(
            j.contains(r#""username": "root""#) && j.contains(r#""keys": ["k"]"#),
            "{j}"
        );
    }
}
