//! `qga-agent`: the QEMU guest agent daemon.

fn main() -> std::process::ExitCode {
    qga_agent::server::main()
}
