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

use std::borrow::Cow;

use crate::qapi::{ArgError, FromQapi, Path, ToQapi};
use crate::Value;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The text QEMU reports for input outside the base64 alphabet.
pub const INVALID_CHARACTERS: &str = "Base64 data contains invalid characters";

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

/// Eight output characters for six input bytes (the low 48 bits of `v`).
fn encode48(v: u64) -> [u8; 8] {
    let w = u64::from(PAIRS[(v >> 36) as usize & 0xFFF])
        | (u64::from(PAIRS[(v >> 24) as usize & 0xFFF]) << 16)
        | (u64::from(PAIRS[(v >> 12) as usize & 0xFFF]) << 32)
        | (u64::from(PAIRS[v as usize & 0xFFF]) << 48);
    w.to_le_bytes()
}

/// Appends the standard padded encoding of `data` to `out` (12 bytes to 16 characters
/// per step).
#[allow(unsafe_code)]
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    let len = data.len().div_ceil(3) * 4;
    out.reserve(len);
    // Written straight into the spare capacity: zeroing it first cost a fifth of a
    // 48 MiB read's instructions.
    let dst = &mut out.spare_capacity_mut()[..len];
    // The vector path does whole 24-byte blocks; the rest is done below.
    let done = simd::encode_blocks(data, dst);
    let (data, dst) = (&data[done..], &mut dst[done / 3 * 4..]);
    let mut chunks = data.chunks_exact(12);
    for (c, o) in (&mut chunks).zip(dst.chunks_exact_mut(16)) {
        let a = u64::from_be_bytes([0, 0, c[0], c[1], c[2], c[3], c[4], c[5]]);
        let b = u64::from_be_bytes([0, 0, c[6], c[7], c[8], c[9], c[10], c[11]]);
        o[..8].write_copy_of_slice(&encode48(a));
        o[8..].write_copy_of_slice(&encode48(b));
    }
    let rest = chunks.remainder();
    let dst = &mut dst[data.len() / 12 * 16..];
    let mut groups = rest.chunks_exact(3);
    for (c, o) in (&mut groups).zip(dst.chunks_exact_mut(4)) {
        let v = u64::from_be_bytes([0, 0, 0, 0, 0, c[0], c[1], c[2]]);
        o.write_copy_of_slice(&encode48(v)[4..]);
    }
    let tail = dst.len().saturating_sub(4);
    match *groups.remainder() {
        [a] => {
            let v = u64::from(a) << 16;
            let e = encode48(v);
            dst[tail..].write_copy_of_slice(&[e[4], e[5], b'=', b'=']);
        }
        [a, b] => {
            let v = (u64::from(a) << 16) | (u64::from(b) << 8);
            let e = encode48(v);
            dst[tail..].write_copy_of_slice(&[e[4], e[5], e[6], b'=']);
        }
        _ => {}
    }
    // SAFETY: every one of the `len` bytes after the old length was written above:
    // 16 per 12-byte chunk, 4 per remaining 3-byte group, 4 for a final partial group
    // (`len` is 4 per started group of 3).
    unsafe { out.set_len(out.len() + len) };
}

/// AVX2 encoding of whole 24-byte blocks (Wojciech Muła's method: a byte shuffle
/// puts each 3-byte group into a 32-bit word, two multiplies move the four 6-bit
/// fields into four bytes, and a 16-entry table gives the offset from each field to
/// its character), where the processor has it. About 0.4 instructions per input byte
/// against 4.8 for the table-driven loop.
#[allow(unsafe_code)]
mod simd {
    use std::mem::MaybeUninit;

