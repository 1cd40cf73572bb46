//! guest-file-open, -close, -read, -write, -seek, -flush.
//!
//! Each handle is a [`Stream`] that buffers as glibc's `FILE` does, plus qemu-ga's
//! per-handle state machine (NEW, READING, WRITING): a read after a write flushes
//! first, a write after a read seeks to the current position first, and seek and
//! flush go back to NEW. So a write followed by a read returns count 0 and eof true
//! (the position is at the end of what was written), as the host expects.
//!
//! Handles come from the persistent counter (`Agent::next_handle`, saved before the
//! handle is returned), belong to the process, and are shared by every client
//! connection. There is no limit on open handles, as in qemu-ga.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use qga_proto::base64::Base64Data;
use qga_proto::cmds::file::*;
use qga_proto::Empty;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::policy::audit;
use crate::sys::base64;
use crate::sys::passwd::os_bytes;
use crate::sys::stdio::{OpenError, Stream, Whence};

/// Largest `count` guest-file-read accepts (48 MiB: its base64 fits the 64 MiB JSON
/// limit), and the default.
pub const READ_COUNT_MAX: i64 = 48 << 20;
const READ_COUNT_DEFAULT: i64 = 4096;
/// guest-file-read reads and encodes this much at a time (a multiple of 3, so the
/// pieces' base64 joins up).
const READ_PIECE: usize = 3 << 20;

/// qemu-ga's per-handle read/write state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RwState {
    New,
    Reading,
    Writing,
}

struct OpenFile {
    stream: Stream,
    state: RwState,
    /// What went through the handle, for the audit line of its close (successful
    /// reads and writes leave no line of their own).
    moved: Moved,
}

/// Successful guest-file-read and guest-file-write requests on a handle and the bytes
/// they moved.
#[derive(Default)]
struct Moved {
    reads: u64,
    read_bytes: u64,
    writes: u64,
    written_bytes: u64,
}

/// One handle's file; `None` once closed (for a caller that looked it up just before).
type Slot = Arc<Mutex<Option<OpenFile>>>;

/// The open file handles, shared by every client connection.
#[derive(Default)]
pub struct Handles {
    open: Mutex<BTreeMap<i64, Slot>>,
    /// The buffer of the last large read, for the next one: a fresh 48 MiB buffer
    /// is 48 MiB of pages the kernel zeroes (38% of the agent's time in 48 MiB
    /// reads). Freed once no read has used it for a moment ([`Handles::expire_spare`]);
    /// the instant is when it was last given back.
    spare: Mutex<Option<(Vec<u8>, Instant)>>,
}

/// Reads of at least this many bytes reuse [`Handles::spare`].
const SPARE_MIN: usize = 1 << 20;

