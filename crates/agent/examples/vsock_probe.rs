//! A minimal vsock client for the VM tests of `-m vsock-listen`: connects to
//! `CID PORT`, sends `REQUEST`, prints the first reply line.
//!
//! Usage: `vsock_probe CID PORT REQUEST`

use std::io::{Read, Write};
use std::os::fd::FromRawFd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: vsock_probe CID PORT REQUEST");
        std::process::exit(2);
    }
    let cid: u32 = args[1].parse().expect("CID");
    let port: u32 = args[2].parse().expect("PORT");
    // SAFETY: plain socket calls; sockaddr_vm is plain data passed with its size.
    let fd = unsafe {
        let fd = libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_vm = std::mem::zeroed();
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_cid = cid;
        addr.svm_port = port;
        let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        if libc::connect(fd, std::ptr::addr_of!(addr).cast(), len) < 0 {
            eprintln!("connect: {}", std::io::Error::last_os_error());
            std::process::exit(1);
        }
        fd
    };
    // SAFETY: `fd` is a connected socket that we own.
    let mut s = unsafe { std::fs::File::from_raw_fd(fd) };
    s.write_all(args[3].as_bytes()).expect("write");
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap_or(0) == 1 {
        reply.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    std::io::stdout().write_all(&reply).expect("stdout");
}