    /// Encodes as many whole 24-byte blocks from the start of `data` as this processor
    /// and the length allow into the start of `dst` (4 characters per 3 bytes);
    /// returns the number of input bytes done (a multiple of 3).
    pub fn encode_blocks(data: &[u8], dst: &mut [MaybeUninit<u8>]) -> usize {
        #[cfg(target_arch = "x86_64")]
        if data.len() >= 32 && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present.
            return unsafe { avx2::encode(data, dst) };
        }
        let _ = (data, dst);
        0
    }

    /// Decodes whole blocks of 32 characters of the alphabet (no `=`, no line break)
    /// from the start of `text` into the start of `out` (3 bytes per 4 characters)
    /// while `out` has 32 bytes of room for each block's store; stops before the
    /// first block with any other byte. Returns the number of characters done (a
    /// multiple of 32); what is in `out` past their bytes is unspecified.
    pub fn decode_blocks(text: &[u8], out: &mut [u8]) -> usize {
        #[cfg(target_arch = "x86_64")]
        if text.len() >= 32 && out.len() >= 32 && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present.
            return unsafe { avx2::decode(text, out) };
        }
        let _ = (text, out);
        0
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use std::arch::x86_64::*;
        use std::mem::MaybeUninit;

        /// Callers make sure the processor has AVX2. (Muła and Lemire's decoder: two
        /// nibble lookups validate, a third gives each character's offset to its
        /// rank, two multiply-adds pack four 6-bit ranks into 3 bytes.)
        #[target_feature(enable = "avx2")]
        pub unsafe fn decode(text: &[u8], out: &mut [u8]) -> usize {
            // A character is outside the alphabet iff lo[low nibble] & hi[high
            // nibble] != 0.
            let lut_lo = _mm256_setr_epi8(
                0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B,
                0x1B, 0x1A, //
                0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B,
                0x1B, 0x1A,
            );
            let lut_hi = _mm256_setr_epi8(
                0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
                0x10, 0x10, //
                0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
                0x10, 0x10,
            );
            // Offset by high nibble ('/' moved from 2 to 1): '+' 19, '/' 16, digits 4,
            // upper case -65, lower case -71.
            let lut_roll = _mm256_setr_epi8(
                0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, //
                0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
            );
            let nibble = _mm256_set1_epi8(0x0F);
            let slash = _mm256_set1_epi8(0x2F);
            let pack = _mm256_setr_epi8(
                2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, //
                2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
            );
            let lanes = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
            let (mut i, mut o) = (0, 0);
            while text.len() - i >= 32 && out.len() - o >= 32 {
                // SAFETY: 32 bytes from text[i] are in `text`.
                let v = unsafe { _mm256_loadu_si256(text[i..].as_ptr().cast()) };
                let hi_n = _mm256_and_si256(_mm256_srli_epi32(v, 4), nibble);
                let lo_n = _mm256_and_si256(v, nibble);
                let lo = _mm256_shuffle_epi8(lut_lo, lo_n);
                let hi = _mm256_shuffle_epi8(lut_hi, hi_n);
                if _mm256_testz_si256(lo, hi) == 0 {
                    break;
                }
                let is_slash = _mm256_cmpeq_epi8(v, slash);
                let roll = _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(is_slash, hi_n));
                let ranks = _mm256_add_epi8(v, roll);
                let pairs = _mm256_maddubs_epi16(ranks, _mm256_set1_epi32(0x0140_0140));
                let words = _mm256_madd_epi16(pairs, _mm256_set1_epi32(0x0001_1000));
                let bytes = _mm256_shuffle_epi8(words, pack);
                let bytes = _mm256_permutevar8x32_epi32(bytes, lanes);
                // SAFETY: 32 bytes from out[o] are in `out`, checked above.
                unsafe { _mm256_storeu_si256(out[o..].as_mut_ptr().cast(), bytes) };
                i += 32;
                o += 24;
            }
            i
        }

        /// Callers make sure the processor has AVX2.
        #[target_feature(enable = "avx2")]
        pub unsafe fn encode(data: &[u8], dst: &mut [MaybeUninit<u8>]) -> usize {
            // Per 128-bit lane: bytes 0..12 as four groups [s0 s1 s2], each spread
            // into a little-endian word with bytes [s1 s0 s2 s1].
            let spread = _mm256_setr_epi8(
                1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10, //
                1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,
            );
            // Field index -> offset to its character, looked up by the class below:
            // 13 for 0..25 ('A'), 0 for 26..51 ('a'), 1..10 for 52..61 ('0'), 11 for
            // 62 ('+'), 12 for 63 ('/').
            const fn offsets() -> [i8; 32] {
                let mut lane = [0i8; 16];
                lane[0] = (b'a' as i8).wrapping_sub(26);
                let mut k = 1;
                while k <= 10 {
                    lane[k] = (b'0' as i8).wrapping_sub(52);
                    k += 1;
                }
                lane[11] = (b'+' as i8).wrapping_sub(62);
                lane[12] = (b'/' as i8).wrapping_sub(63);
                lane[13] = b'A' as i8;
                let mut t = [0i8; 32];
                let mut i = 0;
                while i < 32 {
                    t[i] = lane[i % 16];
                    i += 1;
                }
                t
            }
            const OFFSETS: [i8; 32] = offsets();
            // SAFETY: a 32-byte array read as one unaligned vector.
            let offsets = unsafe { _mm256_loadu_si256(OFFSETS.as_ptr().cast()) };
            let mut done = 0;
            // A block reads 28 bytes (two 16-byte loads, 12 apart) and uses 24.
            while data.len() - done >= 28 && dst.len() - done / 3 * 4 >= 32 {
                let src = data[done..].as_ptr();
                // SAFETY: at least 28 bytes from src are in `data`; each load is 16.
                let v = unsafe {
                    let lo = _mm_loadu_si128(src.cast());
                    let hi = _mm_loadu_si128(src.add(12).cast());
                    _mm256_set_m128i(hi, lo)
                };
                let v = _mm256_shuffle_epi8(v, spread);
                // Fields 0 and 2 to the low bits of their bytes by a high multiply,
                // fields 1 and 3 by a low one.
                let a = _mm256_and_si256(v, _mm256_set1_epi32(0x0fc0_fc00));
                let a = _mm256_mulhi_epu16(a, _mm256_set1_epi32(0x0400_0040));
                let b = _mm256_and_si256(v, _mm256_set1_epi32(0x003f_03f0));
                let b = _mm256_mullo_epi16(b, _mm256_set1_epi32(0x0100_0010));
                let idx = _mm256_or_si256(a, b);
                let class = _mm256_subs_epu8(idx, _mm256_set1_epi8(51));
                let low = _mm256_cmpgt_epi8(_mm256_set1_epi8(26), idx);
                let class = _mm256_or_si256(class, _mm256_and_si256(low, _mm256_set1_epi8(13)));
                let text = _mm256_add_epi8(idx, _mm256_shuffle_epi8(offsets, class));
                let out = dst[done / 3 * 4..].as_mut_ptr();
                // SAFETY: at least 32 elements of `dst` from `out`, checked above.
                unsafe { _mm256_storeu_si256(out.cast(), text) };
                done += 24;
            }
            done
        }
    }
}

