//! The agent's configuration: qemu-ga 10's command line and its `[general]` key file,
//! with the same precedence, defaults, `--dump-conf` output and error texts.
//!
//! The order is qemu-ga's: a first getopt pass only looks for `-c` (printing getopt's
//! complaints, which therefore appear twice); the config file is loaded; a second pass
//! applies every option in order, so the command line wins for scalars and appends to
//! the config file's lists; then defaults, socket activation, the path check, and
//! `-D`. [`parse_in`] does all of it without side effects beyond reading the config file
//! and the [`Environment`]; [`from_command_line`] is the binary's entry and prints.

mod diagnostic;
mod file;
mod getopt;
mod help;
mod keyfile;

use std::time::Duration;

pub use crate::policy::Profile;
pub use diagnostic::{ConfigError, Diagnostic};
use getopt::{Event, HasArg, LongOpt, ShortOpt, Spec};

/// How the agent reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A virtio-serial port (the default).
    VirtioSerial,
    /// An emulated 16550 serial port.
    IsaSerial,
    /// A listening unix socket (one client at a time).
    UnixListen,
    /// A listening vsock socket, `<cid>:<port>`.
    VsockListen,
}

impl Method {
    /// The spelling used by `-m` and the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::VirtioSerial => "virtio-serial",
            Method::IsaSerial => "isa-serial",
            Method::UnixListen => "unix-listen",
            Method::VsockListen => "vsock-listen",
        }
    }

    /// The method with this spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        [
            Method::VirtioSerial,
            Method::IsaSerial,
            Method::UnixListen,
            Method::VsockListen,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    /// The default device path, for the methods that have one.
    pub fn default_path(self) -> Option<&'static str> {
        match self {
            Method::VirtioSerial => Some(DEFAULT_VIRTIO_PATH),
            Method::IsaSerial => Some(DEFAULT_SERIAL_PATH),
            Method::UnixListen | Method::VsockListen => None,
        }
    }
}

/// Default config file (`<sysconfdir>/qemu/qemu-ga.conf`), unless `$QGA_CONF` is set.
pub const DEFAULT_CONFIG: &str = "/etc/qemu/qemu-ga.conf";
/// Default pidfile.
pub const DEFAULT_PIDFILE: &str = "/var/run/qemu-ga.pid";
/// Default state directory.
pub const DEFAULT_STATEDIR: &str = "/var/run";
/// The hook bare `-F` enables.
pub const DEFAULT_FSFREEZE_HOOK: &str = "/etc/qemu/fsfreeze-hook";
/// Default path of the virtio-serial method.
pub const DEFAULT_VIRTIO_PATH: &str = "/dev/virtio-ports/org.qemu.guest_agent.0";
/// Default path of the isa-serial method.
pub const DEFAULT_SERIAL_PATH: &str = "/dev/ttyS0";

/// The effective configuration after the config file and the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `-d`: fork into the background and write the pidfile.
    pub daemonize: bool,
    /// `-m`: the channel.
    pub method: Method,
    /// `-p`: device or socket path. Set after parsing, except under socket activation
    /// ([`Config::listen_fd`]).
    pub path: Option<String>,
    /// `-l`: log file instead of stderr.
    pub logfile: Option<String>,
    /// `-f`: pidfile, written only when daemonizing.
    pub pidfile: String,
    /// `-F`: the fsfreeze hook, when enabled.
    pub fsfreeze_hook: Option<String>,
    /// `-t`: directory of `qga.state` and the `qga.state.isfrozen` marker.
    pub statedir: String,
    /// `-v`: log every level.
    pub verbose: bool,
    /// `-r`: keep retrying the channel every 5 s.
    pub retry_path: bool,
    /// `-b`: commands to disable, in qemu-ga's stored order.
    pub block_rpcs: Vec<String>,
    /// `-a`: the only commands to enable, in qemu-ga's stored order.
    pub allow_rpcs: Vec<String>,
    /// Extension: thaw automatically when the guest has stayed frozen this long.
    pub fsfreeze_timeout: Option<Duration>,
    /// Extension: the command profile, applied before the allow and block lists.
    pub profile: Profile,
    /// Extension: drop the capabilities no enabled command needs (and more, see
    /// [`crate::policy::hardening_plan`]).
    pub harden: bool,
    /// Socket activation: the listening socket systemd passed (fd 3), to serve instead of
    /// opening `path`; `method` then says which kind it is.
    pub listen_fd: Option<i32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            daemonize: false,
            method: Method::VirtioSerial,
            path: None,
            logfile: None,
            pidfile: DEFAULT_PIDFILE.into(),
            fsfreeze_hook: None,
            statedir: DEFAULT_STATEDIR.into(),
            verbose: false,
            retry_path: false,
            block_rpcs: Vec::new(),
            allow_rpcs: Vec::new(),
            fsfreeze_timeout: None,
            profile: Profile::Full,
            harden: false,
            listen_fd: None,
        }
    }
}

