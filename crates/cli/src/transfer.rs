//! File transfer with guest-file-*: chunked and pipelined (several reads or writes in
//! flight on one handle; the agent answers in order), with an end-to-end check.

use std::collections::VecDeque;
use std::io::{Read, Write};

use crate::b64;
use crate::error::{Error, Result};
use crate::exec::ExecRequest;
use crate::sha256::Sha256;
use crate::wire::{
    GuestFileCloseArgs, GuestFileFlushArgs, GuestFileOpenArgs, GuestFileReadArgs,
    GuestFileSeekArgs, GuestFileWhence, GuestFileWriteArgs, QgaSeek,
};
use crate::{Client, Pending};

/// Chunking and pipelining of a transfer.
#[derive(Debug, Clone, Copy)]
pub struct TransferOptions {
    /// Bytes per guest-file-read/-write. 1 MiB keeps each reply far below libvirt's
    /// 10 MiB cap and qemu-ga's 48 MiB read limit.
    pub chunk: usize,
    /// Requests in flight at once.
    pub window: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            chunk: 1 << 20,
            window: 4,
        }
    }
}

/// What a transfer moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes copied.
    pub bytes: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
    /// The guest file's size at the end (guest-file-seek to the end), when it could be
    /// sought.
    pub guest_size: Option<u64>,
}

/// How an upload was checked end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// `sha256sum` ran in the guest and matched.
    GuestSha256,
    /// guest-exec was unavailable; the file was read back and its hash matched.
    ReadBack,
}

fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn local(what: &str, e: std::io::Error) -> Error {
    Error::Failed(format!("{what}: {e}"))
}

impl Client {
    /// Opens a guest file (guest-file-open); `mode` as fopen(3).
    pub fn open(&mut self, path: &str, mode: &str) -> Result<i64> {
        self.call(GuestFileOpenArgs {
            path: path.to_string(),
            mode: Some(mode.to_string()),
        })
    }

    /// Closes a guest file handle.
    pub fn close(&mut self, handle: i64) -> Result<()> {
        self.call(GuestFileCloseArgs { handle }).map(|_| ())
    }

    /// Seeks; returns the new position.
    pub fn seek(&mut self, handle: i64, offset: i64, whence: QgaSeek) -> Result<i64> {
        self.call(GuestFileSeekArgs {
            handle,
            offset,
            whence: GuestFileWhence::Name(whence),
        })
        .map(|s| s.position)
    }

    /// Closes `handle` after `body`, also when `body` failed (then after draining any
    /// owed replies); the body's error wins over the close's.
    fn with_handle<T>(
        &mut self,
        handle: i64,
        body: impl FnOnce(&mut Client) -> Result<T>,
    ) -> Result<T> {
        let r = body(self);
        if r.is_err() {
            self.drain();
        }
        let closed = self.close(handle);
        let v = r?;
        closed?;
        Ok(v)
    }

