//! The base64 coders against one-character-at-a-time references (body:
//! `../targets.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::base64(data));
