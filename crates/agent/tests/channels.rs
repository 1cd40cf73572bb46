//! Channels other than unix-listen, on the host: isa-serial through a pseudo-terminal,
//! `--retry-path` while the device is missing, and systemd socket activation.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

/// A pseudo-terminal pair: the master for the test, the slave's path for the agent.
fn openpty() -> (File, String) {
    // SAFETY: plain libc calls; ptsname's static buffer is copied before any other call.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(m))
            .to_string_lossy()
            .into_owned();
        (File::from_raw_fd(m), name)
    }
}

fn read_line(f: &mut File, deadline: Duration) -> String {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\n") {
        assert!(
            start.elapsed() < deadline,
            "no reply; got {:?}",
            String::from_utf8_lossy(&out)
        );
        if f.read(&mut b).unwrap_or(0) == 1 {
            out.push(b[0]);
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_string()
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(args: &[&str], dir: &TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qga-agent"));
    c.args(args)
        .arg("-t")
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

#[test]
fn isa_serial_over_a_pty() {
    let dir = TempDir::new();
    let (mut master, slave) = openpty();
    let _a = Killer(
        agent(&["-m", "isa-serial", "-p", &slave], &dir)
            .spawn()
            .expect("spawn"),
    );
    std::thread::sleep(Duration::from_millis(300));
    master
        .write_all(br#"{"execute":"guest-sync","arguments":{"id":31}}"#)
        .expect("write");
    // Raw mode: no echo and no CR/LF translation on the way back.
    assert_eq!(
        read_line(&mut master, Duration::from_secs(10)),
        r#"{"return": 31}"#
    );
}

#[test]
fn retry_path_waits_for_the_device() {
    let dir = TempDir::new();
    let (mut master, slave) = openpty();
    let link = dir.join("port");
    let link_s = link.to_string_lossy().into_owned();
    let _a = Killer(
        agent(&["-m", "isa-serial", "-p", &link_s, "-r"], &dir)
            .spawn()
            .expect("spawn"),
    );
    std::thread::sleep(Duration::from_millis(500));
    std::os::unix::fs::symlink(&slave, &link).expect("symlink");
    // The agent retries every 5 s; give it two rounds.
    let start = Instant::now();
    loop {
        master.write_all(b"\xff").expect("write");
        master
            .write_all(br#"{"execute":"guest-sync","arguments":{"id":5}}"#)
            .expect("write");
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: a non-blocking read check on our own descriptor.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let mut buf = [0u8; 4096];
        let n = master.read(&mut buf).unwrap_or(0);
        if String::from_utf8_lossy(&buf[..n]).contains(r#"{"return": 5}"#) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "agent never opened the device"
        );
    }
}

#[test]
fn socket_activation_uses_fd_3() {
    let dir = TempDir::new();
    let sock = dir.join("activated.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    // LISTEN_PID must name the agent itself: set it in the shell that execs the agent.
    cmd.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" -m virtio-serial -p /nonexistent -t \"$1\"",
    ])
    .arg(env!("CARGO_BIN_EXE_qga-agent"))
    .arg(&dir.0)
    .stdin(Stdio::null());
    // SAFETY: dup2 in the child before exec; fd is open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _a = Killer(cmd.spawn().expect("spawn"));
    let mut s = UnixStream::connect(&sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(br#"{"execute":"guest-sync","arguments":{"id":3}}"#)
        .expect("write");
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).expect("read");
    assert_eq!(&buf[..n], b"{\"return\": 3}\n");
}
