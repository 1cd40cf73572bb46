//! `qga-agent`: the QEMU guest agent daemon.

// GCC's unwinder from the static archive instead of libgcc_s.so.1 (see build.rs).
#[cfg(qga_static_libgcc)]
#[link(name = "gcc_eh", kind = "static")]
extern "C" {}

fn main() -> std::process::ExitCode {
    qga_agent::server::main()
}
