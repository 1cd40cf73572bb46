//! Reading words and numbers from `/proc` and `/sys` text exactly as glibc's `sscanf`
//! does, for parsers that must accept and reject exactly what qemu-ga's `sscanf` formats
//! do, so that odd input (signs, overflow, short lines) gives qemu-ga's values.
//!
//! [`Scanner`] is a cursor with one method per directive: conversions (`%s`, `%u`,
//! `%lu`, `%x`, `%d`, `%lld`) skip leading C whitespace, an ordinary character
//! ([`Scanner::lit`]) must match exactly with no skip, and [`Scanner::pos`] is what
//! `%n` stores. `%lu`/`%x` have `strtoul` semantics (a `-` sign wraps, overflow
//! saturates), `%d`/`%lld` have `strtol` semantics, and a conversion without digits is a
//! matching failure: it returns `None`, leaves the cursor where it was, and ends the
//! scan (callers stop at the first `None`).

/// C `isspace` in the "C" locale.
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// GLib's `g_ascii_isspace`, which unlike C's `isspace` excludes `\v`.
pub fn is_glib_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0c | b'\r')
}

/// A number as read, before the conversion decides what sign and overflow mean.
struct Number {
    negative: bool,
    /// The magnitude modulo 2^64.
    value: u64,
    /// The magnitude did not fit in 64 bits.
    overflow: bool,
}

/// A position in a byte string, advanced by `sscanf`-like directives.
#[derive(Debug, Clone, Copy)]
pub struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// A cursor at the start of `s`.
    pub fn new(s: &'a [u8]) -> Self {
        Scanner { s, pos: 0 }
    }

    /// Bytes consumed so far (what `%n` stores).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The first non-whitespace index at or after `i`.
    fn skip_space_from(&self, mut i: usize) -> usize {
        while i < self.s.len() && is_c_space(self.s[i]) {
            i += 1;
        }
        i
    }

    /// True when nothing but whitespace is left (`sscanf` would return `EOF` here).
    /// Consumes that whitespace.
    pub fn at_end(&mut self) -> bool {
        self.pos = self.skip_space_from(self.pos);
        self.pos >= self.s.len()
    }

    /// An ordinary character in the format: must match exactly (no whitespace skip).
    pub fn lit(&mut self, c: u8) -> bool {
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `%32s`: leading whitespace, then one to `max` non-whitespace bytes.
    pub fn word_max(&mut self, max: usize) -> Option<&'a [u8]> {
        let start = self.skip_space_from(self.pos);
        let mut i = start;
        while i < self.s.len() && i - start < max && !is_c_space(self.s[i]) {
            i += 1;
        }
        if i == start {
            return None;
        }
        self.pos = i;
        Some(&self.s[start..i])
    }

    /// `%s` without a width.
    pub fn word(&mut self) -> Option<&'a [u8]> {
        self.word_max(usize::MAX)
    }

    /// Leading whitespace, an optional sign, (in base 16) an optional `0x`/`0X` that is
    /// followed by a hex digit, then at least one digit.
    fn number(&mut self, base: u32) -> Option<Number> {
        let mut i = self.skip_space_from(self.pos);
        let mut negative = false;
        if let Some(&c) = self.s.get(i) {
            if c == b'+' || c == b'-' {
                negative = c == b'-';
                i += 1;
            }
        }
        if base == 16
            && self.s.get(i) == Some(&b'0')
            && matches!(self.s.get(i + 1), Some(b'x' | b'X'))
            && self.s.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            i += 2;
        }
        let digits_start = i;
        let mut value: u64 = 0;
        let mut overflow = false;
        while let Some(d) = self.s.get(i).and_then(|&c| (c as char).to_digit(base)) {
            match value
                .checked_mul(u64::from(base))
                .and_then(|v| v.checked_add(u64::from(d)))
            {
                Some(v) => value = v,
                None => overflow = true,
            }
            i += 1;
        }
        if i == digits_start {
            return None;
        }
        self.pos = i;
        Some(Number {
            negative,
            value,
            overflow,
        })
    }

    /// `%lu` / `%lx`: `strtoul` semantics.
    pub fn ulong(&mut self, base: u32) -> Option<u64> {
        let n = self.number(base)?;
        Some(if n.overflow {
            u64::MAX
        } else if n.negative {
            n.value.wrapping_neg()
        } else {
            n.value
        })
    }

    /// `%ld` / `%lld`: `strtol` semantics.
    pub fn long(&mut self, base: u32) -> Option<i64> {
        let n = self.number(base)?;
        Some(match (n.negative, n.overflow) {
            (false, false) if n.value <= i64::MAX as u64 => n.value as i64,
            (false, _) => i64::MAX,
            (true, false) if n.value <= 1u64 << 63 => (n.value as i64).wrapping_neg(),
            (true, _) => i64::MIN,
        })
    }

    /// `%d` into an `int`: `strtol`, then truncated to 32 bits.
    pub fn int(&mut self) -> Option<i32> {
        self.long(10).map(|v| v as i32)
    }

    /// `%x` / `%X` into an `unsigned int` (or an `int`): `strtoul`, truncated to 32 bits.
    pub fn hex32(&mut self) -> Option<u32> {
        self.ulong(16).map(|v| v as u32)
    }

    /// `%u` into an `unsigned int`: `strtoul`, truncated to 32 bits.
    pub fn uint(&mut self) -> Option<u32> {
        self.ulong(10).map(|v| v as u32)
    }
}

