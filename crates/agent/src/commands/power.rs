//! guest-shutdown, guest-suspend-disk / -ram / -hybrid, guest-set-time and
//! guest-set-user-password: the commands that hand the guest's state to a helper
//! program (or the clock). Every program path, the search path, the sysfs power file
//! and the clock are fields of [`PowerEnv`], so tests run all of it against fake
//! scripts in a temporary directory and a fake clock.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use qga_proto::cmds::power::*;
use qga_proto::Empty;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::sys::clock::{fits_time_t, local_year, Clock, SystemClock};
use crate::sys::passwd::os_bytes;
use crate::sys::run::{run_command, DEFAULT_BOUND};
use crate::sys::spawn_sync::{default_search_path, is_executable, spawn_quiet, Spawned};

/// Where the power commands find their programs and files.
pub struct PowerEnv {
    /// Directory of `poweroff`, `halt`, `reboot`, `shutdown` and `hwclock` (`/sbin`).
    pub sbin: String,
    /// Search path for `systemctl` and the pm-utils programs; `None` is the agent's
    /// `$PATH` at the time of the call.
    pub search_path: Option<OsString>,
    /// The kernel's sleep-state file (`/sys/power/state`).
    pub power_state: PathBuf,
    /// The `chpasswd` program (a bare name is looked up in `$PATH` by the runner).
    pub chpasswd: String,
    /// The wall clock.
    pub clock: Box<dyn Clock>,
    /// How long a helper program may run.
    pub bound: Duration,
}

impl Default for PowerEnv {
    fn default() -> Self {
        PowerEnv {
            sbin: "/sbin".into(),
            search_path: None,
            power_state: PathBuf::from("/sys/power/state"),
            chpasswd: "chpasswd".into(),
            clock: Box::new(SystemClock),
            bound: DEFAULT_BOUND,
        }
    }
}

/// The three sleep states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspendMode {
    /// Hibernate.
    Disk,
    /// Suspend to RAM.
    Ram,
    /// Both.
    Hybrid,
}

impl SuspendMode {
    fn systemd_unit(self) -> &'static str {
        match self {
            Self::Disk => "systemd-hibernate",
            Self::Ram => "systemd-suspend",
            Self::Hybrid => "systemd-hybrid-sleep",
        }
    }
    fn systemctl_verb(self) -> &'static str {
        match self {
            Self::Disk => "hibernate",
            Self::Ram => "suspend",
            Self::Hybrid => "hybrid-sleep",
        }
    }
    fn pm_flag(self) -> &'static str {
        match self {
            Self::Disk => "--hibernate",
            Self::Ram => "--suspend",
            Self::Hybrid => "--suspend-hybrid",
        }
    }
    fn pm_program(self) -> &'static str {
        match self {
            Self::Disk => "pm-hibernate",
            Self::Ram => "pm-suspend",
            Self::Hybrid => "pm-suspend-hybrid",
        }
    }
    fn sysfs_word(self) -> Option<&'static str> {
        match self {
            Self::Disk => Some("disk"),
            Self::Ram => Some("mem"),
            Self::Hybrid => None,
        }
    }
}

impl PowerEnv {
    /// guest-shutdown: `/sbin/poweroff` (`halt`, `reboot`) with no arguments when it is
    /// executable (qemu-ga 10.2), else `/sbin/shutdown -h -P|-H|-r +0 "hypervisor
    /// initiated shutdown"`, through the helper runner.
    pub fn shutdown(&self, mode: Option<&str>) -> Result<()> {
        let (program, flag) = match mode {
            None | Some("powerdown") => ("poweroff", "-P"),
            Some("halt") => ("halt", "-H"),
            Some("reboot") => ("reboot", "-r"),
            Some(_) => {
                return Err(Error::new(
                    "mode is invalid (valid values are: halt|powerdown|reboot",
                ))
            }
        };
        let direct = format!("{}/{program}", self.sbin);
        let shutdown = format!("{}/shutdown", self.sbin);
        let argv: Vec<&str> = if is_executable(direct.as_ref()) {
            vec![&direct]
        } else {
            vec![&shutdown, "-h", flag, "+0", "hypervisor initiated shutdown"]
        };
        run_command(&argv, None, "shutdown", self.bound)
    }

