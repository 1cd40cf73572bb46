#!/usr/bin/env python3
"""qga cp against a hand-written transfer loop, side by side (issue: fast transfers).

Starts the real qemu-ga 10.0.2 and our agent on unix sockets (temporary directories,
files only there), then moves one random file of SIZE MiB (default 256) both ways:

  loop    what a user writes today: a Python loop of guest-file-read / -write with
          4 MiB chunks, one request at a time, base64 by hand (against qemu-ga);
  qga cp  the qga command line (pipelined, checked end to end), against qemu-ga and
          against our agent.

Prints MiB/s for each, the ratios, and the CPU time the agent process itself used
(user + system, from /proc; a guest-exec'd sha256sum is not included): an agent busy
for most of the wall time is the bottleneck, whatever the client does.
Usage: scripts/bench-cp.py [SIZE_MIB]
Needs: cargo build --release -p qga-agent -p qga-cli, and .ci/install-deps.sh.
"""
import base64, hashlib, json, os, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, "target/release/qga-agent")
QGA = os.path.join(ROOT, "target/release/qga")
REF = os.environ.get("QGA_REFERENCE",
                     os.path.join(os.environ.get("QGA_TEST_CACHE", "/var/cache/qga-test"),
                                  "qemu-ga-10.0.2/usr/sbin/qemu-ga"))
CHUNK = 4 << 20


def start(binary, work):
    sock = os.path.join(work, "sock")
    p = subprocess.Popen([binary, "-m", "unix-listen", "-p", sock, "-t", work],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        if os.path.exists(sock):
            return p, sock
        time.sleep(0.01)
    raise SystemExit(f"{binary} did not start")


class Loop:
    """The hand-written client: one request, one reply, 4 MiB at a time."""

    def __init__(self, sock):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(sock)
        self.f = self.s.makefile("rb")

    def call(self, name, **args):
        self.s.sendall(json.dumps({"execute": name, "arguments": args}).encode())
        reply = json.loads(self.f.readline())
        if "error" in reply:
            raise SystemExit(f"{name}: {reply['error']['desc']}")
        return reply["return"]

    def download(self, path, dest):
        h = self.call("guest-file-open", path=path, mode="r")
        with open(dest, "wb") as out:
            while True:
                r = self.call("guest-file-read", handle=h, count=CHUNK)
                out.write(base64.b64decode(r["buf-b64"]))
                if r["eof"] or r["count"] == 0:
                    break
        self.call("guest-file-close", handle=h)

    def upload(self, src, path):
        h = self.call("guest-file-open", path=path, mode="w")
        with open(src, "rb") as f:
            while chunk := f.read(CHUNK):
                self.call("guest-file-write", handle=h, **{"buf-b64": base64.b64encode(chunk).decode()})
        self.call("guest-file-close", handle=h)


def cpu(pid):
    """User + system seconds the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn, pid):
    """(wall seconds, agent CPU seconds) of fn()."""
    c, t = cpu(pid), time.monotonic()
    fn()
    return time.monotonic() - t, cpu(pid) - c


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def main():
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    for b in (OURS, QGA, REF):
        if not os.path.exists(b):
            raise SystemExit(f"missing {b} (cargo build --release -p qga-agent -p qga-cli; .ci/install-deps.sh)")
    work = tempfile.mkdtemp(prefix="qga-bench-cp.")
    procs = []
    try:
        src = os.path.join(work, "src.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(size_mib << 20))
        digest = sha(src)
        results = {}
        for name, binary in (("qemu-ga", REF), ("ours", OURS)):
            d = os.path.join(work, name)
            os.mkdir(d)
            p, sock = start(binary, d)
            procs.append(p)
            qga = lambda *a: subprocess.run([QGA, "--socket", sock, *a], check=True,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if name == "qemu-ga":
                loop = Loop(sock)
                results["loop up, qemu-ga"] = timed(lambda: loop.upload(src, os.path.join(d, "l.bin")), p.pid)
                results["loop down, qemu-ga"] = timed(lambda: loop.download(src, os.path.join(d, "l.back")), p.pid)
                assert sha(os.path.join(d, "l.back")) == digest
                loop.f.close()
                loop.s.close()
            results[f"qga cp up, {name}"] = timed(lambda: qga("cp", src, ":" + os.path.join(d, "c.bin")), p.pid)
            results[f"qga cp down, {name}"] = timed(lambda: qga("cp", ":" + src, os.path.join(d, "c.back")), p.pid)
            assert sha(os.path.join(d, "c.back")) == digest
        print(f"{size_mib} MiB, one run each (MiB/s; ratio to the hand-written loop against qemu-ga;"
              " the agent's own CPU time)")
        for direction in ("up", "down"):
            base = size_mib / results[f"loop {direction}, qemu-ga"][0]
            for key in (f"loop {direction}, qemu-ga", f"qga cp {direction}, qemu-ga", f"qga cp {direction}, ours"):
                wall, agent = results[key]
                rate = size_mib / wall
                print(f"  {key:24s} {rate:8.1f} MiB/s  {rate / base:5.2f}x"
                      f"  agent CPU {agent:5.2f} s of {wall:5.2f} s ({100 * agent / wall:3.0f}%)")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
