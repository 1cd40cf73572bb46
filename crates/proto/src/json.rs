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

use std::collections::VecDeque;

use crate::value::{mod_utf8_codepoint, Dict, Value};

/// Total bytes of all tokens in one message, and the longest single token.
pub const MAX_TOKEN_SIZE: usize = 64 << 20;
/// Tokens in one message.
pub const MAX_TOKEN_COUNT: usize = 2 << 20;
/// Nesting of `{` and `[` together.
pub const MAX_NESTING: i64 = 1 << 10;

// Lexer states (json-lexer.c). 0 is the error state; token types are >= 100.
const ERROR: u8 = 0;
const IN_RECOVERY: u8 = 1;
const IN_DQ_STRING_ESCAPE: u8 = 2;
const IN_DQ_STRING: u8 = 3;
const IN_SQ_STRING_ESCAPE: u8 = 4;
const IN_SQ_STRING: u8 = 5;
const IN_ZERO: u8 = 6;
const IN_EXP_DIGITS: u8 = 7;
const IN_EXP_SIGN: u8 = 8;
const IN_EXP_E: u8 = 9;
const IN_MANTISSA_DIGITS: u8 = 10;
const IN_MANTISSA: u8 = 11;
const IN_DIGITS: u8 = 12;
const IN_SIGN: u8 = 13;
const IN_KEYWORD: u8 = 14;
const IN_WHITESPACE: u8 = 15;
const IN_START: u8 = 16;

const T_LCURLY: u8 = 100;
const T_RCURLY: u8 = 101;
const T_LSQUARE: u8 = 102;
const T_RSQUARE: u8 = 103;
const T_COLON: u8 = 104;
const T_COMMA: u8 = 105;
const T_INTEGER: u8 = 106;
const T_FLOAT: u8 = 107;
const T_KEYWORD: u8 = 108;
const T_STRING: u8 = 109;
const T_SKIP: u8 = 110;

/// The transition for `byte` in `state`: the new state and whether the byte is only
/// looked at (not consumed), as the table in json-lexer.c says.
fn transition(state: u8, b: u8) -> (u8, bool) {
    // TERMINAL(x): any other byte ends the token and is looked at again.
    let terminal = |t: u8| (t, true);
    match state {
        IN_RECOVERY => match b {
            b'\t' => (IN_RECOVERY, false),
            0..=0x1F | 0xFE | 0xFF | b'[' | b']' | b'{' | b'}' | b':' | b',' => (IN_START, true),
            _ => (IN_RECOVERY, false),
        },
        IN_DQ_STRING_ESCAPE => match b {
            0x20..=0xFD => (IN_DQ_STRING, false),
            _ => (ERROR, false),
        },
        IN_DQ_STRING => match b {
            b'\\' => (IN_DQ_STRING_ESCAPE, false),
            b'"' => (T_STRING, false),
            0x20..=0xFD => (IN_DQ_STRING, false),
            _ => (ERROR, false),
        },
        IN_SQ_STRING_ESCAPE => match b {
            0x20..=0xFD => (IN_SQ_STRING, false),
            _ => (ERROR, false),
        },
        IN_SQ_STRING => match b {
            b'\\' => (IN_SQ_STRING_ESCAPE, false),
            b'\'' => (T_STRING, false),
            0x20..=0xFD => (IN_SQ_STRING, false),
            _ => (ERROR, false),
        },
        IN_ZERO => match b {
            b'0'..=b'9' => (ERROR, false),
            b'.' => (IN_MANTISSA, false),
            _ => terminal(T_INTEGER),
        },
        IN_EXP_DIGITS => match b {
            b'0'..=b'9' => (IN_EXP_DIGITS, false),
            _ => terminal(T_FLOAT),
        },
        IN_EXP_SIGN => match b {
            b'0'..=b'9' => (IN_EXP_DIGITS, false),
            _ => (ERROR, false),
        },
        IN_EXP_E => match b {
            b'-' | b'+' => (IN_EXP_SIGN, false),
            b'0'..=b'9' => (IN_EXP_DIGITS, false),
            _ => (ERROR, false),
        },
        IN_MANTISSA_DIGITS => match b {
            b'0'..=b'9' => (IN_MANTISSA_DIGITS, false),
            b'e' | b'E' => (IN_EXP_E, false),
            _ => terminal(T_FLOAT),
        },
        IN_MANTISSA => match b {
            b'0'..=b'9' => (IN_MANTISSA_DIGITS, false),
            _ => (ERROR, false),
        },
        IN_DIGITS => match b {
            b'0'..=b'9' => (IN_DIGITS, false),
            b'e' | b'E' => (IN_EXP_E, false),
            b'.' => (IN_MANTISSA, false),
            _ => terminal(T_INTEGER),
        },
        IN_SIGN => match b {
            b'0' => (IN_ZERO, false),
            b'1'..=b'9' => (IN_DIGITS, false),
            _ => (ERROR, false),
        },
        IN_KEYWORD => match b {
            b'a'..=b'z' => (IN_KEYWORD, false),
            _ => terminal(T_KEYWORD),
        },
        IN_WHITESPACE => match b {
            b' ' | b'\t' | b'\r' | b'\n' => (IN_WHITESPACE, false),
            _ => terminal(T_SKIP),
        },
        _ => match b {
            b'"' => (IN_DQ_STRING, false),
            b'\'' => (IN_SQ_STRING, false),
            b'0' => (IN_ZERO, false),
            b'1'..=b'9' => (IN_DIGITS, false),
            b'-' => (IN_SIGN, false),
            b'{' => (T_LCURLY, false),
            b'}' => (T_RCURLY, false),
            b'[' => (T_LSQUARE, false),
            b']' => (T_RSQUARE, false),
            b',' => (T_COMMA, false),
            b':' => (T_COLON, false),
            b'a'..=b'z' => (IN_KEYWORD, false),
            b' ' | b'\t' | b'\r' | b'\n' => (IN_WHITESPACE, false),
            _ => (ERROR, false),
        },
    }
}

