//! The JSON value model of QEMU's QObject, and its serializer.
//!
//! qemu-ga's replies must be reproduced byte for byte, so this is not a general JSON
//! library: strings are byte strings in QEMU's "modified UTF-8" (U+0000 stored as
//! `C0 80`, a real NUL ends the string as it does in C), numbers keep QEMU's
//! int64 / uint64 / double distinction, and dictionaries are written in the order of
//! QEMU's 512-bucket `QDict` hash table rather than insertion order.

use std::fmt::Write as _;

/// One JSON value, as QEMU's QObject holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer that fits int64.
    Int(i64),
    /// A non-negative integer above `i64::MAX` that fits uint64.
    UInt(u64),
    /// Any other number (written with C's `%.17g`).
    Double(f64),
    /// A string: modified UTF-8 bytes, as QEMU stores them.
    Str(Vec<u8>),
    /// A string given as the bytes it is the standard base64 encoding of (the parser
    /// never makes one). Serialized as that string, encoded a piece at a time while it
    /// is written, so a 48 MiB guest-file-read reply never holds its 64 MiB of text.
    Base64(Vec<u8>),
    /// An array.
    List(Vec<Value>),
    /// An object.
    Dict(Dict),
}

/// A JSON object. Members keep their insertion order; [`Dict::iter`] and the serializer
/// walk them in QEMU's hash-table order, which is what qemu-ga emits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dict {
    entries: Vec<(Vec<u8>, Value)>,
}

/// QEMU's `tdb_hash(key) % 512`: the bucket of a key in a `QDict`.
pub fn qdict_bucket(key: &[u8]) -> usize {
    // `strlen`: a key is a C string.
    let len = key.iter().position(|&b| b == 0).unwrap_or(key.len());
    let key = &key[..len];
    let mut v: u32 = 0x238F_13AFu32.wrapping_mul(len as u32);
    for (i, &c) in key.iter().enumerate() {
        v = v.wrapping_add(u32::from(c) << ((i * 5) % 24));
    }
    (1_103_515_243u32.wrapping_mul(v).wrapping_add(12345) % 512) as usize
}

impl Dict {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a member. The caller guarantees the key is new (the parser rejects
    /// duplicates; typed structs have distinct member names).
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: Value) {
        self.entries.push((key.into(), value));
    }

    /// The member named `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.get_bytes(key.as_bytes())
    }

    /// The member whose key is exactly these bytes.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The member named `key`, to change or move data out of.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// Removes and returns the member named `key`.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k == key.as_bytes())?;
        Some(self.entries.remove(i).1)
    }

    /// Whether a member named `key` exists.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get_bytes(key).is_some()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the object has no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Members in insertion order.
    pub fn iter_inserted(&self) -> impl Iterator<Item = (&[u8], &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_slice(), v))
    }

    /// Members in QEMU's iteration order: buckets ascending, and within a bucket the
    /// most recently inserted first.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Value)> {
        let n = self.entries.len();
        // Objects of up to 16 members (nearly all) are ordered in 32 bytes on the stack:
        // the bucket above 4 bits of reversed insertion index; larger ones in a Vec.
        let mut small = [0u16; 16];
        let mut large = Vec::new();
        if n <= small.len() {
            for (i, (slot, (k, _))) in small.iter_mut().zip(&self.entries).enumerate() {
                *slot = ((qdict_bucket(k) as u16) << 4) | (15 - i as u16);
            }
            small[..n].sort_unstable();
        } else {
            large.extend(self.entries.iter().enumerate().map(|(i, (k, _))| {
                ((qdict_bucket(k) as u64) << 32) | u64::from(u32::MAX - i as u32)
            }));
            large.sort_unstable();
        }
        (0..n).map(move |j| {
            let i = if n <= small.len() {
                15 - usize::from(small[j] & 15)
            } else {
                (u32::MAX - large[j] as u32) as usize
            };
            let (k, v) = &self.entries[i];
            (k.as_slice(), v)
        })
    }
}