/// What `main` should do after parsing the command line.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Run the agent.
    Run(Config),
    /// Print `stdout` and exit with status 0 (`--help`, `-V`, `-D`, `-b help`).
    Print(String),
}

/// The full result of parsing: what to print on stderr first (getopt's first-pass
/// complaints, which qemu-ga prints even when an option like `-V` then exits 0), then
/// what to do.
#[derive(Debug)]
pub struct Parsed {
    /// Printed on stderr before acting on `outcome`.
    pub stderr: Vec<Diagnostic>,
    /// The action, or the error to report with exit status 1.
    pub outcome: Result<Action, ConfigError>,
}

/// What parsing reads from the process besides the config file.
pub trait Environment {
    /// An environment variable (`QGA_CONF`, `POSIXLY_CORRECT`).
    fn var(&self, name: &str) -> Option<String>;
    /// systemd socket activation: the number of sockets passed to this process (0 when
    /// not activated), or the `error_report` text when one of them is not a descriptor.
    fn socket_activation(&self) -> Result<u64, String>;
    /// The address family of the socket on `fd`, if it is one.
    fn socket_family(&self, fd: i32) -> Option<i32>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
    fn socket_activation(&self) -> Result<u64, String> {
        crate::sys::daemon::socket_activation()
    }
    fn socket_family(&self, fd: i32) -> Option<i32> {
        crate::sys::daemon::socket_family(fd)
    }
}

/// The binary's entry: parses this process's command line and configuration, prints what
/// qemu-ga prints, and returns the configuration to run, or the status to exit with
/// (0 after `--help` and the like, 1 after an error).
pub fn from_command_line() -> Result<Config, u8> {
    use std::io::Write;
    let mut argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let argv0 = argv.next().unwrap_or_else(|| "qemu-ga".into());
    let args: Vec<String> = argv.collect();
    let parsed = parse_in(&argv0, &args, &ProcessEnv);
    parsed.stderr.iter().for_each(Diagnostic::emit);
    match parsed.outcome {
        Ok(Action::Run(config)) => Ok(config),
        Ok(Action::Print(text)) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            Err(0)
        }
        Err(e) => {
            e.stderr.iter().for_each(Diagnostic::emit);
            let mut out = std::io::stdout().lock();
            let _ = out
                .write_all(e.stdout.as_bytes())
                .and_then(|()| out.flush());
            Err(1)
        }
    }
}

/// Parses qemu-ga's command line (`args` without argv\[0\]) and config file, in this
/// process's environment. On an error, the first-pass diagnostics are included in it.
pub fn parse(argv0: &str, args: &[String]) -> Result<Action, ConfigError> {
    let parsed = parse_in(argv0, args, &ProcessEnv);
    parsed.outcome.map_err(|mut e| {
        let mut stderr = parsed.stderr;
        stderr.append(&mut e.stderr);
        ConfigError { stderr, ..e }
    })
}

