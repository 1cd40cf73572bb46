//! The channels to the host (`-m`): virtio-serial, isa-serial, unix-listen,
//! vsock-listen, and a socket handed over by systemd.
//!
//! A channel yields one [`Conn`] at a time. A listening socket yields the next client
//! only after the previous one left (qemu-ga serves one client at a time, backlog 1).
//! A serial device is one endless connection: while the host side is absent the reader
//! sleeps in the kernel (edge-triggered epoll on the port's wait queue) instead of
//! polling every 100 ms as qemu-ga does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};

use crate::config::Method;

/// An open channel.
pub enum Channel {
    /// A device that is always "connected": virtio-serial or isa-serial.
    Device(std::sync::Arc<Conn>),
    /// A listening unix socket.
    Unix(UnixListener),
    /// A listening vsock socket.
    Vsock(OwnedFd),
}

/// One connection to the host: read by the reader thread, written by the executor.
pub enum Conn {
    /// A unix-socket client.
    Unix(UnixStream),
    /// A vsock client.
    Vsock(File),
    /// A serial device; `epoll` waits for the port to become readable.
    Device {
        /// The device, opened non-blocking.
        file: File,
        /// Edge-triggered epoll set holding `file`.
        epoll: OwnedFd,
    },
}

impl Channel {
    /// Opens the channel as qemu-ga does for `method` and `path`.
    pub fn open(method: Method, path: &str) -> io::Result<Channel> {
        match method {
            Method::VirtioSerial => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
                    .open(path)?;
                Ok(Channel::Device(std::sync::Arc::new(Conn::device(file)?)))
            }
            Method::IsaSerial => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
                    .open(path)?;
                set_raw_termios(file.as_raw_fd())?;
                Ok(Channel::Device(std::sync::Arc::new(Conn::device(file)?)))
            }
            Method::UnixListen => {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                let listener = UnixListener::bind(path)?;
                // SAFETY: re-listening on our own listening socket only changes the backlog.
                if unsafe { libc::listen(listener.as_raw_fd(), 1) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(Channel::Unix(listener))
            }
            Method::VsockListen => open_vsock(path),
        }
    }

    /// Adopts a listening socket passed by systemd (fd 3), choosing the method from its
    /// address family.
    pub fn from_activation_fd(fd: RawFd) -> Result<Channel, String> {
        // SAFETY: sockaddr_storage is plain data; getsockname fills at most `len` bytes.
        let family = unsafe {
            let mut addr: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getsockname(fd, std::ptr::addr_of_mut!(addr).cast(), &mut len) < 0 {
                return Err(format!(
                    "failed to get socket name: {}",
                    io::Error::last_os_error()
                ));
            }
            libc::c_int::from(addr.ss_family)
        };
        // SAFETY: marking an inherited descriptor close-on-exec has no memory effects.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: systemd handed this descriptor to us; nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        match family {
            libc::AF_UNIX => Ok(Channel::Unix(UnixListener::from(owned))),
            libc::AF_VSOCK => Ok(Channel::Vsock(owned)),
            _ => Err("unsupported listen fd type".into()),
        }
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<std::sync::Arc<Conn>> {
        match self {
            Channel::Device(conn) => Ok(conn.clone()),
            Channel::Unix(l) => {
                let (s, _) = l.accept()?;
                set_send_buffer(&s, SEND_BUFFER);
                Ok(std::sync::Arc::new(Conn::Unix(s)))
            }
            Channel::Vsock(fd) => {
                // SAFETY: accept4 on our listening socket; peer address not requested.
                let c = unsafe {
                    libc::accept4(
                        fd.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    )
                };
                if c < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: accept4 returned a new descriptor that we own.
                Ok(std::sync::Arc::new(Conn::Vsock(unsafe {
                    File::from_raw_fd(c)
                })))
            }
        }
    }

    /// Whether this channel is a device whose "connection" never ends.
    pub fn is_device(&self) -> bool {
        matches!(self, Channel::Device(_))
    }
}

