//! json-streamer.c: splits the lexer's tokens into messages and enforces QEMU's limits.

use super::lexer::{
    transition, ERROR, IN_DQ_STRING, IN_RECOVERY, IN_SQ_STRING, IN_START, T_LCURLY, T_LSQUARE,
    T_RCURLY, T_RSQUARE, T_SKIP, T_STRING,
};
use super::{parser, Message, MAX_NESTING, MAX_TOKEN_COUNT, MAX_TOKEN_SIZE};
use crate::value::run_len;

/// Tokens up to this size are kept together in one buffer per message; longer ones
/// (big strings) keep their own buffer, which the parser turns into the string value
/// without copying it.
const SMALL_TOKEN: usize = 256;
/// Buffers grown beyond this by one large message are freed after it, not kept.
const KEEP_CAPACITY: usize = 64 << 10;
/// A string token past this size gets room for 8 times as much in one step.
const BIG_TOKEN: usize = 8 << 20;

/// Where a token's bytes are.
#[derive(Debug)]
pub(super) enum Text {
    /// `arena[start..end]`.
    Arena(usize, usize),
    /// A buffer of its own.
    Owned(Vec<u8>),
}

#[derive(Debug)]
pub(super) struct Token {
    pub(super) kind: u8,
    pub(super) text: Text,
}

/// The streaming lexer + message splitter + parser, with QEMU's limits.
#[derive(Debug)]
pub struct Streamer {
    state: u8,
    /// The token being lexed.
    token: Vec<u8>,
    /// Bytes of the small tokens of the message being gathered.
    arena: Vec<u8>,
    tokens: Vec<Token>,
    brace_count: i64,
    bracket_count: i64,
    token_size: usize,
    max_token_size: usize,
}

impl Default for Streamer {
    fn default() -> Self {
        Self::new()
    }
}

impl Streamer {
    /// A streamer in its start state.
    pub fn new() -> Self {
        Self::with_token_limit(MAX_TOKEN_SIZE)
    }

    /// A streamer whose token size limit (one token, and all tokens of one message) is
    /// `max` bytes instead of QEMU's 64 MiB: for clients, whose replies may carry a
    /// 48 MiB `guest-file-read` as a 64 MiB string.
    pub fn with_token_limit(max: usize) -> Self {
        Streamer {
            state: IN_START,
            token: Vec::new(),
            arena: Vec::new(),
            tokens: Vec::new(),
            brace_count: 0,
            bracket_count: 0,
            token_size: 0,
            max_token_size: max,
        }
    }

    /// Whether a message is partly received (bytes gathered but nothing emitted yet).
    pub fn is_idle(&self) -> bool {
        self.state == IN_START && self.tokens.is_empty() && self.token.is_empty()
    }

    /// Feeds bytes; `emit` is called for every complete message, in order.
    pub fn feed(&mut self, input: &[u8], emit: &mut dyn FnMut(Message)) {
        let mut i = 0;
        while i < input.len() {
            // Fast path: the inside of a string is copied in bulk, stopping where the
            // state machine would act and where the token size limit would be crossed.
            if self.state == IN_DQ_STRING || self.state == IN_SQ_STRING {
                let quote = if self.state == IN_DQ_STRING {
                    b'"'
                } else {
                    b'\''
                };
                let room = (self.max_token_size + 1).saturating_sub(self.token.len());
                let rest = &input[i..];
                let run = run_len(&rest[..room.min(rest.len())], |b| {
                    !(0x20..=0xFD).contains(&b) || b == b'\\' || b == quote
                });
                if run > 0 {
                    if self.token.len() + run > BIG_TOKEN && self.token.capacity() < BIG_TOKEN * 8 {
                        // A string this long is file data: room for the largest allowed
                        // at once, instead of doubling through sizes the allocator
                        // keeps resident after the copy (untouched room costs nothing).
                        let room = self.max_token_size.min(BIG_TOKEN * 8) + 2;
                        self.token
                            .reserve_exact(room.saturating_sub(self.token.len()));
                    }
                    self.token.extend_from_slice(&rest[..run]);
                    i += run;
                    self.check_token_size(emit);
                    continue;
                }
            }
            self.feed_byte(input[i], emit);
            i += 1;
        }
    }

    fn feed_byte(&mut self, b: u8, emit: &mut dyn FnMut(Message)) {
        loop {
            let (new_state, lookahead) = transition(self.state, b);
            if !lookahead {
                self.token.push(b);
            }
            let mut next = new_state;
            match new_state {
                T_LCURLY..=T_STRING => {
                    self.process_token(new_state, emit);
                    next = IN_START;
                }
                T_SKIP => {
                    self.token.clear();
                    next = IN_START;
                }
                IN_START => next = IN_START,
                ERROR => {
                    self.process_token(ERROR, emit);
                    next = IN_RECOVERY;
                }
                IN_RECOVERY => self.token.clear(),
                _ => {}
            }
            self.state = next;
            if !lookahead {
                break;
            }
        }
        self.check_token_size(emit);
    }

    /// A single token may not grow beyond the limit: it is cut off and reported.
    fn check_token_size(&mut self, emit: &mut dyn FnMut(Message)) {
        if self.token.len() > self.max_token_size {
            self.process_token(self.state, emit);
            self.state = IN_START;
        }
    }

    /// Drops the current token's bytes (and its buffer, if a large one).
    fn drop_token(&mut self) {
        if self.token.capacity() > KEEP_CAPACITY {
            self.token = Vec::new();
        } else {
            self.token.clear();
        }
    }