/// Encodes `data` as standard padded base64, in one allocation of the exact size.
pub fn encode(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    encode_into(data, &mut out);
    // Only ALPHABET characters and `=` are written: ASCII, so this cannot fail (the
    // check is one vectorised pass).
    String::from_utf8(out).unwrap_or_default()
}

/// A base64 member of a reply (guest-file-read's `buf-b64`): the text as a client
/// received it, or, in the agent, the raw bytes, encoded only while the reply is
/// written ([`Value::Base64`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Base64Data {
    /// Base64 text, as received.
    Text(String),
    /// The bytes whose standard base64 encoding the member is.
    Raw(Vec<u8>),
}

impl Base64Data {
    /// The base64 text (encoded now for [`Base64Data::Raw`]).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Base64Data::Text(t) => Cow::Borrowed(t),
            Base64Data::Raw(data) => Cow::Owned(encode(data)),
        }
    }
}

impl Default for Base64Data {
    fn default() -> Self {
        Base64Data::Text(String::new())
    }
}

impl From<String> for Base64Data {
    fn from(text: String) -> Self {
        Base64Data::Text(text)
    }
}

impl From<&str> for Base64Data {
    fn from(text: &str) -> Self {
        Base64Data::Text(text.to_owned())
    }
}

impl FromQapi for Base64Data {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            Some(Value::Base64(data)) => Ok(Base64Data::Raw(data.clone())),
            v => String::from_qapi(v, path).map(Base64Data::Text),
        }
    }

    fn from_qapi_take(v: Option<&mut Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            Some(Value::Base64(data)) => Ok(Base64Data::Raw(std::mem::take(data))),
            v => String::from_qapi_take(v, path).map(Base64Data::Text),
        }
    }
}

