//! `--help`: qemu-ga's usage text, corrected where it misleads (its `-c` default reads
//! `/etc/qemu/qemu-ga.conf/qemu-ga.conf`) and completed with what an operator needs when
//! the agent will not start: where state lives, what a frozen start means, our
//! extensions, and exit statuses.

use super::{
    DEFAULT_CONFIG, DEFAULT_FSFREEZE_HOOK, DEFAULT_PIDFILE, DEFAULT_SERIAL_PATH, DEFAULT_STATEDIR,
    DEFAULT_VIRTIO_PATH,
};

/// The usage text for `argv0`.
pub(super) fn usage(argv0: &str) -> String {
    let version = crate::agent::VERSION;
    let frozen = frozen_note();
    let profiles = profiles_note();
    format!(
        "\
Usage: {argv0} [-m <method> -p <path>] [<options>]
QEMU Guest Agent {version} (qga-agent, a drop-in replacement for qemu-ga 10)

  -c, --config=PATH   configuration file (default is {DEFAULT_CONFIG},
                      unless overridden by the QGA_CONF environment variable).
                      A file named with -c must exist; the default may be absent
  -m, --method=METHOD transport method: one of unix-listen, virtio-serial,
                      isa-serial, or vsock-listen (virtio-serial is the default)
  -p, --path=PATH     device/socket path (the default for virtio-serial is:
                      {DEFAULT_VIRTIO_PATH},
                      the default for isa-serial is:
                      {DEFAULT_SERIAL_PATH}).
                      unix-listen and vsock-listen need one; vsock addresses
                      are written as <cid>:<port>
  -l, --logfile=PATH  append log lines to PATH instead of stderr
  -f, --pidfile=PATH  pidfile, written and locked only with --daemonize
                      (default is {DEFAULT_PIDFILE})
  -F[PATH], --fsfreeze-hook[=PATH]
                      enable the fsfreeze hook: PATH is run with 'freeze'
                      before and 'thaw' after guest-fsfreeze-freeze/-thaw
                      (default is {DEFAULT_FSFREEZE_HOOK}).
                      The PATH must be attached: -F/path/to/hook, never
                      -F /path/to/hook (that enables the default hook)
  -t, --statedir=DIR  directory for the state file qga.state and the marker
                      qga.state.isfrozen (default is {DEFAULT_STATEDIR})
  -v, --verbose       log every level (default: errors and critical only)
  -V, --version       print version information and exit
  -d, --daemonize     become a daemon (fork, write the pidfile, detach)
  -b, --block-rpcs=LIST
                      comma-separated list of RPCs to disable (no spaces,
                      use \"--block-rpcs=help\" to list available RPCs)
  -a, --allow-rpcs=LIST
                      comma-separated list of the only RPCs to enable (no
                      spaces, use \"--allow-rpcs=help\" to list available RPCs);
                      --block-rpcs still wins over it
  -D, --dump-conf     dump a qemu-ga config file based on current config
                      options / command-line parameters to stdout
  -r, --retry-path    attempt re-opening path if it's unavailable or closed
                      due to an error which may be recoverable in the future
                      (virtio-serial driver re-install, serial device hot
                      plug/unplug, etc.); retries every 5 seconds
  -h, --help          display this help and exit

Extensions of qga-agent (off unless given; qemu-ga rejects the options and
ignores the config keys, so one config file serves both):
      --fsfreeze-timeout=SECONDS
                      thaw the filesystems automatically when the guest has
                      stayed frozen longer than SECONDS (0 turns it off).
                      Config file key: fsfreeze-timeout
      --profile=NAME  enable only the commands of a profile; -a and -b then
                      narrow it further. Config file key: profile.
                      --profile=help lists the commands of each profile:
{profiles}
      --harden        drop the capabilities no enabled command needs; when no
                      enabled command runs a program (read-only), also narrow
                      the bounding set, set no_new_privs and install a seccomp
                      filter. Config file key: harden=true

Audit: every command that is not sync, ping, info or read-only information
leaves one line, after it ran or was refused: command, arguments (never file
contents, input or output data, environments, passwords or keys), caller and
result. Successful file reads, writes, seeks and flushes are summed up on the
handle's guest-file-close line; guest-exec-status is audited when it reports
the end; failures always. It goes to syslog (/dev/log, facility authpriv) or,
without it, to the log file or stderr; lines of a frozen period are sent after
the thaw.

Config file: group [general], keys named like the long options, except
daemon=true for --daemonize; booleans are true/false/1/0. Command-line values
override the file's; -b/-a lists add to the file's lists. Check with -D.

{frozen}

Where qga-agent bounds what qemu-ga leaves unbounded: a guest-exec result that
the host never collects is kept at most 1 hour after the program ended, and at
most 1024 such results (128 MiB of captured output in all) are kept, the oldest
dropped first; a dropped result answers \"PID <n> does not exist\". Helper
programs (fsfreeze hook, shutdown, hwclock, chpasswd) are killed after 300 s.
A freeze still unfinished after 60 s is undone and reported as failed.
statvfs in guest-get-fsinfo waits at most 2 s; a filesystem that does not
answer is listed without its sizes.

Exit status: 0 after SIGTERM/SIGINT or a closed channel, 1 on a configuration
or start-up error (the message says which).
"
    )
}

/// What a frozen start means, with the commands still served taken from the table.
fn frozen_note() -> String {
    let names: Vec<&str> = crate::commands::COMMANDS
        .iter()
        .filter(|c| c.frozen_ok)
        .map(|c| c.name)
        .collect();
    let list = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "nothing".into(),
    };
    wrap(&format!(
        "If <statedir>/qga.state.isfrozen exists at start, the agent assumes the guest \
         is frozen: it logs nothing, serves only {list}, and ignores SIGTERM until \
         guest-fsfreeze-thaw. If no filesystem is actually frozen, remove the file and \
         restart the agent."
    ))
}

/// Each profile with its summary, indented under `--profile`.
fn profiles_note() -> String {
    let lines: Vec<String> = crate::policy::Profile::ALL
        .iter()
        .map(|p| {
            wrap_indented(
                &format!("{}: {}", p.name(), p.summary()),
                "                        ",
                "                          ",
            )
        })
        .collect();
    lines.join("\n")
}

/// Fills `text` into lines of at most 78 columns, the first one starting with `first`
/// and the others with `rest`.
fn wrap_indented(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > 78 {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out + &line
}

/// Fills `text` into lines of at most 78 columns.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 78 {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out + &line
}
