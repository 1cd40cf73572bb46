//! The table-wide checks: every command's category is the documented one, each profile
//! enables exactly what the documentation says, filters combine in the documented
//! order, and the configuration accepts the new keys without changing qemu-ga's output.

use super::*;
use crate::config::{parse_in, Action, Environment};
use Category::*;

/// The module documentation's category of every qemu-ga command on Linux.
const DOCUMENTED: &[(&str, Category)] = &[
    ("guest-sync-delimited", Protocol),
    ("guest-sync", Protocol),
    ("guest-ping", Protocol),
    ("guest-get-time", Info),
    ("guest-set-time", Change),
    ("guest-info", Protocol),
    ("guest-shutdown", Change),
    ("guest-file-open", File),
    ("guest-file-close", File),
    ("guest-file-read", File),
    ("guest-file-write", File),
    ("guest-file-seek", File),
    ("guest-file-flush", File),
    ("guest-fsfreeze-status", Info),
    ("guest-fsfreeze-freeze", Change),
    ("guest-fsfreeze-freeze-list", Change),
    ("guest-fsfreeze-thaw", Change),
    ("guest-fstrim", Change),
    ("guest-suspend-disk", Change),
    ("guest-suspend-ram", Change),
    ("guest-suspend-hybrid", Change),
    ("guest-network-get-interfaces", Info),
    ("guest-get-vcpus", Info),
    ("guest-set-vcpus", Change),
    ("guest-get-disks", Info),
    ("guest-get-fsinfo", Info),
    ("guest-set-user-password", Credentials),
    ("guest-get-memory-blocks", Info),
    ("guest-set-memory-blocks", Change),
    ("guest-get-memory-block-info", Info),
    ("guest-exec-status", Exec),
    ("guest-exec", Exec),
    ("guest-get-host-name", Info),
    ("guest-get-users", Info),
    ("guest-get-timezone", Info),
    ("guest-get-osinfo", Info),
    ("guest-ssh-get-authorized-keys", Credentials),
    ("guest-ssh-add-authorized-keys", Credentials),
    ("guest-ssh-remove-authorized-keys", Credentials),
    ("guest-get-diskstats", Info),
    ("guest-get-cpustats", Info),
    ("guest-get-load", Info),
    ("guest-network-get-route", Info),
];

/// What `--help` and the README say each profile enables, by name.
fn documented_profile(p: Profile, name: &str) -> bool {
    let exec_or_file = name.starts_with("guest-exec") || name.starts_with("guest-file-");
    let credentials = name.starts_with("guest-ssh-") || name == "guest-set-user-password";
    let read_only = matches!(
        name,
        "guest-sync" | "guest-sync-delimited" | "guest-ping" | "guest-info"
    ) || name == "guest-fsfreeze-status"
        || name.starts_with("guest-get-")
        || name.starts_with("guest-network-get-");
    match p {
        Profile::Full => true,
        Profile::NoExecFiles => !exec_or_file,
        Profile::Lifecycle => !exec_or_file && !credentials,
        Profile::ReadOnly => read_only,
    }
}

/// KubeVirt's "unsupported agent" gate (clients-and-users.md §2).
const KUBEVIRT_REQUIRED: [&str; 10] = [
    "guest-ping",
    "guest-get-time",
    "guest-info",
    "guest-shutdown",
    "guest-network-get-interfaces",
    "guest-get-fsinfo",
    "guest-get-host-name",
    "guest-get-users",
    "guest-get-timezone",
    "guest-get-osinfo",
];

fn row(name: &str) -> Option<&'static CommandDef> {
    COMMANDS.iter().find(|c| c.name == name)
}