impl Value {
    /// A string value from Rust text.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into().into_bytes())
    }

    /// The JSON type name QAPI uses in "expected: <t>" errors, roughly.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The string's bytes, if this is a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Serializes as qemu-ga does (`qobject_to_json`), without the trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }

    /// Appends the qemu-ga serialization of this value to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_to(out);
    }

    /// Serializes this value and a newline, handing the text to `sink` in pieces of
    /// at most `piece` bytes, so a 64 MiB reply never exists in memory twice. Stops at
    /// the first error of `sink` and returns it.
    pub fn write_json_line(
        &self,
        piece: usize,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        // The thread's buffer from its last reply: most replies are small, and an
        // allocator that returns freed memory to the kernel at once (musl's) would
        // otherwise map and unmap pages for each one.
        let mut buf = SPARE.take();
        if buf.capacity() == 0 {
            buf.reserve(piece.clamp(1, 4 << 10));
        }
        let mut out = Pieces {
            buf,
            piece: piece.max(1),
            sink,
            result: Ok(()),
        };
        self.write_to(&mut out);
        out.put(b"\n");
        out.flush();
        if out.buf.capacity() <= SPARE_MAX {
            SPARE.set(out.buf);
        }
        out.result
    }

    fn write_to(&self, out: &mut impl JsonOut) {
        match self {
            Value::Null => out.put(b"null"),
            Value::Bool(true) => out.put(b"true"),
            Value::Bool(false) => out.put(b"false"),
            Value::Int(i) => {
                if *i < 0 {
                    out.put(b"-");
                }
                put_decimal(out, i.unsigned_abs());
            }
            Value::UInt(u) => put_decimal(out, *u),
            Value::Double(d) => out.put(format_g17(*d).as_bytes()),
            Value::Str(s) => write_string_to(s, out),
            Value::Base64(data) => {
                // Base64 needs no JSON escapes.
                out.put(b"\"");
                out.put_base64(data);
                out.put(b"\"");
            }
            Value::List(items) => {
                out.put(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.put(b", ");
                    }
                    item.write_to(out);
                }
                out.put(b"]");
            }
            Value::Dict(d) => {
                out.put(b"{");
                for (i, (k, v)) in d.iter().enumerate() {
                    if i > 0 {
                        out.put(b", ");
                    }
                    write_string_to(k, out);
                    out.put(b": ");
                    v.write_to(out);
                }
                out.put(b"}");
            }
        }
    }
}

/// The largest serialization buffer a thread keeps for its next reply.
const SPARE_MAX: usize = 16 << 10;

thread_local! {
    /// See [`Value::write_json_line`].
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Where serialized JSON goes: a buffer, or pieces handed to a writer.
trait JsonOut {
    fn put(&mut self, bytes: &[u8]);
    /// Appends the standard padded base64 encoding of `data`.
    fn put_base64(&mut self, data: &[u8]);
}

impl JsonOut for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn put_base64(&mut self, data: &[u8]) {
        crate::base64::encode_into(data, self);
    }
}

/// Serialized text in pieces of `piece` bytes, each handed to `sink` when full.
struct Pieces<'a> {
    buf: Vec<u8>,
    piece: usize,
    sink: &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    result: std::io::Result<()>,
}

impl Pieces<'_> {
    fn flush(&mut self) {
        if self.result.is_ok() && !self.buf.is_empty() {
            self.result = (self.sink)(&self.buf);
        }
        self.buf.clear();
    }
}

impl JsonOut for Pieces<'_> {
    fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = (self.piece - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == self.piece {
                self.flush();
            }
        }
    }

    /// Encodes straight into the piece being filled: no text buffer of its own and
    /// no second copy of the text (a 48 MiB file read is 64 MiB of it).
    fn put_base64(&mut self, mut data: &[u8]) {
        if self.piece < 4 {
            // Pieces smaller than a group (tests only).
            let mut group = Vec::with_capacity(4);
            for g in data.chunks(3) {
                group.clear();
                crate::base64::encode_into(g, &mut group);
                self.put(&group);
            }
            return;
        }
        while !data.is_empty() {
            // Whole 3-byte groups only, except at the very end, so the pieces join
            // up; a piece is sent early rather than split a group.
            let room = (self.piece - self.buf.len()) / 4 * 3;
            if room == 0 {
                self.flush();
                continue;
            }
            let n = room.min(data.len());
            if self.buf.capacity() - self.buf.len() < n.div_ceil(3) * 4 {
                self.buf.reserve(n.div_ceil(3) * 4);
            }
            crate::base64::encode_into(&data[..n], &mut self.buf);
            data = &data[n..];
            if self.piece - self.buf.len() < 4 {
                self.flush();
            }
        }
    }
}

