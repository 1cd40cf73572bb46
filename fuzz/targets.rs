//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz_targets/`) and by
//! the deterministic in-suite check `crates/agent/tests/fuzz_smoke.rs`, so both drive
//! exactly the same code with the same assertions.
// Each binary uses one of the targets.
#![allow(dead_code)]

use qga_agent::agent::Agent;
use qga_agent::config::Config;
use qga_agent::log::Logger;
use qga_proto::json::Streamer;

/// The JSON streamer must accept any bytes, split anywhere, without crashing, and
/// produce the same messages however the input is split. `data[0]` picks the split.
pub fn framer(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let input = &data[1..];
    let split = split.min(input.len());
    let mut whole = Vec::new();
    Streamer::new().feed(input, &mut |m| whole.push(m));
    let mut parts = Vec::new();
    let mut s = Streamer::new();
    s.feed(&input[..split], &mut |m| parts.push(m));
    s.feed(&input[split..], &mut |m| parts.push(m));
    assert_eq!(whole, parts);
    for m in whole.into_iter().flatten() {
        // Every value serializes; the output is ASCII.
        assert!(m.to_json().is_ascii());
    }
}

/// Commands the dispatch target may run: side-effect-free only. The fuzzer must never
/// run guest-exec, guest-shutdown, freezes or anything else that changes the machine.
pub const DISPATCH_ALLOWED: [&str; 5] = [
    "guest-ping",
    "guest-sync",
    "guest-sync-delimited",
    "guest-info",
    "guest-get-time",
];

/// The dispatcher must answer any message without crashing, with one ASCII line.
pub fn dispatch(data: &[u8]) {
    let dir = std::env::temp_dir().join("qga-fuzz-dispatch");
    let _ = std::fs::create_dir_all(&dir);
    let config = Config {
        statedir: dir.to_string_lossy().into_owned(),
        allow_rpcs: DISPATCH_ALLOWED.map(String::from).to_vec(),
        ..Config::default()
    };
    let agent = Agent::new(
        config,
        Logger::new(Box::new(std::io::sink()), false),
        false,
        1000,
    );
    let mut s = Streamer::new();
    s.feed(data, &mut |m| {
        if let Some(reply) = qga_agent::dispatch::handle(&agent, m) {
            assert!(reply.json.ends_with(b"\n") && reply.json.is_ascii());
        }
    });
}

/// The base64 coders (vector and table-driven paths) against one-character-at-a-time
/// references: encoding, QEMU/GLib's lenient decoding of what the host sends, and the
/// strict decoding clients apply. `data[0]` picks which bytes are treated as text.
pub fn base64(data: &[u8]) {
    use qga_proto::base64 as b64;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Raw bytes round trip through the encoder.
    let text = b64::encode(rest);
    assert_eq!(text, ref_encode(rest));
    assert_eq!(b64::decode(&text).unwrap(), rest);
    assert_eq!(b64::decode_strict(text.as_bytes()).unwrap(), rest);
    // The input as text: mostly valid base64 with odd bytes (mode 0), or as it is.
    let text: Vec<u8> = match mode % 2 {
        0 => {
            let mut t = text.into_bytes();
            for (i, &b) in rest.iter().enumerate().filter(|(_, b)| **b > 0xF0) {
                let at = (i * 7 + usize::from(b)) % t.len().max(1);
                if at < t.len() {
                    t[at] = [b'\n', b'=', b'\r', b'-', 0xC3][usize::from(b) % 5];
                }
            }
            t
        }
        _ => rest.to_vec(),
    };
    assert_eq!(b64::decode(&text).ok(), ref_lenient(&text));
    assert_eq!(b64::decode_strict(&text), ref_strict(&text));
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn rank(c: u8) -> Option<u32> {
    B64.iter().position(|&a| a == c).map(|p| p as u32)
}

fn ref_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for g in data.chunks(3) {
        let v = g
            .iter()
            .chain(std::iter::repeat(&0))
            .take(3)
            .fold(0u32, |v, &b| v << 8 | u32::from(b));
        for k in 0..4 {
            let c = B64[(v >> (18 - 6 * k)) as usize & 63];
            out.push(if k <= g.len() { c as char } else { '=' });
        }
    }
    out
}

/// QEMU's character check, then GLib's g_base64_decode_step.
fn ref_lenient(text: &[u8]) -> Option<Vec<u8>> {
    if !text
        .iter()
        .all(|&c| c == b'\n' || c == b'=' || rank(c).is_some())
    {
        return None;
    }
    let (mut out, mut v, mut n, mut last) = (Vec::new(), 0u32, 0, [0u8; 2]);
    for &c in text.iter().filter(|&&c| c != b'\n') {
        last = [c, last[0]];
        v = v << 6 | rank(c).unwrap_or(0);
        n += 1;
        if n == 4 {
            out.push((v >> 16) as u8);
            if last[1] != b'=' {
                out.push((v >> 8) as u8);
            }
            if last[0] != b'=' {
                out.push(v as u8);
            }
            n = 0;
        }
    }
    Some(out)
}

/// Line breaks skipped, `=` only at the end, no dangling single character.
fn ref_strict(text: &[u8]) -> Option<Vec<u8>> {
    let mut chars = Vec::new();
    let mut pad = false;
    for &c in text.iter().filter(|&&c| c != b'\n' && c != b'\r') {
        match c {
            b'=' => pad = true,
            _ if pad => return None,
            _ => chars.push(rank(c)?),
        }
    }
    if chars.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::new();
    for g in chars.chunks(4) {
        let v = g.iter().fold(0u32, |v, &r| v << 6 | r) << (6 * (4 - g.len()));
        out.extend_from_slice(&v.to_be_bytes()[1..g.len()]);
    }
    Some(out)
}
