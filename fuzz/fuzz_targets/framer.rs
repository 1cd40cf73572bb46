//! The JSON streamer must accept any bytes, split anywhere, without crashing, and
//! produce the same messages however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qga_proto::json::Streamer;

fuzz_target!(|data: &[u8]| {
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
});
