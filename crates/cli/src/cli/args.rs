//! The command line: global options, one subcommand, its arguments. Hand-rolled (no
//! parser crate): the grammar is small, and `exec -- PROG ARGS...` needs everything
//! after the program passed through untouched.

use std::time::Duration;

pub use super::command::{Cmd, Query, TimeSet};
use super::help::HELP;

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

pub(super) fn usage<T>(msg: impl Into<String>) -> Result<T, Usage> {
    Err(Usage(msg.into()))
}

pub(super) fn seconds(opt: &str, v: &str) -> Result<Duration, Usage> {
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
    let cmd = super::command::build(&sub, rest, opts)?;
    Ok(Parsed::Run(Args {
        sockets,
        domains,
        timeout: timeout.unwrap_or(qga_cli::DEFAULT_TIMEOUT),
        json,
        cmd,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, Usage> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&v, None)? {
            Parsed::Run(a) => Ok(a),
            Parsed::Print(_) => panic!("printed"),
        }
    }

    #[test]
    fn globals_anywhere_and_env_socket() {
        let a = p(&["ping", "--socket", "/s", "--json", "-t", "2.5"]).unwrap();
        assert_eq!(a.sockets, ["/s"]);
        assert!(a.json);
        assert_eq!(a.timeout, Duration::from_millis(2500));
        assert_eq!(a.cmd, Cmd::Ping);
        let v = vec!["info".to_string()];
        let Parsed::Run(a) = parse(&v, Some("/env.sock".into())).unwrap() else {
            panic!()
        };
        assert_eq!(a.sockets, ["/env.sock"]);
        let a = p(&["--socket=/a", "-s", "/b", "-d", "vm", "info"]).unwrap();
        assert_eq!(
            (a.sockets.len(), a.domains.as_slice()),
            (2, &["vm".to_string()][..])
        );
        assert!(p(&["ping"]).unwrap_err().0.contains("no agent given"));
        assert!(
            matches!(parse(&["--help".into()], None), Ok(Parsed::Print(t)) if t.contains("Exit status"))
        );
    }

    #[test]
    fn exec_keeps_program_arguments() {
        let a = p(&[
            "-s",
            "/s",
            "exec",
            "--env",
            "A=1",
            "-e",
            "B=2",
            "--timeout",
            "30",
            "--stdin",
            "-",
            "ls",
            "-l",
            "--json",
            "--",
            "x",
        ])
        .unwrap();
        assert_eq!(
            a.cmd,
            Cmd::Exec {
                argv: vec![
                    "ls".into(),
                    "-l".into(),
                    "--json".into(),
                    "--".into(),
                    "x".into()
                ],
                env: vec!["A=1".into(), "B=2".into()],
                stdin: Some("-".into()),
                limit: Some(Duration::from_secs(30)),
            }
        );
        assert!(!a.json, "--json after the program belongs to it");
        assert_eq!(
            a.timeout,
            qga_cli::DEFAULT_TIMEOUT,
            "exec --timeout is the program's limit"
        );
        let a = p(&["-s", "/s", "exec", "--", "sh", "-c", "exit 3"]).unwrap();
        assert!(matches!(a.cmd, Cmd::Exec { ref argv, .. } if argv == &["sh", "-c", "exit 3"]));
        assert!(p(&["-s", "/s", "exec"]).is_err());
        assert!(p(&["-s", "/s", "exec", "--env", "NOEQUALS", "ls"])
            .unwrap_err()
            .0
            .contains("K=V"));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["-s", "/s", "cp", "a", "b"][..],
            &["-s", "/s", "cp", ":a", ":b"],
            &["-s", "/s", "cp", "a", ":"],
            &["-s", "/s", "fsfreeze", "melt"],
            &["-s", "/s", "fstrim", "--minimum", "-1"],
            &["-s", "/s", "passwd"],
            &["-s", "/s", "passwd", "u", "pw"],
            &["-s", "/s", "ssh-keys", "list"],
            &["-s", "/s", "stats", "mem"],
            &["-s", "/s", "ping", "--bogus"],
            &["-s", "/s", "frobnicate"],
            &["-s", "/s", "-t", "0", "ping"],
            &["--bogus", "ping"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subcommand_arguments() {
        let a = p(&["-s", "/s", "cp", "--no-verify", "./x", ":/tmp/"]).unwrap();
        assert_eq!(
            a.cmd,
            Cmd::Cp {
                src: "./x".into(),
                dst: ":/tmp/".into(),
                no_verify: true
            }
        );
        assert_eq!(
            p(&["-s", "/s", "cat", ":/etc/hosts"]).unwrap().cmd,
            Cmd::Cat {
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(
            p(&["-s", "/s", "ssh-keys", "add", "root", "k1", "k2", "--reset"])
                .unwrap()
                .cmd,
            Cmd::SshKeys {
                action: "add".into(),
                user: "root".into(),
                keys: vec!["k1".into(), "k2".into()],
                reset: true
            }
        );
        assert_eq!(
            p(&["-s", "/s", "time", "--set=now"]).unwrap().cmd,
            Cmd::Time {
                set: Some(TimeSet::Now),
                sync: false
            }
        );
        assert_eq!(
            p(&["-s", "/s", "stats", "load"]).unwrap().cmd,
            Cmd::Stats {
                which: vec!["load".into()]
            }
        );
        assert_eq!(
            p(&["-s", "/s", "raw", r#"{"execute":"guest-ping"}"#])
                .unwrap()
                .cmd,
            Cmd::Raw {
                json: r#"{"execute":"guest-ping"}"#.into()
            }
        );
    }
}
