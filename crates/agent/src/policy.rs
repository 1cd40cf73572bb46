//! What the agent allows, made visible and controllable: command categories, named
//! profiles, the audit log, and the hardening plan. Everything is derived from the
//! category on each row of the command table ([`crate::commands::COMMANDS`]); there is no
//! second list of command names.
//!
//! # Categories
//!
//! | category      | commands                                                          |
//! |---------------|-------------------------------------------------------------------|
//! | `protocol`    | guest-sync, guest-sync-delimited, guest-ping, guest-info          |
//! | `info`        | read-only information: guest-get-*, guest-network-get-*,          |
//! |               | guest-fsfreeze-status                                             |
//! | `change`      | changes the machine's state: time, shutdown, suspend, fsfreeze    |
//! |               | freeze/thaw, fstrim, vCPU and memory-block hotplug                |
//! | `credentials` | accounts' access: guest-set-user-password, guest-ssh-*            |
//! | `file`        | guest-file-* (any file, as root)                                  |
//! | `exec`        | guest-exec, guest-exec-status (any program, as root)              |
//!
//! # Profiles
//!
//! A profile is a set of categories (`profile=` in `[general]`, or `--profile=NAME`):
//!
//! - `full` (the default): everything, qemu-ga's behaviour.
//! - `no-exec-files`: everything but `file` and `exec`, the two categories that give the
//!   host arbitrary access to the guest's data. `credentials` stays: KubeVirt's access
//!   credentials and OpenStack's set-password need it, and it only sets passwords and
//!   adds public keys (which does let the host log in: use `lifecycle` to exclude it).
//! - `lifecycle`: `protocol`, `info` and `change`: backups (freeze/thaw), time sync,
//!   power and hotplug, but no access to data or accounts.
//! - `read-only`: `protocol` and `info` only (guest-fsfreeze-status included).
//!
//! KubeVirt's "unsupported agent" gate needs guest-shutdown: `full`, `no-exec-files` and
//! `lifecycle` pass it, `read-only` does not.
//!
//! A command is enabled when its category is in the profile, then (as qemu-ga) it is on
//! the allow list if there is one, and not on the block list. While frozen, the freeze
//! filter overrides all of it: only the six freeze-safe commands, as in qemu-ga.
//!
//! # Audit log
//!
//! Every command outside `protocol` and `info` leaves one line, after it ran (or was
//! refused), naming the caller and a summary of its arguments and result; see
//! [`audit`]. Lines go to syslog (facility authpriv), or to the log file when there is
//! no syslog socket.
//!
//! # Hardening
//!
//! `--harden` (key `harden=true`) drops the capabilities that no enabled command needs;
//! see [`hardening_plan`] and [`crate::sys::harden`].

pub mod audit;

use crate::commands::COMMANDS;
use crate::config::Config;
use crate::dispatch::CommandDef;

/// What a command does, for profiles, the audit log and hardening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// The protocol itself: sync, ping, info.
    Protocol,
    /// Read-only information about the guest.
    Info,
    /// Changes the machine's state (time, power, freeze, trim, hotplug).
    Change,
    /// Changes who can log in (passwords, ssh keys), or reads the keys.
    Credentials,
    /// Reads and writes any file, as root.
    File,
    /// Runs any program, as root.
    Exec,
}

impl Category {
    /// Every category, from the least to the most powerful.
    pub const ALL: [Category; 6] = [
        Category::Protocol,
        Category::Info,
        Category::Change,
        Category::Credentials,
        Category::File,
        Category::Exec,
    ];

    /// Its name in documentation and log lines.
    pub fn name(self) -> &'static str {
        match self {
            Category::Protocol => "protocol",
            Category::Info => "info",
            Category::Change => "change",
            Category::Credentials => "credentials",
            Category::File => "file",
            Category::Exec => "exec",
        }
    }

    /// Whether its commands leave an audit line: everything that changes state or
    /// moves data.
    pub fn audited(self) -> bool {
        !matches!(self, Category::Protocol | Category::Info)
    }

    /// Whether some of its commands run helper programs (shutdown, hwclock, chpasswd,
    /// the fsfreeze hook, guest-exec): those inherit the agent's seccomp filter and
    /// capability bounding set, so neither may be narrowed when such a command is
    /// enabled.
    pub fn runs_programs(self) -> bool {
        matches!(
            self,
            Category::Change | Category::Credentials | Category::Exec
        )
    }

    /// The capabilities its commands need in the agent process itself, as a mask of
    /// `1 << CAP_*` (see [`crate::sys::harden`] for the constants).
    pub fn capabilities(self) -> u64 {
        use crate::sys::harden::cap;
        match self {
            Category::Protocol => 0,
            // NVMe SMART log of guest-get-disks (an admin ioctl); statvfs and readlink
            // below directories root may not search without it.
            Category::Info => cap::SYS_ADMIN | cap::DAC_READ_SEARCH,
            // FIFREEZE/FITHAW/FITRIM, settimeofday, opening any mount point.
            Category::Change => cap::SYS_ADMIN | cap::SYS_TIME | cap::DAC_READ_SEARCH,
            // Users' ~/.ssh: read, create, chown and chmod files root does not own.
            Category::Credentials => {
                cap::DAC_OVERRIDE | cap::DAC_READ_SEARCH | cap::CHOWN | cap::FOWNER
            }
            // Any file or program as root is root: nothing can be dropped.
            Category::File | Category::Exec => u64::MAX,
        }
    }
}

