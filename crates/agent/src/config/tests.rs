//! Unit tests of the command line, the config file and `-D`, against a fake environment.
//! Expected texts were taken from qemu-ga 10.0.2 (see `tests/cli.rs` for the differential
//! runs against the real binary).

use super::*;

struct FakeEnv {
    vars: Vec<(&'static str, String)>,
    activation: Result<u64, String>,
    family: Option<i32>,
}

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
    fn socket_activation(&self) -> Result<u64, String> {
        self.activation.clone()
    }
    fn socket_family(&self, _fd: i32) -> Option<i32> {
        self.family
    }
}

fn env() -> FakeEnv {
    FakeEnv {
        vars: vec![("QGA_CONF", "/nonexistent/qga-test.conf".into())],
        activation: Ok(0),
        family: None,
    }
}

fn parse_with(e: &FakeEnv, args: &[&str]) -> Parsed {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    parse_in("qemu-ga", &args, e)
}

fn run(args: &[&str]) -> Parsed {
    parse_with(&env(), args)
}

fn config(args: &[&str]) -> Config {
    match run(args).outcome {
        Ok(Action::Run(c)) => c,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn printed(args: &[&str]) -> String {
    match run(args).outcome {
        Ok(Action::Print(t)) => t,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn error(args: &[&str]) -> ConfigError {
    run(args).outcome.expect_err("must fail")
}

/// A config file in a fresh temp dir; removed with the guard.
struct ConfFile(std::path::PathBuf);

impl ConfFile {
    fn new(text: &[u8]) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("qga-conf.{}.{n}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        ConfFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const DEFAULT_DUMP: &str = "[general]\ndaemon=false\nmethod=virtio-serial\n\
path=/dev/virtio-ports/org.qemu.guest_agent.0\npidfile=/var/run/qemu-ga.pid\n\
statedir=/var/run\nverbose=false\nretry-path=false\nblock-rpcs=\nallow-rpcs=\n";

fn hint() -> String {
    "Unknown option, try 'qemu-ga --help' for more information.\n".into()
}

#[test]
fn defaults() {
    let c = config(&[]);
    assert_eq!(
        c,
        Config {
            path: Some(DEFAULT_VIRTIO_PATH.into()),
            ..Config::default()
        }
    );
    assert_eq!(printed(&["-D"]), DEFAULT_DUMP);
    assert_eq!(
        config(&["-m", "isa-serial"]).path.as_deref(),
        Some("/dev/ttyS0")
    );
}

#[test]
fn getopt_errors_are_printed_once_per_pass() {
    let p = run(&["-x", "-D"]);
    assert_eq!(
        p.stderr,
        [Diagnostic::Plain("qemu-ga: invalid option -- 'x'".into())]
    );
    let e = p.outcome.unwrap_err();
    assert_eq!(
        e.stderr,
        [Diagnostic::Plain("qemu-ga: invalid option -- 'x'".into())]
    );
    assert_eq!(e.stdout, hint());

    // The second pass stops at the first error; the first pass reported them all.
    let p = run(&["-x", "--foo", "-D"]);
    assert_eq!(p.stderr.len(), 2);
    assert_eq!(p.outcome.unwrap_err().stderr.len(), 1);

    // An option that exits first wins, but the first pass has already complained.
    let p = run(&["-V", "-x"]);
    assert_eq!(p.stderr.len(), 1);
    assert_eq!(
        p.outcome.unwrap(),
        Action::Print(format!("QEMU Guest Agent {}\n", crate::agent::VERSION))
    );

    // parse() folds both passes into the error.
    let args = vec!["--method".to_string()];
    let e = parse("qemu-ga", &args).unwrap_err();
    assert_eq!(
        e.to_string(),
        "qemu-ga: option '--method' requires an argument\n\
         qemu-ga: option '--method' requires an argument\n\
         Unknown option, try 'qemu-ga --help' for more information."
    );
}

#[test]
fn getopt_error_texts() {
    let first = |args: &[&str]| error(args).stderr[0].message().to_string();
    assert_eq!(
        first(&["-m"]),
        "qemu-ga: option requires an argument -- 'm'"
    );
    assert_eq!(
        first(&["--foo=bar"]),
        "qemu-ga: unrecognized option '--foo=bar'"
    );
    assert_eq!(
        first(&["--help=x"]),
        "qemu-ga: option '--help' doesn't allow an argument"
    );
    assert_eq!(
        first(&["--p=x"]),
        "qemu-ga: option '--p=x' is ambiguous; possibilities: '--pidfile' '--path'"
    );
    assert_eq!(
        first(&["--d"]),
        "qemu-ga: option '--d' is ambiguous; possibilities: '--dump-conf' '--daemonize'"
    );
    assert_eq!(
        first(&["--=x"]),
        "qemu-ga: option '--=x' is ambiguous; possibilities: '--help' '--version' \
         '--config' '--dump-conf' '--logfile' '--pidfile' '--fsfreeze-hook' '--verbose' \
         '--method' '--path' '--daemonize' '--block-rpcs' '--allow-rpcs' '--statedir' \
         '--retry-path'"
    );
}

#[test]
fn option_forms() {
    let c = config(&[
        "-vdmunix-listen",
        "-px",
        "--statedir=/s",
        "--log",
        "/l",
        "-r",
        "extra",
    ]);
    assert!(c.verbose && c.daemonize && c.retry_path);
    assert_eq!(c.method, Method::UnixListen);
    assert_eq!(c.path.as_deref(), Some("x"));
    assert_eq!(c.statedir, "/s");
    assert_eq!(c.logfile.as_deref(), Some("/l"));
    // -s (Windows service) is accepted and ignored.
    assert_eq!(config(&["-s", "install"]), config(&[]));
    // Last scalar wins.
    assert_eq!(config(&["-t", "/a", "-t", "/b"]).statedir, "/b");
}

#[test]
fn fsfreeze_hook_argument_must_be_attached() {
    let hook = |args: &[&str]| config(args).fsfreeze_hook;
    assert_eq!(hook(&[]), None);
    assert_eq!(hook(&["-F"]).as_deref(), Some("/etc/qemu/fsfreeze-hook"));
    assert_eq!(
        hook(&["-F", "/x"]).as_deref(),
        Some("/etc/qemu/fsfreeze-hook")
    );
    assert_eq!(hook(&["-F/x"]).as_deref(), Some("/x"));
    assert_eq!(hook(&["-vF/x"]).as_deref(), Some("/x"));
    assert_eq!(
        hook(&["--fsfreeze-hook"]).as_deref(),
        Some("/etc/qemu/fsfreeze-hook")
    );
    assert_eq!(hook(&["--fsfreeze-hook=/y"]).as_deref(), Some("/y"));
    assert_eq!(
        hook(&["--fs", "/z"]).as_deref(),
        Some("/etc/qemu/fsfreeze-hook")
    );
    assert_eq!(hook(&["--fsfreeze-hook="]).as_deref(), Some(""));
}

#[test]
fn lists_split_on_commas_and_prepend() {
    let c = config(&["-b", "a,b", "-b", "c", "--allow-rpcs=x;y"]);
    assert_eq!(c.block_rpcs, ["b", "a", "c"]);
    assert_eq!(c.allow_rpcs, ["x;y"]);
    assert!(config(&["-b", ""]).block_rpcs.is_empty());
    assert_eq!(
        config(&["-b", "a", "-b", ",,"]).block_rpcs,
        ["a", "", "", ""]
    );
    let dump = printed(&["-b", "a", "-b", ",,", "-D"]);
    assert!(dump.contains("\nblock-rpcs=a,,,\n"), "{dump}");
}

#[test]
fn rpc_help_lists_the_command_table() {
    let names: Vec<&str> = crate::commands::COMMANDS.iter().map(|c| c.name).collect();
    let expected: String = names.iter().map(|n| format!("{n}\n")).collect();
    for args in [
        ["-b", "help"],
        ["-a", "?"],
        ["--block-rpcs", "?"],
        ["--allow", "help"],
    ] {
        assert_eq!(printed(&args), expected);
    }
    assert!(expected.starts_with("guest-sync-delimited\nguest-sync\nguest-ping\n"));
    // Only a whole "help" or "?" asks for help.
    assert_eq!(config(&["-b", "help,x"]).block_rpcs, ["x", "help"]);
}

#[test]
fn method_and_path_checks() {
    for m in ["unix-listen", "vsock-listen", "bogus"] {
        for dump in [false, true] {
            let mut args = vec!["-m", m];
            if dump {
                args.push("-D");
            }
            let e = error(&args);
            assert_eq!(
                e.stderr,
                [Diagnostic::Critical(
                    "must specify a path for this channel".into()
                )]
            );
            assert_eq!(e.stdout, "");
        }
    }
    // -D shows an unknown method; running reports it like qemu-ga's channel setup.
    assert!(printed(&["-m", "bogus", "-p", "x", "-D"]).contains("\nmethod=bogus\npath=x\n"));
    let e = error(&["-m", "bogus", "-p", "x"]);
    assert_eq!(
        e.stderr,
        [
            Diagnostic::Logged("unsupported channel method/type: bogus".into()),
            Diagnostic::Logged("failed to initialize guest agent channel".into()),
            Diagnostic::Logged("error initializing guest agent".into()),
        ]
    );
}

#[test]
fn config_file_then_command_line() {
    let f = ConfFile::new(
        b"# test\n[general]\ndaemon=1\nmethod = unix-listen\npath=/from/conf\nverbose=false\n\
          retry-path=true\nblock-rpcs=a,b\nallow-rpcs=x\nstatedir=/conf/state\n\
          [other]\npath=ignored\nunknown-key=1\n",
    );
    let c = config(&["-c", f.path(), "-p", "/cli", "-v", "-b", "c,d", "-a", "y"]);
    assert!(c.daemonize, "the config's daemon stays");
    assert!(c.verbose, "verbose=false does not undo -v");
    assert!(c.retry_path);
    assert_eq!(c.method, Method::UnixListen);
    assert_eq!(c.path.as_deref(), Some("/cli"));
    assert_eq!(c.statedir, "/conf/state");
    assert_eq!(c.block_rpcs, ["b", "a", "d", "c"]);
    assert_eq!(c.allow_rpcs, ["x", "y"]);

    // $QGA_CONF is used when there is no -c; -c wins over it; the last -c wins.
    let mut e = env();
    e.vars = vec![("QGA_CONF", f.path().to_string())];
    let parsed = parse_with(&e, &["-D"]).outcome.unwrap();
    assert!(matches!(&parsed, Action::Print(t) if t.contains("path=/from/conf")));
    let parsed = parse_with(&e, &["-c", "/nonexistent/x", "-D"]);
    assert!(parsed.outcome.is_err());
    let parsed = parse_with(&e, &["-c", "/nonexistent/x", "-c", f.path(), "-D"]);
    assert!(parsed.outcome.is_ok());
}

#[test]
fn test_qga_config_case_21() {
    // tests/data/test-qga-config from QEMU; block-rpcs keeps its ';' verbatim.
    let f = ConfFile::new(
        b"[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\n\
          pidfile=/var/foo/qemu-ga.pid\nstatedir=/var/state\nverbose=true\n\
          block-rpcs=guest-ping;guest-get-time\n",
    );
    let mut e = env();
    e.vars = vec![("QGA_CONF", f.path().to_string())];
    let p = parse_with(&e, &["-D"]);
    assert!(p.stderr.is_empty());
    assert_eq!(
        p.outcome.unwrap(),
        Action::Print(
            "[general]\ndaemon=false\nmethod=virtio-serial\n\
             path=/path/to/org.qemu.guest_agent.0\npidfile=/var/foo/qemu-ga.pid\n\
             statedir=/var/state\nverbose=true\nretry-path=false\n\
             block-rpcs=guest-ping;guest-get-time\nallow-rpcs=\n"
                .into()
        )
    );
}

#[test]
fn config_file_errors() {
    let crit = |text: &[u8]| {
        let f = ConfFile::new(text);
        let p = run(&["-c", f.path(), "-D"]);
        let e = p.outcome.unwrap_err();
        let prefix = format!("error loading configuration from path: {}, ", f.path());
        let mut warnings = p.stderr;
        warnings.extend(e.stderr.iter().take(e.stderr.len() - 1).cloned());
        let last = e.stderr.last().unwrap().clone();
        let Diagnostic::Critical(msg) = last else {
            panic!("{last:?}")
        };
        (warnings, msg.strip_prefix(&prefix).unwrap().to_string())
    };
    assert_eq!(
        crit(b"[general]\nfoo\n").1,
        "Key file contains line “foo” which is not a key-value pair, group, or comment"
    );
    assert_eq!(
        crit(b"[general]\nverbose=yes\n").1,
        "Key file contains key “verbose” which has a value that cannot be interpreted."
    );
    // Several bad keys: the first error is reported, GLib warns about the others.
    let (warnings, msg) = crit(b"[general]\nmethod=a\\q\npath=\\x\nverbose=maybe\n");
    assert_eq!(
        msg,
        "Key file contains key “method” which has a value that cannot be interpreted."
    );
    assert_eq!(warnings.len(), 2);
    assert!(
        matches!(&warnings[1], Diagnostic::GlibWarning(w) if w.ends_with(
        "The overwriting error message was: Key file contains key “verbose” which has a value that cannot be interpreted."))
    );

    let e = error(&["-c", "/nonexistent/qga.conf"]);
    assert_eq!(
        e.stderr,
        [Diagnostic::Critical(
            "error loading configuration from path: /nonexistent/qga.conf, No such file or directory"
                .into()
        )]
    );
    let e = error(&["-c", "/"]);
    assert_eq!(
        e.to_string(),
        "error loading configuration from path: /, Not a regular file"
    );
    // Missing default or $QGA_CONF file: fine. Present but unreadable as a file: fatal.
    let mut env = env();
    env.vars = vec![("QGA_CONF", String::new())];
    assert!(parse_with(&env, &[]).outcome.is_ok());
    env.vars = vec![("QGA_CONF", "/".into())];
    assert!(parse_with(&env, &[]).outcome.is_err());
}

#[test]
fn dump_escapes_like_glib() {
    let out = printed(&[
        "-p",
        " a\\b\tc ",
        "-l",
        "x\ny\rz",
        "-f",
        "\tq",
        "-t",
        "\\",
        "-D",
    ]);
    assert_eq!(
        out,
        "[general]\ndaemon=false\nmethod=virtio-serial\npath=\\sa\\\\b\tc \n\
         logfile=x\\ny\\rz\npidfile=\\tq\nstatedir=\\\\\nverbose=false\nretry-path=false\n\
         block-rpcs=\nallow-rpcs=\n"
    );
    let f = ConfFile::new(b"[general]\npath=\\s\\ta\\tb\\n\\r\\\\\n");
    let out = printed(&["-c", f.path(), "-D"]);
    assert!(out.contains("\npath=\\s\\ta\tb\\n\\r\\\\\n"), "{out}");
}

#[test]
fn fsfreeze_timeout_extension() {
    assert_eq!(config(&[]).fsfreeze_timeout, None);
    assert_eq!(
        config(&["--fsfreeze-timeout=30"]).fsfreeze_timeout,
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        config(&["--fsfreeze-t", "5"]).fsfreeze_timeout,
        Some(Duration::from_secs(5))
    );
    // qemu-ga's abbreviations keep their meaning.
    assert_eq!(
        config(&["--fsfreeze"]).fsfreeze_hook.as_deref(),
        Some(DEFAULT_FSFREEZE_HOOK)
    );
    let f = ConfFile::new(b"[general]\nfsfreeze-timeout=60\n");
    assert_eq!(
        config(&["-c", f.path()]).fsfreeze_timeout,
        Some(Duration::from_secs(60))
    );
    // 0 on the command line turns the config's value off.
    assert_eq!(
        config(&["-c", f.path(), "--fsfreeze-timeout=0"]).fsfreeze_timeout,
        None
    );
    assert!(printed(&["-c", f.path(), "-D"]).ends_with("allow-rpcs=\nfsfreeze-timeout=60\n"));
    assert_eq!(
        printed(&["-c", f.path(), "--fsfreeze-timeout=0", "-D"]),
        DEFAULT_DUMP
    );
    let e = error(&["--fsfreeze-timeout=soon"]);
    assert!(matches!(&e.stderr[..], [Diagnostic::Critical(m)] if m.contains("'soon'")));
    let bad = ConfFile::new(b"[general]\nfsfreeze-timeout=-1\n");
    assert!(error(&["-c", bad.path()])
        .to_string()
        .contains("“fsfreeze-timeout”"));
}

#[test]
fn socket_activation() {
    let mut e = env();
    e.activation = Ok(1);
    e.family = Some(libc::AF_UNIX);
    let Ok(Action::Run(c)) = parse_with(&e, &["-m", "isa-serial", "-p", "/q"]).outcome else {
        panic!()
    };
    assert_eq!(
        (c.method, c.path, c.listen_fd),
        (Method::UnixListen, None, Some(3))
    );
    let Ok(Action::Print(dump)) = parse_with(&e, &["-D"]).outcome else {
        panic!()
    };
    assert!(dump.contains("method=unix-listen\npidfile="), "{dump}");
    e.family = Some(libc::AF_VSOCK);
    let Ok(Action::Run(c)) = parse_with(&e, &[]).outcome else {
        panic!()
    };
    assert_eq!(c.method, Method::VsockListen);

    e.family = Some(libc::AF_INET);
    let err = parse_with(&e, &["-D"]).outcome.unwrap_err();
    assert_eq!(
        err.stderr,
        [Diagnostic::Critical("unsupported listen fd type".into())]
    );
    e.activation = Ok(2);
    let err = parse_with(&e, &["-D"]).outcome.unwrap_err();
    assert_eq!(
        err.stderr,
        [Diagnostic::Critical(
            "qemu-ga only supports listening on one socket".into()
        )]
    );
    e.activation = Err("Socket activation failed: invalid file descriptor fd = 3: x".into());
    let err = parse_with(&e, &["-D"]).outcome.unwrap_err();
    assert!(matches!(&err.stderr[..], [Diagnostic::Plain(m)] if m.starts_with("Socket")));
}

#[test]
fn posixly_correct_stops_at_the_first_non_option() {
    let mut e = env();
    e.vars.push(("POSIXLY_CORRECT", "1".into()));
    let Ok(Action::Run(c)) = parse_with(&e, &["-v", "x", "-d"]).outcome else {
        panic!()
    };
    assert!(c.verbose && !c.daemonize);
    assert!(config(&["-v", "x", "-d"]).daemonize);
}

#[test]
fn diagnostics_render_like_glib_and_qemu_ga() {
    let crit = Diagnostic::Critical("line “foo” bad".into());
    assert_eq!(
        crit.render(42, "06:49:42.134", false),
        "\n** (process:42): CRITICAL **: 06:49:42.134: line ?foo? bad\n"
    );
    assert_eq!(
        crit.render(42, "06:49:42.134", true),
        "\n** (process:42): \x1b[1;35mCRITICAL\x1b[0m **: \x1b[34m06:49:42.134\x1b[0m: line ?foo? bad\n"
    );
    assert_eq!(
        Diagnostic::GlibWarning("w".into()).render(7, "00:00:00.000", false),
        "\n(process:7): GLib-WARNING **: 00:00:00.000: w\n"
    );
    assert_eq!(Diagnostic::Plain("p".into()).render(1, "", false), "p\n");
    let logged = Diagnostic::Logged("m".into()).render(1, "", false);
    let (stamp, rest) = logged.split_once(": ").unwrap();
    assert_eq!(rest, "critical: m\n");
    let (secs, usecs) = stamp.split_once('.').unwrap();
    assert!(secs.parse::<u64>().is_ok() && usecs.len() == 6, "{logged}");
}

#[test]
fn help_mentions_every_option_and_the_extension() {
    let help = printed(&["--he"]);
    assert!(help.starts_with("Usage: qemu-ga [-m <method> -p <path>] [<options>]\n"));
    for o in LONG.iter().chain(EXTENSIONS) {
        assert!(help.contains(&format!("--{}", o.name)), "--{}", o.name);
    }
    for o in SHORT.iter().filter(|o| o.ch != 's') {
        assert!(help.contains(&format!("-{}", o.ch)), "-{}", o.ch);
    }
    assert!(
        help.lines().all(|l| l.chars().count() <= 80),
        "lines fit a terminal"
    );
    assert_eq!(printed(&["-D", "-h"]), help);
}
