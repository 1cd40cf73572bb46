//! The subcommands: what each one means, and how its arguments are read.

use std::time::Duration;

use super::args::{seconds, usage, Usage};

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    /// guest-ping.
    Ping,
    /// guest-info.
    Info,
    /// guest-exec + polling.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
        /// `K=V` entries.
        env: Vec<String>,
        /// `--stdin FILE` or `-`.
        stdin: Option<String>,
        /// Give up after this long.
        limit: Option<Duration>,
    },
    /// File copy.
    Cp {
        /// Source (`:guest` or local).
        src: String,
        /// Destination.
        dst: String,
        /// Skip the end-to-end check.
        no_verify: bool,
    },
    /// Print a guest file.
    Cat {
        /// Guest path.
        path: String,
    },
    /// fsfreeze freeze|thaw|status.
    Fsfreeze {
        /// The action.
        action: String,
        /// Mountpoints for freeze.
        mountpoints: Vec<String>,
    },
    /// guest-fstrim.
    Fstrim {
        /// Minimum range.
        minimum: Option<i64>,
    },
    /// guest-shutdown.
    Shutdown {
        /// powerdown|halt|reboot.
        mode: Option<String>,
    },
    /// Show or set the time.
    Time {
        /// `--set`: ns, or `now`.
        set: Option<TimeSet>,
        /// `--sync`: from the RTC.
        sync: bool,
    },
    /// guest-set-user-password.
    Passwd {
        /// The user.
        user: String,
        /// Already crypted.
        crypted: bool,
    },
    /// ssh-keys list|add|remove.
    SshKeys {
        /// The action.
        action: String,
        /// The user.
        user: String,
        /// Keys (empty: read stdin for add/remove).
        keys: Vec<String>,
        /// `--reset` for add.
        reset: bool,
    },
    /// A read-only query shown as a table.
    Query(Query),
    /// stats [cpu|disk|load].
    Stats {
        /// Which sections (empty: all).
        which: Vec<String>,
    },
    /// Raw JSON passthrough.
    Raw {
        /// The request.
        json: String,
    },
}

/// `time --set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    /// This host's current time.
    Now,
    /// Nanoseconds since the epoch.
    Ns(i64),
}

/// Read-only queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// guest-network-get-interfaces.
    Ifaddr,
    /// guest-get-fsinfo.
    Fsinfo,
    /// guest-get-disks.
    Disks,
    /// guest-get-vcpus.
    Vcpus,
    /// guest-get-osinfo.
    Osinfo,
    /// guest-get-users.
    Users,
}

impl Query {
    /// The command behind it.
    pub fn command(self) -> &'static str {
        match self {
            Query::Ifaddr => "guest-network-get-interfaces",
            Query::Fsinfo => "guest-get-fsinfo",
            Query::Disks => "guest-get-disks",
            Query::Vcpus => "guest-get-vcpus",
            Query::Osinfo => "guest-get-osinfo",
            Query::Users => "guest-get-users",
        }
    }
}

