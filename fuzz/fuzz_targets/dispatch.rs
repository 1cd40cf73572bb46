//! The dispatcher must answer any message without crashing. Only side-effect-free
//! commands are enabled: the fuzzer must never run guest-exec or guest-shutdown.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qga_agent::agent::Agent;
use qga_agent::config::Config;
use qga_agent::log::Logger;
use qga_proto::json::Streamer;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join("qga-fuzz-dispatch");
    let _ = std::fs::create_dir_all(&dir);
    let config = Config {
        statedir: dir.to_string_lossy().into_owned(),
        allow_rpcs: ["guest-ping", "guest-sync", "guest-sync-delimited", "guest-info", "guest-get-time"]
            .map(String::from)
            .to_vec(),
        ..Config::default()
    };
    let agent = Agent::new(config, Logger::new(Box::new(std::io::sink()), false), false, 1000);
    let mut s = Streamer::new();
    s.feed(data, &mut |m| {
        if let Some(reply) = qga_agent::dispatch::handle(&agent, m) {
            assert!(reply.json.ends_with(b"\n") && reply.json.is_ascii());
        }
    });
});