impl Handles {
    fn table(&self) -> MutexGuard<'_, BTreeMap<i64, Slot>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of open handles.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no handle is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spare(&self) -> MutexGuard<'_, Option<(Vec<u8>, Instant)>> {
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer with room for `count` bytes: the kept one if it is large
    /// enough. Allocated at its full size at once (grown piece by piece it was copied
    /// by realloc once glibc's adaptive mmap threshold put it on the heap); pages not
    /// read into are never touched, so a short file costs no memory for a large count.
    fn read_buffer(&self, count: usize) -> Vec<u8> {
        if count >= SPARE_MIN {
            let kept = self.spare().take().map(|(b, _)| b);
            if let Some(mut buf) = kept.filter(|b| b.capacity() >= count) {
                buf.clear();
                return buf;
            }
        }
        let mut buf = Vec::with_capacity(count);
        if count >= 4 << 20 {
            crate::sys::advise_huge_pages(&mut buf);
        }
        buf
    }

    /// Takes back a read's buffer once its reply is written, if it is worth keeping.
    pub fn recycle(&self, buf: Vec<u8>) {
        if buf.capacity() >= SPARE_MIN {
            let mut spare = self.spare();
            if spare
                .as_ref()
                .is_none_or(|(s, _)| s.capacity() <= buf.capacity())
            {
                *spare = Some((buf, Instant::now()));
            }
        }
    }

    /// Frees the kept buffer if no read has used it for `linger`. Returns how long it
    /// may still be kept, or `None` when none is kept (any more).
    pub fn expire_spare(&self, linger: Duration) -> Option<Duration> {
        let mut spare = self.spare();
        let left = linger.checked_sub(spare.as_ref()?.1.elapsed());
        if left.is_none_or(|d| d.is_zero()) {
            let buf = spare.take();
            drop(spare);
            drop(buf);
            return None;
        }
        left
    }

    fn find(&self, handle: i64) -> Result<Slot> {
        self.table()
            .get(&handle)
            .cloned()
            .ok_or_else(|| not_found(handle))
    }
}

fn not_found(handle: i64) -> Error {
    Error::new(format!("handle '{handle}' has not been found"))
}

/// Runs `f` on the open file behind `handle`.
fn with_file<T>(
    agent: &Agent,
    handle: i64,
    f: impl FnOnce(&mut OpenFile) -> Result<T>,
) -> Result<T> {
    let slot = agent.files.find(handle)?;
    let mut guard = match NOWAIT.get() {
        true => match slot.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(Error::deferred()),
        },
        false => slot.lock().unwrap_or_else(|e| e.into_inner()),
    };
    let file = guard.as_mut().ok_or_else(|| not_found(handle))?;
    file.stream.new_request();
    f(file)
}

/// guest-file-open
pub fn open(agent: &Agent, args: GuestFileOpenArgs) -> Result<i64> {
    let path = &args.path;
    let mode = args.mode.as_deref().unwrap_or("r");
    agent.log.audit(&format!(
        "guest-file-open called, filepath: {path}, mode: {mode}"
    ));
    let stream = Stream::open(&os_bytes(path), mode).map_err(|e| match e {
        OpenError::InvalidMode => Error::new(format!("invalid file open mode '{mode}'")),
        OpenError::Open(e) => {
            Error::errno(format!("failed to open file '{path}' (mode: '{mode}')"), &e)
        }
        OpenError::Chmod(e) => Error::errno(
            format!("failed to set permission 0666 on new file '{path}' (mode: '{mode}')"),
            &e,
        ),
    })?;
    let handle = match agent.next_handle() {
        Ok(h) => h,
        Err(e) => {
            let _ = stream.close();
            return Err(e);
        }
    };
    let file = OpenFile {
        stream,
        state: RwState::New,
        moved: Moved::default(),
    };
    agent
        .files
        .table()
        .insert(handle, Arc::new(Mutex::new(Some(file))));
    agent
        .log
        .audit(&format!("guest-file-open, handle: {handle}"));
    Ok(handle)
}

/// guest-file-close. Unlike qemu-ga, a handle whose final flush or close failed is
/// gone afterwards too (qemu-ga keeps a handle to a freed stream).
pub fn close(agent: &Agent, args: GuestFileCloseArgs) -> Result<Empty> {
    agent
        .log
        .audit(&format!("guest-file-close called, handle: {}", args.handle));
    let slot = agent
        .files
        .table()
        .remove(&args.handle)
        .ok_or_else(|| not_found(args.handle))?;
    let file = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let file = file.ok_or_else(|| not_found(args.handle))?;
    let m = &file.moved;
    audit::note(format!(
        "read {} bytes in {} requests, wrote {} bytes in {} requests",
        m.read_bytes, m.reads, m.written_bytes, m.writes
    ));
    file.stream
        .close()
        .map_err(|e| Error::errno("failed to close handle", &e))?;
    Ok(Empty)
}

