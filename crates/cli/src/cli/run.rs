//! Runs one subcommand against one guest. Human output goes to `io.out`/`io.err` as
//! it is produced; the JSON view is returned for the caller to print (alone, or in
//! the per-guest array of a fan-out).

use std::io::Write;
use std::path::{Path, PathBuf};

use qga_cli::wire::{
    GuestFsfreezeStatusArgs, GuestFsfreezeThawArgs, GuestFstrimArgs, GuestGetTimeArgs,
    GuestInfoArgs, GuestPingArgs, GuestSshGetAuthorizedKeysArgs,
};
use qga_cli::{b64, Client, Error, ExecRequest, Result, Verified};
use qga_proto::{ToQapi, Value};

use super::args::Cmd;
use super::requests::{self, Freeze};
use super::show;
use super::table::{obj, to_json};
use super::term::{human_bytes, Progress};

/// Input read once before any guest is contacted (stdin can be read only once, and a
/// fan-out sends the same data to every guest).
#[derive(Debug, Default)]
pub struct Prepared {
    /// exec `--stdin` data.
    pub stdin: Option<Vec<u8>>,
    /// passwd's password.
    pub password: Option<String>,
    /// ssh-keys add/remove keys.
    pub keys: Vec<String>,
    /// raw's request.
    pub raw: Option<Value>,
}

/// Where one guest's output goes.
pub struct Io<'a> {
    /// Standard output (the terminal, or a buffer in a fan-out).
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// `--json`: print nothing, return the document.
    pub json: bool,
    /// Draw progress bars.
    pub progress: bool,
    /// The guest's name (for `{guest}` in cp destinations).
    pub guest: &'a str,
}

/// How a subcommand ended.
pub struct Done {
    /// The `--json` view.
    pub json: Value,
    /// Exit code (exec: the guest program's status).
    pub code: u8,
}

fn ok(json: Value) -> Result<Done> {
    Ok(Done { json, code: 0 })
}

