//! Release builds on glibc link GCC's unwinder statically (`libgcc_eh.a`), so the agent
//! needs no shared library but libc: Rust's standard library refers to the `_Unwind_*`
//! functions (backtraces), which otherwise pull in `libgcc_s.so.1`. `-C
//! link-arg=-static-libgcc` cannot do this, because the `unwind` crate asks for
//! `-lgcc_s` by name; an archive linked ahead of it resolves those symbols first, and
//! `--as-needed` then drops `libgcc_s`. Skipped for debug builds (tests unwind through
//! the usual shared unwinder), static builds (crt-static links `libgcc_eh` anyway), and
//! when the C compiler has no `libgcc_eh.a`.
//!
//! Release builds linked by lld (Rust's default linker on x86_64 glibc since 1.90) also
//! place the functions listed in `link-order.txt` first, side by side: what the agent
//! runs to start and to answer guest-sync/guest-ping. The kernel maps code in 64 KiB
//! windows around each page touched, so spread over the binary that code kept most of
//! it resident (0.85–0.95 MB); packed, an idle agent has about 0.4 MB of its own file
//! mapped. `scripts/link-order.py` regenerates the list; the link map it needs is
//! written to `$OUT_DIR/qga-agent.map`. The segments are also aligned to 64 KiB
//! (`-z max-page-size`), so the kernel loads the binary at a 64 KiB-aligned address and
//! those windows always cover the same parts of the file: 336 KiB of it resident at
//! idle every time, against 340–464 KiB depending on where ASLR put it (the price: 4
//! bits less randomness in the program's own base address). And the sections glibc
//! calls at start and exit (.init, .plt, .fini), which lld puts after the code, so that
//! their window held 40 KiB of cold code, go in front of it (`INIT_FIRST`): 296 KiB.
//! Other linkers get none of these options.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(qga_static_libgcc)");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let glibc = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if glibc && var("PROFILE") == "release" && linked_by_lld(&var) {
        let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order.txt");
        println!("cargo:rerun-if-changed=link-order.txt");
        if order.exists() {
            let order = order.display();
            println!("cargo:rustc-link-arg-bin=qga-agent=-Wl,--symbol-ordering-file={order}");
            println!("cargo:rustc-link-arg-bin=qga-agent=-Wl,--no-warn-symbol-ordering");
        }
        // 64 KiB = the kernel's fault-around window (see above).
        println!("cargo:rustc-link-arg-bin=qga-agent=-Wl,-z,max-page-size=65536");
        let out = var("OUT_DIR");
        // The start-up code glibc calls (.init, and .fini and .plt with it) goes before
        // the code instead of after it, into the window of the functions placed first.
        let script = std::path::Path::new(&out).join("init-first.ld");
        std::fs::write(&script, INIT_FIRST).expect("writing the linker script to OUT_DIR");
        println!(
            "cargo:rustc-link-arg-bin=qga-agent=-Wl,-T,{}",
            script.display()
        );
        println!("cargo:rustc-link-arg-bin=qga-agent=-Wl,-Map={out}/qga-agent.map");
    }
    let crt_static = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if !glibc || crt_static || var("PROFILE") != "release" {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .is_some_and(|p| std::path::Path::new(&p).is_absolute());
    if found {
        println!("cargo:rustc-cfg=qga_static_libgcc");
    }
}

/// Moves .init, .plt and .fini (from crti/crtn and the linker) in front of .text; the
/// rest of the layout is lld's default.
const INIT_FIRST: &str = "SECTIONS {
  .init : { KEEP (*(SORT_NONE(.init))) }
  .plt : { *(.plt) *(.iplt) }
  .fini : { KEEP (*(SORT_NONE(.fini))) }
} INSERT BEFORE .text;
";

/// Whether rustc links this build with its bundled lld: the default for
/// x86_64-unknown-linux-gnu from Rust 1.90 on, unless a linker is configured or lld is
/// switched off in RUSTFLAGS.
fn linked_by_lld(var: &dyn Fn(&str) -> String) -> bool {
    if var("TARGET") != "x86_64-unknown-linux-gnu" || !var("RUSTC_LINKER").is_empty() {
        return false;
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if [
        "linker-features",
        "link-self-contained",
        "linker=",
        "linker-flavor",
    ]
    .iter()
    .any(|f| flags.contains(f))
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let minor = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let v = String::from_utf8_lossy(&o.stdout).into_owned();
            // "rustc 1.95.0 (59807616e 2026-04-14)"
            v.split_whitespace()
                .nth(1)
                .and_then(|v| v.split('.').nth(1).map(str::to_owned))
        })
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
