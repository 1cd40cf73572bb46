//! Standard padded base64 for the client side and the "limit" row: table-driven, 12
//! bits per lookup when encoding, so the client is never the slow end of a transfer.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Two output characters for every 12-bit value.
static PAIRS: [[u8; 2]; 4096] = {
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [ALPHABET[i >> 6], ALPHABET[i & 63]];
        i += 1;
    }
    t
};

/// The 6-bit value of a character; 0xFF for anything outside the alphabet.
static RANK: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// The 12-bit value of two characters (the first in the low byte of the index), with
/// bit 15 set when either is outside the alphabet.
static DEC2: [u16; 65536] = {
    let mut t = [0u16; 65536];
    let mut i = 0;
    while i < 65536 {
        let (a, b) = (RANK[i & 0xFF], RANK[i >> 8]);
        t[i] = if a == 0xFF || b == 0xFF {
            0x8000
        } else {
            ((a as u16) << 6) | b as u16
        };
        i += 1;
    }
    t
};

/// Appends the encoding of `data` to `out`.
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + data.len().div_ceil(3) * 4, 0);
    let dst = &mut out[start..];
    let mut chunks = data.chunks_exact(3);
    for (c, o) in (&mut chunks).zip(dst.chunks_exact_mut(4)) {
        let v = (usize::from(c[0]) << 16) | (usize::from(c[1]) << 8) | usize::from(c[2]);
        let (hi, lo) = (PAIRS[v >> 12], PAIRS[v & 0xFFF]);
        o.copy_from_slice(&[hi[0], hi[1], lo[0], lo[1]]);
    }
    let tail = dst.len().saturating_sub(4);
    match *chunks.remainder() {
        [a] => {
            let v = usize::from(a) << 4;
            let p = PAIRS[v];
            dst[tail..].copy_from_slice(&[p[0], p[1], b'=', b'=']);
        }
        [a, b] => {
            let v = (usize::from(a) << 16) | (usize::from(b) << 8);
            let (hi, lo) = (PAIRS[v >> 12], PAIRS[v & 0xFFF]);
            dst[tail..].copy_from_slice(&[hi[0], hi[1], lo[0], b'=']);
        }
        _ => {}
    }
}

/// The encoding of `data`.
#[cfg(test)]
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(data, &mut out);
    out
}

/// Decodes strict padded base64 into `out` (replacing its contents).
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    if !text.len().is_multiple_of(4) {
        return Err(format!(
            "base64 length {} is not a multiple of 4",
            text.len()
        ));
    }
    let pad = text
        .iter()
        .rev()
        .take(2)
        .take_while(|&&c| c == b'=')
        .count();
    out.resize(text.len() / 4 * 3, 0);
    let body = text.len().saturating_sub(if pad > 0 { 4 } else { 0 });
    let mut bad = 0u8;
    let mut bad2 = 0u16;
    for (c, o) in text[..body].chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let hi = DEC2[usize::from(u16::from_le_bytes([c[0], c[1]]))];
        let lo = DEC2[usize::from(u16::from_le_bytes([c[2], c[3]]))];
        bad2 |= hi | lo;
        let v = (u32::from(hi) << 12) | u32::from(lo);
        o.copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
    }
    if bad2 & 0x8000 != 0 {
        bad = 0x80;
    }
    if pad > 0 {
        let c = &text[body..];
        let r = |i: usize| RANK[usize::from(c[i])];
        let v = (u32::from(r(0)) << 18) | (u32::from(r(1)) << 12);
        bad |= r(0) | r(1);
        let keep = 3 - pad;
        let o = body / 4 * 3;
        out[o] = (v >> 16) as u8;
        if keep == 2 {
            bad |= r(2);
            out[o + 1] = ((v | (u32::from(r(2)) << 6)) >> 8) as u8;
        }
        out.truncate(o + keep);
    }
    if bad & 0x80 != 0 {
        return Err("invalid base64 character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..600u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let mut back = Vec::new();
        for len in 0..data.len() {
            let text = encode(&data[..len]);
            decode_into(&text, &mut back).unwrap();
            assert_eq!(back, &data[..len], "length {len}");
        }
    }

    #[test]
    fn matches_known_vectors() {
        assert_eq!(encode(b""), b"");
        assert_eq!(encode(b"f"), b"Zg==");
        assert_eq!(encode(b"fo"), b"Zm8=");
        assert_eq!(encode(b"foo"), b"Zm9v");
        assert_eq!(encode(&[0xFF, 0xFE, 0x00, 0x80]), b"//4AgA==");
        let mut out = Vec::new();
        assert!(decode_into(b"Zm9v!A==", &mut out).is_err());
        assert!(decode_into(b"Zm9", &mut out).is_err());
    }
}
