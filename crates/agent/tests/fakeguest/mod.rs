//! A fake guest for the state-changing commands: an in-process `Agent` whose power and
//! hotplug environments point only into a temporary directory (fake `/sbin`, fake
//! PATH programs that log their arguments, fake `/sys/power/state`, fake clock,
//! temporary sysfs trees), driven through the real dispatcher. The ssh commands keep
//! the system's user database: send them only for users that do not exist (the
//! §8.3 cases with a fake user database are unit tests in `commands/ssh.rs`).
#![allow(dead_code)]

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::TempDir;
use qga_agent::agent::Agent;
use qga_agent::commands::hotplug::SysfsRoots;
use qga_agent::commands::power::PowerEnv;
use qga_agent::config::Config;
use qga_agent::log::Logger;
use qga_agent::sys::clock::Clock;
use qga_proto::{Dict, Value};

/// A clock that records what it was asked and answers with a chosen errno.
#[derive(Clone, Default)]
pub struct FakeClock {
    pub calls: Arc<Mutex<Vec<(i64, i64)>>>,
    pub fail: Option<i32>,
}

impl Clock for FakeClock {
    fn set_time(&self, sec: i64, usec: i64) -> io::Result<()> {
        self.calls.lock().unwrap().push((sec, usec));
        match self.fail {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

/// A log sink the test can read back.
#[derive(Clone, Default)]
pub struct SharedLog(pub Arc<Mutex<Vec<u8>>>);

impl io::Write for SharedLog {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A fake guest: `sbin/`, `bin/` (the search path), `power-state`, `log` (what the
/// fake programs were run with), `cpu/`, `memory/`.
pub struct Guest {
    pub dir: TempDir,
    pub agent: Agent,
    pub clock: FakeClock,
    pub agent_log: SharedLog,
}

impl Guest {
    pub fn new() -> Self {
        Self::with_clock(FakeClock::default())
    }

    pub fn with_clock(clock: FakeClock) -> Self {
        let dir = TempDir::new();
        for d in ["sbin", "bin", "cpu", "memory", "state"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let config = Config {
            statedir: dir.join("state").to_string_lossy().into_owned(),
            ..Config::default()
        };
        let agent_log = SharedLog::default();
        let logger = Logger::new(Box::new(agent_log.clone()), true);
        let mut agent = Agent::new(config, logger, false, 1000);
        let p = |s: &str| dir.join(s).to_string_lossy().into_owned();
        agent.power = PowerEnv {
            sbin: p("sbin"),
            search_path: Some(dir.join("bin").into_os_string()),
            power_state: dir.join("power-state"),
            chpasswd: p("bin/chpasswd"),
            clock: Box::new(clock.clone()),
            bound: Duration::from_secs(60),
        };
        agent.hotplug = SysfsRoots {
            cpu: p("cpu"),
            memory: p("memory"),
        };
        Guest {
            dir,
            agent,
            clock,
            agent_log,
        }
    }

    /// A fake program that logs `<name> <args>|` (each argument quoted by `[]`), and
    /// its stdin when it has one, then runs `tail`.
    pub fn program(&self, rel: &str, tail: &str, mode: u32) {
        let log = self.dir.join("log");
        let body = format!(
            "printf '%s' \"$(basename \"$0\")\" >> '{0}'\nfor a in \"$@\"; do printf ' [%s]' \"$a\" >> '{0}'; done\necho >> '{0}'\n{tail}",
            log.display()
        );
        write_script(&self.dir.join(rel), &body, mode);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Runs one request; the reply text without its newline, or None (no reply).
    pub fn run(&self, execute: &str, args: &[(&str, Value)]) -> Option<String> {
        let mut a = Dict::new();
        for (k, v) in args {
            a.insert(*k, v.clone());
        }
        let mut req = Dict::new();
        req.insert("execute", Value::str(execute));
        req.insert("arguments", Value::Dict(a));
        req.insert("id", Value::Int(7));
        let reply = qga_agent::dispatch::handle(&self.agent, Ok(Value::Dict(req)))?;
        let text = String::from_utf8(reply.json).unwrap();
        Some(text.strip_suffix('\n').unwrap().to_string())
    }
}

/// Writes an executable `#!/bin/sh` script through a `cp` child (never through a
/// descriptor of this multi-threaded process, which a concurrent fork could inherit
/// and turn the script's exec into ETXTBSY).
pub fn write_script(path: &Path, body: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let src = path.with_extension("src");
    std::fs::write(&src, format!("#!/bin/sh\n{body}\n")).unwrap();
    assert!(std::process::Command::new("cp")
        .arg(&src)
        .arg(path)
        .status()
        .unwrap()
        .success());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::remove_file(&src).unwrap();
}

pub fn err(desc: &str) -> Option<String> {
    Some(format!(
        "{{\"id\": 7, \"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}\"}}}}"
    ))
}

pub const OK: Option<&str> = Some("{\"return\": {}, \"id\": 7}");

pub fn s(v: &str) -> Value {
    Value::str(v)
}
