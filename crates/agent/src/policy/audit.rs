//! The audit line of a command that changes state or moves data:
//!
//! ```text
//! audit: <command> <arguments> by <caller>: ok[, returned <result>]
//! audit: <command> <arguments> by <caller>: error "<qemu-ga's error text>"
//! audit: <command> <arguments> by <caller>: denied (<why>)
//! ```
//!
//! for example
//!
//! ```text
//! audit: guest-file-open path="/etc/hosts" mode="r" by unix-listen client #3 (pid 812, uid 0): ok, returned 1000
//! audit: guest-file-write handle=1000 buf-b64=<redacted> by virtio-serial host: ok, returned count=12 eof=false
//! audit: guest-exec path="/bin/sh" arg=["-c", "id"] env=<2 items> capture-output=true by virtio-serial host: ok, returned pid=4321
//! audit: guest-set-user-password username="root" password=<redacted> crypted=false by virtio-serial host: error "child process has failed to set user password: ..."
//! audit: guest-exec path="/bin/true" by unix-listen client #4 (pid 9, uid 0): denied (profile read-only)
//! ```
//!
//! Arguments and results are summarised from the request and the reply, member by
//! member, in request order. Only members named in [`SHOWN`] show their values (JSON,
//! so quotes, control characters and non-ASCII are escaped and one line stays one
//! line); any other member shows as `<redacted>`, or `<N items>` for a list. So file
//! contents (`buf-b64`), exec input and output (`input-data`, `out-data`, `err-data`),
//! environments (`env`, which may hold secrets), passwords and ssh keys (`keys`, public
//! but logged as a count) never appear, and a member added to a command later is
//! redacted until it is deliberately listed.

use qga_proto::{Dict, Value};

use crate::dispatch::CommandDef;

/// Members whose values are safe and useful in an audit line (argument and result
/// members alike): paths, modes, handles, sizes, exec argv, user names, mount points,
/// hotplug states.
pub const SHOWN: &[&str] = &[
    // guest-file-*
    "path",
    "mode",
    "handle",
    "count",
    "offset",
    "whence",
    "eof",
    "position",
    // guest-exec, guest-exec-status
    "arg",
    "capture-output",
    "pid",
    "exited",
    "exitcode",
    "signal",
    "out-truncated",
    "err-truncated",
    // change
    "time",
    "mountpoints",
    "minimum",
    "paths",
    "error",
    "trimmed",
    "vcpus",
    "logical-id",
    "online",
    "can-offline",
    "mem-blks",
    "phys-index",
    "response",
    "error-code",
    // credentials
    "username",
    "crypted",
    "reset",
];

/// Longest string value shown, in bytes of the request (longer ones are cut).
const MAX_STRING: usize = 256;
/// Most list items shown.
const MAX_ITEMS: usize = 16;
/// Longest audit line, in bytes.
pub const MAX_LINE: usize = 2048;