/// Reads a subcommand's arguments (`rest`) and options (`opts`).
pub fn build(
    sub: &str,
    rest: Vec<String>,
    opts: Vec<(String, Option<String>)>,
) -> Result<Cmd, Usage> {
    let flag = |name: &str| opts.iter().any(|(o, _)| o == name);
    let allowed: &[&str] = match sub {
        "exec" => &["--stdin", "--env", "-e", "--timeout"],
        "cp" => &["--no-verify"],
        "fstrim" => &["--minimum"],
        "shutdown" => &["--mode"],
        "time" => &["--set", "--sync"],
        "passwd" => &["--crypted"],
        "ssh-keys" => &["--reset"],
        _ => &[],
    };
    if let Some((o, _)) = opts.iter().find(|(o, _)| !allowed.contains(&o.as_str())) {
        return usage(format!("{sub}: unknown option {o}"));
    }
    let value = |name: &str| {
        opts.iter()
            .rev()
            .find(|(o, _)| o == name)
            .and_then(|(_, v)| v.clone())
    };
    let n_args = |min: usize, max: usize, what: &str| -> Result<(), Usage> {
        if rest.len() < min || rest.len() > max {
            usage(format!("usage: qga {sub} {what}"))
        } else {
            Ok(())
        }
    };
    Ok(match sub {
        "ping" | "info" | "ifaddr" | "fsinfo" | "disks" | "vcpus" | "osinfo" | "users" => {
            n_args(0, 0, "")?;
            match sub {
                "ping" => Cmd::Ping,
                "info" => Cmd::Info,
                "ifaddr" => Cmd::Query(Query::Ifaddr),
                "fsinfo" => Cmd::Query(Query::Fsinfo),
                "disks" => Cmd::Query(Query::Disks),
                "vcpus" => Cmd::Query(Query::Vcpus),
                "osinfo" => Cmd::Query(Query::Osinfo),
                _ => Cmd::Query(Query::Users),
            }
        }
        "exec" => {
            if rest.is_empty() {
                return usage("usage: qga exec [--stdin FILE|-] [--env K=V]... [--timeout S] -- PROG [ARGS...]");
            }
            let env: Vec<String> = opts
                .iter()
                .filter(|(o, _)| o == "--env" || o == "-e")
                .filter_map(|(_, v)| v.clone())
                .collect();
            if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
                return usage(format!("--env: expected K=V, got '{bad}'"));
            }
            let limit = value("--timeout")
                .map(|v| seconds("exec --timeout", &v))
                .transpose()?;
            Cmd::Exec {
                argv: rest,
                env,
                stdin: value("--stdin"),
                limit,
            }
        }
        "cp" => {
            n_args(2, 2, "[--no-verify] SRC DST   (':' marks the guest side)")?;
            let (src, dst) = (rest[0].clone(), rest[1].clone());
            if src.starts_with(':') == dst.starts_with(':') {
                return usage("cp: exactly one of SRC and DST must be a guest path, marked with a leading ':'");
            }
            if src == ":" || dst == ":" {
                return usage("cp: ':' needs a guest path after it");
            }
            Cmd::Cp {
                src,
                dst,
                no_verify: flag("--no-verify"),
            }
        }
        "cat" => {
            n_args(1, 1, ":PATH")?;
            let path = rest[0].strip_prefix(':').unwrap_or(&rest[0]).to_string();
            if path.is_empty() {
                return usage("cat: empty path");
            }
            Cmd::Cat { path }
        }
        "fsfreeze" => {
            let action = rest.first().cloned().unwrap_or_default();
            if !matches!(action.as_str(), "freeze" | "thaw" | "status") {
                return usage("usage: qga fsfreeze freeze|thaw|status [MOUNTPOINT...]");
            }
            if action != "freeze" && rest.len() > 1 {
                return usage(format!("fsfreeze {action} takes no mountpoints"));
            }
            Cmd::Fsfreeze {
                action,
                mountpoints: rest[1..].to_vec(),
            }
        }
        "fstrim" => {
            n_args(0, 0, "[--minimum BYTES]")?;
            let minimum = match value("--minimum") {
                None => None,
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n >= 0 => Some(n),
                    _ => return usage(format!("--minimum: expected a byte count, got '{v}'")),
                },
            };
            Cmd::Fstrim { minimum }
        }
        "shutdown" => {
            n_args(0, 0, "[--mode powerdown|halt|reboot]")?;
            let mode = value("--mode");
            if let Some(m) = &mode {
                if !matches!(m.as_str(), "powerdown" | "halt" | "reboot") {
                    return usage(format!(
                        "--mode: expected powerdown, halt or reboot, got '{m}'"
                    ));
                }
            }
            Cmd::Shutdown { mode }
        }
        "time" => {
            n_args(0, 0, "[--set NS|now | --sync]")?;
            let set = match value("--set") {
                None => None,
                Some(v) if v == "now" => Some(TimeSet::Now),
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n >= 0 => Some(TimeSet::Ns(n)),
                    _ => {
                        return usage(format!(
                            "--set: expected nanoseconds since the epoch or 'now', got '{v}'"
                        ))
                    }
                },
            };
            let sync = flag("--sync");
            if sync && set.is_some() {
                return usage("time: --set and --sync exclude each other");
            }
            Cmd::Time { set, sync }
        }
        "passwd" => {
            n_args(
                1,
                1,
                "USER [--crypted]   (the password is read from the terminal or stdin)",
            )?;
            Cmd::Passwd {
                user: rest[0].clone(),
                crypted: flag("--crypted"),
            }
        }
        "ssh-keys" => {
            let action = rest.first().cloned().unwrap_or_default();
            if !matches!(action.as_str(), "list" | "add" | "remove") || rest.len() < 2 {
                return usage("usage: qga ssh-keys list|add|remove USER [KEY...] [--reset]");
            }
            if action == "list" && rest.len() > 2 {
                return usage("ssh-keys list takes only USER");
            }
            let reset = flag("--reset");
            if reset && action != "add" {
                return usage("--reset goes with ssh-keys add");
            }
            Cmd::SshKeys {
                action,
                user: rest[1].clone(),
                keys: rest[2..].to_vec(),
                reset,
            }
        }
        "stats" => {
            if let Some(bad) = rest
                .iter()
                .find(|w| !matches!(w.as_str(), "cpu" | "disk" | "load"))
            {
                return usage(format!("stats: unknown section '{bad}' (cpu, disk, load)"));
            }
            Cmd::Stats { which: rest }
        }
        "raw" => {
            n_args(1, 1, "JSON")?;
            Cmd::Raw {
                json: rest[0].clone(),
            }
        }
        other => return usage(format!("unknown command '{other}' (see qga --help)")),
    })
}
