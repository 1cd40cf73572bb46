//! A cheap, deterministic stand-in for the fuzzers inside `cargo test`: the very
//! bodies of the cargo-fuzz targets (`fuzz/targets.rs`) driven by a seeded
//! pseudo-random mutator over the checked-in seeds (`fuzz/seeds/<target>`) for a fixed
//! number of iterations. Real fuzzing is `scripts/fuzz.sh`. A failing input is written
//! to `target/fuzz-smoke/<target>-crash` (replay it with
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> ../target/fuzz-smoke/<target>-crash`).
//!
//! `QGA_FUZZ_SMOKE_ITERS` scales the iteration counts (default 1 = 10000 / 3000).

mod common;

use common::Rng;
mod reliability;

#[path = "../../../fuzz/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// Tokens worth inserting: the lexer's and the envelope's interesting pieces.
const DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"'",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\u0000",
    b"\xff",
    b"\x00",
    b"\n",
    b" ",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"9223372036854775808",
    b"0.1",
    b"true",
    b"null",
    b"\"execute\"",
    b"\"arguments\"",
    b"\"id\"",
    b"\"exec-oob\"",
    b"\"guest-sync\"",
    b"\"guest-sync-delimited\"",
    b"\"guest-info\"",
    b"\"guest-ping\"",
    b"\"guest-get-time\"",
    b"\xc3\xa9",
    b"\xed\xa0\x80",
    b"\xc0\x80",
    b"\xf4\x90\x80\x80",
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = common::workspace_root().join("fuzz/seeds").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let seeds: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One to eight libFuzzer-style mutations of a seed (or of another seed spliced in).
fn mutate(r: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[r.below(seeds.len())].clone();
    for _ in 0..1 + r.below(8) {
        let at = r.below(d.len() + 1);
        match r.below(8) {
            0 if !d.is_empty() => {
                let i = r.below(d.len());
                d[i] ^= 1 << r.below(8);
            }
            1 => d.insert(at, r.next() as u8),
            2 => {
                let tok = DICT[r.below(DICT.len())];
                d.splice(at..at, tok.iter().copied());
            }
            3 if !d.is_empty() => {
                let end = (at + 1 + r.below(16)).min(d.len());
                let start = at.min(end);
                d.drain(start..end);
            }
            4 if !d.is_empty() => {
                let start = r.below(d.len());
                let end = (start + 1 + r.below(32)).min(d.len());
                let piece = d[start..end].to_vec();
                for _ in 0..1 + r.below(4) {
                    d.splice(at..at, piece.iter().copied());
                }
            }
            5 => {
                let other = &seeds[r.below(seeds.len())];
                let from = r.below(other.len());
                d.splice(at..at, other[from..].iter().copied());
            }
            6 => {
                // Deep nesting, past the limit now and then.
                let depth = r.below(1100);
                let open = if r.below(2) == 0 {
                    b"[" as &[u8]
                } else {
                    b"{\"a\":"
                };
                let mut v = open.repeat(depth);
                v.extend_from_slice(&[b']'].repeat(r.below(depth + 1)));
                d.splice(at..at, v);
            }
            _ => {
                let i = r.below(d.len() + 1);
                d.truncate(i);
            }
        }
    }
    d
}

fn run(target: &str, iterations: u64, body: fn(&[u8])) -> (u64, f64) {
    let seeds = seeds(target);
    let mut r = Rng(0x5eed_0000_0000_0001 ^ target.len() as u64);
    let t0 = Instant::now();
    let mut inputs = seeds.clone();
    for _ in 0..iterations {
        inputs.push(mutate(&mut r, &seeds));
    }
    for (i, input) in inputs.iter().enumerate() {
        if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
            let dir = reliability::target_dir().join("fuzz-smoke");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{target}-crash"));
            let _ = std::fs::write(&path, input);
            panic!(
                "{target}: input #{i} failed (saved to {}): {:?}",
                path.display(),
                String::from_utf8_lossy(input)
            );
        }
    }
    (inputs.len() as u64, t0.elapsed().as_secs_f64())
}

fn scale() -> u64 {
    std::env::var("QGA_FUZZ_SMOKE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[test]
fn fuzz_smoke_framer() {
    let (n, secs) = run("framer", 10_000 * scale(), targets::framer);
    reliability::record(
        "fuzz smoke: framer (cargo test, deterministic)",
        &[format!("{n} inputs in {secs:.1} s, no failure")],
    );
}

#[test]
fn fuzz_smoke_dispatch() {
    let (n, secs) = run("dispatch", 3_000 * scale(), targets::dispatch);
    reliability::record(
        "fuzz smoke: dispatch (cargo test, deterministic)",
        &[format!("{n} inputs in {secs:.1} s, no failure")],
    );
}

#[test]
fn fuzz_smoke_base64() {
    let (n, secs) = run("base64", 10_000 * scale(), targets::base64);
    reliability::record(
        "fuzz smoke: base64 (cargo test, deterministic)",
        &[format!("{n} inputs in {secs:.1} s, no failure")],
    );
}
