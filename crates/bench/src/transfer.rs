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
    let mut decoded = Vec::new();
    let mut off = 0;
    let t = Instant::now();
    conn.pipeline_lines(
        n,
        window(chunk),
        |_| req.as_bytes(),
        |_, line| {
            let count = read_reply(line, &mut decoded)?;
            if decoded.len() != count || data.get(off..off + count) != Some(&decoded[..]) {
                return Err(format!(
                    "guest-file-read returned wrong data at offset {off}"
                ));
            }
            off += count;
            Ok(())
        },
    )?;
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

/// A guest-file-read reply line: its data decoded into `out`, and its `count`. Both
/// agents send `{"return": {"count": N, "buf-b64": "...", "eof": B}}`; that layout is
/// read in place (the base64 decoded straight from the receive buffer), anything else
/// goes through the JSON parser.
fn read_reply(line: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
    const HEAD: &[u8] = br#"{"return": {"count": "#;
    const MID: &[u8] = br#", "buf-b64": ""#;
    let fast = (|| {
        let rest = line.strip_prefix(HEAD)?;
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let count: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        let rest = rest[digits..].strip_prefix(MID)?;
        let end = client::find_byte(rest, b'"')?;
        let tail = &rest[end..];
        if tail != br#"", "eof": true}}"# && tail != br#"", "eof": false}}"# {
            return None;
        }
        Some((count, &rest[..end]))
    })();
    let (count, text) = match fast {
        Some(v) => v,
        None => return read_reply_parsed(line, out),
    };
    b64::decode_into(text, out)?;
    Ok(count)
}

/// [`read_reply`] for any other layout.
fn read_reply_parsed(line: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
    let mut s = qga_proto::json::Streamer::with_token_limit(1 << 40);
    let mut msg = None;
    s.feed(line, &mut |m| {
        msg.get_or_insert(m);
    });
    s.feed(b"\n", &mut |m| {
        msg.get_or_insert(m);
    });
    let reply = msg
        .ok_or("incomplete guest-file-read reply")?
        .map_err(|e| format!("bad JSON from agent: {}", String::from_utf8_lossy(&e)))?;
    let ret = client::returned(reply)?;
    let d = client::dict(&ret)?;
    let count = client::int(d, "count")? as usize;
    let text = d
        .get("buf-b64")
        .and_then(Value::as_bytes)
        .ok_or("no buf-b64 in guest-file-read reply")?;
    b64::decode_into(text, out)?;
    Ok(count)
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
    fn read_replies_in_place_and_otherwise() {
        let mut out = Vec::new();
        let line = br#"{"return": {"count": 3, "buf-b64": "YWJj", "eof": false}}"#;
        assert_eq!(read_reply(line, &mut out).unwrap(), 3);
        assert_eq!(out, b"abc");
        // Another member order or spacing goes through the parser.
        let line = br#"{"return":{"eof":true,"buf-b64":"ZGVm","count":3}}"#;
        assert_eq!(read_reply(line, &mut out).unwrap(), 3);
        assert_eq!(out, b"def");
        let err =
            br#"{"error": {"class": "GenericError", "desc": "handle '1' has not been found"}}"#;
        assert!(read_reply(err, &mut out)
            .unwrap_err()
            .contains("has not been found"));
        assert!(read_reply(
            br#"{"return": {"count": 3, "buf-b64": "Y*Jj", "eof": true}}"#,
            &mut out
        )
        .is_err());
        assert_eq!(client::find_byte(b"0123456789abcdef\n", b'\n'), Some(16));
        assert_eq!(client::find_byte(b"abc", b'\n'), None);
    }

    #[test]
    fn limit_moves_every_byte() {
        let data = content(100_000);
        assert!(limit(&data, 4096).unwrap() > 0.0);
        assert_eq!(chunk_label(4096), "4 KiB");
        assert_eq!(chunk_label(48 << 20), "48 MiB");
    }
}
