#!/usr/bin/env python3
"""End-to-end check of the test-VM harness (and of an agent) inside a throwaway VM.

Usage:
  selftest.py [--workdir DIR] [--keep] [AGENT_BINARY]

Builds an initramfs around AGENT_BINARY (default: reference qemu-ga 10.0.2
from $QGA_TEST_CACHE), boots the VM, and checks: guest-ping, guest-info,
guest-get-fsinfo (/mnt/data on vda, serial QGADISK0), guest-get-users (alice
from utmp), guest-get-osinfo, guest-fsfreeze-freeze/status/thaw, guest-set-vcpus
(offline cpu1), guest-set-user-password (alice's /etc/shadow entry changes),
agent respawn after kill -9, and guest-shutdown (QEMU exits).
All state-changing commands go to the agent INSIDE the VM only.
Prints one line per check and a final "N passed, N failed" line; exit 1 on failure.
"""
import base64
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True          # no __pycache__ in the source tree
import qga_send  # noqa: E402

CACHE = os.environ.get("QGA_TEST_CACHE", "/var/cache/qga-test")


class VM:
    def __init__(self, workdir):
        self.workdir = workdir
        self.sock = os.path.join(workdir, "qga.sock")
        self.agent = None

    def connect(self, wait=0.0):
        pid = int(open(os.path.join(self.workdir, "qemu.pid")).read())
        if self.agent is not None:      # QEMU serves one client at a time
            self.agent.sock.close()
        self.agent, took = qga_send.connect(self.sock, wait, pid, 10.0)
        return took

    def cmd(self, execute, args=None, timeout=30.0):
        req = {"execute": execute}
        if args is not None:
            req["arguments"] = args
        self.agent.send(json.dumps(req))
        return json.loads(self.agent.read_line(time.monotonic() + timeout))

    def ok(self, execute, args=None):
        r = self.cmd(execute, args)
        if "return" not in r:
            raise AssertionError("%s: %s" % (execute, r))
        return r["return"]

    def sh(self, script):
        """Run a shell snippet in the guest via guest-exec; returns (rc, output)."""
        pid = self.ok("guest-exec", {"path": "/bin/sh", "arg": ["-c", script],
                                     "capture-output": "merged"})["pid"]
        for _ in range(200):
            st = self.ok("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                return st.get("exitcode"), base64.b64decode(st.get("out-data", "")).decode()
            time.sleep(0.05)
        raise AssertionError("guest-exec %r did not finish" % script)


def main(argv):
    workdir, keep, agent = "/tmp/qga-selftest", False, os.path.join(
        CACHE, "qemu-ga-10.0.2/usr/sbin/qemu-ga")
    it = iter(argv)
    for a in it:
        if a == "--workdir":
            workdir = next(it)
        elif a == "--keep":
            keep = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            agent = a
    os.makedirs(workdir, exist_ok=True)
    workdir = os.path.abspath(workdir)
    run = lambda *c: subprocess.run(c, check=True)  # noqa: E731
    run(os.path.join(HERE, "stop-vm.sh"), workdir)
    run(os.path.join(HERE, "build-initramfs.sh"), agent, workdir)
    run(os.path.join(HERE, "run-vm.sh"), workdir)
    vm = VM(workdir)
    vm.connect()
    passed = failed = 0

    def check(name, fn):
        nonlocal passed, failed
        try:
            detail = fn()
            passed += 1
            print("PASS %-28s %s" % (name, detail if detail is not None else ""), flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("FAIL %-28s %s: %s" % (name, e.__class__.__name__, e), flush=True)

    def t_ping():
        t = time.monotonic()
        vm.ok("guest-ping")
        return "%.2f ms" % ((time.monotonic() - t) * 1000)

    def t_info():
        r = vm.ok("guest-info")
        return "version %s, %d commands" % (r["version"], len(r["supported_commands"]))

    def t_fsinfo():
        fs = vm.ok("guest-get-fsinfo")
        data = [f for f in fs if f["mountpoint"] == "/mnt/data"]
        assert data, "no /mnt/data in %s" % fs
        d = data[0]
        assert d["name"] == "vda" and d["type"] == "ext4", d
        assert d["disk"][0].get("serial") == "QGADISK0", d["disk"]
        assert d["disk"][0]["bus-type"] == "virtio", d["disk"]
        return "vda ext4 serial=QGADISK0 dev=%s" % d["disk"][0].get("dev")

    def t_users():
        users = vm.ok("guest-get-users")
        assert any(u["user"] == "alice" for u in users), users
        return json.dumps(users)

    def t_osinfo():
        r = vm.ok("guest-get-osinfo")
        assert r.get("id") == "qgatest" and r.get("machine") == "x86_64", r
        return "%s / %s" % (r.get("pretty-name"), r.get("kernel-release"))

    def t_freeze():
        assert vm.ok("guest-fsfreeze-status") == "thawed"
        n = vm.ok("guest-fsfreeze-freeze")
        st = vm.ok("guest-fsfreeze-status")
        m = vm.ok("guest-fsfreeze-thaw")
        assert st == "frozen" and n == 1 and m == 1, (n, st, m)
        assert vm.ok("guest-fsfreeze-status") == "thawed"
        return "froze %d, thawed %d" % (n, m)

    def t_vcpus():
        n = vm.ok("guest-set-vcpus", {"vcpus": [{"logical-id": 1, "online": False}]})
        cpus = {c["logical-id"]: c["online"] for c in vm.ok("guest-get-vcpus")}
        assert n == 1 and cpus.get(1) is False, (n, cpus)
        return "cpu1 offline"

    def t_password():
        before = vm.sh("grep ^alice: /etc/shadow")[1]
        vm.ok("guest-set-user-password", {"username": "alice", "crypted": False,
                                          "password": base64.b64encode(b"s3cret pw").decode()})
        after = vm.sh("grep ^alice: /etc/shadow")[1]
        assert after != before and after.split(":")[1].startswith("$6$"), (before, after)
        r = vm.cmd("guest-set-user-password", {"username": "nosuch", "crypted": False,
                                               "password": "eA=="})
        assert "error" in r, r
        return "alice hash %s...; unknown user -> error" % after.split(":")[1][:12]

    def t_respawn():
        # the agent always runs as /usr/sbin/qemu-ga in the guest
        vm.sh("(sleep 0.3; kill -9 $(pidof qemu-ga)) >/dev/null 2>&1 &")
        time.sleep(0.6)
        took = vm.connect(wait=20)
        rc, out = vm.sh("cat /run/agent.starts")
        assert out.strip() == "2", out
        return "back after %.2f s (starts=%s)" % (took + 0.6, out.strip())

    def t_shutdown():
        pid = int(open(os.path.join(workdir, "qemu.pid")).read())
        t = time.monotonic()
        vm.agent.send(json.dumps({"execute": "guest-shutdown"}))
        while qga_send.alive(pid):
            if time.monotonic() - t > 30:
                raise AssertionError("QEMU still running 30 s after guest-shutdown")
            time.sleep(0.05)
        return "QEMU exited %.2f s after guest-shutdown" % (time.monotonic() - t)

    boot = open(os.path.join(workdir, "boot-time")).read().strip()
    print("boot-to-first-reply: %s s" % boot)
    for name, fn in [("guest-ping", t_ping), ("guest-info", t_info),
                     ("guest-get-fsinfo", t_fsinfo), ("guest-get-users", t_users),
                     ("guest-get-osinfo", t_osinfo), ("fsfreeze freeze/thaw", t_freeze),
                     ("guest-set-vcpus", t_vcpus), ("guest-set-user-password", t_password),
                     ("agent respawn", t_respawn), ("guest-shutdown", t_shutdown)]:
        check(name, fn)
    if not keep:
        subprocess.run([os.path.join(HERE, "stop-vm.sh"), workdir], check=False)
    print("selftest: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
