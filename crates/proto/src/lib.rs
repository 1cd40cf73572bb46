//! Wire types of the QEMU guest agent protocol, shared by the agent (`qga-agent`) and
//! the host-side client (`qga`).
//!
//! - [`value`]: QEMU's JSON value model and its byte-exact serializer;
//! - [`base64`]: base64 as qemu-ga writes it and reads it (GLib's lenient decoder);
//! - [`qapi`]: typed decoding with qemu-ga's exact argument errors, and encoding;
//! - [`cmds`]: one arguments struct per command, with its name and return type.
//!
//! No I/O, and no `unsafe` but one `set_len` in [`base64::encode_into`] (the encoder
//! writes the output without zeroing it first).
#![deny(unsafe_code)]

pub mod base64;
pub mod cmds;
pub mod ghash;
pub mod json;
pub mod qapi;
pub mod value;

pub use qapi::{ArgError, Command, Empty, FromQapi, FromQapiDict, Path, ToQapi};
pub use value::{Dict, Value};