/// How a command ended, for its audit line.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// It succeeded with this return value.
    Ok(&'a Value),
    /// It failed with this error text.
    Err(&'a str),
    /// It was not run: disabled, for this reason.
    Denied(&'a str),
}

/// [`CommandDef::audit_ok`] of most commands: every success is audited.
pub fn always(_: &Value) -> bool {
    true
}

/// [`CommandDef::audit_ok`] of guest-file-read, -write, -seek and -flush: their
/// successes are summed up on the handle's guest-file-close line instead (a 1 GiB copy
/// in 4 KiB reads would otherwise write 262,144 lines and run into journald's rate
/// limit, losing other messages).
pub fn never(_: &Value) -> bool {
    false
}

/// [`CommandDef::audit_ok`] of guest-exec-status: only the reply that reports the
/// program's end (a host polls until then).
pub fn exited(ret: &Value) -> bool {
    ret.as_dict()
        .and_then(|d| d.get("exited"))
        .is_some_and(|e| *e == Value::Bool(true))
}

thread_local! {
    static NOTE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Adds `text` to the audit line of the command running on this thread (after its
/// outcome, `; text`).
pub fn note(text: String) {
    NOTE.with(|n| *n.borrow_mut() = Some(text));
}

/// The note of the command that just ran on this thread, if it left one.
pub fn take_note() -> Option<String> {
    NOTE.with(|n| n.borrow_mut().take())
}

/// The audit line (without a trailing newline).
pub fn line(cmd: &CommandDef, caller: &str, args: &Dict, outcome: Outcome<'_>) -> String {
    finish(head(cmd, caller, args), outcome)
}

/// The line up to its outcome, `audit: <command> <arguments> by <caller>: `, written
/// before the command runs (it may move data out of its arguments).
pub fn head(cmd: &CommandDef, caller: &str, args: &Dict) -> String {
    let mut out = format!("audit: {}", cmd.name);
    for (key, value) in args.iter_inserted() {
        out.push(' ');
        member(&mut out, key, value);
    }
    out.push_str(" by ");
    out.push_str(caller);
    out.push_str(": ");
    out
}

/// The line from its [`head`] and how the command ended.
pub fn finish(head: String, outcome: Outcome<'_>) -> String {
    let mut out = head;
    match outcome {
        Outcome::Ok(ret) => {
            out.push_str("ok");
            let mut result = String::new();
            match ret {
                Value::Dict(d) => {
                    for (i, (key, value)) in d.iter_inserted().enumerate() {
                        if i > 0 {
                            result.push(' ');
                        }
                        member(&mut result, key, value);
                    }
                }
                other => shown(&mut result, other),
            }
            if !result.is_empty() {
                out.push_str(", returned ");
                out.push_str(&result);
            }
        }
        Outcome::Err(desc) => {
            out.push_str("error ");
            json_string(&mut out, desc.as_bytes(), usize::MAX);
        }
        Outcome::Denied(why) => {
            out.push_str("denied (");
            out.push_str(why);
            out.push(')');
        }
    }
    if out.len() > MAX_LINE {
        let mut cut = MAX_LINE - 3;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// `key=value`, the value shown or redacted by the key's name.
fn member(out: &mut String, key: &[u8], value: &Value) {
    json_key(out, key);
    out.push('=');
    let key_is_shown = std::str::from_utf8(key).is_ok_and(|k| SHOWN.contains(&k));
    if key_is_shown {
        shown(out, value);
    } else {
        match value {
            Value::List(items) => out.push_str(&format!("<{} items>", items.len())),
            _ => out.push_str("<redacted>"),
        }
    }
}

/// A value whose member name is in [`SHOWN`]; dictionaries inside are filtered again.
fn shown(out: &mut String, value: &Value) {
    match value {
        Value::Str(s) => json_string(out, s, MAX_STRING),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().take(MAX_ITEMS).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                shown(out, item);
            }
            if items.len() > MAX_ITEMS {
                out.push_str(&format!(", ... {} more", items.len() - MAX_ITEMS));
            }
            out.push(']');
        }
        Value::Dict(d) => {
            out.push('{');
            for (i, (key, value)) in d.iter_inserted().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                member(out, key, value);
            }
            out.push('}');
        }
        scalar => out.push_str(&String::from_utf8_lossy(&scalar.to_json())),
    }
}

/// A member name: as is when it is a plain QAPI name, else as a JSON string.
fn json_key(out: &mut String, key: &[u8]) {
    let plain = !key.is_empty()
        && key
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        out.push_str(&String::from_utf8_lossy(key));
    } else {
        json_string(out, key, MAX_STRING);
    }
}

/// A JSON string (ASCII only: QEMU's escaping), cut after `max` bytes of input.
fn json_string(out: &mut String, s: &[u8], max: usize) {
    let (s, cut) = if s.len() > max {
        (&s[..max], true)
    } else {
        (s, false)
    };
    let mut buf = Vec::new();
    qga_proto::value::write_json_string(s, &mut buf);
    if cut {
        buf.pop();
        buf.extend_from_slice(b"...\"");
    }
    out.push_str(&String::from_utf8_lossy(&buf));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Category;

    fn def(name: &'static str) -> CommandDef {
        CommandDef::new(name, Category::File, |_, _| Ok(Value::Null))
    }

    fn dict(members: &[(&str, Value)]) -> Dict {
        let mut d = Dict::new();
        for (k, v) in members {
            d.insert(*k, v.clone());
        }
        d
    }

    #[test]
    fn shown_members_redacted_members_and_results() {
        let args = dict(&[
            ("path", Value::str("/etc/passwd")),
            ("mode", Value::str("r")),
        ]);
        assert_eq!(
            line(
                &def("guest-file-open"),
                "unix-listen client #3 (pid 1, uid 0)",
                &args,
                Outcome::Ok(&Value::Int(1000))
            ),
            "audit: guest-file-open path=\"/etc/passwd\" mode=\"r\" by unix-listen client #3 \
             (pid 1, uid 0): ok, returned 1000"
        );
        let args = dict(&[
            ("handle", Value::Int(1000)),
            ("buf-b64", Value::str("c2VjcmV0IGRhdGE=")),
        ]);
        let ret = Value::Dict(dict(&[
            ("count", Value::Int(11)),
            ("eof", Value::Bool(false)),
        ]));
        assert_eq!(
            line(&def("guest-file-write"), "h", &args, Outcome::Ok(&ret)),
            "audit: guest-file-write handle=1000 buf-b64=<redacted> by h: ok, returned count=11 eof=false"
        );
        let args = dict(&[
            ("username", Value::str("root")),
            ("password", Value::str("aHVudGVyMg==")),
            ("crypted", Value::Bool(false)),
        ]);
        let l = line(
            &def("guest-set-user-password"),
            "h",
            &args,
            Outcome::Err("child process has failed to set user password: \"x\"\nnext"),
        );
        assert_eq!(
            l,
            "audit: guest-set-user-password username=\"root\" password=<redacted> crypted=false \
             by h: error \"child process has failed to set user password: \\\"x\\\"\\nnext\""
        );
        let keys = Value::List(vec![Value::str("ssh-ed25519 AAAA a@b"); 3]);
        let args = dict(&[("username", Value::str("u")), ("keys", keys)]);
        assert_eq!(
            line(
                &def("guest-ssh-add-authorized-keys"),
                "h",
                &args,
                Outcome::Ok(&Value::Dict(Dict::new()))
            ),
            "audit: guest-ssh-add-authorized-keys username=\"u\" keys=<3 items> by h: ok"
        );
    }

    #[test]
    fn exec_shows_argv_not_env_or_input_and_denials() {
        let args = dict(&[
            ("path", Value::str("/bin/sh")),
            ("arg", Value::List(vec![Value::str("-c"), Value::str("id")])),
            ("env", Value::List(vec![Value::str("TOKEN=s3cret")])),
            ("input-data", Value::str("cGFzc3dvcmQ=")),
            ("capture-output", Value::Bool(true)),
        ]);
        let ret = Value::Dict(dict(&[("pid", Value::Int(4321))]));
        let l = line(
            &def("guest-exec"),
            "virtio-serial host",
            &args,
            Outcome::Ok(&ret),
        );
        assert_eq!(
            l,
            "audit: guest-exec path=\"/bin/sh\" arg=[\"-c\", \"id\"] env=<1 items> \
             input-data=<redacted> capture-output=true by virtio-serial host: ok, returned pid=4321"
        );
        let l = line(
            &def("guest-exec"),
            "x",
            &dict(&[("path", Value::str("/bin/true"))]),
            Outcome::Denied("profile read-only"),
        );
        assert_eq!(
            l,
            "audit: guest-exec path=\"/bin/true\" by x: denied (profile read-only)"
        );
    }

    #[test]
    fn one_line_whatever_the_input_and_bounded() {
        let args = dict(&[
            ("path", Value::Str(b"/tmp/a\nb\"c\xff\x01".to_vec())),
            ("weird key\n", Value::Int(1)),
        ]);
        let l = line(
            &def("guest-file-open"),
            "h",
            &args,
            Outcome::Ok(&Value::Int(1)),
        );
        assert!(!l.contains('\n') && l.is_ascii(), "{l}");
        assert!(l.contains("\"weird key\\n\"=<redacted>"), "{l}");
        let long = Value::str("x".repeat(10_000));
        let items = Value::List(vec![long.clone(); 100]);
        let args = dict(&[("path", long), ("arg", items)]);
        let l = line(&def("guest-exec"), "h", &args, Outcome::Ok(&Value::Int(1)));
        assert!(l.len() <= MAX_LINE && l.ends_with("..."), "{}", l.len());
        assert!(l.contains(&format!("\"{}...\"", "x".repeat(MAX_STRING))));
    }

    #[test]
    fn nested_results_are_filtered_again() {
        let ret = Value::List(vec![Value::Dict(dict(&[
            ("phys-index", Value::Int(3)),
            ("response", Value::str("success")),
            ("secret", Value::str("zzz")),
        ]))]);
        let l = line(
            &def("guest-set-memory-blocks"),
            "h",
            &Dict::new(),
            Outcome::Ok(&ret),
        );
        assert_eq!(
            l,
            "audit: guest-set-memory-blocks by h: ok, returned [{phys-index=3 response=\"success\" secret=<redacted>}]"
        );
    }
}
