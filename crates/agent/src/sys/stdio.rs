//! A file stream that behaves as glibc's `FILE` does for the calls qemu-ga makes
//! (`fdopen`, `fread`, `fwrite`, `fseek`, `ftell`, `fflush`, `fclose`, `feof`,
//! `ferror`, `clearerr`), because hosts can observe it:
//!
//! - writes are buffered: nothing reaches the file until a flush, seek, read or close,
//!   except that a write too large for the buffer sends whole buffer-sized blocks
//!   straight to the file and buffers only the remainder (`_IO_new_file_xsputn`); the
//!   buffer is `st_blksize` bytes, at most `BUFSIZ` (8192); terminals are line-buffered;
//! - a failed flush throws the buffered data away (`new_do_write`);
//! - a read loops until `count` bytes, end of file (sets the EOF flag) or an error
//!   (sets the error flag; on a non-blocking pipe that is EAGAIN, and what was read
//!   before it is lost, as with `fread`);
//! - the EOF and error flags stay until `clearerr`. What the error reports is C's
//!   `errno` at the time of the check: that of this call's failure, or 0 (reported
//!   without a suffix by qemu-ga) when the flag is left over from an earlier call,
//!   because qemu-ga's JSON parser zeroes errno for every request it parses.
//!
//! Reads are not buffered here: glibc's read-ahead only changes the descriptor's
//! offset, which nobody else sees (the descriptor is private and close-on-exec), while
//! `ftell` and every read return the same as with glibc.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// glibc's `BUFSIZ`: the largest stdio buffer.
const BUFSIZ: usize = 8192;

/// The fopen modes qemu-ga accepts (exactly these strings) and their open(2) flags.
const MODES: [(&str, libc::c_int); 15] = {
    use libc::{O_APPEND, O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
    [
        ("r", O_RDONLY),
        ("rb", O_RDONLY),
        ("w", O_WRONLY | O_CREAT | O_TRUNC),
        ("wb", O_WRONLY | O_CREAT | O_TRUNC),
        ("a", O_WRONLY | O_CREAT | O_APPEND),
        ("ab", O_WRONLY | O_CREAT | O_APPEND),
        ("r+", O_RDWR),
        ("rb+", O_RDWR),
        ("r+b", O_RDWR),
        ("w+", O_RDWR | O_CREAT | O_TRUNC),
        ("wb+", O_RDWR | O_CREAT | O_TRUNC),
        ("w+b", O_RDWR | O_CREAT | O_TRUNC),
        ("a+", O_RDWR | O_CREAT | O_APPEND),
        ("ab+", O_RDWR | O_CREAT | O_APPEND),
        ("a+b", O_RDWR | O_CREAT | O_APPEND),
    ]
};

/// Why [`Stream::open`] failed; the command turns each into qemu-ga's sentence.
#[derive(Debug)]
pub enum OpenError {
    /// Not one of the 15 accepted mode strings.
    InvalidMode,
    /// open(2) failed.
    Open(io::Error),
    /// fchmod(2) of a newly created file failed (the file was removed again).
    Chmod(io::Error),
}

/// `fseek` origins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    /// SEEK_SET
    Set,
    /// SEEK_CUR
    Cur,
    /// SEEK_END
    End,
}

/// An open stream (qemu-ga's `FILE *`).
#[derive(Debug)]
pub struct Stream {
    fd: OwnedFd,
    readable: bool,
    writable: bool,
    /// Size of the write buffer.
    bufsize: usize,
    line_buffered: bool,
    /// A regular file, whose reads [`read_nowait`](Self::read_nowait) may try.
    regular: bool,
    /// The file system refused `RWF_NOWAIT`; do not try again.
    nowait_refused: bool,
    /// How its mount updates access times (a read that updates one may wait for the
    /// file system's journal).
    atime: Atime,
    /// Buffered output not yet written.
    pending: Vec<u8>,
    /// glibc's "currently putting" with an allocated buffer: the free space of the
    /// buffer can take data directly. A read or a seek ends it.
    put_mode: bool,
    eof: bool,
    /// The error flag.
    error: bool,
    /// C's errno as far as this stream is concerned: set by a failing call, zeroed by
    /// [`new_request`](Self::new_request).
    errno: i32,
}