fn out(io: &mut Io, text: &str) -> Result<()> {
    if !io.json {
        io.out
            .write_all(text.as_bytes())
            .map_err(|e| Error::Failed(format!("writing output: {e}")))?;
    }
    Ok(())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn fmt_ns(ns: i64) -> String {
    format!(
        "{}.{:09} UTC",
        super::table::utc(ns.div_euclid(1_000_000_000)),
        ns.rem_euclid(1_000_000_000)
    )
}

/// Runs `cmd` on one guest.
pub fn run(cmd: &Cmd, c: &mut Client, io: &mut Io, prep: &Prepared) -> Result<Done> {
    match cmd {
        Cmd::Ping => {
            c.call(GuestPingArgs {})?;
            out(io, "ok\n")?;
            ok(obj(vec![]))
        }
        Cmd::Info => {
            let v = c.call(GuestInfoArgs {})?.to_qapi();
            out(io, &show::info(&v))?;
            ok(v)
        }
        Cmd::Query(q) => {
            let v = c.execute(q.command(), None)?;
            let text = match q {
                super::args::Query::Ifaddr => show::ifaddr(&v),
                super::args::Query::Fsinfo => show::fsinfo(&v),
                super::args::Query::Disks => show::disks(&v),
                super::args::Query::Vcpus => show::vcpus(&v),
                super::args::Query::Osinfo => show::osinfo(&v),
                super::args::Query::Users => show::users(&v),
            };
            out(io, &text)?;
            ok(v)
        }
        Cmd::Stats { which } => stats(c, io, which),
        Cmd::Exec {
            argv, env, limit, ..
        } => exec(c, io, argv, env, *limit, prep.stdin.clone()),
        Cmd::Cp {
            src,
            dst,
            no_verify,
        } => {
            if let Some(guest) = src.strip_prefix(':') {
                download(c, io, guest, dst, !no_verify)
            } else {
                upload(c, io, src, dst.trim_start_matches(':'), !no_verify)
            }
        }
        Cmd::Cat { path } => {
            let opts = c.transfer_options(false);
            if io.json {
                let mut data = Vec::new();
                c.download(path, &mut data, opts, false, &mut |_, _| {})?;
                return ok(obj(vec![
                    ("path", Value::str(path.as_str())),
                    ("bytes", Value::Int(data.len() as i64)),
                    ("data-b64", Value::str(b64::encode(&data))),
                ]));
            }
            let t = c.download(path, io.out, opts, false, &mut |_, _| {})?;
            io.out.flush().ok();
            ok(obj(vec![("bytes", Value::Int(t.bytes as i64))]))
        }
        Cmd::Fsfreeze {
            action,
            mountpoints,
        } => {
            let (n, verb) = match action.as_str() {
                "status" => {
                    let st = c.call(GuestFsfreezeStatusArgs {})?;
                    out(io, &format!("{}\n", st.as_str()))?;
                    return ok(st.to_qapi());
                }
                "freeze" => match requests::freeze(mountpoints) {
                    Freeze::All(a) => (c.call(a)?, "froze"),
                    Freeze::List(a) => (c.call(a)?, "froze"),
                },
                _ => (c.call(GuestFsfreezeThawArgs {})?, "thawed"),
            };
            out(
                io,
                &format!("{verb} {n} filesystem{}\n", if n == 1 { "" } else { "s" }),
            )?;
            ok(Value::Int(n))
        }
        Cmd::Fstrim { minimum } => {
            let v = c.call(GuestFstrimArgs { minimum: *minimum })?.to_qapi();
            out(io, &show::fstrim(&v))?;
            ok(v)
        }
        Cmd::Shutdown { mode } => {
            let wait = c.timeout().min(std::time::Duration::from_secs(5));
            c.call_no_reply(requests::shutdown(mode.as_deref()), wait)?;
            let m = mode.as_deref().unwrap_or("powerdown");
            out(io, &format!("{m} requested\n"))?;
            ok(obj(vec![("mode", Value::str(m))]))
        }
        Cmd::Time { set, sync } => {
            if set.is_some() || *sync {
                let args = requests::set_time(*set, now_ns());
                let t = args.time;
                c.call(args)?;
                match t {
                    Some(ns) => out(io, &format!("guest clock set to {}\n", fmt_ns(ns)))?,
                    None => out(io, "guest clock set from its hardware clock (RTC)\n")?,
                }
                return ok(obj(vec![("time", t.map_or(Value::Null, Value::Int))]));
            }
            let before = now_ns();
            let guest = c.call(GuestGetTimeArgs {})?;
            let host = before / 2 + now_ns() / 2;
            let diff = guest - host;
            out(
                io,
                &format!(
                    "{} (guest is {:.3}s {} this host)\n",
                    fmt_ns(guest),
                    diff.unsigned_abs() as f64 / 1e9,
                    if diff >= 0 { "ahead of" } else { "behind" }
                ),
            )?;
            ok(obj(vec![
                ("time", Value::Int(guest)),
                ("host-time", Value::Int(host)),
                ("offset-ns", Value::Int(diff)),
            ]))
        }
        Cmd::Passwd { user, crypted } => {
            let pw = prep.password.as_deref().unwrap_or_default();
            if c.is_libvirt() {
                writeln!(
                    io.err,
                    "qga: note: through libvirt the request (password base64-encoded) is on virsh's command line while it runs"
                )
                .ok();
            }
            c.call(requests::passwd(user, pw, *crypted))?;
            out(io, &format!("password for {user} set\n"))?;
            ok(obj(vec![]))
        }
        Cmd::SshKeys {
            action,
            user,
            reset,
            ..
        } => match action.as_str() {
            "list" => {
                let r = c.call(GuestSshGetAuthorizedKeysArgs {
                    username: user.clone(),
                })?;
                // The agent lists them in reverse file order.
                let text: String = r.keys.iter().rev().map(|k| format!("{k}\n")).collect();
                out(io, &text)?;
                ok(r.to_qapi())
            }
            "add" => {
                c.call(requests::ssh_add(user, prep.keys.clone(), *reset))?;
                out(
                    io,
                    &format!("added {} key(s) for {user}\n", prep.keys.len()),
                )?;
                ok(obj(vec![]))
            }
            _ => {
                c.call(requests::ssh_remove(user, prep.keys.clone()))?;
                out(
                    io,
                    &format!("removed {} key(s) for {user}\n", prep.keys.len()),
                )?;
                ok(obj(vec![]))
            }
        },
        Cmd::Raw { .. } => {
            let req = prep.raw.as_ref().expect("raw request prepared");
            let reply = c.call_raw(req)?;
            let failed = reply
                .value
                .as_dict()
                .is_some_and(|d| d.get("error").is_some());
            if !io.json {
                io.out.write_all(&reply.raw).ok();
                io.out.write_all(b"\n").ok();
            }
            Ok(Done {
                json: reply.value,
                code: u8::from(failed),
            })
        }
    }
}

fn stats(c: &mut Client, io: &mut Io, which: &[String]) -> Result<Done> {
    let all = which.is_empty();
    let want = |w: &str| all || which.iter().any(|x| x == w);
    let mut parts = Vec::new();
    let mut first_err = None;
    for (key, command, view) in [
        ("load", "guest-get-load", show::load as fn(&Value) -> String),
        ("cpu", "guest-get-cpustats", show::cpustats),
        ("disk", "guest-get-diskstats", show::diskstats),
    ] {
        if !want(key) {
            continue;
        }
        match c.execute(command, None) {
            Ok(v) => {
                out(io, &view(&v))?;
                parts.push((key, v));
            }
            // Older agents lack some (guest-get-load is 10.0+): say so, show the rest.
            Err(e @ (Error::Unknown { .. } | Error::Disabled { .. })) if all => {
                out(io, &format!("{key}: {e}\n"))?;
                parts.push((key, Value::Null));
                first_err.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    if parts.iter().all(|(_, v)| *v == Value::Null) {
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    ok(obj(parts))
}

fn exec(
    c: &mut Client,
    io: &mut Io,
    argv: &[String],
    env: &[String],
    limit: Option<std::time::Duration>,
    stdin: Option<Vec<u8>>,
) -> Result<Done> {
    let req = ExecRequest {
        program: argv[0].clone(),
        args: argv[1..].to_vec(),
        env: env.to_vec(),
        stdin,
    };
    let o = c.exec(&req, limit)?;
    let code = o.status().clamp(0, 255) as u8;
    if !io.json {
        io.out.write_all(&o.stdout).ok();
        io.out.flush().ok();
        io.err.write_all(&o.stderr).ok();
        for (t, name) in [
            (o.stdout_truncated, "stdout"),
            (o.stderr_truncated, "stderr"),
        ] {
            if t {
                writeln!(io.err, "qga: the agent truncated the program's {name}").ok();
            }
        }
    }
    let opt = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
    Ok(Done {
        json: obj(vec![
            ("pid", Value::Int(o.pid)),
            ("exitcode", opt(o.exitcode)),
            ("signal", opt(o.signal)),
            ("stdout", Value::Str(o.stdout.clone())),
            ("stderr", Value::Str(o.stderr.clone())),
            ("stdout-truncated", Value::Bool(o.stdout_truncated)),
            ("stderr-truncated", Value::Bool(o.stderr_truncated)),
        ]),
        code,
    })
}

fn basename(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p)
}

fn upload(c: &mut Client, io: &mut Io, src: &str, dst: &str, verify: bool) -> Result<Done> {
    let local = |e: std::io::Error| Error::Failed(format!("{src}: {e}"));
    let mut file = std::fs::File::open(src).map_err(local)?;
    let total = file.metadata().map_err(local)?.len();
    let name = basename(src);
    let mut dest = if dst.ends_with('/') {
        format!("{dst}{name}")
    } else {
        dst.to_string()
    };
    let opts = c.transfer_options(true);
    let mut bar = Progress::new(&format!("{name} →"), io.progress);
    let mut send = |c: &mut Client, file: &mut std::fs::File, dest: &str| {
        let progress = &mut |n| bar.update(n, Some(total));
        if verify {
            c.upload_checked(file, dest, opts, progress)
                .map(|(t, how)| (t, Some(how)))
        } else {
            c.upload(file, dest, opts, progress).map(|t| (t, None))
        }
    };
    let (t, how) = match send(c, &mut file, &dest) {
        // `qga cp f :/tmp`: the destination is a directory.
        Err(Error::Guest { desc, .. }) if desc.ends_with("Is a directory") => {
            dest = format!("{}/{name}", dest.trim_end_matches('/'));
            let mut file = std::fs::File::open(src).map_err(local)?;
            send(c, &mut file, &dest)?
        }
        r => r?,
    };
    bar.finish();
    let check = match how {
        Some(Verified::GuestSha256 | Verified::GuestSha256Pieces(_)) => {
            "size and sha256 checked in the guest"
        }
        Some(Verified::ReadBack) => "size checked; sha256 checked by reading it back",
        None => "not verified",
    };
    out(
        io,
        &format!("sent {} to :{dest} ({check})\n", human_bytes(t.bytes)),
    )?;
    ok(obj(vec![
        ("source", Value::str(src)),
        ("destination", Value::str(format!(":{dest}"))),
        ("bytes", Value::Int(t.bytes as i64)),
        ("sha256", Value::str(t.sha256)),
        (
            "verified",
            Value::str(match how {
                Some(Verified::GuestSha256 | Verified::GuestSha256Pieces(_)) => "guest-sha256",
                Some(Verified::ReadBack) => "read-back",
                None => "none",
            }),
        ),
    ]))
}

fn download(c: &mut Client, io: &mut Io, src: &str, dst: &str, verify: bool) -> Result<Done> {
    let mut path = PathBuf::from(dst.replace("{guest}", io.guest));
    if path.is_dir() {
        path.push(basename(src));
    }
    let tmp = partial_name(&path);
    let local = |e: std::io::Error| Error::Failed(format!("{}: {e}", tmp.display()));
    let mut file = std::fs::File::create(&tmp).map_err(local)?;
    let mut bar = Progress::new(&format!("{} ←", basename(src)), io.progress);
    let r = c.download(
        src,
        &mut file,
        c.transfer_options(false),
        verify,
        &mut |n, t| bar.update(n, t),
    );
    bar.finish();
    let r = r.and_then(|t| {
        file.sync_all().map_err(local)?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
        Ok(t)
    });
    let t = match r {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let check = if t.guest_size.is_some() {
        "size checked"
    } else {
        "not verified"
    };
    out(
        io,
        &format!(
            "received {} from :{src} into {} ({check})\n",
            human_bytes(t.bytes),
            path.display()
        ),
    )?;
    ok(obj(vec![
        ("source", Value::str(format!(":{src}"))),
        ("destination", Value::str(path.display().to_string())),
        ("bytes", Value::Int(t.bytes as i64)),
        ("sha256", Value::str(t.sha256)),
        (
            "verified",
            Value::str(if t.guest_size.is_some() {
                "size"
            } else {
                "none"
            }),
        ),
    ]))
}

/// `dir/.name.qga-partial`: the download lands here and is renamed when complete.
fn partial_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or("download".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.qga-partial"))
}

/// The `--json` document of a failure.
pub fn error_json(guest: Option<&str>, e: &Error) -> Value {
    let mut pairs = Vec::new();
    if let Some(g) = guest {
        pairs.push(("guest", Value::str(g)));
    }
    pairs.push((
        "error",
        obj(vec![
            ("kind", Value::str(e.kind())),
            ("message", Value::str(e.to_string())),
        ]),
    ));
    obj(pairs)
}

/// Prints a JSON document with a newline.
pub fn print_json(w: &mut dyn Write, v: &Value) {
    let _ = writeln!(w, "{}", to_json(v));
}
