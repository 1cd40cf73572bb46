//! `qga-bench`: our agent and the real qemu-ga 10.0.2 side by side on unix sockets, the
//! same workloads against both from a compiled client, each figure printed for both
//! with the ratio, the issue-7 targets checked, and the results written as JSON.
//!
//! ```text
//! qga-bench [--quick] [--json PATH] [--ours PATH] [--reference PATH] [--only LIST]
//!           [--chunks 4K,1M,4M,48M]
//! qga-bench footprint [--ours PATH] [--window SECS]
//! ```
//! `--only` takes a comma list of: size, startup, idle, ping, pipelined, exec, kubevirt, read,
//! write, limit. `footprint` runs our agent alone and prints its idle RSS, threads and
//! wakeups as `name value` lines (for scripts/footprint.sh). `probe-json BYTES` runs the
//! JSON code alone on a guest-file-write request and a guest-file-read reply carrying
//! BYTES of data, for profiling it under callgrind. `bare-agent -p SOCK` is the bare
//! exec agent the run starts for the exec limit (see `bare.rs`).

mod agent;
mod b64;
mod bare;
mod client;
mod probe;
mod readstream;
mod report;
mod run;
mod targets;
mod transfer;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

/// What to run, from the command line.
pub struct Opts {
    /// Smaller sizes: a smoke test of a few seconds.
    pub quick: bool,
    /// Where the JSON results go.
    pub json: PathBuf,
    /// Our agent's binary.
    pub ours: PathBuf,
    /// qemu-ga's binary.
    pub reference: PathBuf,
    /// Workload groups to run (all when empty).
    pub only: Vec<String>,
    /// `footprint` subcommand.
    pub footprint: bool,
    /// Idle observation window, seconds (footprint; the full run uses 10, quick 1).
    pub window: Option<f64>,
    /// `probe-json BYTES` subcommand: the JSON code alone, for callgrind.
    pub probe: Option<usize>,
    /// Transfer chunk sizes (default 4 KiB, 1 MiB, 4 MiB, 48 MiB).
    pub chunks: Option<Vec<usize>>,
}

impl Opts {
    /// Whether the workload group `g` is selected.
    pub fn wants(&self, g: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == g)
    }
}

const USAGE: &str = "usage: qga-bench [--quick] [--json PATH] [--ours PATH] [--reference PATH] [--only LIST] [--chunks LIST]\n       qga-bench footprint [--ours PATH] [--window SECS]\n";

fn default_ours() -> PathBuf {
    let here = PathBuf::from("target/release/qga-agent");
    if here.exists() {
        return here;
    }
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/release/qga-agent"
    ))
}

/// `4096`, `4K`, `48M`.
fn parse_size(s: &str) -> Option<usize> {
    let (num, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        _ => (s, 0),
    };
    num.parse::<usize>()
        .ok()
        .map(|n| n << shift)
        .filter(|&n| n > 0)
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        json: PathBuf::from("target/bench/latest.json"),
        ours: default_ours(),
        reference: std::env::var_os("QGA_REFERENCE")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/cache/qga-test/qemu-ga-10.0.2/usr/sbin/qemu-ga".into()),
        only: Vec::new(),
        footprint: false,
        window: None,
        probe: None,
        chunks: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "footprint" => o.footprint = true,
            "probe-json" => {
                let v = value()?;
                o.probe = Some(v.parse().map_err(|_| format!("bad size {v}"))?);
            }
            "--quick" => o.quick = true,
            "--json" => o.json = value()?.into(),
            "--ours" => o.ours = value()?.into(),
            "--reference" => o.reference = value()?.into(),
            "--only" => o.only = value()?.split(',').map(String::from).collect(),
            "--chunks" => {
                let v = value()?;
                let sizes: Option<Vec<usize>> = v.split(',').map(parse_size).collect();
                o.chunks = Some(sizes.ok_or(format!("bad --chunks {v}"))?);
            }
            "--window" => {
                let v = value()?;
                o.window = Some(v.parse().map_err(|_| format!("bad --window {v}"))?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    // The agents run in their own directories: make the paths absolute.
    for p in [&mut o.ours, &mut o.reference] {
        if let Ok(abs) = std::fs::canonicalize(&*p) {
            *p = abs;
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare-agent") {
        // Started by the run like an agent: `bare-agent -m unix-listen -p SOCK -t DIR`.
        let Some(sock) = args.windows(2).find(|w| w[0] == "-p").map(|w| &w[1]) else {
            eprintln!("qga-bench bare-agent: -p SOCK is needed");
            return ExitCode::from(2);
        };
        return match bare::serve(sock.as_ref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("qga-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = if let Some(bytes) = opts.probe {
        probe::json(bytes)
    } else if opts.footprint {
        run::footprint(&opts)
    } else {
        run::bench(&opts)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("qga-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
