//! `qga`: talk to a QEMU guest agent from the host. See `qga --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
