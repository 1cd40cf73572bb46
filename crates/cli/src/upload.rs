//! Uploads: guest-file-write pipelined, and the end-to-end check overlapped with the
//! transfer. The guest hashes the file in 32 MiB pieces (`dd | sha256sum` through
//! guest-exec), each piece as soon as its bytes are written and flushed, while later
//! pieces are still on their way: checking in the guest after the last byte cost as
//! much again as sending a 256 MiB file to our agent. Every byte is still hashed by
//! the guest from its copy of the file; when a piece cannot be checked that way (no
//! guest-exec, no `sh`/`dd`, any surprise) the whole file is checked as before.

use std::collections::VecDeque;
use std::io::Read;
use std::time::{Duration, Instant};

use qga_proto::qapi::Empty;

use crate::b64;
use crate::error::{Error, Result};
use crate::exec::ExecRequest;
use crate::sha256::Sha256;
use crate::transfer::{local, read_full};
use crate::wire::{
    GuestExec, GuestExecStatus, GuestExecStatusArgs, GuestFileFlushArgs, GuestFileWrite,
    GuestFileWriteArgs, QgaSeek,
};
use crate::{Client, Pending, Transfer, TransferOptions, Verified};

/// dd's largest block size (pieces start at multiples of the one used).
const BLOCK: u64 = 1 << 20;
/// How often a running piece hash is polled.
const POLL: Duration = Duration::from_millis(10);
/// sha256 of `$3` blocks of `$4` bytes of the file `$1` from block `$2`.
const SCRIPT: &str = r#"dd if="$1" bs="$4" skip="$2" count="$3" 2>/dev/null | sha256sum"#;

/// One piece of the file and its check.
struct Piece {
    offset: u64,
    len: u64,
    /// What the host sent, hex.
    sent: String,
    /// The guest process hashing it.
    pid: Option<i64>,
    /// Its result, once in.
    guest: Option<String>,
    /// A guest-exec-status for it is in flight.
    polling: bool,
    next_poll: Instant,
}

/// A reply owed, in request order.
enum Owed {
    Write(Pending<GuestFileWrite>, usize),
    Flush(Pending<Empty>),
    Exec(Pending<GuestExec>, usize),
    Status(Pending<GuestExecStatus>, usize),
}

/// Errors that mean "the guest cannot run the check", not "the transfer failed".
fn cannot_check(e: &Error) -> bool {
    matches!(
        e,
        Error::Disabled { .. } | Error::Unknown { .. } | Error::Guest { .. }
    )
}

/// The 64 hex digits `sha256sum` printed, if it exited 0 and printed them.
fn sha256sum_output(st: &GuestExecStatus) -> Option<String> {
    if st.exitcode != Some(0) {
        return None;
    }
    let out = b64::decode(st.out_data.as_deref()?.as_bytes())?;
    let hex = out.get(..64)?;
    hex.iter()
        .all(u8::is_ascii_hexdigit)
        .then(|| String::from_utf8_lossy(hex).to_ascii_lowercase())
}