impl ToQapi for Base64Data {
    fn to_qapi(&self) -> Value {
        self.clone().into_qapi()
    }

    fn into_qapi(self) -> Value {
        match self {
            Base64Data::Text(t) => t.into_qapi(),
            Base64Data::Raw(data) => Value::Base64(data),
        }
    }
}

/// Rank of a character in the alphabet; 0xFF for others; `=` ranks `pad` (0 in GLib's
/// decoder).
const fn rank_table(pad: u8) -> [u8; 256] {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t[b'=' as usize] = pad;
    t
}
static RANK: [u8; 256] = rank_table(0);
/// The same, with `=` outside the alphabet (0xFF) like every other byte.
static STRICT_RANK: [u8; 256] = rank_table(0xFF);

/// Decodes standard base64 as a client reads an agent's output: padding optional,
/// line breaks ignored, `None` on any other character, on data after padding or on a
/// dangling single character (unlike the lenient [`decode`] the agent applies to what
/// it is sent).
pub fn decode_strict(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    decode_strict_into(text, &mut out).then_some(out)
}

/// [`decode_strict`], appending to `out` (which keeps its capacity from chunk to chunk);
/// false, with `out` in an unspecified state, when the text is not base64.
pub fn decode_strict_into(text: &[u8], out: &mut Vec<u8>) -> bool {
    // Fast path: whole groups of 16 characters of the alphabet, 12 bytes out, with one
    // check of the accumulated ranks per group instead of a branch per character.
    let body = text.len().saturating_sub(4) / 16 * 16;
    let start = out.len();
    // Room for the vector decoder's last 32-byte store, cut off again below.
    out.resize(start + body / 4 * 3 + 8, 0);
    let vec = simd::decode_blocks(&text[..body], &mut out[start..]);
    out.truncate(start + body / 4 * 3);
    let mut bad = 0u8;
    for (c, d) in text[vec..body]
        .chunks_exact(16)
        .zip(out[start + vec / 4 * 3..].chunks_exact_mut(12))
    {
        for (g, o) in c.chunks_exact(4).zip(d.chunks_exact_mut(3)) {
            let r = [
                STRICT_RANK[usize::from(g[0])],
                STRICT_RANK[usize::from(g[1])],
                STRICT_RANK[usize::from(g[2])],
                STRICT_RANK[usize::from(g[3])],
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
        let r = STRICT_RANK[usize::from(c)];
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

/// Whether any byte of `s` satisfies `pred`, checked 32 bytes at a time without
/// branches so the compiler vectorises it.
fn any_byte(s: &[u8], pred: impl Fn(u8) -> bool) -> bool {
    let mut chunks = s.chunks_exact(32);
    let bulk = chunks
        .by_ref()
        .any(|c| c.iter().fold(false, |acc, &b| acc | pred(b)));
    bulk || chunks.remainder().iter().any(|&b| pred(b))
}

/// Whether `text` holds only `A-Z a-z 0-9 + / = \n`.
fn all_valid(text: &[u8]) -> bool {
    !any_byte(text, |c| {
        !((c | 0x20).wrapping_sub(b'a') < 26
            || c.wrapping_sub(b'0') < 10
            || c == b'+'
            || c == b'/'
            || c == b'='
            || c == b'\n')
    })
}

/// Three bytes from four characters of the alphabet.
fn decode4(c: &[u8]) -> [u8; 3] {
    let v = (u32::from(RANK[usize::from(c[0])]) << 18)
        | (u32::from(RANK[usize::from(c[1])]) << 12)
        | (u32::from(RANK[usize::from(c[2])]) << 6)
        | u32::from(RANK[usize::from(c[3])]);
    let [_, a, b, c] = v.to_be_bytes();
    [a, b, c]
}

/// Input with a character outside `A-Z a-z 0-9 + / = \n`; displays as
/// [`INVALID_CHARACTERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

impl std::fmt::Display for InvalidBase64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(INVALID_CHARACTERS)
    }
}

impl std::error::Error for InvalidBase64 {}

/// Decodes as QEMU's `qbase64_decode`. (A `\u0000` in the JSON string reaches it as
/// the bytes C0 80, so it is an invalid character, not the end of the string.)
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, InvalidBase64> {
    decode_vec(text.as_ref().to_vec())
}

/// [`decode`], writing the result over the text: no second buffer for a 64 MiB write.
pub fn decode_vec(mut buf: Vec<u8>) -> Result<Vec<u8>, InvalidBase64> {
    if !all_valid(&buf) {
        return Err(InvalidBase64);
    }
    let n = buf.len();
    // Fast path: whole groups of four with no `=` or `\n` before the last group give
    // three bytes each; the last group (which may hold padding) goes through GLib's
    // rules below.
    let body = if n.is_multiple_of(4) {
        n.saturating_sub(4)
    } else {
        0
    };
    let (mut i, mut o) = (0, 0);
    if !any_byte(&buf[..body], |c| c == b'=' || c == b'\n') {
        // A block at a time through a buffer on the stack, then written back at
        // o <= i: only characters already decoded are overwritten.
        const BLOCK: usize = 4096;
        // 8 bytes more for the vector decoder's last 32-byte store.
        let mut out = [0u8; BLOCK / 4 * 3 + 8];
        while i < body {
            let len = BLOCK.min(body - i);
            let produced = len / 4 * 3;
            let vec = simd::decode_blocks(&buf[i..i + len], &mut out);
            for (c, d) in buf[i + vec..i + len]
                .chunks_exact(4)
                .zip(out[vec / 4 * 3..].chunks_exact_mut(3))
            {
                d.copy_from_slice(&decode4(c));
            }
            buf[o..o + produced].copy_from_slice(&out[..produced]);
            i += len;
            o += produced;
        }
    }
    let len = glib_decode(&mut buf, i, o);
    buf.truncate(len);
    Ok(buf)
}

/// GLib's `g_base64_decode` over `buf[from..]`, which holds only alphabet characters,
/// `=` and `\n` (any other byte would be skipped, as GLib does), writing the bytes at
/// `buf[to..]` (`to <= from`: output never overtakes input). Returns the end of the
/// output.
fn glib_decode(buf: &mut [u8], from: usize, to: usize) -> usize {
    let (mut v, mut i, mut o) = (0u32, 0u8, to);
    // The last character taken (GLib's `last[0]`); `last[1]` is the one before it.
    let mut last0 = 0u8;
    for k in from..buf.len() {
        let c = buf[k];
        let rank = RANK[usize::from(c)];
        if rank == 0xFF {
            continue;
        }
        let last1 = last0;
        last0 = c;
        v = (v << 6) | u32::from(rank);
        i += 1;
        if i == 4 {
            // At most three bytes for four characters taken: o + 3 <= k + 1.
            buf[o] = (v >> 16) as u8;
            o += 1;
            if last1 != b'=' {
                buf[o] = (v >> 8) as u8;
                o += 1;
            }
            if last0 != b'=' {
                buf[o] = v as u8;
                o += 1;
            }
            i = 0;
        }
    }
    o
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

    /// The straightforward versions: one character at a time.
    fn reference_encode(data: &[u8]) -> String {
        let mut out = String::new();
        for c in data.chunks(3) {
            let v = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for k in 0..4 {
                out.push(if k <= c.len() {
                    ALPHABET[(v >> (18 - 6 * k)) as usize & 63] as char
                } else {
                    '='
                });
            }
        }
        out
    }

    fn reference_decode(text: &[u8]) -> Option<Vec<u8>> {
        if !text
            .iter()
            .all(|&c| c == b'\n' || RANK[usize::from(c)] != 0xFF)
        {
            return None;
        }
        let mut buf = text.to_vec();
        let n = glib_decode(&mut buf, 0, 0);
        // Written over a copy: the same as writing to a fresh buffer, since output never
        // overtakes input.
        buf.truncate(n);
        Some(buf)
    }

    /// A xorshift64 generator: the same inputs on every run.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn vector_path_agrees_with_the_reference_at_every_offset_and_length() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let data: Vec<u8> = (0..100_000).map(|_| next() as u8).collect();
        assert_eq!(encode(&data), reference_encode(&data));
        for start in 0..8 {
            for len in (0..200).chain([1000, 4095, 4096, 4097]) {
                let d = &data[start..start + len];
                assert_eq!(encode(d), reference_encode(d), "start {start} len {len}");
            }
        }
        // Every 6-bit value in each of the four positions of a group.
        let every: Vec<u8> = (0..64u32)
            .flat_map(|v| {
                let w = v << 18 | v << 12 | v << 6 | v;
                [(w >> 16) as u8, (w >> 8) as u8, w as u8]
            })
            .collect();
        assert_eq!(encode(&every), reference_encode(&every));
        // Appended to text already there, with and without spare room.
        let mut out = b"xyz".to_vec();
        encode_into(&data[..999], &mut out);
        assert_eq!(out[3..], *reference_encode(&data[..999]).as_bytes());
        let mut out = Vec::with_capacity(5000);
        out.extend_from_slice(b"ab");
        encode_into(&data[..3000], &mut out);
        assert_eq!(out[2..], *reference_encode(&data[..3000]).as_bytes());
    }

    #[test]
    fn fast_paths_agree_with_the_reference() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let data: Vec<u8> = (0..300).map(|_| next() as u8).collect();
        for len in 0..data.len() {
            assert_eq!(encode(&data[..len]), reference_encode(&data[..len]));
            // In pieces of multiples of three, then the rest.
            let cut = (next() as usize % (len + 1)) / 3 * 3;
            let mut e = Vec::new();
            encode_into(&data[..cut], &mut e);
            encode_into(&data[cut..len], &mut e);
            assert_eq!(e, reference_encode(&data[..len]).as_bytes());
        }
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n!";
        for _ in 0..20000 {
            let len = next() as usize % 40;
            let text: Vec<u8> = (0..len)
                .map(|_| match next() % 50 {
                    0..=2 => alphabet[64 + (next() % 3) as usize],
                    _ => alphabet[(next() % 64) as usize],
                })
                .collect();
            let got = decode(&text).ok();
            assert_eq!(
                got,
                reference_decode(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
        // Long texts: several blocks of the fast path, padding at the end, and a newline
        // or '=' somewhere that sends the whole text through GLib's rules.
        for len in [4096, 4100, 12_288 + 8, 40_000] {
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let text = encode(&data).into_bytes();
            assert_eq!(decode(&text).unwrap(), data);
            assert_eq!(decode(&text).ok(), reference_decode(&text));
            for special in [b'\n', b'='] {
                let mut odd = text.clone();
                odd.insert(next() as usize % text.len(), special);
                assert_eq!(decode(&odd).ok(), reference_decode(&odd));
            }
        }
    }

    #[test]
    fn raw_data_serializes_as_its_encoding() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let v = Base64Data::Raw(data.clone()).into_qapi();
        let mut want = b"\"".to_vec();
        want.extend_from_slice(encode(&data).as_bytes());
        want.push(b'"');
        assert_eq!(v.to_json(), want);
        // Streamed in pieces that cut through the text anywhere.
        let mut pieces = Vec::new();
        v.write_json_line(1000, &mut |p| {
            pieces.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        want.push(b'\n');
        assert_eq!(pieces, want);
        assert_eq!(Base64Data::Raw(b"abc".to_vec()).text(), "YWJj");
        let text = Value::str("YWJj");
        let back = Base64Data::from_qapi(Some(&text), Path::REPLY).unwrap();
        assert_eq!(back, Base64Data::Text("YWJj".into()));
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
            assert_eq!(
                decode(s).unwrap_err().to_string(),
                INVALID_CHARACTERS,
                "{s:?}"
            );
        }
    }

    #[test]
    fn strict_rfc4648_vectors() {
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
            assert_eq!(decode_strict(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn strict_round_trip_and_rejects() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_eq!(decode_strict(encode(&data).as_bytes()).unwrap(), data);
        assert_eq!(decode_strict(b"b3V0Cg==").unwrap(), b"out\n");
        assert!(decode_strict(b"a b").is_none());
        assert!(decode_strict(b"Zg==Zg").is_none());
        assert!(decode_strict(b"Z").is_none());
    }

    #[test]
    fn vector_decoder_takes_exactly_the_alphabet() {
        let data: Vec<u8> = (0..48u32).map(|i| (i * 89 + 7) as u8).collect();
        let text = encode(&data).into_bytes();
        assert_eq!(text.len(), 64);
        let mut out = [0u8; 56];
        let vector = simd::decode_blocks(&text, &mut out);
        if vector == 0 {
            eprintln!("no AVX2 here: only the table-driven decoder is checked");
            return;
        }
        assert_eq!((vector, &out[..48]), (64, &data[..]));
        for c in 0..=255u8 {
            let valid = STRICT_RANK[usize::from(c)] != 0xFF;
            for at in 0..64 {
                let mut t = text.clone();
                t[at] = c;
                let mut out = [0u8; 56];
                let done = simd::decode_blocks(&t, &mut out);
                let want = if valid { 64 } else { at / 32 * 32 };
                assert_eq!(done, want, "byte {c:#x} at {at}");
                let mut expect = Vec::new();
                assert!(slow_decode(&t[..done], &mut expect));
                assert_eq!(out[..done / 4 * 3], expect[..], "byte {c:#x} at {at}");
            }
        }
        // Stops while the output has no room for a whole 32-byte store.
        assert_eq!(simd::decode_blocks(&text, &mut [0u8; 55]), 32);
        assert_eq!(simd::decode_blocks(&text, &mut [0u8; 31]), 0);
    }

    #[test]
    fn decoders_agree_with_the_reference_on_long_texts() {
        let mut next = xorshift(0x1234_5678_9ABC_DEF1);
        for _ in 0..300 {
            let len = next() as usize % 3000;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut text = encode(&data).into_bytes();
            assert_eq!(decode(&text).unwrap(), data);
            assert_eq!(decode_strict(&text).unwrap(), data);
            if text.is_empty() {
                continue;
            }
            // One odd byte anywhere: both decoders as their scalar versions say.
            let at = next() as usize % text.len();
            text[at] = [b'\n', b'=', b'*', 0x80, b'A'][next() as usize % 5];
            assert_eq!(decode(&text).ok(), reference_decode(&text));
            let mut slow = Vec::new();
            let ok = slow_decode(&text, &mut slow);
            assert_eq!(decode_strict(&text), ok.then_some(slow));
        }
    }

    #[test]
    fn strict_fast_path_agrees_with_the_general_decoder() {
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
            assert!(decode_strict_into(enc.as_bytes(), &mut out), "len {len}");
            assert_eq!(&out[1..], &data[..len], "len {len}");
        }
        // Line breaks, padding or garbage inside the fast path's blocks.
        let enc = encode(&data[..3000]);
        let mut wrapped = Vec::new();
        for line in enc.as_bytes().chunks(76) {
            wrapped.extend_from_slice(line);
            wrapped.extend_from_slice(b"\r\n");
        }
        assert_eq!(decode_strict(&wrapped).unwrap(), &data[..3000]);
        for (at, c) in [
            (0, b'*'),
            (17, b'='),
            (100, 0xC3),
            (3999, b'-'),
            (2000, b' '),
        ] {
            let mut bad = enc.clone().into_bytes();
            bad[at] = c;
            assert!(decode_strict(&bad).is_none(), "{c} at {at}");
        }
    }
}
