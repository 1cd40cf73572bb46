//! Who is on the other end of a connection, for the audit log: the process of a unix
//! socket client (`SO_PEERCRED`) and the address of a vsock client (`getpeername`).

use std::os::fd::RawFd;

/// `pid 812, uid 0` for a unix socket client, if the kernel tells.
pub fn unix_peer(fd: RawFd) -> Option<String> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid out-buffer of `len` bytes for SO_PEERCRED.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then(|| format!("pid {}, uid {}", cred.pid, cred.uid))
}

/// `cid 2, port 1234` for a vsock client, if the kernel tells.
pub fn vsock_peer(fd: RawFd) -> Option<String> {
    // SAFETY: sockaddr_vm is plain data; getpeername fills at most `len` bytes of it.
    let (rc, addr) = unsafe {
        let mut addr: libc::sockaddr_vm = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        let rc = libc::getpeername(fd, std::ptr::addr_of_mut!(addr).cast(), &mut len);
        (rc, addr)
    };
    (rc == 0 && libc::c_int::from(addr.svm_family) == libc::AF_VSOCK)
        .then(|| format!("cid {}, port {}", addr.svm_cid, addr.svm_port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn unix_peer_is_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: geteuid has no memory effects.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(
            unix_peer(a.as_raw_fd()),
            Some(format!("pid {}, uid {uid}", std::process::id()))
        );
        assert_eq!(vsock_peer(a.as_raw_fd()), None);
    }
}
