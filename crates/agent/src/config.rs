//! The agent's configuration: qemu-ga's command line and its `[general]` key file.
//!
//! Parsing lives in [`parse`]; everything else reads the resulting [`Config`].

use std::time::Duration;

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
            Method::VirtioSerial => Some("/dev/virtio-ports/org.qemu.guest_agent.0"),
            Method::IsaSerial => Some("/dev/ttyS0"),
            Method::UnixListen | Method::VsockListen => None,
        }
    }
}

/// The effective configuration after the config file and the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `-d`: fork into the background and write the pidfile.
    pub daemonize: bool,
    /// `-m`: the channel.
    pub method: Method,
    /// `-p`: device or socket path (always set after parsing, see [`parse`]).
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            daemonize: false,
            method: Method::VirtioSerial,
            path: None,
            logfile: None,
            pidfile: "/var/run/qemu-ga.pid".into(),
            fsfreeze_hook: None,
            statedir: "/var/run".into(),
            verbose: false,
            retry_path: false,
            block_rpcs: Vec::new(),
            allow_rpcs: Vec::new(),
            fsfreeze_timeout: None,
        }
    }
}

/// What `main` should do after parsing the command line.
#[derive(Debug)]
pub enum Action {
    /// Run the agent.
    Run(Config),
    /// Print `stdout` and exit with status 0 (`--help`, `-V`, `-D`, `-b help`).
    Print(String),
}

/// A command-line or config-file error: print the message on stderr, exit 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses qemu-ga's command line (`args` without argv\[0\]) and config file.
///
/// Minimal version: the full getopt_long emulation, key file and `-D` come with the
/// configuration work; this reads the flags the test harness uses.
pub fn parse(argv0: &str, args: &[String]) -> Result<Action, ConfigError> {
    let mut c = Config::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next().cloned().ok_or_else(|| {
                ConfigError(format!("{argv0}: option requires an argument -- '{name}'"))
            })
        };
        match a.as_str() {
            "-m" | "--method" => {
                let m = val("m")?;
                c.method = Method::from_name(&m)
                    .ok_or_else(|| ConfigError(format!("unsupported channel method/type: {m}")))?;
            }
            "-p" | "--path" => c.path = Some(val("p")?),
            "-t" | "--statedir" => c.statedir = val("t")?,
            "-v" | "--verbose" => c.verbose = true,
            "-r" | "--retry-path" => c.retry_path = true,
            "-b" | "--block-rpcs" => c
                .block_rpcs
                .extend(val("b")?.split(',').rev().map(String::from)),
            "-a" | "--allow-rpcs" => c
                .allow_rpcs
                .extend(val("a")?.split(',').rev().map(String::from)),
            _ => {
                return Err(ConfigError(format!(
                    "Unknown option, try '{argv0} --help' for more information."
                )))
            }
        }
    }
    if c.path.is_none() {
        c.path = c.method.default_path().map(String::from);
    }
    if c.path.is_none() {
        return Err(ConfigError("must specify a path for this channel".into()));
    }
    Ok(Action::Run(c))
}
