//! SHA-256 block compression with the x86-64 SHA extensions (Intel's published
//! sequence: two rounds per `sha256rnds2`, the message schedule by `sha256msg1/2`).

use std::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
    _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
    _mm_shuffle_epi8, _mm_storeu_si128,
};
use std::sync::atomic::{AtomicU8, Ordering};

use super::K;

/// Whether this CPU has the instructions (checked once).
pub fn available() -> bool {
    static HAVE: AtomicU8 = AtomicU8::new(0);
    match HAVE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let yes = std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("sse4.1")
                && std::arch::is_x86_feature_detected!("ssse3");
            HAVE.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
    }
}

/// Four rounds with the message words `w` (already in schedule order).
#[inline(always)]
fn rounds4(abef: &mut __m128i, cdgh: &mut __m128i, w: __m128i, i: usize) {
    // SAFETY: only reached from `compress`, whose callers checked the features; the
    // load reads K[4i..4i+4], in bounds for i < 16.
    unsafe {
        let k = _mm_loadu_si128(K.as_ptr().add(4 * i).cast());
        let t = _mm_add_epi32(w, k);
        *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, t);
        *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32(t, 0x0E));
    }
}

/// The next four message words from the previous sixteen.
#[inline(always)]
fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
    // SAFETY: as in `rounds4`.
    unsafe {
        let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
        _mm_sha256msg2_epu32(t, w3)
    }
}

/// Compresses the 64-byte blocks of `blocks` into `state`.
///
/// # Safety
/// The CPU must support SHA, SSSE3 and SSE4.1 ([`available`]).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub unsafe fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    // SAFETY: the features are enabled for this function; every load and store is
    // unaligned and within `state` (two vectors) or a 64-byte block of `blocks`.
    unsafe {
        let bswap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let p = state.as_mut_ptr().cast::<__m128i>();
        let dcba = _mm_loadu_si128(p);
        let efgh = _mm_shuffle_epi32(_mm_loadu_si128(p.add(1)), 0x1B);
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let mut abef = _mm_alignr_epi8(cdab, efgh, 8);
        let mut cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
        for block in blocks.chunks_exact(64) {
            let (abef0, cdgh0) = (abef, cdgh);
            let b = block.as_ptr().cast::<__m128i>();
            let mut w = [
                _mm_shuffle_epi8(_mm_loadu_si128(b), bswap),
                _mm_shuffle_epi8(_mm_loadu_si128(b.add(1)), bswap),
                _mm_shuffle_epi8(_mm_loadu_si128(b.add(2)), bswap),
                _mm_shuffle_epi8(_mm_loadu_si128(b.add(3)), bswap),
            ];
            for (i, &wi) in w.iter().enumerate() {
                rounds4(&mut abef, &mut cdgh, wi, i);
            }
            for i in 4..16 {
                // w holds the last sixteen words as a ring: w[i % 4] is the oldest.
                let next = schedule(w[i % 4], w[(i + 1) % 4], w[(i + 2) % 4], w[(i + 3) % 4]);
                w[i % 4] = next;
                rounds4(&mut abef, &mut cdgh, next, i);
            }
            abef = _mm_add_epi32(abef, abef0);
            cdgh = _mm_add_epi32(cdgh, cdgh0);
        }
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        _mm_storeu_si128(p, _mm_blend_epi16(feba, dchg, 0xF0));
        _mm_storeu_si128(p.add(1), _mm_alignr_epi8(dchg, feba, 8));
    }
}
