//! The dispatcher: everything cross-cutting about a request, so that handlers hold
//! none of it. It reproduces QEMU's `qmp_dispatch` (qapi/qmp-dispatch.c) exactly:
//! envelope checks in QEMU's order and hash-table member order, `id` echo rules,
//! CommandNotFound for unknown and disabled commands, argument decoding, no reply on
//! success for `success-response: false` commands, and the 0xFF before a
//! guest-sync-delimited reply. It also applies the policy of [`crate::policy`]: profile
//! filter and audit line.

use qga_proto::{Dict, Value};

use crate::agent::Agent;
use crate::commands::COMMANDS;
use crate::error::Result;
use crate::policy::audit::{self, Outcome};
use crate::policy::Category;

/// A handler after argument decoding was wrapped around it by [`command!`]. The
/// arguments are the request's own: decoding may move data out of them.
pub type RunFn = fn(&Agent, &mut Dict) -> Result<Value>;

/// One row of the command table: a command and its policy.
#[derive(Clone, Copy)]
pub struct CommandDef {
    /// Wire name.
    pub name: &'static str,
    /// What the command does: decides profiles, audit and hardening.
    pub category: Category,
    /// Decodes the arguments and runs the handler.
    pub run: RunFn,
    /// Stays enabled while the filesystems are frozen.
    pub frozen_ok: bool,
    /// False: nothing is sent on success (shutdown and suspend).
    pub success_response: bool,
    /// Whether a success with this return value leaves an audit line (failures and
    /// refusals always do).
    pub audit_ok: fn(&Value) -> bool,
}

impl CommandDef {
    /// A row with the default policy (disabled while frozen, replies on success).
    pub const fn new(name: &'static str, category: Category, run: RunFn) -> Self {
        CommandDef {
            name,
            category,
            run,
            frozen_ok: false,
            success_response: true,
            audit_ok: audit::always,
        }
    }

    /// Audits a success only when `when` says its return value is worth a line.
    pub const fn audit_ok_when(mut self, when: fn(&Value) -> bool) -> Self {
        self.audit_ok = when;
        self
    }

    /// Marks the command as allowed while frozen.
    pub const fn frozen_ok(mut self) -> Self {
        self.frozen_ok = true;
        self
    }

    /// Marks the command as sending no reply on success.
    pub const fn no_success_response(mut self) -> Self {
        self.success_response = false;
        self
    }
}

/// Builds a table row from a [`Category`] (a variant name), an arguments type (which
/// carries the command's name and return type) and a typed handler
/// `fn(&Agent, Args) -> Result<Returns>`: `command!(Info: GuestGetTimeArgs => core::get_time)`.
/// There is no default category: a row without one does not compile.
#[macro_export]
macro_rules! command {
    ($category:ident : $args:ty => $handler:path) => {
        $crate::dispatch::CommandDef::new(
            <$args as qga_proto::Command>::NAME,
            $crate::policy::Category::$category,
            |agent, args| {
                let args: $args = qga_proto::qapi::decode_args_take(args)?;
                let ret: <$args as qga_proto::Command>::Returns = $handler(agent, args)?;
                Ok(qga_proto::ToQapi::into_qapi(ret))
            },
        )
    };
}

/// The row for a command name.
pub fn find(name: &[u8]) -> Option<&'static CommandDef> {
    COMMANDS.iter().find(|c| c.name.as_bytes() == name)
}

/// A reply ready for the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The serialized reply, newline included.
    pub json: Vec<u8>,
    /// Write a raw 0xFF byte before it (guest-sync-delimited).
    pub delimit: bool,
}

/// Error classes qemu-ga emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Everything but unknown or disabled commands.
    GenericError,
    /// Unknown or disabled command.
    CommandNotFound,
}

/// A reply as a value, not yet serialized: the executor writes it to the channel in
/// pieces ([`Value::write_json_line`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// `{"return": ...}` or `{"error": ...}`, with the request's `id`.
    pub value: Value,
    /// Write a raw 0xFF byte before it (guest-sync-delimited).
    pub delimit: bool,
}

impl Response {
    /// The serialized reply.
    pub fn into_reply(self) -> Reply {
        let mut json = self.value.to_json();
        json.push(b'\n');
        Reply {
            json,
            delimit: self.delimit,
        }
    }
}

/// `{"error": {"class": ..., "desc": ...}}`, with `id` added when given.
pub fn error_reply(class: ErrorClass, desc: Vec<u8>, id: Option<&Value>) -> Reply {
    error_response(class, desc, id).into_reply()
}

fn error_response(class: ErrorClass, desc: Vec<u8>, id: Option<&Value>) -> Response {
    let mut err = Dict::new();
    let class = match class {
        ErrorClass::GenericError => "GenericError",
        ErrorClass::CommandNotFound => "CommandNotFound",
    };
    err.insert("class", Value::str(class));
    err.insert("desc", Value::Str(desc));
    let mut rsp = Dict::new();
    rsp.insert("error", Value::Dict(err));
    finish(rsp, id, false)
}

fn finish(mut rsp: Dict, id: Option<&Value>, delimit: bool) -> Response {
    if let Some(id) = id {
        rsp.insert("id", id.clone());
    }
    Response {
        value: Value::Dict(rsp),
        delimit,
    }
}

