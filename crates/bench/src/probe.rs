//! `qga-bench probe-json BYTES`: the agent's JSON code paths for one large transfer,
//! without sockets or threads, so `valgrind --tool=callgrind` counts only them: the
//! streamer parsing a guest-file-write request carrying BYTES of data, 100 pings, and
//! the serializer writing a guest-file-read reply of the same size.

use qga_proto::json::Streamer;
use qga_proto::{Dict, Value};

use crate::b64;

/// Runs the probe; prints what it parsed and wrote so nothing is optimised away.
pub fn json(bytes: usize) -> Result<bool, String> {
    let data = crate::transfer::content(bytes);
    let mut req =
        br#"{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":""#.to_vec();
    b64::encode_into(&data, &mut req);
    req.extend_from_slice(b"\"}}");
    for _ in 0..100 {
        req.extend_from_slice(br#"{"execute":"guest-ping"}"#);
    }
    let mut streamer = Streamer::new();
    let (mut messages, mut string_bytes) = (0, 0);
    // Fed in the agent's 64 KiB reads.
    for piece in req.chunks(64 << 10) {
        streamer.feed(piece, &mut |m| {
            messages += 1;
            if let Ok(Value::Dict(d)) = m {
                let args = d.get("arguments").and_then(Value::as_dict);
                if let Some(s) = args
                    .and_then(|a| a.get("buf-b64"))
                    .and_then(Value::as_bytes)
                {
                    string_bytes += s.len();
                }
            }
        });
    }
    let mut text = Vec::new();
    b64::encode_into(&data, &mut text);
    let mut ret = Dict::new();
    ret.insert("count", Value::Int(bytes as i64));
    ret.insert("buf-b64", Value::Str(text));
    ret.insert("eof", Value::Bool(false));
    let mut rsp = Dict::new();
    rsp.insert("return", Value::Dict(ret));
    let json = Value::Dict(rsp).to_json();
    println!(
        "parsed {messages} messages, {string_bytes} string bytes; wrote {} bytes",
        json.len()
    );
    Ok(messages == 101 && string_bytes == bytes.div_ceil(3) * 4)
}