/// Writes `n` in decimal, as `Display` does.
fn put_decimal(out: &mut impl JsonOut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&digits[at..]);
}

/// Decodes one code point of QEMU's modified UTF-8 (`mod_utf8_codepoint` in
/// util/unicode.c) from `s`, looking at most at `n` bytes. Returns the code point (or
/// -1 for an invalid sequence) and how many bytes were consumed. A NUL byte reads as
/// the end of the string.
pub fn mod_utf8_codepoint(s: &[u8], n: usize) -> (i32, usize) {
    const MIN_CP: [i32; 5] = [0x80, 0x800, 0x10000, 0x20_0000, 0x400_0000];
    let at = |i: usize| -> u32 {
        if i < s.len() {
            u32::from(s[i])
        } else {
            0
        }
    };
    if n == 0 || at(0) == 0 {
        return (-1, 0);
    }
    let first = at(0);
    let mut p = 1usize;
    let cp: i32;
    if first < 0x80 {
        cp = first as i32;
    } else if first >= 0xFE || first & 0x40 == 0 {
        cp = -1;
    } else {
        let mut len = 0usize;
        let mut mask = 0x80u32;
        while first & mask != 0 {
            len += 1;
            mask >>= 1;
        }
        let mut c = (first & (mask - 1)) as i32;
        for i in 1..len {
            let byte = if i < n { at(p) } else { 0 };
            if byte & 0xC0 != 0x80 {
                return (-1, p);
            }
            p += 1;
            c = (c << 6) | (byte & 0x3F) as i32;
        }
        cp = if c > 0x10FFFF
            || (0xFDD0..=0xFDEF).contains(&c)
            || c & 0xFFFE == 0xFFFE
            || (0xD800..=0xDFFF).contains(&c)
            || (c < MIN_CP[len - 2] && !(c == 0 && len == 2))
        {
            -1
        } else {
            c
        };
    }
    (cp, p)
}

/// Length of the leading run of `s` without a byte for which `stop` holds. Checks 32
/// bytes at a time without branching, so the compiler vectorises it: strings of
/// megabytes (base64 file data) are scanned at memory speed.
pub(crate) fn run_len(s: &[u8], stop: impl Fn(u8) -> bool) -> usize {
    let mut i = 0;
    for c in s.chunks_exact(32) {
        if c.iter().fold(false, |acc, &b| acc | stop(b)) {
            break;
        }
        i += 32;
    }
    i + s[i..].iter().position(|&b| stop(b)).unwrap_or(s.len() - i)
}

/// Writes a string as QEMU's `to_json` does: pure ASCII, `\uXXXX` in uppercase hex,
/// surrogate pairs beyond the BMP, U+FFFD for invalid bytes, stopping at a NUL byte.
pub fn write_json_string(s: &[u8], out: &mut Vec<u8>) {
    write_string_to(s, out);
}

fn write_string_to(s: &[u8], out: &mut impl JsonOut) {
    out.put(b"\"");
    let mut i = 0;
    while i < s.len() {
        // Fast path: printable ASCII that needs no escape.
        let start = i;
        i += run_len(&s[i..], |b| {
            !(0x20..0x7F).contains(&b) || b == b'"' || b == b'\\'
        });
        out.put(&s[start..i]);
        if i >= s.len() || s[i] == 0 {
            break;
        }
        let (cp, used) = mod_utf8_codepoint(&s[i..], 6);
        // An invalid sequence still consumes at least its first byte.
        i += used.max(1);
        match cp {
            0x22 => out.put(b"\\\""),
            0x5C => out.put(b"\\\\"),
            0x08 => out.put(b"\\b"),
            0x0C => out.put(b"\\f"),
            0x0A => out.put(b"\\n"),
            0x0D => out.put(b"\\r"),
            0x09 => out.put(b"\\t"),
            _ => {
                let cp = if cp < 0 { 0xFFFD } else { cp as u32 };
                let mut buf = String::new();
                if cp > 0xFFFF {
                    let _ = write!(
                        buf,
                        "\\u{:04X}\\u{:04X}",
                        0xD800 + ((cp - 0x10000) >> 10),
                        0xDC00 + ((cp - 0x10000) & 0x3FF)
                    );
                } else if !(0x20..0x7F).contains(&cp) {
                    let _ = write!(buf, "\\u{cp:04X}");
                } else {
                    buf.push(char::from_u32(cp).unwrap_or('?'));
                }
                out.put(buf.as_bytes());
            }
        }
    }
    out.put(b"\"");
}