/// The options, named after qemu-ga's `getopt_long` return values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Help,
    Version,
    Config,
    DumpConf,
    Logfile,
    Pidfile,
    FsfreezeHook,
    Verbose,
    Method,
    Path,
    Daemonize,
    BlockRpcs,
    AllowRpcs,
    /// `-s`: Windows service commands; accepted and ignored on Linux, as qemu-ga does.
    Service,
    Statedir,
    RetryPath,
    FsfreezeTimeout,
    Profile,
    Harden,
}

const fn short(ch: char, has_arg: HasArg, val: Flag) -> ShortOpt<Flag> {
    ShortOpt { ch, has_arg, val }
}

const fn long(name: &'static str, has_arg: HasArg, val: Flag) -> LongOpt<Flag> {
    LongOpt { name, has_arg, val }
}

/// `hVvdc:m:p:l:f:F::b:a:s:t:Dr`
const SHORT: &[ShortOpt<Flag>] = &[
    short('h', HasArg::No, Flag::Help),
    short('V', HasArg::No, Flag::Version),
    short('v', HasArg::No, Flag::Verbose),
    short('d', HasArg::No, Flag::Daemonize),
    short('c', HasArg::Required, Flag::Config),
    short('m', HasArg::Required, Flag::Method),
    short('p', HasArg::Required, Flag::Path),
    short('l', HasArg::Required, Flag::Logfile),
    short('f', HasArg::Required, Flag::Pidfile),
    short('F', HasArg::Optional, Flag::FsfreezeHook),
    short('b', HasArg::Required, Flag::BlockRpcs),
    short('a', HasArg::Required, Flag::AllowRpcs),
    short('s', HasArg::Required, Flag::Service),
    short('t', HasArg::Required, Flag::Statedir),
    short('D', HasArg::No, Flag::DumpConf),
    short('r', HasArg::No, Flag::RetryPath),
];

/// qemu-ga's long options on Linux, in its table order (ambiguity messages list them so).
const LONG: &[LongOpt<Flag>] = &[
    long("help", HasArg::No, Flag::Help),
    long("version", HasArg::No, Flag::Version),
    long("config", HasArg::Required, Flag::Config),
    long("dump-conf", HasArg::No, Flag::DumpConf),
    long("logfile", HasArg::Required, Flag::Logfile),
    long("pidfile", HasArg::Required, Flag::Pidfile),
    long("fsfreeze-hook", HasArg::Optional, Flag::FsfreezeHook),
    long("verbose", HasArg::No, Flag::Verbose),
    long("method", HasArg::Required, Flag::Method),
    long("path", HasArg::Required, Flag::Path),
    long("daemonize", HasArg::No, Flag::Daemonize),
    long("block-rpcs", HasArg::Required, Flag::BlockRpcs),
    long("allow-rpcs", HasArg::Required, Flag::AllowRpcs),
    long("statedir", HasArg::Required, Flag::Statedir),
    long("retry-path", HasArg::No, Flag::RetryPath),
];

/// Our extensions, matched only when no qemu-ga option does.
const EXTENSIONS: &[LongOpt<Flag>] = &[
    long("fsfreeze-timeout", HasArg::Required, Flag::FsfreezeTimeout),
    long("profile", HasArg::Required, Flag::Profile),
    long("harden", HasArg::No, Flag::Harden),
];

/// qemu-ga's `GAConfig` while parsing: strings as given, defaults applied at the end.
#[derive(Debug, Default)]
struct Settings {
    daemonize: bool,
    method: Option<String>,
    path: Option<String>,
    logfile: Option<String>,
    pidfile: Option<String>,
    fsfreeze_hook: Option<String>,
    statedir: Option<String>,
    verbose: bool,
    retry_path: bool,
    block_rpcs: Vec<String>,
    allow_rpcs: Vec<String>,
    dumpconf: bool,
    fsfreeze_timeout: Option<u32>,
    profile: Option<Profile>,
    harden: bool,
}