#[test]
fn every_row_has_its_documented_category() {
    for c in COMMANDS {
        let doc = DOCUMENTED.iter().find(|(n, _)| *n == c.name);
        assert_eq!(doc.map(|d| d.1), Some(c.category), "{}", c.name);
    }
    assert_eq!(
        COMMANDS.len(),
        DOCUMENTED.len(),
        "every qemu-ga command has a row"
    );
    // Whatever is in the table is in qemu-ga's registration order.
    let order: Vec<&str> = DOCUMENTED.iter().map(|d| d.0).collect();
    let positions: Vec<usize> = COMMANDS
        .iter()
        .map(|c| order.iter().position(|n| *n == c.name).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

#[test]
fn profiles_enable_what_the_documentation_says() {
    for p in Profile::ALL {
        for c in COMMANDS {
            assert_eq!(
                p.allows(c.category),
                documented_profile(p, c.name),
                "{} in {}",
                c.name,
                p.name()
            );
        }
        assert_eq!(Profile::from_name(p.name()), Some(p));
    }
    assert_eq!(Profile::default(), Profile::Full);
    assert_eq!(Profile::from_name("readonly"), None);
    // Each profile is strictly narrower than the one before.
    for w in Profile::ALL.windows(2) {
        let (wide, narrow) = (w[0], w[1]);
        assert!(narrow.categories().iter().all(|c| wide.allows(*c)));
        assert!(wide.categories().len() > narrow.categories().len());
    }
}

#[test]
fn audit_covers_everything_but_protocol_and_information() {
    for c in COMMANDS {
        let quiet = matches!(c.category, Protocol | Info);
        assert_eq!(c.category.audited(), !quiet, "{}", c.name);
    }
    // The freeze-safe commands are protocol and information, plus the thaw.
    for c in COMMANDS.iter().filter(|c| c.frozen_ok) {
        assert!(
            matches!(c.category, Protocol | Info) || c.name == "guest-fsfreeze-thaw",
            "{}",
            c.name
        );
    }
}

#[test]
fn kubevirt_gate_by_profile() {
    for p in Profile::ALL {
        for name in KUBEVIRT_REQUIRED {
            let Some(c) = row(name) else { continue };
            let expected = p != Profile::ReadOnly || name != "guest-shutdown";
            assert_eq!(p.allows(c.category), expected, "{name} in {}", p.name());
        }
    }
}

#[test]
fn filters_combine_profile_then_allow_then_block_and_frozen_overrides() {
    let ping = row("guest-ping").unwrap();
    let time = row("guest-get-time").unwrap();
    let thaw = row("guest-fsfreeze-thaw").unwrap();
    let shutdown = row("guest-shutdown").unwrap();
    let mut config = Config {
        profile: Profile::ReadOnly,
        ..Config::default()
    };
    assert_eq!(denial(&config, false, ping), None);
    assert_eq!(
        denial(&config, false, shutdown).as_deref(),
        Some("profile read-only")
    );
    // An allow list cannot widen a profile.
    config.allow_rpcs = vec!["guest-shutdown".into(), "guest-ping".into()];
    assert_eq!(
        denial(&config, false, shutdown).as_deref(),
        Some("profile read-only")
    );
    assert_eq!(
        denial(&config, false, time).as_deref(),
        Some("not in allow-rpcs")
    );
    config.block_rpcs = vec!["guest-ping".into()];
    assert_eq!(
        denial(&config, false, ping).as_deref(),
        Some("in block-rpcs")
    );
    // While frozen, qemu-ga's six win over everything, the profile included.
    assert_eq!(denial(&config, true, ping), None);
    assert_eq!(denial(&config, true, thaw), None);
    assert_eq!(
        denial(&config, true, time).as_deref(),
        Some("the guest is frozen")
    );
}

#[test]
fn hardening_keeps_what_enabled_commands_need() {
    use crate::sys::harden::cap;
    let plan = |profile, frozen, edit: &dyn Fn(&mut Config)| {
        let mut c = Config {
            profile,
            ..Config::default()
        };
        edit(&mut c);
        hardening_plan(&c, frozen)
    };
    let ro = plan(Profile::ReadOnly, false, &|_| {});
    assert_eq!(ro.keep, cap::SYS_ADMIN | cap::DAC_READ_SEARCH);
    assert!(ro.lock_down);
    assert!(!ro.counted.contains(&"guest-fsfreeze-thaw"));
    // Started frozen: the thaw (and its hook) must work, and the deferred log file open.
    let ro_frozen = plan(Profile::ReadOnly, true, &|_| {});
    assert!(ro_frozen.counted.contains(&"guest-fsfreeze-thaw"));
    assert!(!ro_frozen.lock_down);
    assert_ne!(ro_frozen.keep & cap::DAC_OVERRIDE, 0);
    // Only ping allowed: nothing at all is needed.
    let ping_only = plan(Profile::ReadOnly, false, &|c| {
        c.allow_rpcs = vec!["guest-ping".into()]
    });
    assert_eq!((ping_only.keep, ping_only.lock_down), (0, true));
    // A vsock port below 1024 may have to be bound again.
    let retry = plan(Profile::ReadOnly, false, &|c| c.retry_path = true);
    assert_ne!(retry.keep & cap::NET_BIND_SERVICE, 0);
    // Helpers run: bounding set kept.
    let lc = plan(Profile::Lifecycle, false, &|_| {});
    assert!(!lc.lock_down);
    assert_eq!(
        lc.keep,
        cap::SYS_ADMIN | cap::DAC_READ_SEARCH | cap::SYS_TIME
    );
    let nef = plan(Profile::NoExecFiles, false, &|_| {});
    assert_ne!(nef.keep & (cap::CHOWN | cap::FOWNER | cap::DAC_OVERRIDE), 0);
    assert!(!nef.lock_down);
    if row("guest-exec").is_some() || row("guest-file-open").is_some() {
        assert_eq!(plan(Profile::Full, false, &|_| {}).keep, u64::MAX);
        // Blocking them brings the profile down to no-exec-files' needs.
        let blocked = plan(Profile::Full, false, &|c| {
            c.block_rpcs = COMMANDS
                .iter()
                .filter(|r| matches!(r.category, File | Exec))
                .map(|r| r.name.to_string())
                .collect()
        });
        assert_eq!(blocked.keep, nef.keep);
    }
}

struct Env;

impl Environment for Env {
    fn var(&self, name: &str) -> Option<String> {
        (name == "QGA_CONF").then(|| "/nonexistent/qga-policy-test.conf".into())
    }
    fn socket_activation(&self) -> std::result::Result<u64, String> {
        Ok(0)
    }
    fn socket_family(&self, _fd: i32) -> Option<i32> {
        None
    }
}

fn parse(args: &[&str]) -> std::result::Result<Action, crate::config::ConfigError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    parse_in("qemu-ga", &args, &Env).outcome
}

fn printed(args: &[&str]) -> String {
    match parse(args) {
        Ok(Action::Print(t)) => t,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn config(args: &[&str]) -> Config {
    match parse(args) {
        Ok(Action::Run(c)) => c,
        other => panic!("{args:?}: {other:?}"),
    }
}

/// A config file in a temporary directory.
fn conf_file(text: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!(
        "qga-policy-conf-{}-{}",
        std::process::id(),
        text.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("qga.conf");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

#[test]
fn profile_and_harden_options_and_keys() {
    let base = config(&[]);
    assert_eq!((base.profile, base.harden), (Profile::Full, false));
    let c = config(&["--profile=read-only", "--harden"]);
    assert_eq!((c.profile, c.harden), (Profile::ReadOnly, true));
    // Extension prefixes never shadow qemu-ga's options.
    assert_eq!(config(&["--pro", "lifecycle"]).profile, Profile::Lifecycle);
    assert!(config(&["--har"]).harden);
    let listing = printed(&["--profile=help"]);
    assert!(listing.starts_with("full (protocol, info, change, credentials, file, exec):\n"));
    assert!(listing.contains("read-only (protocol, info):\n  guest-sync-delimited\n"));
    let e = parse(&["--profile=admin"]).unwrap_err();
    assert!(
        e.to_string().contains(
            "invalid value for --profile: 'admin' (expected full, no-exec-files, lifecycle, \
             read-only, or help)"
        ),
        "{e}"
    );

    // -D stays qemu-ga's byte for byte unless the keys are set.
    let plain = printed(&["-D"]);
    assert!(plain.ends_with("block-rpcs=\nallow-rpcs=\n"), "{plain}");
    assert!(!plain.contains("profile") && !plain.contains("harden"));
    assert!(printed(&["-D", "--profile=full"]).ends_with("allow-rpcs=\nprofile=full\n"));

    let (dir, path) = conf_file("[general]\nprofile=no-exec-files\nharden=true\n");
    assert_eq!(
        (
            config(&["-c", &path]).profile,
            config(&["-c", &path]).harden
        ),
        (Profile::NoExecFiles, true)
    );
    // The command line wins.
    assert_eq!(
        config(&["-c", &path, "--profile=read-only"]).profile,
        Profile::ReadOnly
    );
    assert!(printed(&["-c", &path, "-D"])
        .ends_with("allow-rpcs=\nprofile=no-exec-files\nharden=true\n"));
    let _ = std::fs::remove_dir_all(dir);

    let (dir, path) = conf_file("[general]\nprofile=everything\n");
    let e = parse(&["-c", &path]).unwrap_err();
    assert!(
        e.to_string()
            .contains("Key file contains key \u{201c}profile\u{201d} which has a value that cannot be interpreted."),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_documents_every_profile() {
    let help = printed(&["--help"]);
    for p in Profile::ALL {
        assert!(help.contains(&format!("{}: ", p.name())), "{}", p.name());
    }
    assert!(help.contains("--harden") && help.contains("--profile=NAME"));
    assert!(help.lines().all(|l| l.chars().count() <= 80), "{help}");
}