/// A named set of categories an operator picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Everything (qemu-ga's behaviour).
    #[default]
    Full,
    /// Everything but file access and exec.
    NoExecFiles,
    /// Protocol, information and state changes; no data, no accounts.
    Lifecycle,
    /// Protocol and information only.
    ReadOnly,
}

impl Profile {
    /// Every profile, from the most to the least permissive.
    pub const ALL: [Profile; 4] = [
        Profile::Full,
        Profile::NoExecFiles,
        Profile::Lifecycle,
        Profile::ReadOnly,
    ];

    /// Its name for `profile=` and `--profile=`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Full => "full",
            Profile::NoExecFiles => "no-exec-files",
            Profile::Lifecycle => "lifecycle",
            Profile::ReadOnly => "read-only",
        }
    }

    /// The profile with this name.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The categories it enables.
    pub fn categories(self) -> &'static [Category] {
        use Category::*;
        match self {
            Profile::Full => &Category::ALL,
            Profile::NoExecFiles => &[Protocol, Info, Change, Credentials],
            Profile::Lifecycle => &[Protocol, Info, Change],
            Profile::ReadOnly => &[Protocol, Info],
        }
    }

    /// Whether it enables commands of this category.
    pub fn allows(self, category: Category) -> bool {
        self.categories().contains(&category)
    }

    /// One line for `--help`.
    pub fn summary(self) -> &'static str {
        match self {
            Profile::Full => "every command (the default, as qemu-ga)",
            Profile::NoExecFiles => {
                "no guest-exec* and guest-file-*; passwords and ssh keys stay \
                 (KubeVirt and OpenStack credentials)"
            }
            Profile::Lifecycle => {
                "information, fsfreeze, fstrim, time, power and hotplug; no files, \
                 exec, passwords or ssh keys"
            }
            Profile::ReadOnly => {
                "sync, ping, info and the read-only information commands \
                 (guest-get-*, guest-network-get-*, guest-fsfreeze-status)"
            }
        }
    }

    /// The commands it enables, in registration order (before allow/block lists).
    pub fn commands(self) -> impl Iterator<Item = &'static CommandDef> {
        COMMANDS.iter().filter(move |c| self.allows(c.category))
    }
}

/// `--profile=help`: each profile with its categories and commands.
pub fn profiles_listing() -> String {
    let mut out = String::new();
    for p in Profile::ALL {
        let cats: Vec<&str> = p.categories().iter().map(|c| c.name()).collect();
        out.push_str(&format!("{} ({}):\n", p.name(), cats.join(", ")));
        for c in p.commands() {
            out.push_str(&format!("  {}\n", c.name));
        }
    }
    out
}

/// Why a command is disabled now, or `None` when it is enabled. The order is the
/// filter's: frozen state, profile, allow list, block list.
pub fn denial(config: &Config, frozen: bool, cmd: &CommandDef) -> Option<String> {
    if frozen {
        return (!cmd.frozen_ok).then(|| "the guest is frozen".to_string());
    }
    if !config.profile.allows(cmd.category) {
        return Some(format!("profile {}", config.profile.name()));
    }
    if !config.allow_rpcs.is_empty() && !config.allow_rpcs.iter().any(|n| n == cmd.name) {
        return Some("not in allow-rpcs".into());
    }
    if config.block_rpcs.iter().any(|n| n == cmd.name) {
        return Some("in block-rpcs".into());
    }
    None
}

/// What `--harden` does for a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// Capabilities the agent keeps (mask of `1 << CAP_*`; all ones keeps everything).
    pub keep: u64,
    /// No enabled command runs a program: the bounding set is narrowed to `keep` too,
    /// `no_new_privs` is set and the seccomp filter is installed.
    pub lock_down: bool,
    /// The commands whose needs were counted.
    pub counted: Vec<&'static str>,
}

/// Computes what `--harden` keeps. The commands counted are those the profile and lists
/// enable, plus the freeze-safe ones (guest-fsfreeze-thaw among them) when the guest
/// can be frozen: started frozen, or a `change` command is enabled. `retry_path` and a
/// frozen start keep what reopening the channel or the log file may need.
pub fn hardening_plan(config: &Config, frozen: bool) -> Hardening {
    use crate::sys::harden::cap;
    let can_freeze = frozen
        || COMMANDS
            .iter()
            .any(|c| c.category == Category::Change && denial(config, false, c).is_none());
    let counted: Vec<&CommandDef> = COMMANDS
        .iter()
        .filter(|c| denial(config, false, c).is_none() || (can_freeze && c.frozen_ok))
        .collect();
    let mut keep = counted
        .iter()
        .fold(0u64, |m, c| m | c.category.capabilities());
    if config.retry_path || frozen {
        // Reopening a channel (a vsock port below 1024, a socket in a directory root
        // does not own) or the deferred log file.
        keep |= cap::DAC_OVERRIDE | cap::NET_BIND_SERVICE;
    }
    // guest-fsfreeze-thaw (and its hook) is a `change` command, so it is covered here.
    let lock_down = keep != u64::MAX && !counted.iter().any(|c| c.category.runs_programs());
    Hardening {
        keep,
        lock_down,
        counted: counted.iter().map(|c| c.name).collect(),
    }
}

#[cfg(test)]
mod tests;