/// guest-file-read
pub fn read(agent: &Agent, args: GuestFileReadArgs) -> Result<GuestFileRead> {
    let handle = args.handle;
    let result = with_file(agent, handle, |f| {
        let count = match args.count {
            None => READ_COUNT_DEFAULT,
            Some(c) if (0..=READ_COUNT_MAX).contains(&c) => c,
            Some(c) => {
                return Err(Error::new(format!(
                    "value '{c}' is invalid for argument count"
                )))
            }
        };
        Ok(read_file(&agent.files, f, count as usize))
    })?;
    if result.is_err() {
        // (sic) qemu-ga's log line for a failed read.
        agent
            .log
            .audit(&format!("guest-file-write failed, handle: {handle}"));
    }
    result
}

fn read_file(files: &Handles, f: &mut OpenFile, count: usize) -> Result<GuestFileRead> {
    if NOWAIT.get() {
        return read_cached(f, count);
    }
    // Explicitly flush when switching from writing to reading.
    if f.state == RwState::Writing {
        f.stream
            .flush()
            .map_err(|e| Error::errno("failed to flush file", &e))?;
        f.state = RwState::New;
    }
    // Read a piece at a time (the same reads, stopping at end of file or an error as
    // one big read would) into one buffer. The reply holds these raw bytes and
    // base64-encodes them while it is written to the channel, so a 48 MiB read holds
    // 48 MiB, not 48 MiB plus its 64 MiB of text.
    let mut data = files.read_buffer(count);
    let mut n = 0;
    while n < count {
        let want = READ_PIECE.min(count - n);
        let got = f.stream.read(&mut data, want);
        n += got;
        if got < want || f.stream.error().is_some() {
            break;
        }
    }
    let result = match f.stream.error() {
        Some(e) => {
            files.recycle(data);
            Err(Error::errno("failed to read file", &e))
        }
        None => Ok(read_done(f, data)),
    };
    f.stream.clearerr();
    result
}

/// A successful read of `data`: the handle is READING now.
fn read_done(f: &mut OpenFile, data: Vec<u8>) -> GuestFileRead {
    f.state = RwState::Reading;
    f.moved.reads += 1;
    f.moved.read_bytes += data.len() as u64;
    let read = GuestFileRead {
        count: data.len() as i64,
        buf_b64: Base64Data::Raw(data),
        eof: f.stream.eof(),
    };
    f.stream.clearerr();
    read
}

/// [`read_file`] for the channel's reader thread, which must never wait on a device:
/// the read is done only if it is all in the page cache and needs no flush first;
/// otherwise [`Error::deferred`] and nothing has changed.
fn read_cached(f: &mut OpenFile, count: usize) -> Result<GuestFileRead> {
    if f.state == RwState::Writing {
        return Err(Error::deferred());
    }
    let mut data = Vec::with_capacity(count);
    match f.stream.read_nowait(&mut data, count) {
        Some(_) => Ok(read_done(f, data)),
        None => Err(Error::deferred()),
    }
}

thread_local! {
    /// Set while the reader thread answers a guest-file-read itself.
    static NOWAIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a dispatch of guest-file-read) so that the read either comes from the
/// page cache at once or is not done at all ([`Error::deferred`]).
pub fn without_waiting<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            NOWAIT.set(false);
        }
    }
    NOWAIT.set(true);
    let _reset = Reset;
    f()
}

