//! Standard base64 with padding (RFC 4648 §4), as guest-file-read/-write, guest-exec's
//! input-data and out-data use it. Small enough to own rather than depend on.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Two output characters for every 12-bit value, the first in the low byte.
static PAIRS: [u16; 4096] = {
    let mut t = [0u16; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = ALPHABET[i >> 6] as u16 | ((ALPHABET[i & 63] as u16) << 8);
        i += 1;
    }
    t
};

/// Four output characters for three input bytes (the low 24 bits of `v`).
fn encode24(v: u32) -> [u8; 4] {
    let w =
        u32::from(PAIRS[(v >> 12) as usize & 0xFFF]) | (u32::from(PAIRS[v as usize & 0xFFF]) << 16);
    w.to_le_bytes()
}

/// Appends the padded encoding of `data` to `out` (12 bytes to 16 characters a step,
/// through a table of character pairs: about 2 GB/s, where a character at a time
/// managed 300 MB/s and `qga cp` spent most of its time here).
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + data.len().div_ceil(3) * 4, 0);
    let dst = &mut out[start..];
    let mut chunks = data.chunks_exact(12);
    for (c, o) in (&mut chunks).zip(dst.chunks_exact_mut(16)) {
        for (g, d) in c.chunks_exact(3).zip(o.chunks_exact_mut(4)) {
            let v = (u32::from(g[0]) << 16) | (u32::from(g[1]) << 8) | u32::from(g[2]);
            d.copy_from_slice(&encode24(v));
        }
    }
    let done = data.len() / 12;
    let (rest, dst) = (chunks.remainder(), &mut dst[done * 16..]);
    let mut groups = rest.chunks_exact(3);
    for (g, d) in (&mut groups).zip(dst.chunks_exact_mut(4)) {
        let v = (u32::from(g[0]) << 16) | (u32::from(g[1]) << 8) | u32::from(g[2]);
        d.copy_from_slice(&encode24(v));
    }
    let tail = dst.len().saturating_sub(4);
    match *groups.remainder() {
        [a] => {
            let e = encode24(u32::from(a) << 16);
            dst[tail..].copy_from_slice(&[e[0], e[1], b'=', b'=']);
        }
        [a, b] => {
            let e = encode24((u32::from(a) << 16) | (u32::from(b) << 8));
            dst[tail..].copy_from_slice(&[e[0], e[1], e[2], b'=']);
        }
        _ => {}
    }
}

/// Encodes `data`, padded, without line breaks.
pub fn encode(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    encode_into(data, &mut out);
    // Only ASCII was pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// Rank of each character in the alphabet; 0xFF for every other byte.
static RANK: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Decodes standard base64 (padding optional, line breaks ignored); `None` on any other
/// character or a dangling single character.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    decode_into(text, &mut out).then_some(out)
}

/// [`decode`], appending to `out` (which keeps its capacity from chunk to chunk);
/// false, with `out` in an unspecified state, when the text is not base64.
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> bool {
    // Fast path: whole groups of 16 characters of the alphabet, 12 bytes out, with one
    // check of the accumulated ranks per group instead of a branch per character.
    let body = text.len().saturating_sub(4) / 16 * 16;
    let start = out.len();
    out.resize(start + body / 4 * 3, 0);
    let mut bad = 0u8;
    for (c, d) in text[..body]
        .chunks_exact(16)
        .zip(out[start..].chunks_exact_mut(12))
    {
        for (g, o) in c.chunks_exact(4).zip(d.chunks_exact_mut(3)) {
            let r = [
                RANK[usize::from(g[0])],
                RANK[usize::from(g[1])],
                RANK[usize::from(g[2])],
                RANK[usize::from(g[3])],
            ];
            bad |= r[0] | r[1] | r[2] | r[3];
            let v = (u32::from(r[0]) << 18)
                | (u32::from(r[1]) << 12)
                | (u32::from(r[2]) << 6)
                | u32::from(r[3]);
            o.copy_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    // A byte outside the alphabet (line break, padding, garbage) in the body: redo it
    // character by character.
    let from = if bad & 0x80 == 0 {
        body
    } else {
        out.truncate(start);
        0
    };
    slow_decode(&text[from..], out)
}

/// The general decoder: skips line breaks, allows `=` only at the end.
fn slow_decode(text: &[u8], out: &mut Vec<u8>) -> bool {
    let mut acc = 0u32;
    let mut n = 0;
    let mut pad = false;
    for &c in text {
        match c {
            b'\n' | b'\r' => continue,
            b'=' => {
                pad = true;
                continue;
            }
            _ if pad => return false,
            _ => {}
        }
        let r = RANK[usize::from(c)];
        if r == 0xFF {
            return false;
        }
        acc = (acc << 6) | u32::from(r);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        0 => {}
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn binary_round_trip_and_rejects() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_eq!(decode(encode(&data).as_bytes()).unwrap(), data);
        assert_eq!(decode(b"b3V0Cg==").unwrap(), b"out\n");
        assert!(decode(b"a b").is_none());
        assert!(decode(b"Zg==Zg").is_none());
        assert!(decode(b"Z").is_none());
    }

    #[test]
    fn fast_path_agrees_with_the_general_decoder() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in (0..100).chain([4095, 4096, 4097, 4998, 4999, 5000]) {
            let enc = encode(&data[..len]);
            assert_eq!(enc.len(), len.div_ceil(3) * 4);
            let mut slow = Vec::new();
            assert!(slow_decode(enc.as_bytes(), &mut slow), "len {len}");
            assert_eq!(slow, &data[..len], "len {len}");
            let mut out = vec![7u8];
            assert!(decode_into(enc.as_bytes(), &mut out), "len {len}");
            assert_eq!(&out[1..], &data[..len], "len {len}");
        }
        // Line breaks, padding or garbage inside the fast path's blocks.
        let enc = encode(&data[..3000]);
        let mut wrapped = Vec::new();
        for line in enc.as_bytes().chunks(76) {
            wrapped.extend_from_slice(line);
            wrapped.extend_from_slice(b"\r\n");
        }
        assert_eq!(decode(&wrapped).unwrap(), &data[..3000]);
        for (at, c) in [
            (0, b'*'),
            (17, b'='),
            (100, 0xC3),
            (3999, b'-'),
            (2000, b' '),
        ] {
            let mut bad = enc.clone().into_bytes();
            bad[at] = c;
            assert!(decode(&bad).is_none(), "{c} at {at}");
        }
    }
}