/// `atoi`: leading whitespace, sign and decimal digits; 0 when there are none.
pub fn atoi(s: &[u8]) -> i32 {
    Scanner::new(s).int().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_strtoul_and_strtol() {
        let mut s = Scanner::new(b"  12 -1 +7 99999999999999999999 0x1f ff z");
        assert_eq!(s.ulong(10), Some(12));
        assert_eq!(s.ulong(10), Some(u64::MAX));
        assert_eq!(s.ulong(10), Some(7));
        assert_eq!(s.ulong(10), Some(u64::MAX));
        assert_eq!(s.hex32(), Some(0x1f));
        assert_eq!(s.hex32(), Some(0xff));
        assert_eq!(s.ulong(10), None);
        assert_eq!(s.word(), Some(&b"z"[..]));
        assert!(s.at_end());

        let mut s = Scanner::new(b"-5 99999999999999999999 -99999999999999999999 ffffffff");
        assert_eq!(s.long(10), Some(-5));
        assert_eq!(s.long(10), Some(i64::MAX));
        assert_eq!(s.long(10), Some(i64::MIN));
        assert_eq!(s.hex32().map(|v| v as i32), Some(-1));
        assert_eq!(atoi(b"12abc"), 12);
        assert_eq!(atoi(b"abc"), 0);
        assert_eq!(atoi(b"4294967297"), 1);
    }

    #[test]
    fn words_respect_width() {
        let mut s = Scanner::new(b"abcdef gh");
        assert_eq!(s.word_max(4), Some(&b"abcd"[..]));
        assert_eq!(s.word(), Some(&b"ef"[..]));
        assert_eq!(s.word(), Some(&b"gh"[..]));
        assert_eq!(s.word(), None);
    }

    /// The directives blockdev and diskstats use (`%u`, `%lu`, `%x`, literals).
    #[test]
    fn c_number_rules() {
        let mut s = Scanner::new(b"  42x");
        assert_eq!(s.uint(), Some(42));
        assert!(!s.lit(b'y'));
        assert!(s.lit(b'x'));
        assert_eq!(s.uint(), None);
        assert_eq!(Scanner::new(b"-1").ulong(10), Some(u64::MAX));
        assert_eq!(
            Scanner::new(b"99999999999999999999999").ulong(10),
            Some(u64::MAX)
        );
        assert_eq!(Scanner::new(b"4294967297").uint(), Some(1));
        assert_eq!(Scanner::new(b"1c.0").hex32(), Some(0x1c));
        let mut s = Scanner::new(b"block");
        assert_eq!(s.hex32(), Some(0xb));
        assert_eq!(s.pos(), 1);
        assert_eq!(Scanner::new(b" sda 1").word(), Some(&b"sda"[..]));
        assert_eq!(Scanner::new(b"  \n").word(), None);
    }

    /// glibc's edge cases: `%x` skips a `0x` prefix followed by a hex digit, and a
    /// negative number beyond 64 bits saturates to `ULONG_MAX`.
    #[test]
    fn glibc_prefix_and_overflow() {
        let mut s = Scanner::new(b"0x1f -0X1F");
        assert_eq!(s.hex32(), Some(0x1f));
        assert_eq!(s.pos(), 4);
        assert_eq!(s.hex32(), Some(0x1fu32.wrapping_neg()));
        assert_eq!(Scanner::new(b"0x1f").long(16), Some(0x1f));
        // Without a hex digit after it, the prefix is not taken.
        let mut s = Scanner::new(b"0xg");
        assert_eq!(s.hex32(), Some(0));
        assert_eq!(s.pos(), 1);
        let big = b"-99999999999999999999";
        assert_eq!(Scanner::new(big).ulong(10), Some(u64::MAX));
        assert_eq!(Scanner::new(big).uint(), Some(u32::MAX));
        assert_eq!(
            Scanner::new(b"-4294967297").ulong(10),
            Some(0xffff_fffe_ffff_ffff)
        );
    }

    #[test]
    fn matching_failure_leaves_the_cursor() {
        for (text, before) in [(&b"  x"[..], 0), (b"1 -", 1), (b"1 + 2", 1), (b"1   ", 1)] {
            let mut s = Scanner::new(text);
            if before == 1 {
                assert_eq!(s.ulong(10), Some(1));
            }
            assert_eq!(s.ulong(10), None);
            assert_eq!(s.long(10), None);
            assert_eq!(s.ulong(10), None);
            assert_eq!(s.hex32(), None);
            assert_eq!(s.pos(), before);
        }
        let mut s = Scanner::new(b"a   ");
        assert_eq!(s.word(), Some(&b"a"[..]));
        assert_eq!(s.word(), None);
        assert_eq!(s.pos(), 1);
    }
}