/// guest-file-write
pub fn write(agent: &Agent, args: GuestFileWriteArgs) -> Result<GuestFileWrite> {
    let GuestFileWriteArgs {
        handle,
        buf_b64,
        count,
    } = args;
    let result = with_file(agent, handle, |f| {
        if f.state == RwState::Reading {
            f.stream
                .seek(0, Whence::Cur)
                .map_err(|e| Error::errno("failed to seek file", &e))?;
            f.state = RwState::New;
        }
        // Decoded over the request's own text: a 64 MiB write needs no second buffer.
        let data = base64::decode_vec(buf_b64.into_bytes())?;
        let count = match count {
            None => data.len(),
            Some(c) if c >= 0 && c as u64 <= data.len() as u64 => c as usize,
            Some(c) => {
                return Err(Error::new(format!(
                    "value '{c}' is invalid for argument count"
                )))
            }
        };
        let n = f.stream.write(&data[..count]);
        let result = match f.stream.error() {
            Some(e) => Err(Error::errno("failed to write to file", &e)),
            None => {
                f.state = RwState::Writing;
                f.moved.writes += 1;
                f.moved.written_bytes += n as u64;
                Ok(GuestFileWrite {
                    count: n as i64,
                    eof: f.stream.eof(),
                })
            }
        };
        f.stream.clearerr();
        Ok(result)
    })?;
    if result.is_err() {
        agent
            .log
            .audit(&format!("guest-file-write failed, handle: {handle}"));
    }
    result
}

/// guest-file-seek
pub fn seek(agent: &Agent, args: GuestFileSeekArgs) -> Result<GuestFileSeek> {
    with_file(agent, args.handle, |f| {
        let whence = match args.whence {
            GuestFileWhence::Value(0) | GuestFileWhence::Name(QgaSeek::Set) => Whence::Set,
            GuestFileWhence::Value(1) | GuestFileWhence::Name(QgaSeek::Cur) => Whence::Cur,
            GuestFileWhence::Value(2) | GuestFileWhence::Name(QgaSeek::End) => Whence::End,
            GuestFileWhence::Value(n) => {
                return Err(Error::new(format!("invalid whence code {n}")));
            }
        };
        let result = match f.stream.seek(args.offset, whence) {
            Err(e) => {
                if e.raw_os_error() == Some(libc::ESPIPE) {
                    // Not seekable: stdio is not buffering reads anyway.
                    f.state = RwState::New;
                }
                Err(Error::errno("failed to seek file", &e))
            }
            Ok(()) => {
                f.state = RwState::New;
                Ok(GuestFileSeek {
                    position: f.stream.tell().unwrap_or(-1),
                    eof: f.stream.eof(),
                })
            }
        };
        f.stream.clearerr();
        result
    })
}

