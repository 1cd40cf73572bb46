//! The command line: global options, one subcommand, its arguments. Hand-rolled (no
//! parser crate): the grammar is small, and `exec -- PROG ARGS...` needs everything
//! after the program passed through untouched.

use std::time::Duration;

/// `qga --help`.
pub const HELP: &str = "\
qga: talk to a QEMU guest agent from the host

Usage: qga [OPTIONS] COMMAND [ARGS...]

Where (one or more; several, or a glob, run COMMAND on every guest at once):
  -s, --socket PATH|GLOB   agent socket (QEMU's org.qemu.guest_agent.0 chardev, or
                           qga-agent/qemu-ga -m unix-listen); default $QGA_SOCKET;
                           a glob like '/run/qga/*.sock' expands to every match
  -d, --libvirt DOMAIN     go through libvirt (virsh qemu-agent-command)
Options:
  -t, --timeout SECONDS    time allowed for each reply (default 10)
      --json               print exactly one JSON document on stdout
  -h, --help               this help;  -V, --version: the version

Commands:
  ping                     is the agent alive?
  info                     agent version and its enabled/disabled commands
  exec [--stdin FILE|-] [--env K=V]... [--timeout S] [--] PROG [ARGS...]
                           run PROG in the guest; print its stdout/stderr here and
                           exit with its status (128+N if killed by signal N).
                           --env replaces the guest environment (PATH defaults to
                           the usual dirs); --timeout: give up waiting after S s
  cp [--no-verify] SRC DST copy a file; ':' marks the guest side, e.g.
                           qga cp ./disk.img :/tmp/disk.img;  qga cp :/etc/hosts .
                           Checked end to end (size, and sha256 after an upload).
                           Several guests: DST may contain {guest} for downloads
  cat :PATH                print a guest file
  fsfreeze freeze|thaw|status [MOUNTPOINT...]
  fstrim [--minimum BYTES]
  shutdown [--mode powerdown|halt|reboot]
  time [--set NS|now | --sync]   show the guest clock; set it (ns since the epoch,
                           or this host's time); --sync: from the guest's RTC
  passwd USER [--crypted]  set a password, read from the terminal (no echo) or
                           from stdin; never from the command line
  ssh-keys list|add|remove USER [KEY...] [--reset]
                           keys from the arguments, or one per line on stdin
  ifaddr | fsinfo | disks | vcpus | osinfo | users
  stats [cpu|disk|load]    CPU times, disk I/O counters, load average
  raw JSON                 send a request as is; print the reply as received

Exit status:
  0    success
  1    the guest command failed (error reply, disabled or unknown command,
       failed check after a copy, local file problem)
  2    usage error
  3    connection problem: no socket, nothing listening, no answer, timeout
  N    exec: the guest program's exit status (128+signal when killed)
  With several guests: 0 if all succeeded, else the highest status of any.
";

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

/// The whole command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// `--socket` values (paths or globs).
    pub sockets: Vec<String>,
    /// `--libvirt` domains.
    pub domains: Vec<String>,
    /// Per-reply timeout.
    pub timeout: Duration,
    /// `--json`.
    pub json: bool,
    /// The subcommand.
    pub cmd: Cmd,
}

/// What parsing decided.
#[derive(Debug)]
pub enum Parsed {
    /// Run this.
    Run(Args),
    /// Print this and exit 0 (help, version).
    Print(String),
}

/// A usage error (exit 2).
#[derive(Debug, PartialEq)]
pub struct Usage(pub String);

fn usage<T>(msg: impl Into<String>) -> Result<T, Usage> {
    Err(Usage(msg.into()))
}

fn seconds(opt: &str, v: &str) -> Result<Duration, Usage> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => usage(format!(
            "{opt}: expected a positive number of seconds, got '{v}'"
        )),
    }
}

