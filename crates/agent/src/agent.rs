//! The agent's shared state: configuration, the command filter (allow/block lists and
//! the frozen state), the persistent handle counter, and each command family's state.
//! Handlers get `&Agent`; everything in it is safe to share between threads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::commands;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::Logger;

/// The version reported by guest-info and `-V`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// First file handle when no state file exists (`QGA_PSTATE_DEFAULT_FD_COUNTER`).
pub const FIRST_HANDLE: i64 = 1000;

/// Everything the command handlers share.
pub struct Agent {
    /// The effective configuration.
    pub config: Config,
    /// Log sink (stderr or the log file; silenced while frozen).
    pub log: Logger,
    frozen: AtomicBool,
    /// Started frozen: the log file and pidfile wait for the first thaw.
    deferred_start: AtomicBool,
    fd_counter: Mutex<i64>,
    /// guest-file-* handles.
    pub files: commands::file::Handles,
    /// guest-exec children and their results.
    pub exec: commands::exec::Children,
    /// fsfreeze state beyond the frozen flag.
    pub freeze: commands::fsfreeze::FreezeState,
    /// Programs, files and clock of shutdown, suspend, set-time and set-user-password.
    pub power: commands::power::PowerEnv,
    /// sysfs directories of set-vcpus and set-memory-blocks.
    pub hotplug: commands::hotplug::SysfsRoots,
    /// User lookup of the ssh key commands.
    pub ssh: commands::ssh::SshEnv,
}

impl Agent {
    /// Builds the agent state. `frozen` comes from the `qga.state.isfrozen` marker.
    pub fn new(config: Config, log: Logger, frozen: bool, fd_counter: i64) -> Self {
        Agent {
            config,
            log,
            frozen: AtomicBool::new(frozen),
            deferred_start: AtomicBool::new(frozen),
            fd_counter: Mutex::new(fd_counter),
            files: Default::default(),
            exec: Default::default(),
            freeze: Default::default(),
            power: Default::default(),
            hotplug: Default::default(),
            ssh: Default::default(),
        }
    }

    /// Whether the filesystems are frozen (only six commands are enabled then).
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Path of the frozen-state marker file.
    pub fn frozen_marker(&self) -> PathBuf {
        PathBuf::from(&self.config.statedir).join("qga.state.isfrozen")
    }

    /// Path of the persistent state file.
    pub fn state_file(&self) -> PathBuf {
        PathBuf::from(&self.config.statedir).join("qga.state")
    }

    /// Enters or leaves the frozen state as qemu-ga's `ga_set_frozen`/`ga_unset_frozen`:
    /// the flag and the logging switch change first, then the marker file is created
    /// (0600, before the caller freezes anything) or removed (after it thawed). A marker
    /// that cannot be written is reported but does not undo the state change, as in
    /// qemu-ga. Leaving the frozen state also performs what a frozen start deferred:
    /// opening the log file and writing the pidfile.
    pub fn set_frozen(&self, frozen: bool) -> std::io::Result<()> {
        if frozen {
            use std::os::unix::fs::OpenOptionsExt;
            self.log.set_enabled(false);
            self.frozen.store(true, Ordering::SeqCst);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(self.frozen_marker())?;
        } else {
            self.frozen.store(false, Ordering::SeqCst);
            self.log.set_enabled(true);
            self.finish_deferred_start();
            match std::fs::remove_file(self.frozen_marker()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// After a start in frozen state: open the log file and write the pidfile now.
    fn finish_deferred_start(&self) {
        if !self.deferred_start.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Some(path) = &self.config.logfile {
            match std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                Ok(f) => self.log.set_sink(Box::new(f)),
                Err(e) => self.log.log(
                    crate::log::Level::Critical,
                    &format!("unable to open specified log file: {e}"),
                ),
            }
        }
        if self.config.daemonize {
            let written =
                crate::sys::daemon::write_pidfile(std::path::Path::new(&self.config.pidfile))
                    .and_then(crate::sys::daemon::Pidfile::keep_until_exit);
            if let Err(e) = written {
                self.log.log(crate::log::Level::Critical, &e);
            }
        }
    }

    /// Whether the command is enabled now: the profile, the allow list, then the block
    /// list, and while frozen only the freeze-safe commands (qemu-ga's
    /// `ga_apply_command_filters`, with the profile in front).
    pub fn is_enabled(&self, cmd: &crate::dispatch::CommandDef) -> bool {
        self.denial(cmd).is_none()
    }

    /// Why the command is disabled now (`None`: enabled); see [`crate::policy::denial`].
    pub fn denial(&self, cmd: &crate::dispatch::CommandDef) -> Option<String> {
        crate::policy::denial(&self.config, self.is_frozen(), cmd)
    }

    /// Takes the next file handle and commits the new counter to `qga.state` before
    /// returning it, so a handle is never reused, even across restarts.
    pub fn next_handle(&self) -> Result<i64> {
        let mut counter = self.fd_counter.lock().unwrap_or_else(|e| e.into_inner());
        let handle = *counter;
        let next = handle
            .checked_add(1)
            .ok_or_else(|| Error::new("file handle counter overflow"))?;
        write_state_file(&self.state_file(), next)
            .map_err(|_| Error::new("failed to commit persistent state to disk"))?;
        *counter = next;
        Ok(handle)
    }
}

/// Writes `qga.state` atomically (temporary file + rename), as GLib's
/// `g_file_set_contents` does: `[global]\nfd_counter=<n>\n`.
pub fn write_state_file(path: &std::path::Path, fd_counter: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("state.tmp");
    std::fs::write(&tmp, format!("[global]\nfd_counter={fd_counter}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Reads `fd_counter` from `qga.state`; `None` when the file does not exist.
pub fn read_state_file(path: &std::path::Path) -> std::io::Result<Option<i64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("fd_counter="))
                .find_map(|v| v.trim().parse().ok())
                .unwrap_or(FIRST_HANDLE),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An agent whose state directory is a fresh temporary directory.
    pub fn test_agent() -> Agent {
        let dir = std::env::temp_dir().join(format!(
            "qga-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("temp state dir");
        let config = Config {
            statedir: dir.to_string_lossy().into_owned(),
            ..Config::default()
        };
        Agent::new(config, Logger::stderr(false), false, FIRST_HANDLE)
    }
}
