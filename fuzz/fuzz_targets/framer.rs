//! The JSON streamer must accept any bytes, split anywhere, without crashing, and
//! produce the same messages however the input is split (body: `../targets.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::framer(data));
