#!/usr/bin/env python3
"""Hot-unplug / hot-plug the guest agent's virtio-serial port of a test VM via QMP.

Usage:
  qmp_port.py QMP_SOCK unplug          remove the port named org.qemu.guest_agent.0
  qmp_port.py QMP_SOCK plug [CHARDEV]  add it again on CHARDEV (default qga0, the
                                       chardev of scripts/vm/run-vm.sh)

unplug finds the virtserialport whose "name" property is org.qemu.guest_agent.0
(run-vm.sh gives it no id: it lives under /machine/peripheral-anon), sends
device_del and waits for DEVICE_DELETED. The guest sees the port vanish (udev
"remove"); plug makes it appear again (udev "add"). Prints what it did and how
long it took; exit status 1 on any QMP error or timeout.
"""
import json
import socket
import sys
import time

PORT_NAME = "org.qemu.guest_agent.0"


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.f = self.sock.makefile("rw")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("QMP connection closed")
        return json.loads(line)

    def cmd(self, execute, **arguments):
        req = {"execute": execute}
        if arguments:
            req["arguments"] = arguments
        self.f.write(json.dumps(req) + "\n")
        self.f.flush()
        while True:
            r = self.read()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(f"{execute}: {r['error']}")
            return r["return"]

    def wait_event(self, name, timeout):
        end = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name:
                    self.events.remove(e)
                    return e
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no {name} event within {timeout}s")
            self.sock.settimeout(left)
            self.events.append(self.read())


def agent_port(q):
    """QOM path of the virtserialport named PORT_NAME."""
    for parent in ("/machine/peripheral", "/machine/peripheral-anon"):
        try:
            children = q.cmd("qom-list", path=parent)
        except RuntimeError:
            continue
        for c in children:
            if not c["type"].startswith("child<"):
                continue
            path = f"{parent}/{c['name']}"
            if c["type"] != "child<virtserialport>":
                continue
            if q.cmd("qom-get", path=path, property="name") == PORT_NAME:
                return path
    return None


def main(argv):
    if len(argv) < 3 or argv[2] not in ("unplug", "plug"):
        sys.stderr.write(__doc__)
        return 2
    q = Qmp(argv[1])
    t0 = time.monotonic()
    if argv[2] == "unplug":
        path = agent_port(q)
        if path is None:
            print(f"no virtserialport named {PORT_NAME}", file=sys.stderr)
            return 1
        q.cmd("device_del", id=path)
        q.wait_event("DEVICE_DELETED", 30)
        if agent_port(q) is not None:
            print("the port is still there after DEVICE_DELETED", file=sys.stderr)
            return 1
        print(f"unplugged {path} in {time.monotonic() - t0:.2f}s")
    else:
        chardev = argv[3] if len(argv) > 3 else "qga0"
        if agent_port(q) is not None:
            print(f"a port named {PORT_NAME} is already there", file=sys.stderr)
            return 1
        q.cmd("device_add", driver="virtserialport", id="qgaport", chardev=chardev, name=PORT_NAME)
        print(f"plugged /machine/peripheral/qgaport on {chardev} in {time.monotonic() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, RuntimeError, ValueError) as e:
        print(f"qmp_port.py: {e}", file=sys.stderr)
        sys.exit(1)