    /// json_message_process_token, for the token in `self.token`.
    fn process_token(&mut self, kind: u8, emit: &mut dyn FnMut(Message)) {
        match kind {
            T_LCURLY => self.brace_count += 1,
            T_RCURLY => self.brace_count -= 1,
            T_LSQUARE => self.bracket_count += 1,
            T_RSQUARE => self.bracket_count -= 1,
            ERROR => {
                let text = &self.token;
                let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
                let mut desc = b"JSON parse error, stray '".to_vec();
                desc.extend_from_slice(&text[..end]);
                desc.push(b'\'');
                self.drop_token();
                return self.finish(Err(desc), emit);
            }
            _ => {}
        }
        let len = self.token.len();
        let error: &[u8] = if self.token_size + len + 1 > self.max_token_size {
            b"JSON token size limit exceeded"
        } else if self.tokens.len() + 1 > MAX_TOKEN_COUNT {
            b"JSON token count limit exceeded"
        } else if self.bracket_count + self.brace_count > MAX_NESTING {
            b"JSON nesting depth limit exceeded"
        } else {
            b""
        };
        if !error.is_empty() {
            self.drop_token();
            return self.finish(Err(error.to_vec()), emit);
        }
        self.token_size += len;
        let text = if len <= SMALL_TOKEN {
            let start = self.arena.len();
            self.arena.extend_from_slice(&self.token);
            self.token.clear();
            Text::Arena(start, self.arena.len())
        } else {
            Text::Owned(std::mem::take(&mut self.token))
        };
        self.tokens.push(Token { kind, text });
        if (self.brace_count > 0 || self.bracket_count > 0)
            && self.brace_count >= 0
            && self.bracket_count >= 0
        {
            return;
        }
        let msg = parser::parse(&mut self.tokens, &self.arena);
        self.finish(msg, emit);
    }

    /// Ends the message: the state is reset before `emit` runs.
    fn finish(&mut self, msg: Message, emit: &mut dyn FnMut(Message)) {
        self.brace_count = 0;
        self.bracket_count = 0;
        self.token_size = 0;
        if self.tokens.capacity() > KEEP_CAPACITY / std::mem::size_of::<Token>() {
            self.tokens = Vec::new();
        } else {
            self.tokens.clear();
        }
        if self.arena.capacity() > KEEP_CAPACITY {
            self.arena = Vec::new();
        } else {
            self.arena.clear();
        }
        emit(msg);
    }
}

/// Parses one complete message (convenience for clients and tests): the first value or
/// error the bytes produce; `None` when they do not complete a message.
pub fn parse_one(bytes: &[u8]) -> Option<Message> {
    parse_one_with(Streamer::new(), bytes)
}

/// [`parse_one`] with a streamer of the caller's (a client's larger token limit).
pub fn parse_one_with(mut s: Streamer, bytes: &[u8]) -> Option<Message> {
    let mut out = None;
    s.feed(bytes, &mut |m| {
        if out.is_none() {
            out = Some(m);
        }
    });
    if out.is_none() {
        // A top-level scalar ends only at the next byte.
        s.feed(b" ", &mut |m| {
            if out.is_none() {
                out = Some(m);
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

    #[test]
    fn dialect_and_framing() {
        assert_eq!(
            run(b"{'a': \"x'y\", \"b\": 'q\\'\"'}"),
            [r#"{"a": "x'y", "b": "q'\""}"#]
        );
        assert_eq!(
            run(b"{}{}\n[1, 2.5, -0, 1e3]"),
            ["{}", "{}", "[1, 2.5, 0, 1000]"]
        );
        assert_eq!(run(b"1"), Vec::<String>::new());
        assert_eq!(run(b"1 "), ["1"]);
        assert_eq!(
            run(b"18446744073709551615 18446744073709551616 "),
            ["18446744073709551615", "1.8446744073709552e+19"]
        );
        assert_eq!(run(b"{\"a\":[}"), Vec::<String>::new());
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(1023), "]".repeat(1023));
        assert_eq!(run(ok.as_bytes()).len(), 1);
        assert!(!run(ok.as_bytes())[0].starts_with("ERR"));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(1024), "]".repeat(1024));
        let out = run(deep.as_bytes());
        assert_eq!(out[0], r#"ERR "JSON nesting depth limit exceeded""#);
        assert_eq!(out.len(), 1 + 1024 + 1);
        assert!(out[1..]
            .iter()
            .all(|m| m == r#"ERR "JSON parse error, expecting value""#));
    }

    #[test]
    fn token_size_limit_cuts_the_token() {
        let mut big = b"{\"a\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_TOKEN_SIZE + 10));
        big.extend_from_slice(b"\"}");
        let out = run(&big);
        assert_eq!(out[0], r#"ERR "JSON token size limit exceeded""#);
    }

    #[test]
    fn split_feeding_equals_whole() {
        let input =
            b"{\"execute\":\"guest-sync\",\"arguments\":{\"id\":12345}}[1,{\"x\":'\\u00e9'}]";
        let whole = run(input);
        let mut s = Streamer::new();
        let mut out = Vec::new();
        for b in input {
            s.feed(std::slice::from_ref(b), &mut |m| {
                out.push(m.map(|v| v.to_json()))
            });
        }
        assert_eq!(out.len(), whole.len());
    }
}