#[derive(Debug)]
struct Token {
    kind: u8,
    text: Vec<u8>,
}

/// One complete message: a value, or the `desc` of a JSON error (bytes: a stray token
/// may hold anything; the serializer makes it valid JSON).
pub type Message = Result<Value, Vec<u8>>;

/// The streaming lexer + message splitter + parser, with QEMU's limits.
#[derive(Debug)]
pub struct Streamer {
    state: u8,
    token: Vec<u8>,
    tokens: VecDeque<Token>,
    brace_count: i64,
    bracket_count: i64,
    token_size: usize,
}

impl Default for Streamer {
    fn default() -> Self {
        Self::new()
    }
}

impl Streamer {
    /// A streamer in its start state.
    pub fn new() -> Self {
        Streamer {
            state: IN_START,
            token: Vec::new(),
            tokens: VecDeque::new(),
            brace_count: 0,
            bracket_count: 0,
            token_size: 0,
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
                let room = (MAX_TOKEN_SIZE + 1).saturating_sub(self.token.len());
                let run = input[i..]
                    .iter()
                    .take(room)
                    .position(|&b| !(0x20..=0xFD).contains(&b) || b == b'\\' || b == quote)
                    .unwrap_or(room.min(input.len() - i));
                if run > 0 {
                    self.token.extend_from_slice(&input[i..i + run]);
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
                    let text = std::mem::take(&mut self.token);
                    self.process_token(new_state, text, emit);
                    next = IN_START;
                }
                T_SKIP => {
                    self.token.clear();
                    next = IN_START;
                }
                IN_START => next = IN_START,
                ERROR => {
                    let text = std::mem::take(&mut self.token);
                    self.process_token(ERROR, text, emit);
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
        if self.token.len() > MAX_TOKEN_SIZE {
            let text = std::mem::take(&mut self.token);
            self.process_token(self.state, text, emit);
            self.state = IN_START;
        }
    }

    /// json_message_process_token.
    fn process_token(&mut self, kind: u8, text: Vec<u8>, emit: &mut dyn FnMut(Message)) {
        match kind {
            T_LCURLY => self.brace_count += 1,
            T_RCURLY => self.brace_count -= 1,
            T_LSQUARE => self.bracket_count += 1,
            T_RSQUARE => self.bracket_count -= 1,
            ERROR => {
                let end = text.iter().position(|&c| c == 0).unwrap_or(text.len());
                let mut desc = b"JSON parse error, stray '".to_vec();
                desc.extend_from_slice(&text[..end]);
                desc.push(b'\'');
                return self.finish(Err(desc), emit);
            }
            _ => {}
        }
        if self.token_size + text.len() + 1 > MAX_TOKEN_SIZE {
            return self.finish(Err(b"JSON token size limit exceeded".to_vec()), emit);
        }
        if self.tokens.len() + 1 > MAX_TOKEN_COUNT {
            return self.finish(Err(b"JSON token count limit exceeded".to_vec()), emit);
        }
        if self.bracket_count + self.brace_count > MAX_NESTING {
            return self.finish(Err(b"JSON nesting depth limit exceeded".to_vec()), emit);
        }
        self.token_size += text.len();
        self.tokens.push_back(Token { kind, text });
        if (self.brace_count > 0 || self.bracket_count > 0)
            && self.brace_count >= 0
            && self.bracket_count >= 0
        {
            return;
        }
        let tokens = std::mem::take(&mut self.tokens);
        let msg = Parser { tokens, err: None }.parse();
        self.finish(msg, emit);
    }

    fn finish(&mut self, msg: Message, emit: &mut dyn FnMut(Message)) {
        self.brace_count = 0;
        self.bracket_count = 0;
        self.tokens = VecDeque::new();
        self.token_size = 0;
        emit(msg);
    }
}

/// Parses one complete message (convenience for clients and tests): the first value or
/// error the bytes produce; `None` when they do not complete a message.
pub fn parse_one(bytes: &[u8]) -> Option<Message> {
    let mut s = Streamer::new();
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

/// json-parser.c: a recursive-descent parser over one message's tokens. The first
/// error wins.
struct Parser {
    tokens: VecDeque<Token>,
    err: Option<Vec<u8>>,
}

impl Parser {
    fn parse(mut self) -> Message {
        let v = self.parse_value();
        match (v, self.err) {
            (_, Some(e)) => Err(e),
            (Some(v), None) => Ok(v),
            (None, None) => Err(b"JSON parse error, premature EOI".to_vec()),
        }
    }

    fn error(&mut self, msg: &[u8]) {
        if self.err.is_none() {
            let mut e = b"JSON parse error, ".to_vec();
            e.extend_from_slice(msg);
            self.err = Some(e);
        }
    }

    fn peek_kind(&self) -> Option<u8> {
        self.tokens.front().map(|t| t.kind)
    }

    fn parse_value(&mut self) -> Option<Value> {
        match self.peek_kind() {
            None => {
                self.error(b"premature EOI");
                None
            }
            Some(T_LCURLY) => self.parse_object(),
            Some(T_LSQUARE) => self.parse_array(),
            Some(T_INTEGER | T_FLOAT | T_STRING) => self.parse_literal(),
            Some(T_KEYWORD) => {
                let t = self.tokens.pop_front()?;
                match t.text.as_slice() {
                    b"true" => Some(Value::Bool(true)),
                    b"false" => Some(Value::Bool(false)),
                    b"null" => Some(Value::Null),
                    kw => {
                        let mut m = b"invalid keyword '".to_vec();
                        m.extend_from_slice(kw);
                        m.push(b'\'');
                        self.error(&m);
                        None
                    }
                }
            }
            Some(_) => {
                self.error(b"expecting value");
                None
            }
        }
    }

    fn parse_object(&mut self) -> Option<Value> {
        self.tokens.pop_front();
        let mut dict = Dict::new();
        match self.peek_kind() {
            None => {
                self.error(b"premature EOI");
                return None;
            }
            Some(T_RCURLY) => {
                self.tokens.pop_front();
                return Some(Value::Dict(dict));
            }
            Some(_) => {}
        }
        self.parse_pair(&mut dict)?;
        loop {
            let Some(t) = self.tokens.pop_front() else {
                self.error(b"premature EOI");
                return None;
            };
            match t.kind {
                T_RCURLY => return Some(Value::Dict(dict)),
                T_COMMA => self.parse_pair(&mut dict)?,
                _ => {
                    self.error(b"expected separator in dict");
                    return None;
                }
            }
        }
    }

    fn parse_pair(&mut self, dict: &mut Dict) -> Option<()> {
        if self.tokens.is_empty() {
            self.error(b"premature EOI");
            return None;
        }
        let key = match self.parse_value() {
            Some(Value::Str(k)) => k,
            _ => {
                self.error(b"key is not a string in object");
                return None;
            }
        };
        let Some(colon) = self.tokens.pop_front() else {
            self.error(b"premature EOI");
            return None;
        };
        if colon.kind != T_COLON {
            self.error(b"missing : in object pair");
            return None;
        }
        let Some(value) = self.parse_value() else {
            self.error(b"Missing value in dict");
            return None;
        };
        // Keys compare as C strings.
        let ckey = key.split(|&c| c == 0).next().unwrap_or(&key);
        if dict
            .iter_inserted()
            .any(|(k, _)| k.split(|&c| c == 0).next().unwrap_or(k) == ckey)
        {
            self.error(b"duplicate key");
            return None;
        }
        dict.insert(key, value);
        Some(())
    }

    fn parse_array(&mut self) -> Option<Value> {
        self.tokens.pop_front();
        let mut list = Vec::new();
        match self.peek_kind() {
            None => {
                self.error(b"premature EOI");
                return None;
            }
            Some(T_RSQUARE) => {
                self.tokens.pop_front();
                return Some(Value::List(list));
            }
            Some(_) => {}
        }
        let Some(v) = self.parse_value() else {
            self.error(b"expecting value");
            return None;
        };
        list.push(v);
        loop {
            let Some(t) = self.tokens.pop_front() else {
                self.error(b"premature EOI");
                return None;
            };
            match t.kind {
                T_RSQUARE => return Some(Value::List(list)),
                T_COMMA => {
                    let Some(v) = self.parse_value() else {
                        self.error(b"expecting value");
                        return None;
                    };
                    list.push(v);
                }
                _ => {
                    self.error(b"expected separator in list");
                    return None;
                }
            }
        }
    }

    fn parse_literal(&mut self) -> Option<Value> {
        let t = self.tokens.pop_front()?;
        let text = std::str::from_utf8(&t.text).unwrap_or("");
        match t.kind {
            T_STRING => self.parse_string(&t.text),
            T_INTEGER => {
                if let Ok(i) = text.parse::<i64>() {
                    Some(Value::Int(i))
                } else if let Some(u) = (!text.starts_with('-'))
                    .then(|| text.parse::<u64>().ok())
                    .flatten()
                {
                    Some(Value::UInt(u))
                } else {
                    Some(Value::Double(text.parse::<f64>().unwrap_or(0.0)))
                }
            }
            _ => Some(Value::Double(text.parse::<f64>().unwrap_or(0.0))),
        }
    }

    /// parse_string: escapes, surrogate pairs, and modified UTF-8 validation.
    fn parse_string(&mut self, tok: &[u8]) -> Option<Value> {
        // The C code reads the token as a NUL-terminated string; reads past the end of
        // a malformed `\u` escape see NULs.
        let at = |i: usize| tok.get(i).copied().unwrap_or(0);
        let quote = tok[0];
        let mut out = Vec::with_capacity(tok.len());
        let mut p = 1;
        while at(p) != quote {
            if at(p) == 0 {
                // Only reachable after a malformed escape ran past the token.
                self.error(b"premature EOI");
                return None;
            }
            if at(p) == b'\\' {
                let beg = p;
                p += 1;
                let c = at(p);
                p += 1;
                match c {
                    b'"' => out.push(b'"'),
                    b'\'' => out.push(b'\''),
                    b'\\' => out.push(b'\\'),
                    b'/' => out.push(b'/'),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0C),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let hex4 = |i: usize| -> i32 {
                            let mut cp = 0i32;
                            for k in 0..4 {
                                match (at(i + k) as char).to_digit(16) {
                                    Some(d) => cp = (cp << 4) | d as i32,
                                    None => return -1,
                                }
                            }
                            cp
                        };
                        let mut cp = hex4(p);
                        p += 4;
                        if (0xD800..=0xDBFF).contains(&cp) && at(p) == b'\\' && at(p + 1) == b'u' {
                            let lead = 0x10000 + ((cp & 0x3FF) << 10);
                            let trail = hex4(p + 2);
                            if (0xDC00..=0xDFFF).contains(&trail) {
                                cp = lead | (trail & 0x3FF);
                                p += 6;
                            } else {
                                cp = -1;
                            }
                        }
                        if !mod_utf8_encode(cp, &mut out) {
                            let end = p.min(tok.len());
                            let shown: Vec<u8> = tok[beg..end]
                                .iter()
                                .copied()
                                .take_while(|&c| c != 0)
                                .collect();
                            let mut m = shown;
                            m.extend_from_slice(b" is not a valid Unicode character");
                            self.error(&m);
                            return None;
                        }
                    }
                    _ => {
                        self.error(b"invalid escape sequence in string");
                        return None;
                    }
                }
            } else {
                let (cp, used) = mod_utf8_codepoint(&tok[p..], 6);
                if cp < 0 {
                    self.error(b"invalid UTF-8 sequence in string");
                    return None;
                }
                // Valid input is copied as is (a C0 80 pair stays C0 80).
                out.extend_from_slice(&tok[p..p + used]);
                p += used;
            }
        }
        Some(Value::Str(out))
    }
}

/// util/unicode.c `mod_utf8_encode`: U+0000 becomes C0 80; surrogates, noncharacters
/// and values beyond U+10FFFF are refused.
fn mod_utf8_encode(cp: i32, out: &mut Vec<u8>) -> bool {
    if !(0..=0x10FFFF).contains(&cp)
        || (0xFDD0..=0xFDEF).contains(&cp)
        || cp & 0xFFFE == 0xFFFE
        || (0xD800..=0xDFFF).contains(&cp)
    {
        return false;
    }
    let cp = cp as u32;
    if cp > 0 && cp <= 0x7F {
        out.push(cp as u8);
    } else if cp <= 0x7FF {
        out.push(0xC0 | ((cp >> 6) & 0x1F) as u8);
        out.push(0x80 | (cp & 0x3F) as u8);
    } else if cp <= 0xFFFF {
        out.push(0xE0 | ((cp >> 12) & 0x0F) as u8);
        out.push(0x80 | ((cp >> 6) & 0x3F) as u8);
        out.push(0x80 | (cp & 0x3F) as u8);
    } else {
        out.push(0xF0 | ((cp >> 18) & 0x07) as u8);
        out.push(0x80 | ((cp >> 12) & 0x3F) as u8);
        out.push(0x80 | ((cp >> 6) & 0x3F) as u8);
        out.push(0x80 | (cp & 0x3F) as u8);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message the bytes produce, serialized (errors as their desc text).
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
    fn lexical_errors_and_recovery() {
        assert_eq!(
            run(b"@abc{}"),
            [r#"ERR "JSON parse error, stray '@'""#, "{}"]
        );
        assert_eq!(
            run(b"{\"execute\":\"guest-ping\", @}"),
            [
                r#"ERR "JSON parse error, stray '@'""#,
                r#"ERR "JSON parse error, expecting value""#
            ]
        );
        assert_eq!(run(b"\xff"), [r#"ERR "JSON parse error, stray '\uFFFD'""#]);
        assert_eq!(
            run(b"{\"a\xff{}"),
            [r#"ERR "JSON parse error, stray '\"a\uFFFD'""#, "{}"]
        );
        assert_eq!(run(b"\x01"), [r#"ERR "JSON parse error, stray '\u0001'""#]);
        assert_eq!(run(b"\x00"), [r#"ERR "JSON parse error, stray ''""#]);
        assert_eq!(run(b"\"a\n"), [r#"ERR "JSON parse error, stray '\"a\n'""#]);
        assert_eq!(run(b"01 "), [r#"ERR "JSON parse error, stray '01'""#]);
        // Any byte ends a number, even one that is then an error of its own.
        assert_eq!(
            run(b"1\xff"),
            [
                "1".to_string(),
                r#"ERR "JSON parse error, stray '\uFFFD'""#.to_string()
            ]
        );
    }

    #[test]
    fn parse_errors() {
        let e = |s: &[u8]| run(s).join("|");
        assert_eq!(
            e(b"{\"a\":1,\"a\":2}"),
            r#"ERR "JSON parse error, duplicate key""#
        );
        assert_eq!(
            e(b"{1:2}"),
            r#"ERR "JSON parse error, key is not a string in object""#
        );
        assert_eq!(
            e(b"{\"a\" 1}"),
            r#"ERR "JSON parse error, missing : in object pair""#
        );
        assert_eq!(
            e(b"[1 2]"),
            r#"ERR "JSON parse error, expected separator in list""#
        );
        assert_eq!(
            e(b"{\"a\":1 \"b\":2}"),
            r#"ERR "JSON parse error, expected separator in dict""#
        );
        assert_eq!(
            e(b"nul "),
            r#"ERR "JSON parse error, invalid keyword 'nul'""#
        );
        assert_eq!(
            e(b"\"\\x\""),
            r#"ERR "JSON parse error, invalid escape sequence in string""#
        );
        assert_eq!(
            e(b"\"\\ud800\""),
            r#"ERR "JSON parse error, \\ud800 is not a valid Unicode character""#
        );
        assert_eq!(
            e(b"\"\xc3\""),
            r#"ERR "JSON parse error, invalid UTF-8 sequence in string""#
        );
        assert_eq!(e(b"}"), r#"ERR "JSON parse error, expecting value""#);
        assert_eq!(
            run(b"\"\\u0000x\\ud83d\\ude00\"").join(""),
            r#""\u0000x\uD83D\uDE00""#
        );
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
