//! File transfer with guest-file-*: chunked and pipelined (several reads or writes in
//! flight on one handle; the agent answers in order), with an end-to-end check.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::Duration;

use qga_proto::Value;

use crate::b64;
use crate::error::{Error, Result};
use crate::exec::ExecRequest;
use crate::sha256::Sha256;
use crate::wire::{
    GuestFileCloseArgs, GuestFileOpenArgs, GuestFileReadArgs, GuestFileSeekArgs, GuestFileWhence,
    QgaSeek,
};
use crate::Client;

/// Chunking and pipelining of a transfer.
#[derive(Debug, Clone, Copy)]
pub struct TransferOptions {
    /// Bytes per guest-file-read/-write. 1 MiB keeps each reply far below libvirt's
    /// 10 MiB cap and qemu-ga's 48 MiB read limit.
    pub chunk: usize,
    /// Requests in flight at once.
    pub window: usize,
    /// Bytes per piece of a checked upload that the guest hashes while later pieces
    /// are still being sent: a multiple of `chunk`, and of 1 MiB or a divisor of it.
    pub piece: u64,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            chunk: 1 << 20,
            window: 4,
            piece: 32 << 20,
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
    /// `sha256sum` ran in the guest over the whole file and matched.
    GuestSha256,
    /// `sha256sum` ran in the guest over each of this many pieces, during the upload,
    /// and every piece matched.
    GuestSha256Pieces(usize),
    /// guest-exec was unavailable; the file was read back and its hash matched.
    ReadBack,
}

pub(crate) fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
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

pub(crate) fn local(what: &str, e: std::io::Error) -> Error {
    Error::Failed(format!("{what}: {e}"))
}

fn bad_read(detail: impl Into<String>) -> Error {
    Error::Protocol {
        command: "guest-file-read".into(),
        detail: detail.into(),
    }
}

/// Decodes a guest-file-read return value into `data` (replacing its contents)
/// straight from the parsed reply; returns its `count` and `eof`.
fn read_reply(r: &Value, data: &mut Vec<u8>) -> Result<(i64, bool)> {
    let d = r
        .as_dict()
        .ok_or_else(|| bad_read("the return value is not an object"))?;
    let Some(Value::Int(count)) = d.get("count") else {
        return Err(bad_read("no integer 'count' in the reply"));
    };
    let Some(Value::Bool(eof)) = d.get("eof") else {
        return Err(bad_read("no boolean 'eof' in the reply"));
    };
    let text = d
        .get("buf-b64")
        .and_then(Value::as_bytes)
        .ok_or_else(|| bad_read("no string 'buf-b64' in the reply"))?;
    data.clear();
    if !b64::decode_into(text, data) {
        return Err(bad_read("buf-b64 is not valid base64"));
    }
    Ok((*count, *eof))
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
    pub(crate) fn with_handle<T>(
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
            let mut data = Vec::with_capacity(opts.chunk.max(1));
            let mut at_end = false;
            while !at_end || !owed.is_empty() {
                if !at_end && owed.len() < opts.window.max(1) {
                    owed.push_back(c.send(&GuestFileReadArgs {
                        handle,
                        count: Some(opts.chunk.max(1) as i64),
                    })?);
                    continue;
                }
                let r = c.receive_value(owed.pop_front().expect("owed is non-empty here"))?;
                let (count, eof) = read_reply(&r, &mut data)?;
                if data.len() as i64 != count {
                    return Err(bad_read(format!(
                        "count {count} but {} bytes of data",
                        data.len()
                    )));
                }
                if eof || data.is_empty() {
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
        match self.exec_polling(&req, None, Duration::from_millis(10)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(members: &[(&str, Value)]) -> Value {
        let mut d = qga_proto::Dict::new();
        for (k, v) in members {
            d.insert(*k, v.clone());
        }
        Value::Dict(d)
    }

    #[test]
    fn read_replies_are_decoded_or_refused() {
        let mut data = vec![1, 2, 3];
        let ok = reply(&[
            ("count", Value::Int(3)),
            ("buf-b64", Value::str("AAEC")),
            ("eof", Value::Bool(true)),
        ]);
        assert_eq!(read_reply(&ok, &mut data).unwrap(), (3, true));
        assert_eq!(data, [0, 1, 2]);
        for (bad, why) in [
            (Value::Int(1), "not an object"),
            (
                reply(&[("buf-b64", Value::str("")), ("eof", Value::Bool(false))]),
                "'count'",
            ),
            (
                reply(&[("count", Value::Int(0)), ("buf-b64", Value::str(""))]),
                "'eof'",
            ),
            (
                reply(&[("count", Value::Int(0)), ("eof", Value::Bool(false))]),
                "'buf-b64'",
            ),
            (
                reply(&[
                    ("count", Value::Int(3)),
                    ("buf-b64", Value::str("AA*C")),
                    ("eof", Value::Bool(false)),
                ]),
                "not valid base64",
            ),
        ] {
            let e = read_reply(&bad, &mut data).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
