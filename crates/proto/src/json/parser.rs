//! json-parser.c: turns one message's tokens into a value.

use super::lexer::{
    T_COLON, T_COMMA, T_FLOAT, T_INTEGER, T_KEYWORD, T_LCURLY, T_LSQUARE, T_RCURLY, T_RSQUARE,
    T_STRING,
};
use super::streamer::{Text, Token};
use super::Message;
use crate::value::{mod_utf8_codepoint, run_len, Dict, Value};

/// json-parser.c: a recursive-descent parser over one message's tokens. The first
/// error wins.
struct Parser<'a> {
    tokens: &'a mut [Token],
    arena: &'a [u8],
    /// The next token.
    pos: usize,
    err: Option<Vec<u8>>,
}

/// Parses one message's tokens, whose small texts are in `arena`.
pub(super) fn parse(tokens: &mut [Token], arena: &[u8]) -> Message {
    Parser {
        tokens,
        arena,
        pos: 0,
        err: None,
    }
    .parse()
}

impl Parser<'_> {
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
        self.tokens.get(self.pos).map(|t| t.kind)
    }

    /// Consumes the next token; returns its index.
    fn pop(&mut self) -> Option<usize> {
        (self.pos < self.tokens.len()).then(|| {
            self.pos += 1;
            self.pos - 1
        })
    }

    fn kind(&self, t: usize) -> u8 {
        self.tokens[t].kind
    }

    fn text(&self, t: usize) -> &[u8] {
        match &self.tokens[t].text {
            Text::Arena(start, end) => &self.arena[*start..*end],
            Text::Owned(v) => v,
        }
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
                let t = self.pop()?;
                match self.text(t).to_vec().as_slice() {
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
        self.pop();
        let mut dict = Dict::new();
        match self.peek_kind() {
            None => {
                self.error(b"premature EOI");
                return None;
            }
            Some(T_RCURLY) => {
                self.pop();
                return Some(Value::Dict(dict));
            }
            Some(_) => {}
        }
        self.parse_pair(&mut dict)?;
        loop {
            let Some(t) = self.pop() else {
                self.error(b"premature EOI");
                return None;
            };
            match self.kind(t) {
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
        let Some(colon) = self.pop() else {
            self.error(b"premature EOI");
            return None;
        };
        if self.kind(colon) != T_COLON {
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
        self.pop();
        let mut list = Vec::new();
        match self.peek_kind() {
            None => {
                self.error(b"premature EOI");
                return None;
            }
            Some(T_RSQUARE) => {
                self.pop();
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
            let Some(t) = self.pop() else {
                self.error(b"premature EOI");
                return None;
            };
            match self.kind(t) {
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
        let t = self.pop()?;
        if self.kind(t) == T_STRING {
            return self.parse_string(t);
        }
        let text = std::str::from_utf8(self.text(t)).unwrap_or("");
        match self.kind(t) {
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

    /// parse_string. A large token with nothing to decode (printable ASCII, no
    /// escapes) becomes the value in place, without a copy.
    fn parse_string(&mut self, t: usize) -> Option<Value> {
        if let Text::Owned(v) = &mut self.tokens[t].text {
            let n = v.len();
            if n >= 2 && run_len(&v[1..n - 1], |b| b >= 0x80 || b == b'\\') == n - 2 {
                let mut v = std::mem::take(v);
                v.copy_within(1..n - 1, 0);
                v.truncate(n - 2);
                return Some(Value::Str(v));
            }
        }
        match decode_string(self.text(t)) {
            Ok(s) => Some(Value::Str(s)),
            Err(msg) => {
                self.error(&msg);
                None
            }
        }
    }
}

/// json-parser.c parse_string on a string token (quotes included): escapes, surrogate
/// pairs, and modified UTF-8 validation. The error is the text after "JSON parse
/// error, ".
fn decode_string(tok: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    // The C code reads the token as a NUL-terminated string; reads past the end of a
    // malformed `\u` escape see NULs.
    let at = |i: usize| tok.get(i).copied().unwrap_or(0);
    let quote = tok[0];
    let mut out = Vec::with_capacity(tok.len());
    let mut p = 1;
    while at(p) != quote {
        // Fast path: ASCII other than `\` and the quote is copied as is.
        let run = run_len(&tok[p.min(tok.len())..], |b| {
            b == 0 || b >= 0x80 || b == b'\\' || b == quote
        });
        if run > 0 {
            out.extend_from_slice(&tok[p..p + run]);
            p += run;
            continue;
        }
        if at(p) == 0 {
            // Only reachable after a malformed escape ran past the token.
            return Err(b"premature EOI".to_vec());
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
                        return Err(m);
                    }
                }
                _ => {
                    return Err(b"invalid escape sequence in string".to_vec());
                }
            }
        } else {
            let (cp, used) = mod_utf8_codepoint(&tok[p..], 6);
            if cp < 0 {
                return Err(b"invalid UTF-8 sequence in string".to_vec());
            }
            // Valid input is copied as is (a C0 80 pair stays C0 80).
            out.extend_from_slice(&tok[p..p + used]);
            p += used;
        }
    }
    Ok(out)
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
    use super::super::run;

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
}
