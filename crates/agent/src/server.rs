//! Process lifecycle: parse the configuration, open the channel, serve requests.

use std::process::ExitCode;

/// Entry point of the `qga-agent` binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().cloned().unwrap_or_else(|| "qemu-ga".into());
    match crate::config::parse(&argv0, &args[1.min(args.len())..]) {
        Ok(crate::config::Action::Print(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(crate::config::Action::Run(_config)) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
