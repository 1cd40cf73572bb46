//! QEMU's JSON dialect, read as a stream: a faithful port of the state machines in
//! `qobject/json-lexer.c`, `json-streamer.c` and `json-parser.c`.
//!
//! qemu-ga feeds every byte from the host into one [`Streamer`] for the whole life of
//! the process. A value is emitted as soon as its outermost brackets balance (or, for a
//! top-level scalar, when the next byte ends it); there is no newline framing. The
//! dialect adds single-quoted strings and the `\'` escape. Errors reproduce QEMU's:
//! a lexical error emits `JSON parse error, stray '<token>'` at once, drops the message
//! gathered so far and skips input until a structural or control byte (so a 0xFF byte
//! always yields exactly one error and resets the parser); parse errors are reported
//! when the message is complete; the 64 MiB / 2 Mi-token / depth-1024 limits bound the
//! memory any input can take.

mod lexer;
mod parser;
mod streamer;

pub use streamer::{parse_one, parse_one_with, Streamer};

use crate::value::Value;

/// Total bytes of all tokens in one message, and the longest single token.
pub const MAX_TOKEN_SIZE: usize = 64 << 20;
/// Tokens in one message.
pub const MAX_TOKEN_COUNT: usize = 2 << 20;
/// Nesting of `{` and `[` together.
pub const MAX_NESTING: i64 = 1 << 10;

/// One complete message: a value, or the `desc` of a JSON error (bytes: a stray token
/// may hold anything; the serializer makes it valid JSON).
pub type Message = Result<Value, Vec<u8>>;

/// Every message the bytes produce, serialized (errors as their desc text).
#[cfg(test)]
fn run(input: &[u8]) -> Vec<String> {
    let mut s = Streamer::new();
    let mut out = Vec::new();
    s.feed(input, &mut |m| {
        out.push(match m {
            Ok(v) => String::from_utf8_lossy(&v.to_json()).into_owned(),
            Err(e) => {
                let mut b = Vec::new();
                crate::value::write_json_string(&e, &mut b);
                format!("ERR {}", String::from_utf8_lossy(&b))
            }
        })
    });
    out
}
