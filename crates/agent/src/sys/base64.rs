//! Base64 as qemu-ga speaks it.
//!
//! - Output (guest-file-read, guest-exec-status) is strict standard base64 with `=`
//!   padding and no line breaks (GLib's `g_base64_encode`).
//! - Input (guest-file-write, guest-exec `input-data`, guest-set-user-password) goes
//!   through QEMU's `qbase64_decode`: every character must be one of
//!   `A-Z a-z 0-9 + / = \n`, otherwise `Base64 data contains invalid characters`; then
//!   GLib's lenient `g_base64_decode` runs: `\n` is skipped, `=` counts as a zero
//!   sextet, each complete group of four gives three bytes minus one for a `=` in its
//!   third place and minus one for a `=` in its fourth, and a trailing partial group is
//!   dropped. So `"S"` decodes to nothing, `"SGVsbG8=SGVs"` to `HelloHel` and `"===="`
//!   to one NUL byte.

use crate::error::Error;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The text QEMU reports for input outside the base64 alphabet.
pub const INVALID_CHARACTERS: &str = "Base64 data contains invalid characters";

/// Encodes `data` as standard padded base64, in one allocation of the exact size.
pub fn encode(data: &[u8]) -> String {
    let mut out = vec![0u8; data.len().div_ceil(3) * 4];
    let mut chunks = data.chunks_exact(3);
    let mut o = 0;
    for c in &mut chunks {
        let v = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out[o] = ALPHABET[(v >> 18) as usize & 63];
        out[o + 1] = ALPHABET[(v >> 12) as usize & 63];
        out[o + 2] = ALPHABET[(v >> 6) as usize & 63];
        out[o + 3] = ALPHABET[v as usize & 63];
        o += 4;
    }
    match *chunks.remainder() {
        [a] => {
            let v = u32::from(a) << 16;
            out[o] = ALPHABET[(v >> 18) as usize & 63];
            out[o + 1] = ALPHABET[(v >> 12) as usize & 63];
            out[o + 2] = b'=';
            out[o + 3] = b'=';
        }
        [a, b] => {
            let v = (u32::from(a) << 16) | (u32::from(b) << 8);
            out[o] = ALPHABET[(v >> 18) as usize & 63];
            out[o + 1] = ALPHABET[(v >> 12) as usize & 63];
            out[o + 2] = ALPHABET[(v >> 6) as usize & 63];
            out[o + 3] = b'=';
        }
        _ => {}
    }
    // Every byte written comes from ALPHABET or is '='.
    String::from_utf8(out).unwrap_or_default()
}

/// Rank of a character in the alphabet; `=` ranks 0 as in GLib; 0xFF for others.
const fn rank_table() -> [u8; 256] {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t[b'=' as usize] = 0;
    t
}
static RANK: [u8; 256] = rank_table();

/// Decodes as QEMU's `qbase64_decode`. (A `\u0000` in the JSON string reaches it as
/// the bytes C0 80, so it is an invalid character, not the end of the string.)
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
    let text = text.as_ref();
    if !text
        .iter()
        .all(|&c| c == b'\n' || RANK[usize::from(c)] != 0xFF)
    {
        return Err(Error::new(INVALID_CHARACTERS));
    }
    Ok(glib_decode(text))
}

/// GLib's `g_base64_decode` over input already known to hold only alphabet
/// characters, `=` and `\n` (any other byte is skipped, as GLib does).
fn glib_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut v, mut i) = (0u32, 0u8);
    // The last character taken (GLib's `last[0]`); `last[1]` is the one before it.
    let mut last0 = 0u8;
    for &c in text {
        let rank = RANK[usize::from(c)];
        if rank == 0xFF {
            continue;
        }
        let last1 = last0;
        last0 = c;
        v = (v << 6) | u32::from(rank);
        i += 1;
        if i == 4 {
            out.push((v >> 16) as u8);
            if last1 != b'=' {
                out.push((v >> 8) as u8);
            }
            if last0 != b'=' {
                out.push(v as u8);
            }
            i = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_standard_padded() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"Hello World!\n\0"), "SGVsbG8gV29ybGQhCgA=");
        assert_eq!(encode(&[0xFF, 0xFE, 0x00, 0x80]), "//4AgA==");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(encode(&all)).unwrap(), all);
    }

    #[test]
    fn decodes_like_glib_after_the_character_check() {
        let d = |s: &str| decode(s).unwrap();
        assert_eq!(d(""), b"");
        assert_eq!(d("S"), b"");
        assert_eq!(d("SGVsbG8="), b"Hello");
        assert_eq!(d("SGVsbG8"), b"Hel");
        assert_eq!(d("SGVsbG8=SGVs"), b"HelloHel");
        assert_eq!(d("===="), b"\0");
        assert_eq!(d("SGVs\nbG8=\n"), b"Hello");
        assert_eq!(d("\n\n\n"), b"");
        assert_eq!(d("Zg=="), b"f");
        // A '=' in third place drops the middle byte, not the last one.
        assert_eq!(d("SG=s"), [0x48, 0x2C]);
    }

    #[test]
    fn rejects_characters_outside_the_alphabet() {
        for s in [
            "SGV sbG8=",
            "SGVsbG8=\r\n",
            "SGVs\tbG8=",
            "SGVs-_",
            "é",
            "Zm9v\0Zm9v",
        ] {
            assert_eq!(decode(s).unwrap_err().desc(), INVALID_CHARACTERS, "{s:?}");
        }
    }
}
