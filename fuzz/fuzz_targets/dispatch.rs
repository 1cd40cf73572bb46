//! The dispatcher must answer any message without crashing. Only side-effect-free
//! commands are enabled: the fuzzer must never run guest-exec or guest-shutdown
//! (body: `../targets.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| targets::dispatch(data));
