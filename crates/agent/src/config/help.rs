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

Extensions of qga-agent (off unless given; qemu-ga rejects them):
      --fsfreeze-timeout=SECONDS
                      thaw the filesystems automatically when the guest has
                      stayed frozen longer than SECONDS (0 turns it off).
                      Config file key: fsfreeze-timeout

Config file: group [general], keys named like the long options (daemon=true
for --daemonize), booleans true/false/1/0. Command-line values override the
file's; -b/-a lists are added to the file's lists. Check the result with -D.

If DIR/qga.state.isfrozen exists at start, the agent believes the guest is
frozen: it logs nothing, serves only guest-ping, guest-info, guest-sync,
guest-sync-delimited, guest-fsfreeze-status and guest-fsfreeze-thaw, and
ignores SIGTERM until guest-fsfreeze-thaw. If no filesystem is actually
frozen, remove the file and restart the agent.

Exit status: 0 after SIGTERM/SIGINT or a closed channel, 1 on a configuration
or start-up error (the message says which).
"
    )
}
