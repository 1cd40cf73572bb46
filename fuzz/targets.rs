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
