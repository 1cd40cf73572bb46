//! Release builds on glibc link GCC's unwinder statically (`libgcc_eh.a`), so the agent
//! needs no shared library but libc: Rust's standard library refers to the `_Unwind_*`
//! functions (backtraces), which otherwise pull in `libgcc_s.so.1`. `-C
//! link-arg=-static-libgcc` cannot do this, because the `unwind` crate asks for
//! `-lgcc_s` by name; an archive linked ahead of it resolves those symbols first, and
//! `--as-needed` then drops `libgcc_s`. Skipped for debug builds (tests unwind through
//! the usual shared unwinder), static builds (crt-static links `libgcc_eh` anyway), and
//! when the C compiler has no `libgcc_eh.a`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(qga_static_libgcc)");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let glibc = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
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