impl Stream {
    /// Opens `path` as qemu-ga's `safe_open_or_create` + `fdopen` do: the mode's open
    /// flags plus `O_NOCTTY | O_NONBLOCK | O_CLOEXEC`; a creating mode first tries
    /// `O_EXCL` and `fchmod`s a file it created to 0666 regardless of umask (an existing
    /// file keeps its permissions).
    pub fn open(path: &[u8], mode: &str) -> Result<Stream, OpenError> {
        let (_, base) = MODES
            .iter()
            .find(|(m, _)| *m == mode)
            .ok_or(OpenError::InvalidMode)?;
        let cpath = CString::new(path.to_vec()).map_err(|_| OpenError::Open(einval()))?;
        let mut flags = base | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
        let creating = flags & libc::O_CREAT != 0;
        let excl = if creating { libc::O_EXCL } else { 0 };
        let mut fd = sys_open(&cpath, flags | excl);
        if creating && matches!(&fd, Err(e) if e.raw_os_error() == Some(libc::EEXIST)) {
            flags &= !libc::O_CREAT;
            fd = sys_open(&cpath, flags);
        }
        let fd = fd.map_err(OpenError::Open)?;
        if flags & libc::O_CREAT != 0 {
            // SAFETY: fchmod on a descriptor we own.
            if unsafe { libc::fchmod(fd.as_raw_fd(), 0o666) } < 0 {
                let e = io::Error::last_os_error();
                drop(fd);
                // SAFETY: cpath is a valid NUL-terminated string.
                unsafe { libc::unlink(cpath.as_ptr()) };
                return Err(OpenError::Chmod(e));
            }
        }
        let access = base & libc::O_ACCMODE;
        let readable = access != libc::O_WRONLY;
        let writable = access != libc::O_RDONLY;
        let (bufsize, line_buffered, regular) = buffer_policy(&fd);
        let atime = if regular {
            Atime::of(&fd)
        } else {
            Atime::Strict
        };
        Ok(Stream {
            fd,
            readable,
            writable,
            bufsize,
            line_buffered,
            regular,
            nowait_refused: false,
            atime,
            pending: Vec::new(),
            put_mode: false,
            eof: false,
            error: false,
            errno: 0,
        })
    }

    /// `feof`
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// `ferror`, with the current errno (0 for a flag left from an earlier request).
    pub fn error(&self) -> Option<io::Error> {
        self.error.then(|| io::Error::from_raw_os_error(self.errno))
    }

    /// `clearerr`
    pub fn clearerr(&mut self) {
        self.eof = false;
        self.error = false;
    }

    /// A new request starts: errno is 0 again.
    pub fn new_request(&mut self) {
        self.errno = 0;
    }

    fn fail(&mut self, e: &io::Error) {
        self.error = true;
        self.errno = e.raw_os_error().unwrap_or(libc::EIO);
    }