/// Formats a double exactly as C's `printf("%.17g")` does with glibc.
pub fn format_g17(x: f64) -> String {
    const P: i32 = 17;
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` with a precision rounds correctly, as glibc does.
    let e = format!("{:.*e}", (P - 1) as usize, x);
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..P).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let rest = rest.trim_end_matches('0');
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp >= 0 {
        let point = (exp + 1) as usize;
        let (int, frac) = digits.split_at(point);
        out.push_str(int);
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// An object's keys in serialization order (for tests that pin Appendix A's orders).
#[cfg(test)]
pub(crate) fn keys(v: &Value) -> Vec<String> {
    v.as_dict()
        .expect("object")
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g17_matches_glibc() {
        for (x, s) in [
            (0.1, "0.10000000000000001"),
            (1.0, "1"),
            (1e5, "100000"),
            (0.11181640625, "0.11181640625"),
            (-0.0, "-0"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (f64::INFINITY, "inf"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(format_g17(x), s, "{x}");
        }
    }

    #[test]
    fn bucket_order_matches_appendix_a() {
        let mut d = Dict::new();
        for k in ["load1m", "load5m", "load15m"] {
            d.insert(k, Value::Int(0));
        }
        let keys: Vec<_> = d
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(keys, ["load15m", "load5m", "load1m"]);
        let mut env = Dict::new();
        env.insert("error", Value::Null);
        env.insert("id", Value::Null);
        assert_eq!(env.iter().next().unwrap().0, b"id");
    }

    #[test]
    fn pieces_add_up_to_the_whole() {
        let mut d = Dict::new();
        d.insert("count", Value::Int(-1234567));
        d.insert("big", Value::UInt(u64::MAX));
        d.insert("buf-b64", Value::Str(b"QUJD\"\xff\xc3\xa9".repeat(300)));
        d.insert("list", Value::List(vec![Value::Null, Value::Double(0.1)]));
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
        d.insert("raw", Value::Base64(raw.clone()));
        d.insert("short", Value::Base64(raw[..4].to_vec()));
        let v = Value::Dict(d);
        let mut whole = v.to_json();
        whole.push(b'\n');
        let text = crate::base64::encode(&raw);
        assert!(whole.windows(text.len()).any(|w| w == text.as_bytes()));
        for piece in [1, 2, 3, 4, 5, 7, 64, 4096, 1 << 20] {
            let mut got = Vec::new();
            let mut sizes = Vec::new();
            v.write_json_line(piece, &mut |b| {
                sizes.push(b.len());
                got.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, whole, "piece {piece}");
            assert!(sizes.iter().all(|&n| n <= piece && n > 0));
        }
        let mut calls = 0;
        let err = v.write_json_line(16, &mut |_| {
            calls += 1;
            Err(std::io::ErrorKind::BrokenPipe.into())
        });
        assert_eq!(err.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(calls, 1);
    }

    #[test]
    fn strings_escape_like_qemu() {
        let mut out = Vec::new();
        write_json_string("é\u{1F600}\"/\x01\n".as_bytes(), &mut out);
        assert_eq!(out, br#""\u00E9\uD83D\uDE00\"/\u0001\n""#);
        out.clear();
        write_json_string(b"\xff\xc0\x80x\x00tail", &mut out);
        assert_eq!(out, br#""\uFFFD\u0000x""#);
    }
}
