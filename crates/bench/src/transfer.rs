//! File transfer workloads (`guest-file-read` / `guest-file-write` over a whole file,
//! up to 8 requests in flight) and the "limit": what base64 plus one trip through a unix
//! socket costs on this machine, measured with the same client code.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use qga_proto::Value;

use crate::agent::Agent;
use crate::b64;
use crate::client;
use crate::workloads::Figures;

/// Requests in flight during a transfer: as a pipelining client keeps them (`qga cp`
/// does), so the round trip of a small request does not decide the figure: up to 8, or
/// 16 MiB of data, and at least 2 (the agent prepares one reply while the client
/// checks the previous one). The same for both agents.
fn window(chunk: usize) -> usize {
    ((16 << 20) / chunk.max(1)).clamp(2, 8)
}
/// The largest write chunk whose request fits QEMU's 64 MiB JSON token limit (the
/// base64 string plus the rest of the request), a multiple of 3 so it has no padding.
pub const MAX_WRITE_CHUNK: usize = (((64 << 20) - 4096) / 4) * 3;

/// Deterministic incompressible file content.
pub fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A chunk size as the table names it.
pub fn chunk_label(chunk: usize) -> String {
    if chunk >= 1 << 20 {
        format!("{} MiB", chunk >> 20)
    } else {
        format!("{} KiB", chunk >> 10)
    }
}

/// The chunk actually written for a nominal size.
pub fn write_chunk(chunk: usize) -> usize {
    chunk.min(MAX_WRITE_CHUNK)
}

fn json_str(s: &str) -> String {
    String::from_utf8_lossy(&Value::str(s).to_json()).into_owned()
}

fn open(conn: &mut client::Conn, path: &Path, mode: &str) -> Result<i64, String> {
    let req = format!(
        r#"{{"execute":"guest-file-open","arguments":{{"path":{},"mode":"{mode}"}}}}"#,
        json_str(&path.to_string_lossy())
    );
    match conn.cmd(req.as_bytes())? {
        Value::Int(h) => Ok(h),
        v => Err(format!(
            "guest-file-open returned {}",
            String::from_utf8_lossy(&v.to_json())
        )),
    }
}

