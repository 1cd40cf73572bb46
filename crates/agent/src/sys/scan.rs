//! A cursor with C `sscanf` semantics, for parsers that must accept and reject exactly
//! what qemu-ga's `sscanf` formats do (`%u`, `%lu`, `%x`, `%s`, `%n`, literals).

/// A position in a byte string, advanced by `sscanf`-like directives.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    s: &'a [u8],
    /// Bytes consumed so far (what `%n` stores).
    pub pos: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

impl<'a> Scan<'a> {
    /// A cursor at the start of `s`.
    pub fn new(s: &'a [u8]) -> Self {
        Scan { s, pos: 0 }
    }

    /// The unconsumed rest.
    pub fn rest(&self) -> &'a [u8] {
        &self.s[self.pos..]
    }

    /// A whitespace directive: skips any amount of whitespace, including none.
    pub fn ws(&mut self) {
        while self.pos < self.s.len() && is_space(self.s[self.pos]) {
            self.pos += 1;
        }
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

    /// `%lu` (base 10) or `%lx` (base 16): leading whitespace, an optional sign, at
    /// least one digit. Overflow saturates and `-` negates modulo 2^64, as `strtoul`.
    pub fn num(&mut self, base: u32) -> Option<u64> {
        let save = self.pos;
        self.ws();
        let neg = match self.s.get(self.pos) {
            Some(b'-') => {
                self.pos += 1;
                true
            }
            Some(b'+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        let start = self.pos;
        let mut v: u64 = 0;
        let mut overflow = false;
        while let Some(d) = self
            .s
            .get(self.pos)
            .and_then(|&b| (b as char).to_digit(base))
        {
            match v
                .checked_mul(u64::from(base))
                .and_then(|x| x.checked_add(u64::from(d)))
            {
                Some(x) => v = x,
                None => overflow = true,
            }
            self.pos += 1;
        }
        if self.pos == start {
            self.pos = save;
            return None;
        }
        let v = if overflow { u64::MAX } else { v };
        Some(if neg { v.wrapping_neg() } else { v })
    }

    /// `%u`: like [`Scan::num`] in base 10, stored into an `unsigned int`.
    pub fn uint(&mut self) -> Option<u32> {
        self.num(10).map(|v| v as u32)
    }

    /// `%x` into an `unsigned int`.
    pub fn hex(&mut self) -> Option<u32> {
        self.num(16).map(|v| v as u32)
    }

    /// `%s`: leading whitespace, then one or more non-whitespace bytes.
    pub fn word(&mut self) -> Option<&'a [u8]> {
        let save = self.pos;
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() && !is_space(self.s[self.pos]) {
            self.pos += 1;
        }
        if self.pos == start {
            self.pos = save;
            return None;
        }
        Some(&self.s[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_number_rules() {
        let mut s = Scan::new(b"  42x");
        assert_eq!(s.uint(), Some(42));
        assert!(!s.lit(b'y'));
        assert!(s.lit(b'x'));
        assert_eq!(s.uint(), None);
        assert_eq!(Scan::new(b"-1").num(10), Some(u64::MAX));
        assert_eq!(
            Scan::new(b"99999999999999999999999").num(10),
            Some(u64::MAX)
        );
        assert_eq!(Scan::new(b"4294967297").uint(), Some(1));
        assert_eq!(Scan::new(b"1c.0").hex(), Some(0x1c));
        let mut s = Scan::new(b"block");
        assert_eq!(s.hex(), Some(0xb));
        assert_eq!(s.pos, 1);
        assert_eq!(Scan::new(b" sda 1").word(), Some(&b"sda"[..]));
        assert_eq!(Scan::new(b"  \n").word(), None);
    }
}