/// qemu-ga's `split_list`: split on `,` only, pieces prepended (so reversed).
fn split_list(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(',')
        .filter(move |_| !s.is_empty())
        .rev()
        .map(String::from)
}

/// Parses everything; see the module documentation for the order of events.
pub fn parse_in(argv0: &str, args: &[String], env: &dyn Environment) -> Parsed {
    let spec = Spec {
        short: SHORT,
        long: LONG,
        extensions: EXTENSIONS,
    };
    let events = getopt::scan(argv0, args, &spec, env.var("POSIXLY_CORRECT").is_some());

    // First pass: getopt complains, and the last -c wins.
    let mut stderr = Vec::new();
    let mut confpath = None;
    for ev in &events {
        match ev {
            Event::Error(msg) => stderr.push(Diagnostic::Plain(msg.clone())),
            Event::Opt(Flag::Config, path) => confpath = path.clone(),
            Event::Opt(..) => {}
        }
    }
    let required = confpath.is_some();
    let confpath = confpath
        .or_else(|| env.var("QGA_CONF"))
        .unwrap_or_else(|| DEFAULT_CONFIG.into());

    let mut s = Settings::default();
    let outcome = file::load_config(&mut s, &confpath, required, &mut stderr)
        .and_then(|()| apply_options(&mut s, argv0, &events))
        .and_then(|done| match done {
            Some(action) => Ok(action),
            None => finish(s, env),
        });
    Parsed { stderr, outcome }
}

/// The second pass. `Some` when an option ends the program (`-h`, `-V`, `-b help`).
fn apply_options(
    s: &mut Settings,
    argv0: &str,
    events: &[Event<Flag>],
) -> Result<Option<Action>, ConfigError> {
    for ev in events {
        let (flag, arg) = match ev {
            Event::Error(msg) => {
                return Err(ConfigError {
                    stderr: vec![Diagnostic::Plain(msg.clone())],
                    stdout: format!("Unknown option, try '{argv0} --help' for more information.\n"),
                })
            }
            Event::Opt(flag, arg) => (*flag, arg.clone()),
        };
        let value = || arg.clone().unwrap_or_default();
        match flag {
            Flag::Help => return Ok(Some(Action::Print(help::usage(argv0)))),
            Flag::Version => {
                let version = format!("QEMU Guest Agent {}\n", crate::agent::VERSION);
                return Ok(Some(Action::Print(version)));
            }
            Flag::Config | Flag::Service => {}
            Flag::DumpConf => s.dumpconf = true,
            Flag::Logfile => s.logfile = Some(value()),
            Flag::Pidfile => s.pidfile = Some(value()),
            Flag::FsfreezeHook => {
                s.fsfreeze_hook = Some(arg.unwrap_or_else(|| DEFAULT_FSFREEZE_HOOK.into()))
            }
            Flag::Verbose => s.verbose = true,
            Flag::Method => s.method = Some(value()),
            Flag::Path => s.path = Some(value()),
            Flag::Daemonize => s.daemonize = true,
            Flag::Statedir => s.statedir = Some(value()),
            Flag::RetryPath => s.retry_path = true,
            Flag::BlockRpcs | Flag::AllowRpcs => {
                let v = value();
                if v == "help" || v == "?" {
                    return Ok(Some(Action::Print(command_names())));
                }
                let list = if flag == Flag::BlockRpcs {
                    &mut s.block_rpcs
                } else {
                    &mut s.allow_rpcs
                };
                list.extend(split_list(&v));
            }
            Flag::FsfreezeTimeout => {
                let v = value();
                s.fsfreeze_timeout = Some(parse_seconds(&v).ok_or_else(|| {
                    ConfigError::critical(format!(
                        "invalid value for --fsfreeze-timeout: '{v}' \
                         (expected whole seconds up to 4294967295; 0 turns it off)"
                    ))
                })?);
            }
            Flag::Profile => {
                let v = value();
                if v == "help" || v == "?" {
                    return Ok(Some(Action::Print(crate::policy::profiles_listing())));
                }
                s.profile = Some(Profile::from_name(&v).ok_or_else(|| {
                    let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
                    ConfigError::critical(format!(
                        "invalid value for --profile: '{v}' (expected {}, or help)",
                        names.join(", ")
                    ))
                })?);
            }
            Flag::Harden => s.harden = true,
        }
    }
    Ok(None)
}

