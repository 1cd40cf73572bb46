//! The typed commands the CLI sends: re-exported from `qga_proto::cmds` where the
//! shared wire types exist (core, fsfreeze/fstrim), declared here for the families
//! whose types have not landed in `crates/proto` yet (exec, file, and shutdown,
//! set-time, set-user-password, ssh keys).
//!
//! The local ones use proto's own macros, so they implement [`qga_proto::Command`]
//! exactly as the shared types do, with the same names and members as the family
//! branches; when those land, each section here becomes a `pub use` line.

use qga_proto::qapi::{ArgError, Empty, FromQapi, Path, ToQapi};
use qga_proto::{qapi_command, qapi_enum, qapi_struct, Value};

pub use qga_proto::cmds::core::*;
pub use qga_proto::cmds::freeze::*;

// ---- guest-exec ----------------------------------------------------------------

qapi_enum! {
    /// GuestExecCaptureOutputMode: which output streams guest-exec captures.
    pub enum GuestExecCaptureOutputMode {
        /// Nothing.
        None = "none",
        /// stdout only.
        Stdout = "stdout",
        /// stderr only.
        Stderr = "stderr",
        /// Both, separately.
        Separated = "separated",
        /// Both, in out-data (POSIX guests only).
        Merged = "merged",
    }
}

/// GuestExecCaptureOutput: a bare boolean (`true` = separated) or a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExecCaptureOutput {
    /// `true` / `false`.
    Flag(bool),
    /// A mode string.
    Mode(GuestExecCaptureOutputMode),
}

impl ToQapi for GuestExecCaptureOutput {
    fn to_qapi(&self) -> Value {
        match self {
            GuestExecCaptureOutput::Flag(b) => Value::Bool(*b),
            GuestExecCaptureOutput::Mode(m) => m.to_qapi(),
        }
    }
}

impl FromQapi for GuestExecCaptureOutput {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            Some(Value::Bool(b)) => Ok(GuestExecCaptureOutput::Flag(*b)),
            Some(Value::Str(_)) => FromQapi::from_qapi(v, path).map(GuestExecCaptureOutput::Mode),
            None => Err(path.missing()),
            Some(_) => Err(path.invalid_type("GuestExecCaptureOutput")),
        }
    }
}

impl Default for GuestExecCaptureOutput {
    fn default() -> Self {
        GuestExecCaptureOutput::Flag(false)
    }
}

qapi_struct! {
    /// guest-exec: start a program in the guest; poll guest-exec-status for the result.
    pub struct GuestExecArgs {
        /// The program (PATH is searched).
        pub path: String = "path",
        /// Its arguments (argv\[1..\]).
        pub arg: Option<Vec<String>> = "arg",
        /// `K=V` strings that replace the whole environment.
        pub env: Option<Vec<String>> = "env",
        /// Standard input, base64.
        pub input_data: Option<String> = "input-data",
        /// Which output to capture.
        pub capture_output: Option<GuestExecCaptureOutput> = "capture-output",
    }
}
qapi_command!(GuestExecArgs, "guest-exec", GuestExec);

qapi_struct! {
    /// The reply of guest-exec.
    pub struct GuestExec {
        /// The process id in the guest.
        pub pid: i64 = "pid",
    }
}

qapi_struct! {
    /// guest-exec-status: whether a process started by guest-exec has finished; the entry
    /// is forgotten once `exited: true` was returned.
    pub struct GuestExecStatusArgs {
        /// From guest-exec.
        pub pid: i64 = "pid",
    }
}
qapi_command!(GuestExecStatusArgs, "guest-exec-status", GuestExecStatus);

qapi_struct! {
    /// The reply of guest-exec-status.
    pub struct GuestExecStatus {
        /// Finished and its output pipes closed.
        pub exited: bool = "exited",
        /// Exit status, when it exited normally.
        pub exitcode: Option<i64> = "exitcode",
        /// The signal that killed it.
        pub signal: Option<i64> = "signal",
        /// Captured stdout, base64.
        pub out_data: Option<String> = "out-data",
        /// Captured stderr, base64.
        pub err_data: Option<String> = "err-data",
        /// stdout exceeded the agent's cap.
        pub out_truncated: Option<bool> = "out-truncated",
        /// stderr exceeded the agent's cap.
        pub err_truncated: Option<bool> = "err-truncated",
    }
}

// ---- guest-file-* ---------------------------------------------------------------

qapi_struct! {
    /// guest-file-open: open a file in the guest; returns a handle.
    pub struct GuestFileOpenArgs {
        /// The guest path.
        pub path: String = "path",
        /// fopen() mode (default "r").
        pub mode: Option<String> = "mode",
    }
}
qapi_command!(GuestFileOpenArgs, "guest-file-open", i64);

qapi_struct! {
    /// guest-file-close: close a handle.
    pub struct GuestFileCloseArgs {
        /// From guest-file-open.
        pub handle: i64 = "handle",
    }
}
qapi_command!(GuestFileCloseArgs, "guest-file-close", Empty);

qapi_struct! {
    /// guest-file-read: read up to `count` bytes (default 4096, at most 48 MiB).
    pub struct GuestFileReadArgs {
        /// From guest-file-open.
        pub handle: i64 = "handle",
        /// Bytes wanted.
        pub count: Option<i64> = "count",
    }
}
qapi_command!(GuestFileReadArgs, "guest-file-read", GuestFileRead);

qapi_struct! {
    /// The reply of guest-file-read.
    pub struct GuestFileRead {
        /// Bytes read.
        pub count: i64 = "count",
        /// The data, base64.
        pub buf_b64: String = "buf-b64",
        /// End of file reached.
        pub eof: bool = "eof",
    }
}

