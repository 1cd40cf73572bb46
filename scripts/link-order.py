#!/usr/bin/env python3
"""Regenerates crates/agent/link-order.txt: the functions an idle agent has run.

The release agent (glibc) is linked with these functions first and side by side
(lld's --symbol-ordering-file, see crates/agent/build.rs). The kernel maps a program's
code in 64 KiB windows around each page it touches ("fault-around"), so code run at
start-up and while serving guest-sync/guest-ping, scattered over the binary, kept most
of the 0.8 MB binary resident; packed together it is about 0.2 MB.

How: build the release agent (build.rs has lld write a link map), run it under callgrind (start-up,
guest-sync-delimited, guest-sync, guest-info, guest-ping, then 1.5 s idle), map every
executed instruction to the input section it came from, and write those sections'
symbols. Rerun after a Rust toolchain update or large changes to start-up or the
reader (scripts/footprint.sh reports how much of the list still matches); the list is
only a layout hint, so a stale one costs resident memory, never correctness.

    scripts/link-order.py            # needs valgrind, a release build takes ~1 min
"""

import bisect
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = os.path.join(ROOT, "crates/agent/link-order.txt")
REQUESTS = [
    b'{"execute":"guest-sync-delimited","arguments":{"id":1}}\n',
    b'{"execute":"guest-sync","arguments":{"id":2}}\n',
    b'{"execute":"guest-info"}\n',
    b'{"execute":"guest-ping"}\n',
]


def build():
    """Builds the release agent; returns its path and its link map's."""
    out = subprocess.run(
        ["cargo", "build", "--quiet", "--release", "-p", "qga-agent",
         "--message-format=json"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    agent = out_dir = None
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("package_id", "").find("qga-agent") < 0 and \
                "/crates/agent" not in msg.get("package_id", ""):
            continue
        if msg.get("reason") == "build-script-executed":
            out_dir = msg["out_dir"]
        elif msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            agent = msg["executable"]
    map_path = out_dir and os.path.join(out_dir, "qga-agent.map")
    if not agent or not map_path or not os.path.exists(map_path):
        sys.exit("link-order: no link map (the agent is linked with lld only with "
                 "Rust >= 1.90 on x86_64 glibc and no other linker configured)")
    return agent, map_path


def talk(sock_path):
    deadline = time.time() + 60
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock_path)
            break
        except OSError:
            if time.time() > deadline:
                sys.exit("link-order: the agent did not start under valgrind")
            time.sleep(0.2)
    for req in REQUESTS:
        s.sendall(req)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("link-order: the agent closed the connection")
            reply += chunk
    time.sleep(1.5)
    s.close()


def profile(agent, out):
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "sock")
        vg = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--dump-instr=yes",
             "--callgrind-out-file=" + out, agent,
             "-m", "unix-listen", "-p", sock, "-t", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            talk(sock)
        finally:
            vg.terminate()
            vg.wait()


def executed(callgrind_out, binary_name):
    """Instruction addresses callgrind saw in the agent's own object."""
    names, cur, last, addrs = {}, None, 0, set()
    for line in open(callgrind_out):
        # Object names are compressed: "(n) name" the first time, in an ob= or a
        # cob= line, then "(n)".
        m = re.match(r"c?ob=\((\d+)\)\s*(.*)", line.strip())
        if m:
            if m.group(2):
                names[m.group(1)] = m.group(2)
            if line.startswith("ob="):
                cur = names.get(m.group(1))
            continue
        if not line or line[0] not in "0123456789+-*":
            continue
        tok = line.split()[0]
        if tok.startswith("0x"):
            last = int(tok, 16)
        elif tok[0] in "+-":
            last += int(tok)
        elif tok != "*":
            continue
        if cur and os.path.basename(cur) == binary_name:
            addrs.add(last)
    return addrs


def sections(map_path):
    """(address, size, name) of every input .text section in lld's map."""
    out = []
    pat = re.compile(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S+:\((\.text\.[^)]+)\)")
    for line in open(map_path):
        m = pat.match(line)
        if m:
            out.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    out.sort()
    return out


def main():
    agent, map_path = build()
    with tempfile.TemporaryDirectory() as tmp:
        cg = os.path.join(tmp, "callgrind.out")
        profile(agent, cg)
        addrs = executed(cg, os.path.basename(agent))
        secs = sections(map_path)
    starts = [s[0] for s in secs]
    hit = {}
    for a in addrs:
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and secs[i][0] <= a < secs[i][0] + secs[i][1]:
            hit[secs[i][2]] = secs[i]
    if not hit:
        sys.exit("link-order: no executed function found in the link map")
    symbols = []
    for _, _, name in sorted(hit.values()):
        sym = name[len(".text."):]
        for prefix in ("unlikely.", "hot.", "startup.", "exit."):
            if sym.startswith(prefix):
                sym = sym[len(prefix):]
        symbols.append(sym)
    with open(ORDER, "w") as f:
        f.write("# Generated by scripts/link-order.py: the functions an idle agent has run,\n"
                "# which the release build places side by side (crates/agent/build.rs).\n")
        f.write("".join(s + "\n" for s in symbols))
    size = sum(s[1] for s in hit.values())
    print(f"link-order: {len(symbols)} functions, {size / 1024:.0f} KiB of code -> {ORDER}")


if __name__ == "__main__":
    main()
