//! Reading words and numbers from `/proc` lines exactly as glibc's `sscanf` does, so that
//! odd lines (signs, overflow, short lines) give qemu-ga's values: conversions skip
//! leading C whitespace, `%lu`/`%x` have `strtoul` semantics (a `-` sign wraps, overflow
//! saturates), `%d`/`%lld` have `strtol` semantics, and a number without digits is a
//! matching failure that ends the scan.

/// C `isspace` in the "C" locale.
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// GLib's `g_ascii_isspace`, which unlike C's `isspace` excludes `\v`.
pub fn is_glib_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0c | b'\r')
}

/// A cursor over one line.
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// Starts at the beginning of `s`.
    pub fn new(s: &'a [u8]) -> Self {
        Scanner { s, pos: 0 }
    }

    fn skip_space(&mut self) {
        while self.pos < self.s.len() && is_c_space(self.s[self.pos]) {
            self.pos += 1;
        }
    }

    /// True when nothing but whitespace is left (`sscanf` would return `EOF` here).
    pub fn at_end(&mut self) -> bool {
        self.skip_space();
        self.pos >= self.s.len()
    }

    /// `%s`: the next run of non-space bytes, at most `max` of them (`%32s`).
    pub fn word_max(&mut self, max: usize) -> Option<&'a [u8]> {
        self.skip_space();
        let start = self.pos;
        while self.pos < self.s.len() && self.pos - start < max && !is_c_space(self.s[self.pos]) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }

    /// `%s` without a width.
    pub fn word(&mut self) -> Option<&'a [u8]> {
        self.word_max(usize::MAX)
    }

    /// Sign and magnitude of the next number; `None` on a matching failure.
    fn number(&mut self, base: u32) -> Option<(bool, u64, bool)> {
        self.skip_space();
        let mut i = self.pos;
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
        Some((negative, value, overflow))
    }

    /// `%lu` / `%lx`: `strtoul` semantics.
    pub fn ulong(&mut self, base: u32) -> Option<u64> {
        let (negative, value, overflow) = self.number(base)?;
        Some(if overflow {
            u64::MAX
        } else if negative {
            value.wrapping_neg()
        } else {
            value
        })
    }

    /// `%ld` / `%lld`: `strtol` semantics.
    pub fn long(&mut self, base: u32) -> Option<i64> {
        let (negative, value, overflow) = self.number(base)?;
        Some(match (negative, overflow) {
            (false, false) if value <= i64::MAX as u64 => value as i64,
            (false, _) => i64::MAX,
            (true, false) if value <= 1u64 << 63 => (value as i64).wrapping_neg(),
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
}