    /// Writes everything `src` yields to the guest file `dest` (created or truncated),
    /// pipelined; `progress` gets the running byte count.
    pub fn upload(
        &mut self,
        src: &mut dyn Read,
        dest: &str,
        opts: TransferOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Transfer> {
        let handle = self.open(dest, "wb")?;
        self.with_handle(handle, |c| {
            let mut hash = Sha256::new();
            let mut sent = 0u64;
            let mut acked = 0u64;
            let mut owed: VecDeque<(Pending<crate::wire::GuestFileWrite>, usize)> = VecDeque::new();
            let mut buf = vec![0u8; opts.chunk.max(1)];
            let mut at_end = false;
            while !at_end || !owed.is_empty() {
                if !at_end && owed.len() < opts.window.max(1) {
                    let n = read_full(src, &mut buf).map_err(|e| local("reading the source", e))?;
                    if n == 0 {
                        at_end = true;
                        continue;
                    }
                    hash.update(&buf[..n]);
                    let p = c.send(&GuestFileWriteArgs {
                        handle,
                        buf_b64: b64::encode(&buf[..n]),
                        count: None,
                    })?;
                    sent += n as u64;
                    owed.push_back((p, n));
                    continue;
                }
                let (p, n) = owed.pop_front().expect("owed is non-empty here");
                let w = c.receive(p)?;
                if w.count != n as i64 {
                    return Err(Error::Failed(format!(
                        "{dest}: short write in the guest ({} of {n} bytes)",
                        w.count
                    )));
                }
                acked += n as u64;
                progress(acked);
            }
            c.call(GuestFileFlushArgs { handle })?;
            let size = c.seek(handle, 0, QgaSeek::End)?;
            if size != sent as i64 {
                return Err(Error::Failed(format!(
                    "{dest}: the guest file is {size} bytes after writing {sent}"
                )));
            }
            Ok(Transfer {
                bytes: sent,
                sha256: hash.hex(),
                guest_size: Some(size as u64),
            })
        })
    }

    /// Reads the guest file `src` to `dst`, pipelined; `progress` gets the running
    /// byte count and the size, when known. `check_size` compares the bytes received
    /// with the file's size at the end (guest-file-seek to the end).
    pub fn download(
        &mut self,
        src: &str,
        dst: &mut dyn Write,
        opts: TransferOptions,
        check_size: bool,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Transfer> {
        let handle = self.open(src, "r")?;
        self.with_handle(handle, |c| {
            // Not every file can be sought (pipes, some /proc files): size unknown.
            let total = match c.seek(handle, 0, QgaSeek::End) {
                Ok(n) => {
                    c.seek(handle, 0, QgaSeek::Set)?;
                    Some(n as u64)
                }
                Err(Error::Guest { .. }) => None,
                Err(e) => return Err(e),
            };
            let mut hash = Sha256::new();
            let mut got = 0u64;
            let mut owed = VecDeque::new();
            let mut at_end = false;
            while !at_end || !owed.is_empty() {
                if !at_end && owed.len() < opts.window.max(1) {
                    owed.push_back(c.send(&GuestFileReadArgs {
                        handle,
                        count: Some(opts.chunk.max(1) as i64),
                    })?);
                    continue;
                }
                let r = c.receive(owed.pop_front().expect("owed is non-empty here"))?;
                let data =
                    b64::decode(r.buf_b64.text().as_bytes()).ok_or_else(|| Error::Protocol {
                        command: "guest-file-read".into(),
                        detail: "buf-b64 is not valid base64".into(),
                    })?;
                if data.len() as i64 != r.count {
                    return Err(Error::Protocol {
                        command: "guest-file-read".into(),
                        detail: format!("count {} but {} bytes of data", r.count, data.len()),
                    });
                }
                if r.eof || data.is_empty() {
                    at_end = true;
                }
                hash.update(&data);
                dst.write_all(&data)
                    .map_err(|e| local("writing the copy", e))?;
                got += data.len() as u64;
                progress(got, total);
            }
            let mut guest_size = None;
            if check_size && total.is_some() {
                let size = c.seek(handle, 0, QgaSeek::End)? as u64;
                if size != got {
                    return Err(Error::Failed(format!(
                        "{src}: received {got} bytes but the guest file is {size} bytes \
                         (changed during the copy, or not a regular file: use --no-verify)"
                    )));
                }
                guest_size = Some(size);
            }
            Ok(Transfer {
                bytes: got,
                sha256: hash.hex(),
                guest_size,
            })
        })
    }

    /// The guest's `sha256sum` of `path`, through guest-exec. `Ok(None)` when that is
    /// not possible (guest-exec disabled or unknown, no sha256sum in the guest).
    pub fn guest_sha256(&mut self, path: &str) -> Result<Option<String>> {
        let req = ExecRequest {
            program: "sha256sum".into(),
            args: vec!["--".into(), path.into()],
            ..Default::default()
        };
        match self.exec(&req, None) {
            Ok(out) if out.status() == 0 => {
                let hex: String = out.stdout.iter().take(64).map(|&b| b as char).collect();
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(Some(hex.to_ascii_lowercase()))
                } else {
                    Ok(None)
                }
            }
            // Not installed, or it failed: fall back rather than guess.
            Ok(_) => Ok(None),
            Err(Error::Disabled { .. } | Error::Unknown { .. } | Error::Guest { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks an upload end to end: the guest's sha256sum if guest-exec can run it,
    /// otherwise by reading the file back.
    pub fn verify_upload(
        &mut self,
        dest: &str,
        t: &Transfer,
        opts: TransferOptions,
    ) -> Result<Verified> {
        let opts = if self.is_libvirt() {
            self.transfer_options(false)
        } else {
            opts
        };
        let (theirs, how) = match self.guest_sha256(dest)? {
            Some(h) => (h, Verified::GuestSha256),
            None => {
                let back = self.download(dest, &mut std::io::sink(), opts, true, &mut |_, _| {})?;
                (back.sha256, Verified::ReadBack)
            }
        };
        if theirs != t.sha256 {
            return Err(Error::Failed(format!(
                "{dest}: checksum mismatch after upload (sent sha256 {}, guest has {theirs})",
                t.sha256
            )));
        }
        Ok(how)
    }
}