fn close(conn: &mut client::Conn, handle: i64) -> Result<(), String> {
    let req = format!(r#"{{"execute":"guest-file-close","arguments":{{"handle":{handle}}}}}"#);
    conn.cmd(req.as_bytes()).map(drop)
}

fn mib_per_sec(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / f64::from(1 << 20) / secs
}

/// Reads the agent's copy of `data` (`read.bin` in its directory, created on first use)
/// in `chunk`-byte requests; every byte is decoded and compared. MiB/s.
pub fn read(agent: &Agent, data: &[u8], chunk: usize) -> Result<Figures, String> {
    let path = agent.dir.0.join("read.bin");
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(data.len() as u64) {
        std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let mut conn = agent.connect()?;
    let handle = open(&mut conn, &path, "r")?;
    let req = format!(
        r#"{{"execute":"guest-file-read","arguments":{{"handle":{handle},"count":{chunk}}}}}"#
    );
    let n = data.len().div_ceil(chunk);
    let mut replies = crate::readstream::ReadReplies::new(data);
    let t = Instant::now();
    conn.pipeline_stream(
        n,
        window(chunk),
        |_| req.as_bytes(),
        |bytes| replies.feed(bytes),
    )?;
    let off = replies.off;
    let secs = t.elapsed().as_secs_f64();
    close(&mut conn, handle)?;
    if off != data.len() {
        return Err(format!("read {off} bytes of {}", data.len()));
    }
    Ok(vec![(
        format!("read_{chunk}"),
        mib_per_sec(data.len(), secs),
    )])
}

/// Writes `data.len()` bytes to `write.bin` in the agent's directory, each request
/// carrying the first `write_chunk(chunk)` bytes of `data` (requests built beforehand,
/// so the client only copies them to the socket); the file is checked and removed.
pub fn write(agent: &Agent, data: &[u8], nominal: usize) -> Result<Figures, String> {
    let chunk = write_chunk(nominal).min(data.len());
    let path = agent.dir.0.join("write.bin");
    let mut conn = agent.connect()?;
    let handle = open(&mut conn, &path, "w")?;
    let request = |len: usize| {
        let mut r = format!(
            r#"{{"execute":"guest-file-write","arguments":{{"handle":{handle},"buf-b64":""#
        )
        .into_bytes();
        b64::encode_into(&data[..len], &mut r);
        r.extend_from_slice(b"\"}}");
        r
    };
    let full = request(chunk);
    let last_len = match data.len() % chunk {
        0 => chunk,
        r => r,
    };
    let last = request(last_len);
    let n = data.len().div_ceil(chunk);
    let t = Instant::now();
    conn.pipeline(
        n,
        window(chunk),
        |i| if i + 1 == n { &last[..] } else { &full[..] },
        |i, reply| {
            let ret = client::returned(reply)?;
            let want = if i + 1 == n { last_len } else { chunk };
            match client::int(client::dict(&ret)?, "count")? as usize {
                c if c == want => Ok(()),
                c => Err(format!("guest-file-write wrote {c} of {want} bytes")),
            }
        },
    )?;
    let secs = t.elapsed().as_secs_f64();
    close(&mut conn, handle)?;
    let written = std::fs::read(&path).map_err(|e| format!("reading back: {e}"))?;
    let _ = std::fs::remove_file(&path);
    let ok = written.len() == data.len() && written.chunks(chunk).all(|c| c == &data[..c.len()]);
    if !ok {
        return Err("the written file differs from what was sent".into());
    }
    Ok(vec![(
        format!("write_{nominal}"),
        mib_per_sec(data.len(), secs),
    )])
}

/// The limit for moving `data` in `chunk`-byte pieces: one thread base64-encodes each
/// piece and writes it to a unix socketpair, the other reads it and decodes it. MiB/s.
pub fn limit(data: &[u8], chunk: usize) -> Result<f64, String> {
    let (a, b) = UnixStream::pair().map_err(|e| e.to_string())?;
    let t = Instant::now();
    std::thread::scope(|s| {
        let sender = s.spawn(move || {
            let mut a = a;
            let mut text = Vec::new();
            for piece in data.chunks(chunk) {
                text.clear();
                b64::encode_into(piece, &mut text);
                a.write_all(&text).map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        });
        let mut b = b;
        let (mut text, mut out) = (Vec::new(), Vec::new());
        let mut total = 0;
        for piece in data.chunks(chunk) {
            text.resize(piece.len().div_ceil(3) * 4, 0);
            b.read_exact(&mut text).map_err(|e| e.to_string())?;
            b64::decode_into(&text, &mut out)?;
            total += out.len();
        }
        sender.join().map_err(|_| "sender panicked".to_string())??;
        if total != data.len() {
            return Err("limit: lost bytes".to_string());
        }
        Ok(mib_per_sec(data.len(), t.elapsed().as_secs_f64()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_chunk_fits_the_token_limit() {
        const { assert!(MAX_WRITE_CHUNK / 3 * 4 + 200 < 64 << 20) };
        const { assert!(MAX_WRITE_CHUNK > (48 << 20) - 4096) };
        assert_eq!(write_chunk(4 << 20), 4 << 20);
        assert_eq!(
            [4 << 10, 1 << 20, 4 << 20, 48 << 20].map(window),
            [8, 8, 4, 2]
        );
    }

    #[test]
    fn limit_moves_every_byte() {
        let data = content(100_000);
        assert!(limit(&data, 4096).unwrap() > 0.0);
        assert_eq!(chunk_label(4096), "4 KiB");
        assert_eq!(chunk_label(48 << 20), "48 MiB");
    }
}