/// Splits `--opt=value`.
fn split_eq(a: &str) -> (&str, Option<&str>) {
    match a.split_once('=') {
        Some((o, v)) if o.starts_with("--") => (o, Some(v)),
        _ => (a, None),
    }
}

/// Parses argv (without the program name). `env_socket` is `$QGA_SOCKET`.
pub fn parse(argv: &[String], env_socket: Option<String>) -> Result<Parsed, Usage> {
    let mut sockets = Vec::new();
    let mut domains = Vec::new();
    let mut timeout = None;
    let mut json = false;
    let mut sub: Option<String> = None;
    let mut rest: Vec<String> = Vec::new();
    let mut opts: Vec<(String, Option<String>)> = Vec::new();
    let mut it = argv.iter().map(String::as_str).peekable();
    let mut after_dashdash = false;

    // Options that take a value: the global ones, and some per subcommand.
    let takes_value = |sub: Option<&str>, o: &str| -> bool {
        matches!(
            o,
            "-s" | "--socket" | "-d" | "--libvirt" | "-t" | "--timeout"
        ) || matches!(
            (sub, o),
            (Some("exec"), "--stdin" | "--env" | "-e")
                | (Some("fstrim"), "--minimum")
                | (Some("shutdown"), "--mode")
                | (Some("time"), "--set")
        )
    };

    while let Some(a) = it.next() {
        if after_dashdash {
            rest.push(a.to_string());
            continue;
        }
        // After exec's program, everything belongs to the program.
        if sub.as_deref() == Some("exec") && !rest.is_empty() {
            rest.push(a.to_string());
            continue;
        }
        if a == "--" {
            after_dashdash = true;
            continue;
        }
        if a.starts_with('-') && a.len() > 1 {
            let (o, inline) = split_eq(a);
            match o {
                "-h" | "--help" => return Ok(Parsed::Print(HELP.to_string())),
                "-V" | "--version" => {
                    return Ok(Parsed::Print(format!(
                        "qga {}\n",
                        env!("CARGO_PKG_VERSION")
                    )))
                }
                "--json" => {
                    json = true;
                    continue;
                }
                _ => {}
            }
            let value = if takes_value(sub.as_deref(), o) {
                match inline
                    .map(str::to_string)
                    .or_else(|| it.next().map(str::to_string))
                {
                    Some(v) => Some(v),
                    None => return usage(format!("{o} needs a value")),
                }
            } else if inline.is_some() {
                return usage(format!("{o} takes no value"));
            } else {
                None
            };
            match (o, value) {
                ("-s" | "--socket", Some(v)) => sockets.push(v),
                ("-d" | "--libvirt", Some(v)) => domains.push(v),
                ("-t", Some(v)) => timeout = Some(seconds(o, &v)?),
                ("--timeout", Some(v)) if sub.as_deref() != Some("exec") => {
                    timeout = Some(seconds(o, &v)?)
                }
                (o, v) => {
                    if sub.is_none() {
                        return usage(format!("unknown option {o} (see qga --help)"));
                    }
                    opts.push((o.to_string(), v));
                }
            }
            continue;
        }
        if sub.is_none() {
            sub = Some(a.to_string());
        } else {
            rest.push(a.to_string());
        }
    }
    let Some(sub) = sub else {
        return usage("no command given (see qga --help)");
    };
    if sockets.is_empty() && domains.is_empty() {
        if let Some(s) = env_socket.filter(|s| !s.is_empty()) {
            sockets.push(s);
        } else {
            return usage("no agent given: use --socket PATH, --libvirt DOMAIN or $QGA_SOCKET");
        }
    }
    let cmd = build(&sub, rest, opts)?;
    Ok(Parsed::Run(Args {
        sockets,
        domains,
        timeout: timeout.unwrap_or(qga_cli::DEFAULT_TIMEOUT),
        json,
        cmd,
    }))
}

fn build(sub: &str, rest: Vec<String>, opts: Vec<(String, Option<String>)>) -> Result<Cmd, Usage> {
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