/// [`handle_from`] for a caller without a connection (tests, in-process use).
pub fn handle(agent: &Agent, msg: std::result::Result<Value, Vec<u8>>) -> Option<Reply> {
    handle_from(agent, msg, "local caller")
}

/// Handles one message from the JSON streamer: a parsed value, or the description of
/// a JSON error. Returns the reply to send, or `None` when the command succeeded and
/// sends no reply. `caller` names the connection for the audit line.
pub fn handle_from(
    agent: &Agent,
    msg: std::result::Result<Value, Vec<u8>>,
    caller: &str,
) -> Option<Reply> {
    respond(agent, msg, caller).map(Response::into_reply)
}

/// [`handle_from`], with the reply left as a value for the executor to serialize.
pub fn respond(
    agent: &Agent,
    msg: std::result::Result<Value, Vec<u8>>,
    caller: &str,
) -> Option<Response> {
    respond_or_defer(agent, msg, caller).unwrap_or(None)
}

/// The command could not run without waiting where that was not allowed
/// ([`crate::error::Error::deferred`]): nothing was done, no reply, no audit line.
pub struct Deferred;

/// [`respond`] for a command run under [`crate::commands::file::without_waiting`]:
/// `Err(Deferred)` when it would have had to wait.
pub fn respond_or_defer(
    agent: &Agent,
    msg: std::result::Result<Value, Vec<u8>>,
    caller: &str,
) -> std::result::Result<Option<Response>, Deferred> {
    let request = match msg {
        Ok(v) => v,
        Err(desc) => return Ok(Some(error_response(ErrorClass::GenericError, desc, None))),
    };
    let Value::Dict(mut dict) = request else {
        return Ok(Some(error_response(
            ErrorClass::GenericError,
            b"QMP input must be a JSON object".to_vec(),
            None,
        )));
    };
    let id = dict.get("id").cloned();
    let id = id.as_ref();
    let generic = |desc: Vec<u8>| Ok(Some(error_response(ErrorClass::GenericError, desc, id)));

    // qmp_dispatch_check_obj: members in QDict order, the first bad one reported.
    let mut execute = None;
    for (key, value) in dict.iter() {
        match key {
            b"execute" => match value {
                Value::Str(s) => execute = Some(s.as_slice()),
                _ => return generic(b"QMP input member 'execute' must be a string".to_vec()),
            },
            b"arguments" => {
                if !matches!(value, Value::Dict(_)) {
                    return generic(b"QMP input member 'arguments' must be an object".to_vec());
                }
            }
            b"id" => {}
            other => {
                let mut desc = b"QMP input member '".to_vec();
                desc.extend_from_slice(other);
                desc.extend_from_slice(b"' is unexpected");
                return generic(desc);
            }
        }
    }
    let Some(name) = execute else {
        return generic(b"QMP input lacks member 'execute'".to_vec());
    };
    // A C string: the name ends at the first NUL.
    let name = name.split(|&b| b == 0).next().unwrap_or(name);
    let not_found = |desc: Vec<u8>| Ok(Some(error_response(ErrorClass::CommandNotFound, desc, id)));
    let Some(cmd) = find(name) else {
        let mut desc = b"The command ".to_vec();
        desc.extend_from_slice(name);
        desc.extend_from_slice(b" has not been found");
        return not_found(desc);
    };
    // The arguments are moved out of the request: decoding may take strings from them,
    // so the audit line's account of them is written first.
    let mut args = match dict.remove("arguments") {
        Some(Value::Dict(a)) => a,
        _ => Dict::new(),
    };
    drop(dict);
    let audit_head = cmd
        .category
        .audited()
        .then(|| audit::head(cmd, caller, &args));
    if let Some(why) = agent.denial(cmd) {
        if let Some(head) = audit_head {
            agent
                .log
                .audit_event(false, &audit::finish(head, Outcome::Denied(&why)));
        }
        return not_found(
            format!(
                "Command {} has been disabled: the command is not allowed",
                cmd.name
            )
            .into_bytes(),
        );
    }
    let result = (cmd.run)(agent, &mut args);
    let note = audit::take_note();
    if result.as_ref().is_err_and(|e| e.is_deferred()) {
        return Err(Deferred);
    }
    if let Some(head) = audit_head {
        let (ok, outcome) = match &result {
            Ok(ret) => (true, Outcome::Ok(ret)),
            Err(e) => (false, Outcome::Err(e.desc())),
        };
        if !ok || (cmd.audit_ok)(result.as_ref().unwrap_or(&Value::Null)) {
            let mut line = audit::finish(head, outcome);
            if let Some(note) = note {
                line.push_str("; ");
                line.push_str(&note);
            }
            agent.log.audit_event(ok, &line);
        }
    }
    match result {
        Err(e) => generic(c_string_bytes(e.desc())),
        Ok(_) if !cmd.success_response => Ok(None),
        Ok(ret) => {
            let mut rsp = Dict::new();
            rsp.insert("return", ret);
            Ok(Some(finish(rsp, id, cmd.name == "guest-sync-delimited")))
        }
    }
}

/// An error text as QEMU holds it: a U+0000 that came from the request (`\u0000`) is
/// the modified-UTF-8 pair `C0 80` there, so it is echoed instead of ending the text.
fn c_string_bytes(desc: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(desc.len());
    for &b in desc.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[0xC0, 0x80]);
        } else {
            out.push(b);
        }
    }
    out
}
