//! Unit tests of the stdio emulation, on temporary files and FIFOs.

use super::*;
use std::path::PathBuf;

fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("qga-stdio-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn open(p: &std::path::Path, mode: &str) -> Stream {
    Stream::open(p.to_str().unwrap().as_bytes(), mode).unwrap()
}

fn on_disk(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn exactly_the_fifteen_modes() {
    let d = temp_dir("modes");
    let p = d.join("f");
    for m in [
        "r", "rb", "w", "wb", "a", "ab", "r+", "rb+", "r+b", "w+", "wb+", "w+b", "a+", "ab+", "a+b",
    ] {
        std::fs::write(&p, b"x").unwrap();
        assert!(
            Stream::open(p.to_str().unwrap().as_bytes(), m).is_ok(),
            "{m}"
        );
    }
    for m in ["", "rw", "r+w", "x", "R", "rb+x", "wx", "b", "+r"] {
        assert!(matches!(
            Stream::open(p.to_str().unwrap().as_bytes(), m),
            Err(OpenError::InvalidMode)
        ));
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn new_files_are_0666_and_existing_ones_keep_their_mode() {
    use std::os::unix::fs::PermissionsExt;
    let d = temp_dir("perm");
    let p = d.join("new");
    // (The test process's umask is 022, which would give 0644.)
    open(&p, "w").close().unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);
    let q = d.join("old");
    std::fs::write(&q, b"keep").unwrap();
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o600)).unwrap();
    open(&q, "a+").close().unwrap();
    assert_eq!(
        std::fs::metadata(&q).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // "w" truncates an existing file.
    open(&q, "w").close().unwrap();
    assert_eq!(on_disk(&q), b"");
    match Stream::open(d.join("no/such").to_str().unwrap().as_bytes(), "r") {
        Err(OpenError::Open(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn writes_are_buffered_until_flush_seek_read_or_close() {
    let d = temp_dir("buf");
    let p = d.join("f");
    let mut s = open(&p, "w+");
    assert_eq!(s.write(b"hello"), 5);
    assert_eq!(on_disk(&p), b"");
    assert_eq!(s.tell().unwrap(), 5);
    s.flush().unwrap();
    assert_eq!(on_disk(&p), b"hello");
    s.write(b" world");
    s.seek(0, Whence::Set).unwrap();
    assert_eq!(on_disk(&p), b"hello world");
    s.seek(0, Whence::End).unwrap();
    s.write(b"!");
    let mut buf = Vec::new();
    assert_eq!(s.read(&mut buf, 10), 0);
    assert!(s.eof());
    assert_eq!(on_disk(&p), b"hello world!");
    s.clearerr();
    s.write(b"?");
    s.close().unwrap();
    assert_eq!(on_disk(&p), b"hello world!?");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_large_write_goes_out_in_whole_blocks_and_buffers_the_rest() {
    let d = temp_dir("big");
    let p = d.join("f");
    let mut s = open(&p, "w");
    let bs = s.bufsize;
    let data: Vec<u8> = (0..(2 * bs + 100)).map(|i| i as u8).collect();
    assert_eq!(s.write(&data), data.len());
    assert_eq!(on_disk(&p), &data[..2 * bs]);
    // The buffer now takes bs - 100 more bytes before anything is written.
    s.write(&vec![7u8; bs - 100]);
    assert_eq!(on_disk(&p).len(), 2 * bs);
    s.write(b"x");
    assert_eq!(on_disk(&p).len(), 3 * bs);
    s.close().unwrap();
    assert_eq!(on_disk(&p).len(), 3 * bs + 1);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn eof_is_set_only_when_a_read_hits_the_end() {
    let d = temp_dir("eof");
    let p = d.join("f");
    std::fs::write(&p, b"0123456789").unwrap();
    let mut s = open(&p, "r");
    let mut buf = Vec::new();
    assert_eq!(s.read(&mut buf, 10), 10);
    assert!(!s.eof());
    assert_eq!(s.read(&mut buf, 10), 0);
    assert!(s.eof());
    s.clearerr();
    s.seek(4, Whence::Set).unwrap();
    assert_eq!(s.read(&mut buf, 4096), 6);
    assert!(s.eof());
    assert_eq!(buf, b"0123456789456789");
    // Seeking clears EOF; beyond the end is allowed.
    s.seek(100, Whence::Set).unwrap();
    assert!(!s.eof());
    assert_eq!(s.tell().unwrap(), 100);
    assert_eq!(s.read(&mut buf, 0), 0);
    assert!(!s.eof());
    let e = s.seek(-1, Whence::Set).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn wrong_direction_is_ebadf_and_append_writes_at_the_end() {
    let d = temp_dir("dir");
    let p = d.join("f");
    std::fs::write(&p, b"abc").unwrap();
    let mut s = open(&p, "r");
    assert_eq!(s.write(b""), 0);
    assert!(s.error().is_none());
    assert_eq!(s.write(b"x"), 0);
    assert_eq!(s.error().unwrap().raw_os_error(), Some(libc::EBADF));
    // fdopen() does not move an append stream (unlike fopen()): the position is 0
    // until the first write lands at the end.
    let mut s = open(&p, "a");
    assert_eq!(s.tell().unwrap(), 0);
    let mut buf = Vec::new();
    assert_eq!(s.read(&mut buf, 1), 0);
    assert_eq!(s.error().unwrap().raw_os_error(), Some(libc::EBADF));
    s.write(b"d");
    s.seek(0, Whence::Cur).unwrap();
    assert_eq!(s.tell().unwrap(), 4);
    let s = open(&p, "a+");
    assert_eq!(s.tell().unwrap(), 0);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn pipes_non_blocking_reads_and_failed_flushes() {
    let d = temp_dir("fifo");
    let p = d.join("fifo");
    let c = CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut r = open(&p, "r");
    let mut w = open(&p, "w");
    let mut buf = Vec::new();
    // Empty pipe: EAGAIN, like fread on a non-blocking descriptor.
    assert_eq!(r.read(&mut buf, 10), 0);
    assert_eq!(r.error().unwrap().raw_os_error(), Some(libc::EAGAIN));
    r.clearerr();
    assert_eq!(w.write(b"abc"), 3);
    w.flush().unwrap();
    // Less than asked for, then EAGAIN: an error, and the data is gone.
    assert_eq!(r.read(&mut buf, 10), 3);
    assert!(r.error().is_some());
    r.clearerr();
    assert_eq!(
        w.seek(0, Whence::Cur).unwrap_err().raw_os_error(),
        Some(libc::ESPIPE)
    );
    // The reader goes away: the flush fails with EPIPE and drops the buffer.
    drop(r);
    assert_eq!(w.write(b"lost"), 4);
    assert_eq!(w.flush().unwrap_err().raw_os_error(), Some(libc::EPIPE));
    assert_eq!(w.error().unwrap().raw_os_error(), Some(libc::EPIPE));
    w.clearerr();
    w.flush().unwrap();
    std::fs::remove_dir_all(d).unwrap();
}

/// Drops `p`'s pages from the page cache (`range` bytes from `offset`, 0 = to the end).
fn evict(p: &std::path::Path, offset: i64, range: i64) {
    let f = std::fs::File::open(p).unwrap();
    f.sync_all().unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: advice on a descriptor we own.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), offset, range, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
}

/// Whether this file system answers RWF_NOWAIT reads (ext4, XFS, btrfs do; NFS and
/// FUSE refuse them, and then the reader thread never answers reads itself).
fn nowait_supported(s: &mut Stream) -> bool {
    let mut probe = Vec::new();
    match read_into_nowait(&s.fd, &mut probe, 0) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("RWF_NOWAIT refused here ({e}): only the fallback is checked");
            false
        }
    }
}

/// Gives `p` an access time after its modification and change times (a second ahead),
/// so a read on a `relatime` mount does not update it.
fn settle_atime(p: &std::path::Path) {
    set_atime(p, 1);
}

/// Sets `p`'s access time to now + `secs` (its change time becomes now).
fn set_atime(p: &std::path::Path, secs: i64) {
    let f = std::fs::File::open(p).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let times = [
        libc::timespec {
            tv_sec: (now.as_secs() as i64 + secs) as libc::time_t,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    use std::os::fd::AsRawFd;
    // SAFETY: two valid timespecs for a descriptor we own.
    assert_eq!(unsafe { libc::futimens(f.as_raw_fd(), times.as_ptr()) }, 0);
}

#[test]
fn relatime_rule_is_the_kernels() {
    let t = |s| (s, 0);
    // Access after modification and change, recent: no update.
    assert!(!relatime_updates(t(100), t(90), t(95), 200));
    // Not after the modification or the change time: update.
    assert!(relatime_updates(t(100), t(100), t(95), 200));
    assert!(relatime_updates(t(100), t(90), (100, 1), 200));
    assert!(relatime_updates((100, 5), (100, 6), t(95), 200));
    // A day old (less a minute): update.
    assert!(relatime_updates(t(100), t(90), t(95), 100 + 86_340));
    assert!(!relatime_updates(t(100), t(90), t(95), 100 + 86_339));
}

#[test]
fn read_nowait_declines_a_read_that_updates_the_access_time() {
    let d = temp_dir("nowait-atime");
    let p = d.join("f");
    std::fs::write(&p, b"0123456789").unwrap();
    let _ = on_disk(&p);
    let mut s = open(&p, "r");
    if !nowait_supported(&mut s) {
        return;
    }
    // Accessed before its last change: a read updates the access time (relatime).
    set_atime(&p, -10);
    let want = match s.atime {
        Atime::Never => Some(4),
        Atime::Relative | Atime::Strict => None,
    };
    assert_eq!(s.read_nowait(&mut Vec::new(), 4), want, "{:?}", s.atime);
    settle_atime(&p);
    let want = match s.atime {
        Atime::Never | Atime::Relative => Some(4),
        Atime::Strict => None,
    };
    assert_eq!(s.read_nowait(&mut Vec::new(), 4), want, "{:?}", s.atime);
}

#[test]
fn read_nowait_reads_cached_data_as_read_does() {
    let d = temp_dir("nowait");
    let p = d.join("f");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&p, &data).unwrap();
    let mut s = open(&p, "r");
    if !nowait_supported(&mut s) {
        assert_eq!(s.read_nowait(&mut Vec::new(), 10), None);
        return;
    }
    let _ = on_disk(&p); // in the page cache now
    settle_atime(&p);
    if s.atime == Atime::Strict {
        eprintln!("strictatime mount: every read updates the access time, no no-wait reads");
        assert_eq!(s.read_nowait(&mut Vec::new(), 10), None);
        return;
    }
    let mut buf = Vec::new();
    assert_eq!(s.read_nowait(&mut buf, 4096), Some(4096));
    assert_eq!(buf, data[..4096]);
    assert!(!s.eof());
    // The file position moved: an ordinary read goes on from there.
    let mut rest = Vec::new();
    assert_eq!(s.read(&mut rest, 1000), 1000);
    assert_eq!(rest, data[4096..5096]);
    // Reaching the end sets the end-of-file flag, as fread does.
    let mut tail = Vec::new();
    assert_eq!(s.read_nowait(&mut tail, 8192), Some(10_000 - 5096));
    assert_eq!(tail, data[5096..]);
    assert!(s.eof());
    s.clearerr();
    assert_eq!(s.read_nowait(&mut tail, 10), Some(0));
    assert!(s.eof());
}

#[test]
fn read_nowait_leaves_everything_as_it_was_when_it_would_wait() {
    let d = temp_dir("nowait-evicted");
    let p = d.join("f");
    let data: Vec<u8> = (0..(256u32 << 10)).map(|i| (i % 253) as u8).collect();
    std::fs::write(&p, &data).unwrap();
    // Nothing cached, then only the first 64 KiB: the no-wait read fails at once, or
    // gets the cached part and then fails (and must put the file position back). The
    // failed attempt starts readahead, and a fast disk may finish it before the next
    // call, so a complete read is allowed too; either way the data must be right.
    for cached in [0, 64 << 10] {
        let mut s = open(&p, "r");
        let _ = on_disk(&p);
        evict(&p, cached, 0);
        settle_atime(&p);
        let mut buf = b"kept".to_vec();
        match s.read_nowait(&mut buf, 128 << 10) {
            None => {
                assert_eq!(buf, b"kept");
                assert!(!s.eof() && s.error().is_none());
                // The ordinary read then returns all of it, from the start.
                let mut all = Vec::new();
                assert_eq!(s.read(&mut all, data.len()), data.len());
                assert_eq!(all, data);
            }
            Some(n) => {
                assert_eq!(n, 128 << 10, "cached {cached}");
                assert_eq!(buf[4..], data[..n]);
            }
        }
    }
}

#[test]
fn read_nowait_declines_what_could_wait() {
    let d = temp_dir("nowait-declines");
    let p = d.join("f");
    std::fs::write(&p, b"0123456789").unwrap();
    // Buffered output would have to be flushed first.
    let mut s = open(&p, "r+");
    assert_eq!(s.write(b"ab"), 2);
    assert_eq!(s.read_nowait(&mut Vec::new(), 4), None);
    // Not a regular file: a FIFO or device may block.
    let mut null = Stream::open(b"/dev/null", "r").unwrap();
    assert_eq!(null.read_nowait(&mut Vec::new(), 4), None);
    // Write-only: the ordinary read reports EBADF.
    let mut w = open(&p, "a");
    assert_eq!(w.read_nowait(&mut Vec::new(), 4), None);
}