/// guest-file-flush
pub fn flush(agent: &Agent, args: GuestFileFlushArgs) -> Result<Empty> {
    with_file(agent, args.handle, |f| {
        f.stream
            .flush()
            .map_err(|e| Error::errno("failed to flush file", &e))?;
        f.state = RwState::New;
        Ok(Empty)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::tests::test_agent;

    const P: &[u8] = b"Hello World!\n\0";

    #[test]
    fn a_large_read_buffer_is_reused_then_freed() {
        let h = Handles::default();
        let linger = Duration::from_millis(50);
        // Small buffers are not kept.
        let small = h.read_buffer(4096);
        h.recycle(small);
        assert_eq!(h.expire_spare(linger), None);
        // A large one is, and serves the next read of up to its size.
        let mut big = h.read_buffer(2 << 20);
        big.extend_from_slice(b"old data");
        let at = big.as_ptr();
        h.recycle(big);
        assert!(h.expire_spare(linger).is_some());
        let again = h.read_buffer(1 << 20);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        h.recycle(again);
        // Not for a larger read, which gets a buffer of its own.
        let larger = h.read_buffer(3 << 20);
        assert!(larger.capacity() >= 3 << 20);
        assert_eq!(h.expire_spare(linger), None);
        h.recycle(larger);
        // Unused for `linger`: freed.
        assert!(h.expire_spare(linger).is_some_and(|d| d <= linger));
        std::thread::sleep(linger);
        assert_eq!(h.expire_spare(linger), None);
        assert!(h.spare().is_none());
    }

    fn path(agent: &Agent, name: &str) -> String {
        format!("{}/{name}", agent.config.statedir)
    }

    fn open_(agent: &Agent, p: &str, mode: &str) -> Result<i64> {
        open(
            agent,
            GuestFileOpenArgs {
                path: p.into(),
                mode: Some(mode.into()),
            },
        )
    }

    fn read_(agent: &Agent, handle: i64, count: Option<i64>) -> Result<GuestFileRead> {
        read(agent, GuestFileReadArgs { handle, count })
    }

    fn write_(agent: &Agent, handle: i64, b64: &str, count: Option<i64>) -> Result<GuestFileWrite> {
        let buf_b64 = b64.into();
        write(
            agent,
            GuestFileWriteArgs {
                handle,
                buf_b64,
                count,
            },
        )
    }

    fn seek_(
        agent: &Agent,
        handle: i64,
        offset: i64,
        whence: GuestFileWhence,
    ) -> Result<GuestFileSeek> {
        seek(
            agent,
            GuestFileSeekArgs {
                handle,
                offset,
                whence,
            },
        )
    }

    fn close_(agent: &Agent, handle: i64) -> Result<Empty> {
        close(agent, GuestFileCloseArgs { handle })
    }

    const SET: GuestFileWhence = GuestFileWhence::Name(QgaSeek::Set);

    #[test]
    fn qemu_case_11_file_ops() {
        let a = test_agent();
        let foo = path(&a, "foo");
        let enc = base64::encode(P);
        let h = open_(&a, &foo, "w+").unwrap();
        assert_eq!(h, 1000);
        let w = write_(&a, h, &enc, None).unwrap();
        assert_eq!((w.count, w.eof), (14, false));
        flush(&a, GuestFileFlushArgs { handle: h }).unwrap();
        close_(&a, h).unwrap();
        assert_eq!(std::fs::read(&foo).unwrap(), P);
        let h = open_(&a, &foo, "r").unwrap();
        assert_eq!(h, 1001);
        let r = read_(&a, h, None).unwrap();
        assert_eq!(
            (r.count, r.eof, &*r.buf_b64.text()),
            (14, true, enc.as_str())
        );
        let r = read_(&a, h, None).unwrap();
        assert_eq!((r.count, r.eof, &*r.buf_b64.text()), (0, true, ""));
        let s = seek_(&a, h, 6, SET).unwrap();
        assert_eq!((s.position, s.eof), (6, false));
        let r = read_(&a, h, None).unwrap();
        assert_eq!((r.count, r.eof), (8, true));
        assert_eq!(
            base64::decode(r.buf_b64.text().as_bytes()).unwrap(),
            &P[6..]
        );
        close_(&a, h).unwrap();
        assert!(a.files.is_empty());
        let state = std::fs::read_to_string(a.state_file()).unwrap();
        assert_eq!(state, "[global]\nfd_counter=1002\n");
    }

    #[test]
    fn qemu_case_12_write_then_read_sees_the_end() {
        let a = test_agent();
        let enc = base64::encode(P);
        let h = open_(&a, &path(&a, "foo"), "w+").unwrap();
        assert_eq!(write_(&a, h, &enc, None).unwrap().count, 14);
        let r = read_(&a, h, None).unwrap();
        assert_eq!((r.count, r.eof, &*r.buf_b64.text()), (0, true, ""));
        let s = seek_(&a, h, 0, GuestFileWhence::Value(0)).unwrap();
        assert_eq!((s.position, s.eof), (0, false));
        let r = read_(&a, h, None).unwrap();
        assert_eq!(
            (r.count, r.eof, &*r.buf_b64.text()),
            (14, true, enc.as_str())
        );
        // A write after a read lands at the read position (implicit seek).
        let s = seek_(&a, h, 2, SET).unwrap();
        assert_eq!(s.position, 2);
        assert_eq!(read_(&a, h, Some(3)).unwrap().count, 3);
        write_(&a, h, "WFk=", None).unwrap();
        close_(&a, h).unwrap();
        assert_eq!(std::fs::read(path(&a, "foo")).unwrap(), b"HelloXYorld!\n\0");
    }

    #[test]
    fn error_texts() {
        let a = test_agent();
        fn e<T: std::fmt::Debug>(r: Result<T>) -> String {
            r.unwrap_err().desc().to_owned()
        }
        assert_eq!(e(read_(&a, 5, None)), "handle '5' has not been found");
        assert_eq!(e(close_(&a, -1)), "handle '-1' has not been found");
        assert_eq!(
            e(open_(&a, &path(&a, "x"), "rw")),
            "invalid file open mode 'rw'"
        );
        let missing = path(&a, "no/such");
        assert_eq!(
            e(open_(&a, &missing, "r")),
            format!("failed to open file '{missing}' (mode: 'r'): No such file or directory")
        );
        let h = open_(&a, &path(&a, "f"), "w+").unwrap();
        for c in [-1, READ_COUNT_MAX + 1] {
            assert_eq!(
                e(read_(&a, h, Some(c))),
                format!("value '{c}' is invalid for argument count")
            );
        }
        assert_eq!(read_(&a, h, Some(READ_COUNT_MAX)).unwrap().count, 0);
        assert_eq!(
            e(write_(&a, h, "SGVsbG8=", Some(6))),
            "value '6' is invalid for argument count"
        );
        assert_eq!(
            e(write_(&a, h, "SGVsbG8=", Some(-1))),
            "value '-1' is invalid for argument count"
        );
        assert_eq!(
            e(write_(&a, h, "SGV sbG8=", None)),
            "Base64 data contains invalid characters"
        );
        assert_eq!(write_(&a, h, "SGVsbG8=", Some(2)).unwrap().count, 2);
        assert_eq!(write_(&a, h, "", None).unwrap().count, 0);
        assert_eq!(
            e(seek_(&a, h, 0, GuestFileWhence::Value(3))),
            "invalid whence code 3"
        );
        assert_eq!(
            e(seek_(&a, h, -1, SET)),
            "failed to seek file: Invalid argument"
        );
        assert_eq!(
            seek_(&a, h, -1, GuestFileWhence::Name(QgaSeek::End))
                .unwrap()
                .position,
            1
        );
        let d = open_(&a, &a.config.statedir, "r").unwrap();
        assert_eq!(e(read_(&a, d, None)), "failed to read file: Is a directory");
        let r = open_(&a, &path(&a, "f"), "r").unwrap();
        assert_eq!(
            e(write_(&a, r, "eA==", None)),
            "failed to write to file: Bad file descriptor"
        );
    }

    #[test]
    fn a_failed_flush_leaves_the_error_flag_for_the_next_call() {
        use std::os::unix::fs::OpenOptionsExt;
        let a = test_agent();
        let fifo = path(&a, "fifo");
        let c = std::ffi::CString::new(fifo.clone()).unwrap();
        // SAFETY: c is a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let h = open_(&a, &fifo, "w").unwrap();
        assert_eq!(write_(&a, h, "eA==", None).unwrap().count, 1);
        drop(reader);
        // A child that another test is starting holds a copy of every descriptor of
        // this process until it execs, the read end included (it failed this test
        // once): wait until the FIFO has no reader anywhere (opening it for writing
        // without blocking fails with ENXIO then).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Ok(w) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            drop(w);
            assert!(
                std::time::Instant::now() < deadline,
                "the FIFO kept a reader"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let err = flush(&a, GuestFileFlushArgs { handle: h }).unwrap_err();
        assert_eq!(err.desc(), "failed to flush file: Broken pipe");
        // stdio keeps the error flag until clearerr; qemu-ga only clears it after
        // read, write and seek, so the next write reports it, with errno 0 by then.
        let err = write_(&a, h, "eA==", None).unwrap_err();
        assert_eq!(err.desc(), "failed to write to file");
        assert_eq!(write_(&a, h, "eA==", None).unwrap().count, 1);
        let err = close_(&a, h).unwrap_err();
        assert_eq!(err.desc(), "failed to close handle: Broken pipe");
        assert!(a.files.is_empty());
    }
}
