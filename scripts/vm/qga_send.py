#!/usr/bin/env python3
"""Talk to a QEMU guest agent over a unix socket (host side of virtio-serial).

Usage:
  qga_send.py [options] SOCK [REQUEST ...]

Each REQUEST is either a JSON object sent verbatim, e.g.
  '{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 1, "online": false}]}}'
or a command name optionally followed by a JSON arguments object:
  guest-ping
  'guest-exec {"path": "/bin/ls", "capture-output": true}'

Before the first request the client synchronises the way the spec recommends:
send 0xFF then guest-sync-delimited {"id": N}; skip input up to a 0xFF; parse
the next JSON object; repeat until its "return" equals N (§2.6).
Then each request is sent and its reply printed on stdout as one line, exactly
as received (without any leading 0xFF). Commands that send no reply on success
(guest-shutdown, guest-suspend-*) are waited for only --noreply-wait seconds.
With no REQUEST and a terminal on stdin: interactive mode (one request a line).

Options:
  --timeout S       seconds to wait for each reply (default 30)
  --wait S          keep retrying connect + sync for up to S seconds (boot wait)
  --pid PID         with --wait: give up as soon as process PID is gone
  --no-sync         skip the handshake (raw protocol tests)
  --noreply-wait S  how long to wait on no-reply commands (default 3)
  --pretty          pretty-print replies
  --check           exit 3 if any reply is an error
  -q, --quiet       print nothing but errors

Exit status: 0 ok; 1 cannot connect/sync; 2 a reply timed out or the
connection closed early; 3 (--check) an error reply was received.
"""
import json
import os
import random
import socket
import sys
import time

NO_REPLY_ON_SUCCESS = {"guest-shutdown", "guest-suspend-disk", "guest-suspend-ram",
                       "guest-suspend-hybrid"}


class Timeout(Exception):
    pass


class Closed(Exception):
    pass


class ConnectError(Exception):
    pass


class Agent:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout()
        if not chunk:
            raise Closed()
        self.buf += chunk

    def read_line(self, deadline):
        """One reply line (bytes, without the '\\n'), leading 0xFF bytes dropped."""
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.lstrip(b"\xff")

    def sync(self, deadline, sid=None):
        """guest-sync-delimited handshake; returns the id that was echoed."""
        sid = random.randint(1, 2**31 - 1) if sid is None else sid
        req = {"execute": "guest-sync-delimited", "arguments": {"id": sid}}
        self.send(b"\xff" + json.dumps(req).encode())
        while True:
            while b"\xff" not in self.buf:      # skip everything up to a 0xFF
                self.buf = b""
                self._fill(deadline)
            self.buf = self.buf[self.buf.index(b"\xff") + 1:]
            line = self.read_line(deadline)
            try:
                if json.loads(line).get("return") == sid:
                    return sid
            except ValueError:
                pass


