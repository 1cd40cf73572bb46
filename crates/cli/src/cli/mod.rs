//! The `qga` command: parse the command line, read any input once, then run the
//! subcommand on one guest, or on every guest at once (one thread each).

pub mod args;
pub mod command;
pub mod help;
pub mod requests;
pub mod run;
pub mod show;
pub mod table;
pub mod targets;
pub mod term;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use qga_cli::error::{EXIT_CONNECTION, EXIT_FAILED, EXIT_USAGE};
use qga_cli::{Client, Error};
use qga_proto::Value;

use args::{Args, Cmd, Parsed};
use run::{error_json, print_json, Done, Io, Prepared};
use targets::{Kind, Target};

/// At most this many guests are contacted at the same time.
const MAX_PARALLEL: usize = 32;

/// The agent takes stdin for guest-exec as one base64 JSON string; qemu-ga's 64 MiB
/// token limit allows 48 MiB of raw data.
const MAX_EXEC_STDIN: usize = 48 << 20;

/// Entry point of `qga`.
pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv, std::env::var("QGA_SOCKET").ok()) {
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(a)) => a,
        Err(args::Usage(msg)) => {
            eprintln!("qga: {msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (targets, fanout) = match targets::resolve(&args.sockets, &args.domains) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("qga: {msg}");
            return ExitCode::from(EXIT_CONNECTION);
        }
    };
    if fanout {
        if let Cmd::Cp { src, dst, .. } = &args.cmd {
            if src.starts_with(':') && !dst.contains("{guest}") {
                eprintln!(
                    "qga: cp from several guests: put {{guest}} in DST (e.g. ./{{guest}}.log)"
                );
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let prep = match prepare(&args.cmd) {
        Ok(p) => p,
        Err((code, msg)) => {
            eprintln!("qga: {msg}");
            return ExitCode::from(code);
        }
    };
    if fanout {
        fan_out(&args, targets, &prep)
    } else {
        single(&args, &targets[0], &prep)
    }
}

/// Reads what the subcommand needs from stdin or files, once.
fn prepare(cmd: &Cmd) -> Result<Prepared, (u8, String)> {
    let mut p = Prepared::default();
    match cmd {
        Cmd::Exec {
            stdin: Some(src), ..
        } => {
            let mut data = Vec::new();
            let r = if src == "-" {
                std::io::stdin().lock().read_to_end(&mut data)
            } else {
                std::fs::File::open(src).and_then(|mut f| f.read_to_end(&mut data))
            };
            r.map_err(|e| (EXIT_FAILED, format!("--stdin {src}: {e}")))?;
            if data.len() > MAX_EXEC_STDIN {
                return Err((
                    EXIT_FAILED,
                    "exec --stdin: at most 48 MiB fit in one guest-exec request; copy the data with qga cp".into(),
                ));
            }
            p.stdin = Some(data);
        }
        Cmd::Passwd { user, .. } => {
            p.password = Some(term::read_password(user).map_err(|m| (EXIT_FAILED, m))?);
        }
        Cmd::SshKeys { action, keys, .. } if action != "list" => {
            let mut text = None;
            if keys.is_empty() {
                if std::io::stdin().is_terminal() {
                    return Err((
                        EXIT_USAGE,
                        format!("ssh-keys {action}: give KEY arguments or pipe keys on stdin"),
                    ));
                }
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| (EXIT_FAILED, format!("reading keys from stdin: {e}")))?;
                text = Some(s);
            }
            p.keys = requests::keys(keys, text.as_deref());
            if p.keys.is_empty() {
                return Err((EXIT_USAGE, format!("ssh-keys {action}: no keys given")));
            }
        }
        Cmd::Raw { json } => match qga_proto::json::parse_one(json.as_bytes()) {
            Some(Ok(v @ Value::Dict(_))) => p.raw = Some(v),
            Some(Ok(_)) => {
                return Err((EXIT_USAGE, "raw: the request must be a JSON object".into()))
            }
            Some(Err(e)) => {
                return Err((EXIT_USAGE, format!("raw: {}", String::from_utf8_lossy(&e))))
            }
            None => return Err((EXIT_USAGE, "raw: incomplete JSON".into())),
        },
        _ => {}
    }
    Ok(p)
}

fn connect(t: &Target, args: &Args) -> Result<Client, Error> {
    match &t.kind {
        Kind::Socket(p) => Client::connect(p, args.timeout),
        Kind::Libvirt(d) => Ok(Client::libvirt(d, args.timeout)),
    }
}

fn single(args: &Args, target: &Target, prep: &Prepared) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let r = connect(target, args).and_then(|mut c| {
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            json: args.json,
            progress: !args.json,
            guest: &target.name,
        };
        run::run(&args.cmd, &mut c, &mut io, prep)
    });
    match r {
        Ok(Done { json, code }) => {
            if args.json {
                print_json(&mut out, &json);
            }
            out.flush().ok();
            ExitCode::from(code)
        }
        // `qga cat :/big | head`: the reader went away; stop quietly, as cat does.
        Err(Error::Failed(m)) if m.ends_with("Broken pipe (os error 32)") => ExitCode::from(141),
        Err(e) => {
            out.flush().ok();
            let _ = writeln!(err, "qga: {e}");
            if args.json {
                print_json(&mut out, &error_json(None, &e));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// One guest's captured result in a fan-out.
struct Captured {
    out: Vec<u8>,
    err: Vec<u8>,
    result: Result<Done, Error>,
}

fn fan_out(args: &Args, targets: Vec<Target>, prep: &Prepared) -> ExitCode {
    let n = targets.len();
    let results: Vec<Mutex<Option<Captured>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = Arc::new(Mutex::new(0usize));
    std::thread::scope(|s| {
        for _ in 0..n.min(MAX_PARALLEL) {
            let next = Arc::clone(&next);
            let (targets, results) = (&targets, &results);
            std::thread::Builder::new()
                .name("qga-guest".into())
                .spawn_scoped(s, move || loop {
                    let i = {
                        let mut g = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *g;
                        *g += 1;
                        i
                    };
                    let Some(t) = targets.get(i) else { break };
                    let (mut out, mut err) = (Vec::new(), Vec::new());
                    let result = connect(t, args).and_then(|mut c| {
                        let mut io = Io {
                            out: &mut out,
                            err: &mut err,
                            json: args.json,
                            progress: false,
                            guest: &t.name,
                        };
                        run::run(&args.cmd, &mut c, &mut io, prep)
                    });
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Captured { out, err, result });
                })
                .expect("spawn a thread");
        }
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let mut worst = 0u8;
    let mut docs = Vec::new();
    for (t, slot) in targets.iter().zip(results) {
        let c = slot
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .expect("every guest ran");
        prefix_lines(&mut out, &t.name, &c.out);
        prefix_lines(&mut err, &t.name, &c.err);
        match c.result {
            Ok(done) => {
                worst = worst.max(done.code);
                docs.push(table::obj(vec![
                    ("guest", Value::str(t.name.as_str())),
                    ("exit", Value::Int(i64::from(done.code))),
                    ("result", done.json),
                ]));
            }
            Err(e) => {
                worst = worst.max(e.exit_code());
                let _ = writeln!(err, "{}: error: {e}", t.name);
                docs.push(error_json(Some(&t.name), &e));
            }
        }
    }
    if args.json {
        print_json(&mut out, &Value::List(docs));
    }
    out.flush().ok();
    ExitCode::from(worst)
}

/// Writes `text` with every line prefixed by `name: ` (a missing final newline is
/// added).
fn prefix_lines(w: &mut dyn Write, name: &str, text: &[u8]) {
    for line in text.split_inclusive(|&b| b == b'\n') {
        let _ = w.write_all(name.as_bytes());
        let _ = w.write_all(b": ");
        let _ = w.write_all(line);
        if !line.ends_with(b"\n") {
            let _ = w.write_all(b"\n");
        }
    }
}
