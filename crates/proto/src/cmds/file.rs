//! guest-file-open, -close, -read, -write, -seek, -flush.
//!
//! `whence` is QAPI's alternate GuestFileWhence (a bare integer or a QGASeek name),
//! decoded by hand below with the input visitor's exact errors: any JSON number takes
//! the integer branch (so `1.5` is "expected: integer"), a string the enum branch, and
//! anything else names the alternate ("expected: GuestFileWhence").

use crate::base64::Base64Data;
use crate::qapi::{ArgError, Empty, FromQapi, Path, ToQapi};
use crate::value::Value;
use crate::{qapi_command, qapi_enum, qapi_struct};

qapi_struct! {
    /// guest-file-open: open a file in the guest and return a handle for the other
    /// guest-file commands.
    pub struct GuestFileOpenArgs {
        /// Path of the file (relative paths resolve against the agent's cwd).
        pub path: String = "path",
        /// fopen() mode, one of the 15 forms qemu-ga accepts; default `r`.
        pub mode: Option<String> = "mode",
    }
}
qapi_command!(GuestFileOpenArgs, "guest-file-open", i64);

qapi_struct! {
    /// guest-file-close: flush and close an open handle.
    pub struct GuestFileCloseArgs {
        /// Handle returned by guest-file-open.
        pub handle: i64 = "handle",
    }
}
qapi_command!(GuestFileCloseArgs, "guest-file-close", Empty);

qapi_struct! {
    /// guest-file-read: read up to `count` bytes at the handle's position.
    pub struct GuestFileReadArgs {
        /// Handle returned by guest-file-open.
        pub handle: i64 = "handle",
        /// Bytes to read, 0..=48 MiB; default 4096.
        pub count: Option<i64> = "count",
    }
}
qapi_command!(GuestFileReadArgs, "guest-file-read", GuestFileRead);

qapi_struct! {
    /// The reply of guest-file-read.
    pub struct GuestFileRead {
        /// Bytes read (before base64 encoding).
        pub count: i64 = "count",
        /// The data, standard base64 (`""` when nothing was read).
        pub buf_b64: Base64Data = "buf-b64",
        /// Whether end of file was reached during this read.
        pub eof: bool = "eof",
    }
}

qapi_struct! {
    /// guest-file-write: write base64-encoded data at the handle's position (buffered as
    /// stdio buffers it, until flush, close, seek or read).
    pub struct GuestFileWriteArgs {
        /// Handle returned by guest-file-open.
        pub handle: i64 = "handle",
        /// The data, base64.
        pub buf_b64: String = "buf-b64",
        /// Bytes of the decoded data to write, 0..=decoded length; default all.
        pub count: Option<i64> = "count",
    }
}
qapi_command!(GuestFileWriteArgs, "guest-file-write", GuestFileWrite);

qapi_struct! {
    /// The reply of guest-file-write.
    pub struct GuestFileWrite {
        /// Bytes written.
        pub count: i64 = "count",
        /// End-of-file flag of the stream.
        pub eof: bool = "eof",
    }
}

qapi_enum! {
    /// QGASeek: symbolic `whence` values.
    pub enum QgaSeek {
        /// From the start of the file.
        Set = "set",
        /// From the current position.
        Cur = "cur",
        /// From the end of the file.
        End = "end",
    }
}

/// GuestFileWhence: `whence` as an integer (0 = set, 1 = cur, 2 = end; other values
/// are rejected by the command, not the decoder) or a QGASeek name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFileWhence {
    /// A bare integer.
    Value(i64),
    /// A QGASeek name.
    Name(QgaSeek),
}

impl Default for GuestFileWhence {
    fn default() -> Self {
        GuestFileWhence::Name(QgaSeek::Set)
    }
}

impl FromQapi for GuestFileWhence {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::Int(_) | Value::UInt(_) | Value::Double(_)) => {
                i64::from_qapi(v, path).map(GuestFileWhence::Value)
            }
            Some(Value::Str(_)) => QgaSeek::from_qapi(v, path).map(GuestFileWhence::Name),
            Some(_) => Err(path.invalid_type("GuestFileWhence")),
        }
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

qapi_struct! {
    /// guest-file-seek: move the handle's position (flushing buffered writes first).
    pub struct GuestFileSeekArgs {
        /// Handle returned by guest-file-open.
        pub handle: i64 = "handle",
        /// Offset relative to `whence`.
        pub offset: i64 = "offset",
        /// Origin of `offset`.
        pub whence: GuestFileWhence = "whence",
    }
}
qapi_command!(GuestFileSeekArgs, "guest-file-seek", GuestFileSeek);

qapi_struct! {
    /// The reply of guest-file-seek.
    pub struct GuestFileSeek {
        /// New position from the start of the file.
        pub position: i64 = "position",
        /// End-of-file flag of the stream (false after a successful seek).
        pub eof: bool = "eof",
    }
}

qapi_struct! {
    /// guest-file-flush: write the handle's buffered data to the file.
    pub struct GuestFileFlushArgs {
        /// Handle returned by guest-file-open.
        pub handle: i64 = "handle",
    }
}
qapi_command!(GuestFileFlushArgs, "guest-file-flush", Empty);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qapi::decode_args;
    use crate::value::Dict;

    fn args(pairs: &[(&str, Value)]) -> Dict {
        let mut d = Dict::new();
        for (k, v) in pairs {
            d.insert(*k, v.clone());
        }
        d
    }

    fn seek(whence: Value) -> Result<GuestFileSeekArgs, ArgError> {
        decode_args(&args(&[
            ("handle", Value::Int(1000)),
            ("offset", Value::Int(0)),
            ("whence", whence),
        ]))
    }

    #[test]
    fn whence_alternate_errors_match_qemu() {
        assert_eq!(
            seek(Value::Int(7)).unwrap().whence,
            GuestFileWhence::Value(7)
        );
        assert_eq!(
            seek(Value::str("cur")).unwrap().whence,
            GuestFileWhence::Name(QgaSeek::Cur)
        );
        assert_eq!(
            seek(Value::str("bad")).unwrap_err().0,
            "Parameter 'whence' does not accept value 'bad'"
        );
        for v in [Value::Bool(true), Value::Null, Value::List(vec![])] {
            assert_eq!(
                seek(v).unwrap_err().0,
                "Invalid parameter type for 'whence', expected: GuestFileWhence"
            );
        }
        for v in [Value::Double(1.5), Value::UInt(u64::MAX)] {
            assert_eq!(
                seek(v).unwrap_err().0,
                "Invalid parameter type for 'whence', expected: integer"
            );
        }
        let missing: Result<GuestFileSeekArgs, _> = decode_args(&args(&[
            ("handle", Value::Int(1)),
            ("offset", Value::Int(0)),
        ]));
        assert_eq!(missing.unwrap_err().0, "Parameter 'whence' is missing");
    }

    #[test]
    fn reply_key_order_is_qemu_gas() {
        let read = GuestFileRead {
            count: 3,
            buf_b64: "YWJj".into(),
            eof: true,
        };
        assert_eq!(
            read.to_qapi().to_json(),
            br#"{"count": 3, "buf-b64": "YWJj", "eof": true}"#
        );
        let seek = GuestFileSeek {
            position: 6,
            eof: false,
        };
        assert_eq!(
            seek.to_qapi().to_json(),
            br#"{"eof": false, "position": 6}"#
        );
        let write = GuestFileWrite {
            count: 14,
            eof: false,
        };
        assert_eq!(write.to_qapi().to_json(), br#"{"count": 14, "eof": false}"#);
    }
}
