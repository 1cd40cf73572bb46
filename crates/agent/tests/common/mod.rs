//! Shared harness for the agent's integration tests: spawn our `qga-agent` or the real
//! qemu-ga 10.0.2 on a unix socket in a fresh temporary directory, talk raw bytes to it,
//! and stop it by pid (SIGTERM, then the exit status is checked).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `.ci/install-deps.sh` leaves the reference agent (override: `QGA_REFERENCE`).
pub fn reference_binary() -> PathBuf {
    if let Ok(p) = std::env::var("QGA_REFERENCE") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("QGA_TEST_CACHE").unwrap_or_else(|_| "/var/cache/qga-test".into());
    Path::new(&cache).join("qemu-ga-10.0.2/usr/sbin/qemu-ga")
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/qgatest.<unique>`.
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("qgatest.{}.{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    /// A path inside it.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running agent on `<dir>/sock` with state in `<dir>`; cwd is `<dir>`.
pub struct AgentProc {
    /// Its directory (socket, state files, test files).
    pub dir: TempDir,
    /// The socket path.
    pub sock: PathBuf,
    child: Option<Child>,
}

impl AgentProc {
    /// Our agent with extra arguments.
    pub fn ours(extra: &[&str]) -> Self {
        Self::spawn(Path::new(env!("CARGO_BIN_EXE_qga-agent")), extra, None)
    }

    /// The real qemu-ga 10.0.2. Panics with a pointer to the installer when missing:
    /// differential tests must not silently pass without their reference.
    pub fn reference(extra: &[&str]) -> Self {
        let bin = reference_binary();
        assert!(
            bin.exists(),
            "reference qemu-ga not found at {} (run .ci/install-deps.sh or set QGA_REFERENCE)",
            bin.display()
        );
        Self::spawn(&bin, extra, None)
    }

    /// Spawns `bin -m unix-listen -p <dir>/sock -t <dir> extra...`, with `env` as the
    /// whole environment when given.
    pub fn spawn(bin: &Path, extra: &[&str], env: Option<&[(&str, &str)]>) -> Self {
        let dir = TempDir::new();
        let sock = dir.join("sock");
        let mut cmd = Command::new(bin);
        cmd.args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(&dir.0)
            .args(extra);
        cmd.current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(env) = env {
            cmd.env_clear();
            for (k, v) in env {
                cmd.env(k, v);
            }
        }
        let child = spawn_retrying(&mut cmd);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "agent did not create {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        AgentProc {
            dir,
            sock,
            child: Some(child),
        }
    }

    /// A new client connection.
    pub fn connect(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(&self.sock) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
                    return Client {
                        stream: s,
                        buf: Vec::new(),
                    };
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "connect {}: {e}",
                        self.sock.display()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGTERM, wait (at most 10 s: qemu-ga 10.0.2 sometimes deadlocks in its SIGTERM
    /// handler, and is then killed), and return the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: plain syscall on our own child's pid.
        unsafe { libc_kill(child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Spawns `cmd`, retrying on ETXTBSY: a script a test has just written can be "busy"
/// while another test thread's fork still holds the writer's descriptor.
pub fn spawn_retrying(cmd: &mut Command) -> Child {
    for _ in 0..100 {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("spawn {cmd:?}: {e}"),
        }
    }
    panic!("spawn {cmd:?}: text file busy for 2 s")
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw-bytes client.
pub struct Client {
    /// The connection.
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one reply line (through its `\n`), raw 0xFF bytes included.
    pub fn recv(&mut self) -> Vec<u8> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                return self.buf.drain(..=scanned + i).collect();
            }
            scanned = self.buf.len();
            let mut chunk = vec![0u8; 1 << 16];
            let n = self.stream.read(&mut chunk).expect("recv (timed out?)");
            assert!(
                n > 0,
                "agent closed the connection; got so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether a reply arrives within `wait` (for cases that must get none).
    pub fn recv_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        self.stream.set_read_timeout(Some(wait)).ok();
        let got = loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                break Some(self.buf.drain(..=i).collect());
            }
            let mut chunk = vec![0u8; 1 << 16];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => break None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok();
        got
    }

    /// Sends a request and returns its reply as text (without the newline).
    pub fn cmd(&mut self, json: &str) -> String {
        self.send(json.as_bytes());
        let r = self.recv();
        String::from_utf8_lossy(&r[..r.len() - 1]).into_owned()
    }
}

impl Client {
    /// The documented resync: a 0xFF byte, then guest-sync-delimited; skip everything up
    /// to the 0xFF that precedes the reply carrying our id.
    pub fn handshake(&mut self, id: u32) {
        self.send(b"\xff");
        self.send(
            format!("{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}")
                .as_bytes(),
        );
        let want = format!("\u{0}{{\"return\": {id}}}\n");
        let want = &want.as_bytes()[1..];
        loop {
            let line = self.recv();
            if let Some(pos) = line.iter().position(|&b| b == 0xFF) {
                if &line[pos + 1..] == want {
                    return;
                }
            }
        }
    }
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A test VM (scripts/vm) running an agent on its virtio-serial port.
pub struct Vm {
    /// Its work directory (qga.sock, console.log, data.img, ...).
    pub dir: TempDir,
}

impl Vm {
    /// Builds an initramfs around `agent` (with `extra` agent arguments) and boots it;
    /// returns once the agent answered guest-sync.
    pub fn boot(agent: &Path, extra: &[&str]) -> Vm {
        Self::boot_with(agent, &[], extra)
    }

    /// Like [`Vm::boot`], with options for build-initramfs.sh (`--add SRC:DEST`,
    /// `--module NAME`).
    pub fn boot_with(agent: &Path, build_opts: &[&str], extra: &[&str]) -> Vm {
        Self::boot_with_ports(agent, build_opts, extra, &[])
    }

    /// Like [`Vm::boot_with`], with more virtio-serial ports: the guest sees port
    /// `name` as `/sys/class/virtio-ports/vport*/name`, the host serves it on
    /// `<dir>/<name>.sock` (see [`Vm::connect_port`]).
    pub fn boot_with_ports(
        agent: &Path,
        build_opts: &[&str],
        extra: &[&str],
        ports: &[&str],
    ) -> Vm {
        let dir = TempDir::new();
        let scripts = workspace_root().join("scripts/vm");
        let status = Command::new(scripts.join("build-initramfs.sh"))
            .args(build_opts)
            .arg(agent)
            .arg(&dir.0)
            .arg("--")
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .expect("build-initramfs.sh");
        assert!(status.success(), "build-initramfs.sh failed");
        let mut qemu_args: Vec<String> = Vec::new();
        for (i, name) in ports.iter().enumerate() {
            let sock = dir.join(&format!("{name}.sock"));
            qemu_args.push("-chardev".into());
            qemu_args.push(format!(
                "socket,id=port{i},path={},server=on,wait=off",
                sock.display()
            ));
            qemu_args.push("-device".into());
            qemu_args.push(format!("virtserialport,chardev=port{i},name={name}"));
        }
        let status = Command::new(scripts.join("run-vm.sh"))
            .args(["--lifetime", "900", "--timeout", "180"])
            .arg(&dir.0)
            .args(if qemu_args.is_empty() {
                None
            } else {
                Some("--")
            })
            .args(&qemu_args)
            .stdout(Stdio::null())
            .status()
            .expect("run-vm.sh");
        let vm = Vm { dir };
        if !status.success() {
            let console = std::fs::read_to_string(vm.dir.join("console.log")).unwrap_or_default();
            panic!("run-vm.sh failed; console:\n{console}");
        }
        vm
    }

    /// Connects to the agent socket and resynchronises.
    pub fn connect(&self) -> Client {
        let s = UnixStream::connect(self.dir.join("qga.sock")).expect("connect qga.sock");
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let mut c = Client {
            stream: s,
            buf: Vec::new(),
        };
        c.handshake(4711);
        c
    }

    /// Connects to the extra port `name` (see [`Vm::boot_with_ports`]) and
    /// resynchronises, resending the handshake until whatever the guest started on
    /// that port answers (at most 30 s).
    pub fn connect_port(&self, name: &str) -> Client {
        let path = self.dir.join(&format!("{name}.sock"));
        let s = UnixStream::connect(&path)
            .unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        let mut c = Client {
            stream: s,
            buf: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for id in 1u32.. {
            assert!(
                Instant::now() < deadline,
                "nothing answered guest-sync-delimited on port {name}"
            );
            c.send(b"\xff");
            c.send(
                format!("{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}")
                    .as_bytes(),
            );
            // Earlier ids' replies may come first; only this id's ends the wait.
            let want = format!("{{\"return\": {id}}}\n");
            while let Some(line) = c.recv_within(Duration::from_secs(1)) {
                if let Some(pos) = line.iter().position(|&b| b == 0xFF) {
                    if line[pos + 1..] == *want.as_bytes() {
                        c.stream
                            .set_read_timeout(Some(Duration::from_secs(60)))
                            .ok();
                        return c;
                    }
                }
            }
        }
        unreachable!()
    }

    /// Whether QEMU is still running.
    pub fn running(&self) -> bool {
        let pid = std::fs::read_to_string(self.dir.join("qemu.pid")).unwrap_or_default();
        Path::new(&format!("/proc/{}", pid.trim())).exists() && !pid.trim().is_empty()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/vm/stop-vm.sh"))
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Our agent, built static for the VM (once per test process).
pub fn static_agent() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(workspace_root().join("scripts/build-static.sh"))
            .output()
            .expect("run scripts/build-static.sh");
        assert!(
            out.status.success(),
            "static build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// An example program of this crate, built static like the agent (for use in the VM).
pub fn static_example(name: &str) -> PathBuf {
    // The same C library as the agent: the example sits next to it.
    let agent = static_agent();
    let release = agent.parent().expect("static agent path");
    let triple = release
        .parent()
        .and_then(|t| t.file_name())
        .and_then(|t| t.to_str())
        .expect("target triple in the static agent path")
        .to_string();
    let mut cmd = Command::new("cargo");
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "qga-agent",
        "--example",
        name,
    ])
    .args(["--target", &triple, "--target-dir"])
    .arg(workspace_root().join("target/static"));
    if triple.ends_with("-gnu") {
        cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    }
    let status = cmd.status().expect("cargo build --example");
    assert!(status.success(), "static build of example {name} failed");
    release.join("examples").join(name)
}

/// VMs are heavy under TCG on two cores: tests take turns.
pub fn vm_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `return` member of a reply line, decoded as `T` (panics on an error reply).
pub fn ret<T: qga_proto::FromQapi>(reply: &str) -> T {
    let v = qga_proto::json::parse_one(reply.as_bytes())
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("not JSON: {reply:.200}"));
    let r = v.as_dict().and_then(|d| d.get("return"));
    T::from_qapi(
        Some(r.unwrap_or_else(|| panic!("no return: {reply:.200}"))),
        qga_proto::Path::REPLY,
    )
    .unwrap()
}

/// A reply with every number made 0, so two agents' answers compare despite counters,
/// ids and sizes.
pub fn zero_numbers(reply: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for ch in reply.chars() {
        if ch.is_ascii_digit() {
            if !in_num {
                out.push('0');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(ch);
        }
    }
    out
}

/// Standard base64 (as in guest-file-read and guest-exec-status replies), decoded to
/// text.
pub fn decode_b64(s: &str) -> String {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    } as u32;
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk.iter().filter(|&&c| c != b'=').count();
        let v = chunk.iter().fold(0u32, |acc, &c| {
            (acc << 6) | if c == b'=' { 0 } else { val(c) }
        });
        let v = v << (6 * (4 - chunk.len()));
        out.extend_from_slice(&v.to_be_bytes()[1..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// xorshift64*: deterministic, so a failing random test can be replayed from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