impl Client {
    /// Writes everything `src` yields to the guest file `dest` (created or truncated),
    /// pipelined; `progress` gets the running byte count.
    pub fn upload(
        &mut self,
        src: &mut dyn Read,
        dest: &str,
        opts: TransferOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Transfer> {
        self.upload_pieces(src, dest, opts, false, progress)
            .map(|(t, _)| t)
    }

    /// [`upload`](Self::upload), then checked end to end: the guest's `sha256sum` of
    /// every byte, computed piece by piece during the transfer when the guest can, or
    /// [`verify_upload`](Self::verify_upload) after it.
    pub fn upload_checked(
        &mut self,
        src: &mut dyn Read,
        dest: &str,
        opts: TransferOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(Transfer, Verified)> {
        // Pieces need requests in flight (not libvirt), chunks that tile them, and
        // dd blocks that tile them.
        let overlap = !self.is_libvirt()
            && opts.piece > 0
            && opts.piece.is_multiple_of(opts.chunk.max(1) as u64)
            && opts.piece.is_multiple_of(BLOCK.min(opts.piece));
        let (t, pieces) = self.upload_pieces(src, dest, opts, overlap, progress)?;
        if let Some(n) = pieces {
            return Ok((t, Verified::GuestSha256Pieces(n)));
        }
        let how = self.verify_upload(dest, &t, opts)?;
        Ok((t, how))
    }

    /// The upload; with `check`, also the pieces' hashes in the guest. Returns how
    /// many pieces were checked, when every one was and matched.
    fn upload_pieces(
        &mut self,
        src: &mut dyn Read,
        dest: &str,
        opts: TransferOptions,
        check: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(Transfer, Option<usize>)> {
        let handle = self.open(dest, "wb")?;
        self.with_handle(handle, |c| {
            let mut hash = Sha256::new();
            let mut piece = Sha256::new();
            let mut piece_len = 0u64;
            let mut pieces: Vec<Piece> = Vec::new();
            let mut checking = check;
            let (mut sent, mut acked, mut writes) = (0u64, 0u64, 0usize);
            let mut owed: VecDeque<Owed> = VecDeque::new();
            let mut buf = vec![0u8; opts.chunk.max(1)];
            // The request line, built in place: the JSON serializer would copy (and
            // scan for escapes) a multi-megabyte string that needs none.
            let head = format!(
                r#"{{"execute":"guest-file-write","arguments":{{"handle":{handle},"buf-b64":""#
            );
            let mut line = Vec::with_capacity(head.len() + buf.len().div_ceil(3) * 4 + 4);
            let (mut at_end, mut flushed) = (false, false);
            loop {
                let close_piece = if !at_end && writes < opts.window.max(1) {
                    let n = read_full(src, &mut buf).map_err(|e| local("reading the source", e))?;
                    if n == 0 {
                        at_end = true;
                        continue;
                    }
                    hash.update(&buf[..n]);
                    line.clear();
                    line.extend_from_slice(head.as_bytes());
                    b64::encode_into(&buf[..n], &mut line);
                    line.extend_from_slice(b"\"}}\n");
                    owed.push_back(Owed::Write(c.send_line::<GuestFileWriteArgs>(&line)?, n));
                    writes += 1;
                    sent += n as u64;
                    if checking {
                        piece.update(&buf[..n]);
                        piece_len += n as u64;
                    }
                    checking && piece_len == opts.piece
                } else if at_end && !flushed {
                    flushed = true;
                    if !(checking && piece_len > 0) {
                        owed.push_back(Owed::Flush(c.send(&GuestFileFlushArgs { handle })?));
                    }
                    checking && piece_len > 0
                } else {
                    false
                };
                if close_piece {
                    // Flushed first (qemu-ga buffers writes in stdio), then hashed:
                    // the agent runs requests in order.
                    let offset = sent - piece_len;
                    let block = BLOCK.min(opts.piece);
                    owed.push_back(Owed::Flush(c.send(&GuestFileFlushArgs { handle })?));
                    let req = ExecRequest {
                        program: "sh".into(),
                        args: vec![
                            "-c".into(),
                            SCRIPT.into(),
                            "sh".into(),
                            dest.into(),
                            (offset / block).to_string(),
                            piece_len.div_ceil(block).to_string(),
                            block.to_string(),
                        ],
                        ..Default::default()
                    };
                    owed.push_back(Owed::Exec(c.send(&req.to_args())?, pieces.len()));
                    pieces.push(Piece {
                        offset,
                        len: piece_len,
                        sent: std::mem::take(&mut piece).hex(),
                        pid: None,
                        guest: None,
                        polling: false,
                        next_poll: Instant::now(),
                    });
                    piece_len = 0;
                    continue;
                }
                if !at_end && writes < opts.window.max(1) {
                    continue;
                }
                let now = Instant::now();
                if checking {
                    for (i, p) in pieces.iter_mut().enumerate() {
                        if let (Some(pid), None, false) = (p.pid, &p.guest, p.polling) {
                            if now >= p.next_poll {
                                let status = c.send(&GuestExecStatusArgs { pid })?;
                                owed.push_back(Owed::Status(status, i));
                                p.polling = true;
                            }
                        }
                    }
                }
                let Some(next) = owed.pop_front() else {
                    if !at_end || !flushed {
                        continue;
                    }
                    let waiting = pieces.iter().filter(|p| p.guest.is_none() && !p.polling);
                    match waiting.map(|p| p.next_poll).min() {
                        Some(t) if checking => std::thread::sleep(t.saturating_duration_since(now)),
                        _ => break,
                    }
                    continue;
                };
                match next {
                    Owed::Write(p, n) => {
                        let w = c.receive(p)?;
                        if w.count != n as i64 {
                            return Err(Error::Failed(format!(
                                "{dest}: short write in the guest ({} of {n} bytes)",
                                w.count
                            )));
                        }
                        writes -= 1;
                        acked += n as u64;
                        progress(acked);
                    }
                    Owed::Flush(p) => c.receive(p).map(|_| ())?,
                    Owed::Exec(p, i) => match c.receive(p) {
                        Ok(e) => {
                            pieces[i].pid = Some(e.pid);
                            pieces[i].next_poll = Instant::now() + POLL;
                        }
                        Err(e) if cannot_check(&e) => checking = false,
                        Err(e) => return Err(e),
                    },
                    Owed::Status(p, i) => {
                        let st = match c.receive(p) {
                            Ok(st) => st,
                            Err(e) if cannot_check(&e) => {
                                checking = false;
                                continue;
                            }
                            Err(e) => return Err(e),
                        };
                        let p = &mut pieces[i];
                        p.polling = false;
                        p.next_poll = Instant::now() + POLL;
                        if st.exited {
                            // No output, or another digest: give the whole file
                            // the ordinary check rather than judge by a piece.
                            p.guest = Some(sha256sum_output(&st).unwrap_or_default());
                            checking &= p.guest.as_deref() == Some(&p.sent[..]);
                        }
                    }
                }
            }
            let size = c.seek(handle, 0, QgaSeek::End)?;
            if size != sent as i64 {
                return Err(Error::Failed(format!(
                    "{dest}: the guest file is {size} bytes after writing {sent}"
                )));
            }
            let covered: u64 = pieces.iter().map(|p| p.len).sum();
            let all_matched = checking
                && !pieces.is_empty()
                && covered == sent
                && pieces
                    .iter()
                    .all(|p| p.guest.as_deref() == Some(&p.sent[..]))
                && pieces
                    .windows(2)
                    .all(|w| w[0].offset + w[0].len == w[1].offset);
            Ok((
                Transfer {
                    bytes: sent,
                    sha256: hash.hex(),
                    guest_size: Some(size as u64),
                },
                all_matched.then_some(pieces.len()),
            ))
        })
    }
}
