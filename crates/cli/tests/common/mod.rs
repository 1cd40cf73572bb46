//! Shared harness for the `qga` integration tests: temporary directories, agents on
//! unix sockets (ours and the reference qemu-ga 10.0.2), running the `qga` binary, and
//! a fake agent that records requests and answers with canned replies.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use qga_proto::{Dict, Value};

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("qga-cli-test.{}.{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which agent to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Ours,
    Reference,
}

/// The reference qemu-ga 10.0.2 (override: `QGA_REFERENCE`).
pub fn reference_binary() -> PathBuf {
    if let Ok(p) = std::env::var("QGA_REFERENCE") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("QGA_TEST_CACHE").unwrap_or_else(|_| "/var/cache/qga-test".into());
    Path::new(&cache).join("qemu-ga-10.0.2/usr/sbin/qemu-ga")
}

/// Our agent binary. `CARGO_BIN_EXE_*` exists only for a package's own binaries, so:
/// `$QGA_AGENT_BIN` if set, else `cargo build -p qga-agent` into the same target
/// directory and profile as this test (derived from the test executable's path:
/// `<target>/<profile>/deps/<test>`). cargo has released its build lock while tests
/// run, and the build is a no-op when the agent is already up to date, so this is
/// correct after any source change and cheap otherwise. Done once per test binary.
pub fn our_agent() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("QGA_AGENT_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("<target>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(p) => p.to_string(),
            None => "dev".to_string(),
        };
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "qga-agent",
                "--bin",
                "qga-agent",
                "--profile",
                &profile,
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p qga-agent");
        assert!(status.success(), "building qga-agent failed");
        let bin = profile_dir.join("qga-agent");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}

/// A running agent on `<dir>/sock`, state in `<dir>`, cwd `<dir>`; killed on drop.
pub struct Agent {
    pub dir: TempDir,
    pub sock: PathBuf,
    child: Option<Child>,
}

impl Agent {
    pub fn start(which: Which, extra: &[&str]) -> Agent {
        let bin = match which {
            Which::Ours => our_agent(),
            Which::Reference => {
                let b = reference_binary();
                assert!(
                    b.exists(),
                    "reference qemu-ga not found at {} (run .ci/install-deps.sh or set QGA_REFERENCE)",
                    b.display()
                );
                b
            }
        };
        let dir = TempDir::new();
        let sock = dir.join("sock");
        let child = Command::new(&bin)
            .args(["-m", "unix-listen", "-p"])
            .arg(&sock)
            .arg("-t")
            .arg(&dir.0)
            .args(extra)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} never listened on {}",
                bin.display(),
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // That probe connection was served and closed; the agent is ready.
        Agent {
            dir,
            sock,
            child: Some(child),
        }
    }

    /// Stops the agent (by its pid) and leaves the socket file behind.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `qga` with `args`, `stdin` as its standard input, and without `$QGA_SOCKET`.
pub fn qga(args: &[&str], stdin: &[u8]) -> Output {
    qga_env(args, stdin, &[])
}

/// Same, with extra environment variables.
pub fn qga_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qga"));
    cmd.args(args)
        .env_remove("QGA_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn qga");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for qga");
    writer.join().unwrap();
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses one JSON document (the whole of `--json` output).
pub fn json(b: &[u8]) -> Value {
    let s = text(b);
    let t = s.trim_end();
    assert!(
        !t.contains('\n'),
        "expected exactly one line of JSON, got {s:?}"
    );
    match qga_proto::json::parse_one(t.as_bytes()) {
        Some(Ok(v)) => v,
        other => panic!("not JSON: {s:?} ({other:?})"),
    }
}

pub fn get<'v>(v: &'v Value, k: &str) -> &'v Value {
    v.as_dict()
        .and_then(|d| d.get(k))
        .unwrap_or_else(|| panic!("no {k} in {v:?}"))
}

/// Deterministic pseudo-random bytes covering every byte value.
pub fn binary_data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i < 256 {
                i as u8
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

/// A fake agent: answers the handshake as qemu-ga does, records every other request
/// and answers it from `replies` (command name → reply line; a missing entry gets
/// CommandNotFound; an entry of `""` gets no reply at all).
pub struct Fake {
    pub sock: PathBuf,
    pub requests: Arc<Mutex<Vec<Value>>>,
    _dir: TempDir,
}

impl Fake {
    pub fn start(replies: &[(&str, &str)]) -> Fake {
        Fake::start_with(b"", replies)
    }

    /// Same, writing `greeting` first on every connection (stale bytes a real channel
    /// may hold from an earlier client).
    pub fn start_with(greeting: &[u8], replies: &[(&str, &str)]) -> Fake {
        let greeting = greeting.to_vec();
        let dir = TempDir::new();
        let sock = dir.join("fake.sock");
        let listener = UnixListener::bind(&sock).expect("bind fake agent");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies: Vec<(String, String)> = replies
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let _ = conn.write_all(&greeting);
                serve(&mut conn, &replies, &log);
            }
        });
        Fake {
            sock,
            requests,
            _dir: dir,
        }
    }

    /// The recorded requests' `execute` names and JSON, handshakes excluded.
    pub fn seen(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|v| text(&v.to_json()))
            .collect()
    }
}

fn serve(conn: &mut UnixStream, replies: &[(String, String)], log: &Mutex<Vec<Value>>) {
    let mut streamer = qga_proto::json::Streamer::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut out = Vec::new();
        streamer.feed(&buf[..n], &mut |m| match m {
            Err(desc) => {
                let mut e = Dict::new();
                e.insert("class", Value::str("GenericError"));
                e.insert("desc", Value::Str(desc));
                let mut r = Dict::new();
                r.insert("error", Value::Dict(e));
                out.extend_from_slice(&Value::Dict(r).to_json());
                out.push(b'\n');
            }
            Ok(req) => {
                let d = req.as_dict().cloned().unwrap_or_default();
                let name = d.get("execute").and_then(Value::as_bytes).map(text).unwrap_or_default();
                if name == "guest-sync-delimited" {
                    let id = d.get("arguments").and_then(|a| a.as_dict()).and_then(|a| a.get("id")).cloned();
                    out.push(0xFF);
                    out.extend_from_slice(b"{\"return\": ");
                    out.extend_from_slice(&id.unwrap_or(Value::Null).to_json());
                    out.extend_from_slice(b"}\n");
                    return;
                }
                log.lock().unwrap().push(req.clone());
                match replies.iter().find(|(k, _)| *k == name) {
                    Some((_, r)) if r.is_empty() => {}
                    Some((_, r)) => {
                        out.extend_from_slice(r.as_bytes());
                        out.push(b'\n');
                    }
                    None => out.extend_from_slice(
                        format!(
                            "{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"The command {name} has not been found\"}}}}\n"
                        )
                        .as_bytes(),
                    ),
                }
            }
        });
        if conn.write_all(&out).is_err() {
            return;
        }
    }
}