/// Every command name, one per line, in registration order (`-b help`).
fn command_names() -> String {
    crate::commands::COMMANDS
        .iter()
        .map(|c| format!("{}\n", c.name))
        .collect()
}

/// Seconds for the fsfreeze timeout: decimal digits (blanks around them allowed).
fn parse_seconds(v: &str) -> Option<u32> {
    let v = v.trim_matches(|c: char| c.is_ascii_whitespace());
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Defaults, socket activation, the path check, then `-D` or the final [`Config`].
fn finish(mut s: Settings, env: &dyn Environment) -> Result<Action, ConfigError> {
    let pidfile = s.pidfile.take().unwrap_or_else(|| DEFAULT_PIDFILE.into());
    let statedir = s.statedir.take().unwrap_or_else(|| DEFAULT_STATEDIR.into());
    let mut method = s.method.take().unwrap_or_else(|| "virtio-serial".into());
    let mut listen_fd = None;
    match env.socket_activation() {
        Err(msg) => {
            return Err(ConfigError {
                stderr: vec![Diagnostic::Plain(msg)],
                stdout: String::new(),
            })
        }
        Ok(n) if n > 1 => {
            return Err(ConfigError::critical(
                "qemu-ga only supports listening on one socket",
            ))
        }
        Ok(1) => {
            let fd = crate::sys::daemon::FIRST_LISTEN_FD;
            method = match env.socket_family(fd) {
                Some(libc::AF_UNIX) => "unix-listen".into(),
                Some(libc::AF_VSOCK) => "vsock-listen".into(),
                _ => return Err(ConfigError::critical("unsupported listen fd type")),
            };
            s.path = None;
            listen_fd = Some(fd);
        }
        Ok(_) => {
            if s.path.is_none() {
                s.path = match method.as_str() {
                    "virtio-serial" => Some(DEFAULT_VIRTIO_PATH.into()),
                    "isa-serial" => Some(DEFAULT_SERIAL_PATH.into()),
                    _ => {
                        return Err(ConfigError::critical(
                            "must specify a path for this channel",
                        ))
                    }
                };
            }
        }
    }
    if s.dumpconf {
        return Ok(Action::Print(file::dump(&s, &method, &pidfile, &statedir)));
    }
    let Some(m) = Method::from_name(&method) else {
        // qemu-ga finds out when it opens the channel, after setting up its logger.
        return Err(ConfigError {
            stderr: [
                format!("unsupported channel method/type: {method}"),
                "failed to initialize guest agent channel".into(),
                "error initializing guest agent".into(),
            ]
            .into_iter()
            .map(Diagnostic::Logged)
            .collect(),
            stdout: String::new(),
        });
    };
    Ok(Action::Run(Config {
        daemonize: s.daemonize,
        method: m,
        path: s.path,
        logfile: s.logfile,
        pidfile,
        fsfreeze_hook: s.fsfreeze_hook,
        statedir,
        verbose: s.verbose,
        retry_path: s.retry_path,
        block_rpcs: s.block_rpcs,
        allow_rpcs: s.allow_rpcs,
        fsfreeze_timeout: s
            .fsfreeze_timeout
            .filter(|&t| t > 0)
            .map(|t| Duration::from_secs(u64::from(t))),
        profile: s.profile.unwrap_or_default(),
        harden: s.harden,
        listen_fd,
    }))
}

#[cfg(test)]
mod tests;