    /// guest-suspend-*: systemd, then pm-utils, then `/sys/power/state`, exactly as
    /// qemu-ga's `guest_suspend`, including its quirk: a strategy that reports support
    /// but then fails hands over to the next one, and if no later one is supported the
    /// command succeeds. Only the last strategy's failure is ever reported.
    pub fn suspend(&self, mode: SuspendMode) -> Result<()> {
        let mut supported = false;
        if self.systemd_supports(mode) {
            supported = true;
            if self.systemd_suspend(mode).is_ok() {
                return Ok(());
            }
        }
        if self.pmutils_supports(mode) {
            supported = true;
            if self.pmutils_suspend(mode).is_ok() {
                return Ok(());
            }
        }
        let mut last = None;
        match self.sysfs_supports(mode) {
            Ok(true) => {
                supported = true;
                last = self.sysfs_suspend(mode).err();
            }
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        if !supported {
            return Err(Error::new(
                "the requested suspend mode is not supported by the guest",
            ));
        }
        last.map_or(Ok(()), Err)
    }

    /// `run_process_child`: Some(exit status), None when the program is not found.
    fn run_child(&self, argv: &[&str]) -> Result<Option<i32>> {
        let path = self.search_path.clone().unwrap_or_else(default_search_path);
        match spawn_quiet(argv, &path, self.bound) {
            Spawned::Exited(status) => Ok(Some(status)),
            Spawned::NotFound => Ok(None),
            Spawned::Failed(msg) => Err(Error::new(format!(
                "failed to create child process, error '{msg}'"
            ))),
        }
    }

    fn systemd_supports(&self, mode: SuspendMode) -> bool {
        // LSB status codes: 1-3 mean the unit exists; 4 is "no such unit".
        matches!(
            self.run_child(&["systemctl", "status", mode.systemd_unit()]),
            Ok(Some(1..=3))
        )
    }

    fn systemd_suspend(&self, mode: SuspendMode) -> Result<()> {
        let verb = mode.systemctl_verb();
        match self.run_child(&["systemctl", verb])? {
            Some(0) => Ok(()),
            None => Err(Error::new(format!(
                "the helper program 'systemctl {verb}' was not found"
            ))),
            Some(n) => Err(Error::new(format!(
                "the helper program 'systemctl {verb}' returned an unexpected exit status code ({n})"
            ))),
        }
    }

    fn pmutils_supports(&self, mode: SuspendMode) -> bool {
        matches!(
            self.run_child(&["pm-is-supported", mode.pm_flag()]),
            Ok(Some(0))
        )
    }

    fn pmutils_suspend(&self, mode: SuspendMode) -> Result<()> {
        let program = mode.pm_program();
        match self.run_child(&[program])? {
            Some(0) => Ok(()),
            None => Err(Error::new(format!(
                "the helper program '{program}' was not found"
            ))),
            Some(n) => Err(Error::new(format!(
                "the helper program '{program}' returned an unexpected exit status code ({n})"
            ))),
        }
    }

    /// Whether the state file lists the mode's word (first 31 bytes, as qemu-ga reads).
    fn sysfs_supports(&self, mode: SuspendMode) -> Result<bool> {
        let word = mode
            .sysfs_word()
            .ok_or_else(|| Error::new("unknown guest suspend mode"))?;
        let Ok(mut f) = std::fs::File::open(&self.power_state) else {
            return Ok(false);
        };
        let mut buf = [0u8; 31];
        let n = match f.read(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => return Ok(false),
        };
        let text = buf[..n].split(|&b| b == 0).next().unwrap_or_default();
        Ok(text.windows(word.len()).any(|w| w == word.as_bytes()))
    }

    fn sysfs_suspend(&self, mode: SuspendMode) -> Result<()> {
        let word = mode
            .sysfs_word()
            .ok_or_else(|| Error::new("unknown guest suspend mode"))?;
        let failed = |e: std::io::Error| {
            Error::errno(
                format!("suspend: cannot write to '{}'", self.power_state.display()),
                &e,
            )
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.power_state)
            .map_err(failed)?;
        // One write(2), as qemu-ga: a short write is not retried.
        f.write(word.as_bytes()).map_err(failed)?;
        Ok(())
    }

    /// guest-set-time: validate, `settimeofday`, then `hwclock -w`; without a time,
    /// `hwclock -s`.
    pub fn set_time(&self, time: Option<i64>) -> Result<()> {
        if let Some(ns) = time {
            let sec = ns / 1_000_000_000;
            if !fits_time_t(sec) {
                return Err(Error::new(format!("Time {ns} is too large")));
            }
            let usec = (ns % 1_000_000_000) / 1000;
            let (year, errno) = local_year(sec);
            if !(1970..2070).contains(&year) {
                let e = std::io::Error::from_raw_os_error(errno);
                return Err(Error::errno("Invalid time", &e));
            }
            self.clock
                .set_time(sec, usec)
                .map_err(|e| Error::errno("Failed to set time to guest", &e))?;
        }
        let hwclock = format!("{}/hwclock", self.sbin);
        let flag = if time.is_some() { "-w" } else { "-s" };
        run_command(
            &[&hwclock, flag],
            None,
            "set hardware clock to system time",
            self.bound,
        )
    }

    /// guest-set-user-password: feed `user:password\n` to `chpasswd [-e]`.
    pub fn set_user_password(&self, username: &str, password: &str, crypted: bool) -> Result<()> {
        let raw = crate::sys::base64::decode(os_bytes(password))?;
        // qemu-ga uses the decoded password as a C string.
        let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
        if raw.contains(&b'\n') {
            return Err(Error::new("forbidden characters in raw password"));
        }
        let mut input = os_bytes(username);
        if input.contains(&b'\n') || input.contains(&b':') {
            return Err(Error::new("forbidden characters in username"));
        }
        input.push(b':');
        input.extend_from_slice(raw);
        input.push(b'\n');
        let mut argv = vec![self.chpasswd.as_str()];
        if crypted {
            argv.push("-e");
        }
        run_command(&argv, Some(&input), "set user password", self.bound)
    }
}

/// guest-shutdown (no reply on success).
pub fn shutdown(agent: &Agent, args: GuestShutdownArgs) -> Result<Empty> {
    let mode = args.mode.as_deref();
    agent.log.audit(&format!(
        "guest-shutdown called, mode: {}",
        mode.unwrap_or("(null)")
    ));
    agent.power.shutdown(mode).map(|()| Empty)
}

/// guest-set-time.
pub fn set_time(agent: &Agent, args: GuestSetTimeArgs) -> Result<Empty> {
    agent.power.set_time(args.time).map(|()| Empty)
}

/// guest-suspend-disk (no reply on success).
pub fn suspend_disk(agent: &Agent, _: GuestSuspendDiskArgs) -> Result<Empty> {
    agent.power.suspend(SuspendMode::Disk).map(|()| Empty)
}

/// guest-suspend-ram (no reply on success).
pub fn suspend_ram(agent: &Agent, _: GuestSuspendRamArgs) -> Result<Empty> {
    agent.power.suspend(SuspendMode::Ram).map(|()| Empty)
}

/// guest-suspend-hybrid (no reply on success).
pub fn suspend_hybrid(agent: &Agent, _: GuestSuspendHybridArgs) -> Result<Empty> {
    agent.power.suspend(SuspendMode::Hybrid).map(|()| Empty)
}

/// guest-set-user-password.
pub fn set_user_password(agent: &Agent, args: GuestSetUserPasswordArgs) -> Result<Empty> {
    agent
        .power
        .set_user_password(&args.username, &args.password, args.crypted)
        .map(|()| Empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::spawn_sync::testutil::tempdir;

    #[test]
    fn sysfs_write_errors() {
        // A state file that lists "mem" but refuses the write cannot be built as root
        // on a plain filesystem, so the write step's texts are checked directly.
        let d = tempdir("sysfs");
        let env = |p: PathBuf| PowerEnv {
            power_state: p,
            ..PowerEnv::default()
        };
        let missing = d.join("missing");
        assert_eq!(
            env(missing.clone())
                .sysfs_suspend(SuspendMode::Ram)
                .unwrap_err()
                .desc(),
            format!(
                "suspend: cannot write to '{}': No such file or directory",
                missing.display()
            )
        );
        assert_eq!(
            env(d.clone())
                .sysfs_suspend(SuspendMode::Disk)
                .unwrap_err()
                .desc(),
            format!("suspend: cannot write to '{}': Is a directory", d.display())
        );
        assert_eq!(
            env(PathBuf::from("/dev/full"))
                .sysfs_suspend(SuspendMode::Disk)
                .unwrap_err()
                .desc(),
            "suspend: cannot write to '/dev/full': No space left on device"
        );
        assert_eq!(
            env(missing)
                .sysfs_suspend(SuspendMode::Hybrid)
                .unwrap_err()
                .desc(),
            "unknown guest suspend mode"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