    /// `fread(count)`: appends what was read to `buf` (which the caller sized) and
    /// returns how many bytes that was. Check [`eof`](Self::eof) and
    /// [`error`](Self::error) afterwards, as with stdio.
    pub fn read(&mut self, buf: &mut Vec<u8>, count: usize) -> usize {
        if count == 0 {
            return 0;
        }
        if !self.pending.is_empty() && self.flush_pending().is_err() {
            return 0;
        }
        self.put_mode = false;
        if !self.readable {
            self.fail(&io::Error::from_raw_os_error(libc::EBADF));
            return 0;
        }
        let start = buf.len();
        buf.reserve(count);
        while buf.len() - start < count && !self.eof {
            match read_into(&self.fd, buf, count - (buf.len() - start)) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(&e);
                    break;
                }
            }
        }
        buf.len() - start
    }

    /// [`read`](Self::read) as far as it can go without waiting for a device: only for
    /// a regular file in the page cache (`preadv2(RWF_NOWAIT)` at the file position),
    /// with no buffered output, no error or end-of-file flag from before. `None` when
    /// that is not so or some of the data is not cached; the stream, its flags and
    /// its file position are then as they were, and `buf` too, so the caller can do
    /// the ordinary read instead (elsewhere, where waiting does no harm).
    pub fn read_nowait(&mut self, buf: &mut Vec<u8>, count: usize) -> Option<usize> {
        if !self.regular
            || self.nowait_refused
            || !self.readable
            || !self.pending.is_empty()
            || self.eof
            || self.error
            || self.atime.read_updates(&self.fd)
        {
            return None;
        }
        let start = buf.len();
        buf.reserve(count);
        let mut eof = false;
        while buf.len() - start < count {
            match read_into_nowait(&self.fd, buf, count - (buf.len() - start)) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EAGAIN: not all of it is cached. EOPNOTSUPP/EINVAL: the file
                    // system (NFS, FUSE, ...) or kernel cannot promise not to wait.
                    if e.raw_os_error() != Some(libc::EAGAIN) {
                        self.nowait_refused = true;
                    }
                    let got = buf.len() - start;
                    if got > 0 && !self.rewind(got) {
                        // The position could not be put back: keep what was read
                        // (a plain read would have returned it too) and stop here.
                        break;
                    }
                    buf.truncate(start);
                    return None;
                }
            }
        }
        self.put_mode = false;
        self.eof = eof;
        Some(buf.len() - start)
    }

    /// Moves the file position back by `n` bytes.
    fn rewind(&self, n: usize) -> bool {
        let Ok(back) = libc::off_t::try_from(n) else {
            return false;
        };
        // SAFETY: lseek on a descriptor we own.
        unsafe { libc::lseek(self.fd.as_raw_fd(), -back, libc::SEEK_CUR) >= 0 }
    }

    /// `fwrite(data)`: returns how many bytes were accepted (buffered or written).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len();
        if n == 0 {
            return 0;
        }
        if !self.writable {
            self.fail(&io::Error::from_raw_os_error(libc::EBADF));
            return 0;
        }
        let mut rest = data;
        let mut must_flush = false;
        if self.put_mode {
            let space = self.bufsize - self.pending.len();
            let mut take = space.min(rest.len());
            if self.line_buffered && space >= rest.len() {
                if let Some(nl) = rest.iter().rposition(|&b| b == b'\n') {
                    take = nl + 1;
                    must_flush = true;
                }
            }
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        if rest.is_empty() && !must_flush {
            return n;
        }
        // The buffer is full (or not yet in use): write it out, then whole blocks
        // straight from the caller's data, and buffer the remainder.
        if self.flush_pending().is_err() {
            return n - rest.len();
        }
        self.put_mode = true;
        let direct = rest.len() - rest.len() % self.bufsize;
        if direct > 0 {
            if let Err((written, _)) = self.write_all(&rest[..direct]) {
                return n - (rest.len() - written);
            }
            rest = &rest[direct..];
        }
        if self.line_buffered {
            if let Some(nl) = rest.iter().rposition(|&b| b == b'\n') {
                if let Err((written, _)) = self.write_all(&rest[..=nl]) {
                    return n - (rest.len() - written);
                }
                rest = &rest[nl + 1..];
            }
        }
        self.pending.extend_from_slice(rest);
        n
    }

    /// `fflush`
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()
    }

    /// Writes out the buffer; it is emptied even when that fails, as glibc does.
    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let result = self.write_all(&pending).map_err(|(_, e)| e);
        self.pending = pending;
        self.pending.clear();
        result
    }

    /// `_IO_new_file_write`: loops until everything is written or write(2) fails,
    /// which sets the error flag; the error comes with the bytes written before it.
    fn write_all(&mut self, mut data: &[u8]) -> Result<(), (usize, io::Error)> {
        let total = data.len();
        while !data.is_empty() {
            // SAFETY: data is a valid slice; fd is open.
            let r = unsafe { libc::write(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.fail(&e);
                return Err((total - data.len(), e));
            }
            data = &data[r as usize..];
        }
        Ok(())
    }

    /// `fseek`: flushes buffered output, then moves; clears the EOF flag on success.
    pub fn seek(&mut self, offset: i64, whence: Whence) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.flush_pending()?;
        }
        self.put_mode = false;
        let w = match whence {
            Whence::Set => libc::SEEK_SET,
            Whence::Cur => libc::SEEK_CUR,
            Whence::End => libc::SEEK_END,
        };
        // SAFETY: lseek on a descriptor we own.
        if unsafe { libc::lseek(self.fd.as_raw_fd(), offset, w) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.eof = false;
        Ok(())
    }

    /// `ftell`: the position, buffered output included.
    pub fn tell(&self) -> io::Result<i64> {
        // SAFETY: lseek on a descriptor we own.
        let pos = unsafe { libc::lseek(self.fd.as_raw_fd(), 0, libc::SEEK_CUR) };
        if pos < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(pos + self.pending.len() as i64)
    }

    /// `fclose`: flushes, then closes the descriptor whatever happened; the first
    /// failure is returned.
    pub fn close(mut self) -> io::Result<()> {
        let flushed = self.flush_pending();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(self.fd);
        // SAFETY: we own raw and close it exactly once.
        let closed = if unsafe { libc::close(raw) } < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        // errno is close(2)'s when it failed, else the flush's.
        closed.and(flushed)
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

fn sys_open(path: &CString, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: path is a valid NUL-terminated string; mode 0 only applies with O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open succeeded, so fd is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// glibc's `_IO_file_doallocate`: `st_blksize` when smaller than BUFSIZ, and line
/// buffering for terminals.
fn buffer_policy(fd: &OwnedFd) -> (usize, bool, bool) {
    // SAFETY: stat is plain data; fstat fills it for a descriptor we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return (BUFSIZ, false, false);
    }
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    let blksize = usize::try_from(st.st_blksize).unwrap_or(0);
    let size = if blksize > 0 && blksize < BUFSIZ {
        blksize
    } else {
        BUFSIZ
    };
    // SAFETY: isatty only inspects the descriptor.
    let tty =
        st.st_mode & libc::S_IFMT == libc::S_IFCHR && unsafe { libc::isatty(fd.as_raw_fd()) } == 1;
    (size.max(128), tty, regular)
}

/// One read(2) of at most `max` bytes into the spare capacity of `buf`.
fn read_into(fd: &OwnedFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = max.min(spare.len());
    // SAFETY: the pointer and length describe the vector's spare capacity, which
    // read(2) may fill with arbitrary bytes.
    let r = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), want) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = r as usize;
    // SAFETY: read(2) initialised the first n bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Access-time updates of a mount, from `fstatvfs` at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atime {
    /// `noatime`: reads never update it.
    Never,
    /// `relatime` (the default): only when it is not after the modification or change
    /// time, or a day old.
    Relative,
    /// `strictatime`: every read.
    Strict,
}