def alive(pid):
    """True if process pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def parse_request(text):
    text = text.strip()
    if text.startswith("{"):
        obj = json.loads(text)      # validate, but send the user's bytes as given
        return text, obj.get("execute") or obj.get("exec-oob")
    name, _, args = text.partition(" ")
    req = {"execute": name}
    if args.strip():
        req["arguments"] = json.loads(args)
    return json.dumps(req), name


def connect(path, wait, pid, sync_timeout):
    """Connect and sync. With wait > 0, retry for up to `wait` seconds
    (socket not there yet, agent not up yet). Returns (Agent, seconds) or
    raises ConnectError. QEMU's socket chardev serves ONE client at a time:
    close any previous connection first, or this one is never answered."""
    t0 = time.monotonic()
    end = t0 + wait
    last_err = None
    while True:
        if pid and not alive(pid):
            raise ConnectError("process %d is gone (%s)" % (pid, last_err or "before the agent answered"))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            agent = Agent(s)
            if wait <= 0:
                agent.sync(time.monotonic() + sync_timeout)
                return agent, time.monotonic() - t0
            # While the guest agent is not up yet, QEMU leaves our bytes in the
            # socket; re-send a fresh sync every second until one is answered.
            while True:
                try:
                    agent.sync(time.monotonic() + 1.0)
                    return agent, time.monotonic() - t0
                except Timeout:
                    if time.monotonic() >= end:
                        raise
                    if pid and not alive(pid):
                        raise ConnectError("process %d is gone" % pid)
        except (OSError, Closed, Timeout) as e:
            last_err = e.__class__.__name__ + (": %s" % e if str(e) else "")
            s.close()
            if time.monotonic() >= end:
                raise ConnectError("no agent answered on %s%s (%s)"
                                   % (path, " within %gs" % wait if wait > 0 else "", last_err))
            time.sleep(0.1)


def main(argv):
    opts = {"timeout": 30.0, "wait": 0.0, "pid": 0, "sync": True, "noreply": 3.0,
            "pretty": False, "check": False, "quiet": False}
    args = []
    it = iter(argv)
    for a in it:
        if a == "--timeout":
            opts["timeout"] = float(next(it))
        elif a == "--wait":
            opts["wait"] = float(next(it))
        elif a == "--pid":
            opts["pid"] = int(next(it))
        elif a == "--no-sync":
            opts["sync"] = False
        elif a == "--noreply-wait":
            opts["noreply"] = float(next(it))
        elif a == "--pretty":
            opts["pretty"] = True
        elif a == "--check":
            opts["check"] = True
        elif a in ("-q", "--quiet"):
            opts["quiet"] = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(a)
    if not args:
        print(__doc__, file=sys.stderr)
        return 1
    path, requests = args[0], args[1:]

    if opts["sync"]:
        try:
            agent, took = connect(path, opts["wait"], opts["pid"], opts["timeout"])
        except ConnectError as e:
            print("qga_send: %s" % e, file=sys.stderr)
            return 1
        if opts["wait"] and not opts["quiet"]:
            print("qga_send: agent answered guest-sync-delimited after %.2f s" % took, file=sys.stderr)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError as e:
            print("qga_send: cannot connect to %s: %s" % (path, e), file=sys.stderr)
            return 1
        agent = Agent(s)

    interactive = not requests and sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing + history)
        except ImportError:
            pass
        print("connected to %s; type a command name (+ JSON args) or a JSON request; Ctrl-D quits"
              % path, file=sys.stderr)
        source = iter(lambda: input("qga> "), None)
    elif not requests:
        source = (line for line in sys.stdin if line.strip())
    else:
        source = iter(requests)

    status = 0
    while True:
        try:
            text = next(source)
        except (StopIteration, EOFError):
            break
        if not text.strip():
            continue
        try:
            req, name = parse_request(text)
        except ValueError as e:
            print("qga_send: bad request %r: %s" % (text, e), file=sys.stderr)
            if interactive:
                continue
            return 1
        no_reply = name in NO_REPLY_ON_SUCCESS
        try:
            agent.send(req)
            line = agent.read_line(time.monotonic() + (opts["noreply"] if no_reply else opts["timeout"]))
        except (Timeout, Closed) as e:
            if no_reply:
                if not opts["quiet"]:
                    how = "connection closed" if isinstance(e, Closed) else "no reply"
                    print("qga_send: %s: %s (expected on success)" % (name, how), file=sys.stderr)
                continue
            what = "timed out" if isinstance(e, Timeout) else "connection closed"
            print("qga_send: %s: %s waiting for a reply" % (name, what), file=sys.stderr)
            return 2
        except OSError as e:
            print("qga_send: %s: %s" % (name, e), file=sys.stderr)
            return 2
        text_out = line.decode("utf-8", "replace")
        try:
            reply = json.loads(text_out)
        except ValueError:
            reply = None
        if isinstance(reply, dict) and "error" in reply and opts["check"]:
            status = 3
        if not opts["quiet"]:
            if opts["pretty"] and reply is not None:
                text_out = json.dumps(reply, indent=2, ensure_ascii=False)
            print(text_out, flush=True)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
