//! guest-exec and guest-exec-status.
//!
//! `capture-output` is QAPI's alternate GuestExecCaptureOutput (a bare boolean or a
//! GuestExecCaptureOutputMode name), decoded by hand with the input visitor's exact
//! errors: a string that is not a mode gives "does not accept value", any other JSON
//! type names the alternate ("expected: GuestExecCaptureOutput").

use crate::qapi::{ArgError, FromQapi, Path, ToQapi};
use crate::value::Value;
use crate::{qapi_command, qapi_enum, qapi_struct};

qapi_struct! {
    /// guest-exec: start a program in the guest and return its PID at once; its exit
    /// status and captured output are collected later with guest-exec-status.
    pub struct GuestExecArgs {
        /// Program; looked up in PATH (the PATH of `env` when given) unless it has a `/`.
        pub path: String = "path",
        /// Arguments after argv[0] (argv[0] is `path`).
        pub arg: Option<Vec<String>> = "arg",
        /// `NAME=value` entries: the child's whole environment (replaces the agent's).
        pub env: Option<Vec<String>> = "env",
        /// Base64 data written to the child's stdin (stdin is /dev/null without it).
        pub input_data: Option<String> = "input-data",
        /// Which output streams to capture; default none.
        pub capture_output: Option<GuestExecCaptureOutput> = "capture-output",
    }
}
qapi_command!(GuestExecArgs, "guest-exec", GuestExec);

qapi_struct! {
    /// The reply of guest-exec.
    pub struct GuestExec {
        /// The child's process ID, the key for guest-exec-status.
        pub pid: i64 = "pid",
    }
}

qapi_struct! {
    /// guest-exec-status: the state of a child started by guest-exec. Once it reports
    /// `exited: true` the result is gone.
    pub struct GuestExecStatusArgs {
        /// PID returned by guest-exec.
        pub pid: i64 = "pid",
    }
}
qapi_command!(GuestExecStatusArgs, "guest-exec-status", GuestExecStatus);

qapi_struct! {
    /// The reply of guest-exec-status.
    pub struct GuestExecStatus {
        /// Whether the child was reaped and its captured output streams reached EOF.
        pub exited: bool = "exited",
        /// Exit code, when it exited normally.
        pub exitcode: Option<i64> = "exitcode",
        /// Signal number, when a signal killed it.
        pub signal: Option<i64> = "signal",
        /// Captured stdout (with `merged`: stdout and stderr), base64; only when non-empty.
        pub out_data: Option<String> = "out-data",
        /// Captured stderr, base64; only when non-empty.
        pub err_data: Option<String> = "err-data",
        /// Whether stdout went beyond the 16 MiB kept; present with `out-data`.
        pub out_truncated: Option<bool> = "out-truncated",
        /// Whether stderr went beyond the 16 MiB kept; present with `err-data`.
        pub err_truncated: Option<bool> = "err-truncated",
    }
}

qapi_enum! {
    /// GuestExecCaptureOutputMode: which streams guest-exec captures.
    pub enum GuestExecCaptureOutputMode {
        /// Nothing: stdout and stderr go to /dev/null.
        None = "none",
        /// stdout only; stderr goes to /dev/null.
        Stdout = "stdout",
        /// stderr only; stdout goes to /dev/null.
        Stderr = "stderr",
        /// Both, separately.
        Separated = "separated",
        /// Both in one stream: stderr is a duplicate of stdout, all in `out-data`.
        Merged = "merged",
    }
}

/// GuestExecCaptureOutput: `true` (= separated), `false` (= none) or a mode name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExecCaptureOutput {
    /// A bare boolean.
    Flag(bool),
    /// A mode name.
    Mode(GuestExecCaptureOutputMode),
}

impl GuestExecCaptureOutput {
    /// The mode this value means.
    pub fn mode(self) -> GuestExecCaptureOutputMode {
        match self {
            GuestExecCaptureOutput::Flag(true) => GuestExecCaptureOutputMode::Separated,
            GuestExecCaptureOutput::Flag(false) => GuestExecCaptureOutputMode::None,
            GuestExecCaptureOutput::Mode(m) => m,
        }
    }
}

impl Default for GuestExecCaptureOutput {
    fn default() -> Self {
        GuestExecCaptureOutput::Flag(false)
    }
}

impl FromQapi for GuestExecCaptureOutput {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::Bool(b)) => Ok(GuestExecCaptureOutput::Flag(*b)),
            Some(Value::Str(_)) => {
                GuestExecCaptureOutputMode::from_qapi(v, path).map(GuestExecCaptureOutput::Mode)
            }
            Some(_) => Err(path.invalid_type("GuestExecCaptureOutput")),
        }
    }
}

impl ToQapi for GuestExecCaptureOutput {
    fn to_qapi(&self) -> Value {
        match self {
            GuestExecCaptureOutput::Flag(b) => Value::Bool(*b),
            GuestExecCaptureOutput::Mode(m) => m.to_qapi(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qapi::decode_args;
    use crate::value::Dict;

    fn exec(capture: Value) -> Result<GuestExecArgs, ArgError> {
        let mut d = Dict::new();
        d.insert("path", Value::str("true"));
        d.insert("capture-output", capture);
        decode_args(&d)
    }

    #[test]
    fn capture_output_alternate() {
        use GuestExecCaptureOutputMode as M;
        let mode = |v| exec(v).unwrap().capture_output.unwrap().mode();
        assert_eq!(mode(Value::Bool(true)), M::Separated);
        assert_eq!(mode(Value::Bool(false)), M::None);
        assert_eq!(mode(Value::str("merged")), M::Merged);
        assert_eq!(mode(Value::str("stderr")), M::Stderr);
        assert_eq!(
            exec(Value::str("x")).unwrap_err().0,
            "Parameter 'capture-output' does not accept value 'x'"
        );
        for v in [Value::Int(3), Value::Null, Value::Double(1.0)] {
            assert_eq!(
                exec(v).unwrap_err().0,
                "Invalid parameter type for 'capture-output', expected: GuestExecCaptureOutput"
            );
        }
    }

    #[test]
    fn arg_paths_in_errors() {
        let mut d = Dict::new();
        d.insert("path", Value::str("echo"));
        d.insert("arg", Value::List(vec![Value::str("a"), Value::Int(1)]));
        let e = decode_args::<GuestExecArgs>(&d).unwrap_err();
        assert_eq!(e.0, "Invalid parameter type for 'arg[1]', expected: string");
    }

    #[test]
    fn status_key_order_is_qemu_gas() {
        let st = GuestExecStatus {
            exited: true,
            exitcode: Some(3),
            signal: None,
            out_data: Some("b3V0Cg==".into()),
            err_data: Some("ZXJyCg==".into()),
            out_truncated: Some(false),
            err_truncated: Some(false),
        };
        assert_eq!(
            String::from_utf8(st.to_qapi().to_json()).unwrap(),
            r#"{"exitcode": 3, "err-data": "ZXJyCg==", "out-data": "b3V0Cg==", "err-truncated": false, "out-truncated": false, "exited": true}"#
        );
        let st = GuestExecStatus {
            exited: true,
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(st.to_qapi().to_json(), br#"{"signal": 9, "exited": true}"#);
        assert_eq!(GuestExec { pid: 42 }.to_qapi().to_json(), br#"{"pid": 42}"#);
    }
}