impl Atime {
    fn of(fd: &OwnedFd) -> Atime {
        // SAFETY: statvfs is plain data; fstatvfs fills it for a descriptor we own.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } < 0 {
            return Atime::Strict;
        }
        // <sys/statvfs.h> values (the libc crate has no ST_RELATIME for musl).
        const ST_NOATIME: libc::c_ulong = 1024;
        const ST_RELATIME: libc::c_ulong = 4096;
        if st.f_flag & ST_NOATIME != 0 {
            Atime::Never
        } else if st.f_flag & ST_RELATIME != 0 {
            Atime::Relative
        } else {
            Atime::Strict
        }
    }

    /// Whether a read of the file now would update its access time, as the kernel's
    /// `relatime_need_update` decides (with a minute's margin on the day). Such a read
    /// dirties the inode, which on a journalling file system can wait for the journal
    /// and so for the disk, even with the data in the page cache.
    fn read_updates(self, fd: &OwnedFd) -> bool {
        match self {
            Atime::Never => false,
            Atime::Strict => true,
            Atime::Relative => {
                // SAFETY: stat is plain data; fstat fills it for a descriptor we own.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: as above.
                if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
                    return true;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                relatime_updates(
                    (st.st_atime as i64, st.st_atime_nsec as i64),
                    (st.st_mtime as i64, st.st_mtime_nsec as i64),
                    (st.st_ctime as i64, st.st_ctime_nsec as i64),
                    now,
                )
            }
        }
    }
}

/// The kernel's `relatime_need_update` on (seconds, nanoseconds) times: the access
/// time is updated when it is not after the modification or the change time, or is
/// a day old (here a minute early, for clock steps).
fn relatime_updates(atime: (i64, i64), mtime: (i64, i64), ctime: (i64, i64), now: i64) -> bool {
    mtime >= atime || ctime >= atime || now - atime.0 >= 24 * 60 * 60 - 60
}

/// `RWF_NOWAIT` (linux/fs.h): fail with EAGAIN instead of waiting for I/O.
const RWF_NOWAIT: libc::c_int = 0x8;

/// One `preadv2(fd, .., -1, RWF_NOWAIT)` (at the file position) of at most `max` bytes
/// into the spare capacity of `buf`. A raw system call: musl has no wrapper.
fn read_into_nowait(fd: &OwnedFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: max.min(spare.len()),
    };
    // SAFETY: one iovec describing the vector's spare capacity, which the kernel may
    // fill with arbitrary bytes; offset -1 (low word -1, high word 0) means the file
    // position, as for readv(2).
    let r = unsafe {
        libc::syscall(
            libc::SYS_preadv2,
            fd.as_raw_fd() as libc::c_long,
            &iov as *const libc::iovec,
            1 as libc::c_long,
            -1 as libc::c_long,
            0 as libc::c_long,
            RWF_NOWAIT as libc::c_long,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = r as usize;
    // SAFETY: the kernel initialised the first n bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests;
