//! The text of `qga --help`, with the exit codes.

/// `qga --help`.
pub const HELP: &str = "\
qga: talk to a QEMU guest agent from the host

Usage: qga [OPTIONS] COMMAND [ARGS...]

Where (several, or a glob, run COMMAND on every guest at once):
  -s, --socket PATH|GLOB  the agent's unix socket (QEMU's guest agent chardev,
                          or an agent run with -m unix-listen); default
                          $QGA_SOCKET; '/run/qga/*.sock' means every match
  -d, --libvirt DOMAIN    go through libvirt (virsh qemu-agent-command)
Options:
  -t, --timeout SECONDS   time allowed for each reply (default 10)
      --json              print exactly one JSON document on stdout: the
                          result, or {\"error\": {\"kind\", \"message\"}}; with
                          several guests an array of {\"guest\", \"exit\",
                          \"result\"} or {\"guest\", \"error\"} objects
  -h, --help              this help (-V, --version: the version)

Commands:
  ping                    is the agent alive?
  info                    agent version, enabled and disabled commands
  exec [--stdin FILE|-] [--env K=V]... [--timeout S] [--] PROG [ARGS...]
                          run PROG in the guest, print its stdout/stderr,
                          exit with its status (128+N if killed by signal
                          N); --env replaces the guest environment (PATH
                          gets a default); --timeout: stop waiting after S
  cp [--no-verify] SRC DST
                          copy a file; ':' marks the guest side:
                            qga cp ./disk.img :/tmp/disk.img
                            qga cp :/var/log/syslog .
                          checked end to end (size; sha256 after upload);
                          from several guests, put {guest} in DST
  cat :PATH               print a guest file
  fsfreeze freeze|thaw|status [MOUNTPOINT...]
  fstrim [--minimum BYTES]
  shutdown [--mode powerdown|halt|reboot]
  time [--set NS|now] [--sync]
                          show the guest clock; --set it (ns since the
                          epoch, or this host's time); --sync: from its RTC
  passwd USER [--crypted] set a password, typed without echo, or piped on
                          stdin; never taken from the command line
  ssh-keys list|add|remove USER [KEY...] [--reset]
                          keys from the arguments, or one per line on stdin
  ifaddr, fsinfo, disks, vcpus, osinfo, users
  stats [cpu|disk|load]   CPU time, disk I/O counters, load average
  raw JSON                send a request as is, print the reply as received

Exit status:
  0  success
  1  the guest command failed: error reply, disabled or unknown command,
     failed check after a copy, local file problem
  2  usage error
  3  connection problem: no socket, nothing listening, no answer, timeout
  N  exec: the guest program's exit status (128+signal when killed)
  With several guests: 0 if all succeeded, else the highest status.
";