/// Send buffer asked for on a unix-socket client connection. With the default
/// (about 200 KiB) a 5 MiB guest-file-read reply goes out in some 25 hand-offs, the
/// agent waiting whenever the host stops reading to decode; with 4 MiB it is written
/// in one go and the agent turns to the next request. The kernel caps it at
/// `net.core.wmem_max` and only uses it while replies are in flight.
const SEND_BUFFER: libc::c_int = 4 << 20;

/// Asks for a larger send buffer; failure leaves the default (nothing else changes).
fn set_send_buffer(s: &impl AsRawFd, bytes: libc::c_int) {
    // SAFETY: setsockopt reads one c_int from a valid pointer of the given length.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            std::ptr::addr_of!(bytes).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl Conn {
    fn device(file: File) -> io::Result<Conn> {
        // SAFETY: epoll_create1 has no memory effects.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: epoll_create1 returned a descriptor that we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: both descriptors are open; `ev` is a valid epoll_event.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, file.as_raw_fd(), &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Conn::Device { file, epoll })
    }

    /// Reads some bytes. `Ok(0)` means the client left (never for a device: while the
    /// host side is away the call sleeps until it is back and sends something).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => (&*s).read(buf),
            Conn::Vsock(f) => (&*f).read(buf),
            Conn::Device { file, epoll } => loop {
                match (&*file).read(buf) {
                    Ok(n) if n > 0 => return Ok(n),
                    // 0: the host side is not connected; EAGAIN: nothing yet.
                    Ok(_) => wait_edge(epoll)?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_edge(epoll)?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Writes a whole reply. A device that is full is waited on, not spun on.
    pub fn write_all(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Unix(s) => (&*s).write_all(data),
            Conn::Vsock(f) => (&*f).write_all(data),
            Conn::Device { file, .. } => {
                let mut rest = data;
                while !rest.is_empty() {
                    match (&*file).write(rest) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            poll_one(file.as_raw_fd(), libc::POLLOUT)?
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }
}

/// Sleeps until the device's wait queue is woken (data, or the host (re)connecting).
fn wait_edge(epoll: &OwnedFd) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    loop {
        // SAFETY: `ev` has room for the one event requested.
        let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), &mut ev, 1, -1) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn poll_one(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut p, 1, -1) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Raw mode as qemu-ga sets it on an isa-serial port.
fn set_raw_termios(fd: RawFd) -> io::Result<()> {
    // SAFETY: termios is plain data filled by tcgetattr before use.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) < 0 {
            return Err(io::Error::last_os_error());
        }
        t.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::IGNPAR
            | libc::PARMRK
            | libc::INPCK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON
            | libc::IXOFF
            | libc::IXANY
            | libc::IMAXBEL);
        t.c_oflag = 0;
        t.c_lflag = 0;
        t.c_cflag |= libc::B38400;
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        if libc::tcsetattr(fd, libc::TCSANOW, &t) < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::tcflush(fd, libc::TCIFLUSH);
    }
    Ok(())
}

/// `vsock-listen` on `<cid>:<port>`.
fn open_vsock(path: &str) -> io::Result<Channel> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid vsock address '{path}' (expected <cid>:<port>)"),
        )
    };
    let (cid, port) = path.split_once(':').ok_or_else(bad)?;
    let cid: u32 = cid.parse().map_err(|_| bad())?;
    let port: u32 = port.parse().map_err(|_| bad())?;
    // SAFETY: socket() has no memory effects.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket() returned a descriptor that we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain data; we pass its exact size to bind.
    unsafe {
        let mut addr: libc::sockaddr_vm = std::mem::zeroed();
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_cid = cid;
        addr.svm_port = port;
        if libc::bind(
            fd,
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as u32,
        ) < 0
            || libc::listen(fd, 1) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(Channel::Vsock(owned))
}