qapi_struct! {
    /// guest-file-write: write base64 data.
    pub struct GuestFileWriteArgs {
        /// From guest-file-open.
        pub handle: i64 = "handle",
        /// The data, base64.
        pub buf_b64: String = "buf-b64",
        /// Bytes to write (default: all).
        pub count: Option<i64> = "count",
    }
}
qapi_command!(GuestFileWriteArgs, "guest-file-write", GuestFileWrite);

qapi_struct! {
    /// The reply of guest-file-write.
    pub struct GuestFileWrite {
        /// Bytes written.
        pub count: i64 = "count",
        /// End of file.
        pub eof: bool = "eof",
    }
}

qapi_enum! {
    /// QGASeek: symbolic whence.
    pub enum QgaSeek {
        /// From the start.
        Set = "set",
        /// From the current position.
        Cur = "cur",
        /// From the end.
        End = "end",
    }
}

/// GuestFileWhence: an integer (0, 1, 2) or a [`QgaSeek`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFileWhence {
    /// Numeric whence.
    Value(i64),
    /// Symbolic whence.
    Name(QgaSeek),
}

impl Default for GuestFileWhence {
    fn default() -> Self {
        GuestFileWhence::Name(QgaSeek::Set)
    }
}

impl ToQapi for GuestFileWhence {
    fn to_qapi(&self) -> Value {
        match self {
            GuestFileWhence::Value(i) => Value::Int(*i),
            GuestFileWhence::Name(n) => n.to_qapi(),
        }
    }
}

impl FromQapi for GuestFileWhence {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            Some(Value::Int(i)) => Ok(GuestFileWhence::Value(*i)),
            Some(Value::Str(_)) => FromQapi::from_qapi(v, path).map(GuestFileWhence::Name),
            None => Err(path.missing()),
            Some(_) => Err(path.invalid_type("GuestFileWhence")),
        }
    }
}

qapi_struct! {
    /// guest-file-seek: move the file position.
    pub struct GuestFileSeekArgs {
        /// From guest-file-open.
        pub handle: i64 = "handle",
        /// Offset relative to `whence`.
        pub offset: i64 = "offset",
        /// Reference point.
        pub whence: GuestFileWhence = "whence",
    }
}
qapi_command!(GuestFileSeekArgs, "guest-file-seek", GuestFileSeek);

qapi_struct! {
    /// The reply of guest-file-seek.
    pub struct GuestFileSeek {
        /// The new position.
        pub position: i64 = "position",
        /// End of file.
        pub eof: bool = "eof",
    }
}

qapi_struct! {
    /// guest-file-flush: flush buffered writes.
    pub struct GuestFileFlushArgs {
        /// From guest-file-open.
        pub handle: i64 = "handle",
    }
}
qapi_command!(GuestFileFlushArgs, "guest-file-flush", Empty);

// ---- state-changing commands ---------------------------------------------------------

qapi_struct! {
    /// guest-shutdown: power down, halt or reboot; no reply on success.
    pub struct GuestShutdownArgs {
        /// "powerdown" (default), "halt" or "reboot".
        pub mode: Option<String> = "mode",
    }
}
qapi_command!(GuestShutdownArgs, "guest-shutdown", Empty);

qapi_struct! {
    /// guest-set-time: set the clock to `time` ns, or from the RTC when absent.
    pub struct GuestSetTimeArgs {
        /// Nanoseconds since the epoch.
        pub time: Option<i64> = "time",
    }
}
qapi_command!(GuestSetTimeArgs, "guest-set-time", Empty);

qapi_struct! {
    /// guest-set-user-password: set a user's password (base64; crypted or plain).
    pub struct GuestSetUserPasswordArgs {
        /// The user.
        pub username: String = "username",
        /// The password, base64.
        pub password: String = "password",
        /// Already crypt(3)ed.
        pub crypted: bool = "crypted",
    }
}
qapi_command!(GuestSetUserPasswordArgs, "guest-set-user-password", Empty);

qapi_struct! {
    /// guest-ssh-get-authorized-keys: a user's authorized keys.
    pub struct GuestSshGetAuthorizedKeysArgs {
        /// The user.
        pub username: String = "username",
    }
}
qapi_command!(
    GuestSshGetAuthorizedKeysArgs,
    "guest-ssh-get-authorized-keys",
    GuestAuthorizedKeys
);

qapi_struct! {
    /// The reply of guest-ssh-get-authorized-keys.
    pub struct GuestAuthorizedKeys {
        /// The keys.
        pub keys: Vec<String> = "keys",
    }
}

qapi_struct! {
    /// guest-ssh-add-authorized-keys: add keys (or replace all with `reset`).
    pub struct GuestSshAddAuthorizedKeysArgs {
        /// The user.
        pub username: String = "username",
        /// Public keys, one per entry.
        pub keys: Vec<String> = "keys",
        /// Replace the file instead of appending.
        pub reset: Option<bool> = "reset",
    }
}
qapi_command!(
    GuestSshAddAuthorizedKeysArgs,
    "guest-ssh-add-authorized-keys",
    Empty
);

qapi_struct! {
    /// guest-ssh-remove-authorized-keys: remove keys.
    pub struct GuestSshRemoveAuthorizedKeysArgs {
        /// The user.
        pub username: String = "username",
        /// Public keys to remove.
        pub keys: Vec<String> = "keys",
    }
}
qapi_command!(
    GuestSshRemoveAuthorizedKeysArgs,
    "guest-ssh-remove-authorized-keys",
    Empty
);
