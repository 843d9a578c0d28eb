//! Attention of one head of one short sequence (up to 32 tokens), `softmax(q Kᵀ · scale) V`,
//! with a query row's scores and its output row held in registers (AVX-512).
//!
//! Most texts people embed are sentences of 10-30 word pieces. For them the general path (two
//! tiled GEMMs around a softmax) spent most of its time on tile edges: a 15 × 15 score matrix
//! fills half of a 32-wide panel and one-fifteenth of a second row tile. Here K is transposed
//! once per head into rows of 32 lanes, a query row's scores are one or two vectors, and its
//! output row is `head_dim` lanes accumulated over the value rows, read in place. Other
//! instruction sets keep the GEMM path.

use super::{Isa, Kind};

/// The longest sequence `head` handles; longer ones take the GEMM path.
pub const MAX_TOKENS: usize = 32;

/// Whether `head` handles `tokens` tokens of heads `head_dim` wide with `isa`.
pub fn fits(isa: Isa, tokens: usize, head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    let vectors = isa.0 == Kind::Avx512;
    #[cfg(not(target_arch = "x86_64"))]
    let vectors = {
        let _ = isa;
        false
    };
    vectors && (1..=MAX_TOKENS).contains(&tokens) && (head_dim == 32 || head_dim == 64)
}

/// Scratch floats `head` needs for heads `head_dim` wide (Kᵀ).
pub fn scratch_len(head_dim: usize) -> usize {
    head_dim * MAX_TOKENS
}

/// One head's attention: `q`, `k` and `v` hold `tokens` rows each, `stride` floats apart (the
/// fused QKV projection, read in place); row `i` of the result goes to `out + i * out_stride`.
/// `keys_t` is scratch of at least `scratch_len(head_dim)` floats.
///
/// Panics unless `fits(isa, tokens, head_dim)` and the slices hold the rows they are said to.
///
/// # Safety
/// `out` must be valid for writes of `head_dim` floats at `out + i * out_stride` for every
/// `i < tokens`, and nothing else may access those floats during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn head(
    isa: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    stride: usize,
    tokens: usize,
    head_dim: usize,
    scale: f32,
    keys_t: &mut [f32],
    out: *mut f32,
    out_stride: usize,
) {
    assert!(
        fits(isa, tokens, head_dim),
        "short attention: {tokens} tokens × {head_dim} with {}",
        isa.name()
    );
    let rows_len = (tokens - 1) * stride + head_dim;
    assert!(q.len() >= rows_len && k.len() >= rows_len && v.len() >= rows_len);
    assert!(keys_t.len() >= scratch_len(head_dim));
    #[cfg(target_arch = "x86_64")]
    {
        let (q, k, v, kt) = (q.as_ptr(), k.as_ptr(), v.as_ptr(), keys_t.as_mut_ptr());
        // SAFETY: `fits` vouched for AVX-512F; the asserts above keep every read of q, k, v
        // and keys_t in bounds; the caller vouches for `out`.
        unsafe {
            match (tokens <= 16, head_dim == 64) {
                (true, true) => {
                    avx512::head::<64, false>(q, k, v, stride, tokens, scale, kt, out, out_stride)
                }
                (false, true) => {
                    avx512::head::<64, true>(q, k, v, stride, tokens, scale, kt, out, out_stride)
                }
                (true, false) => {
                    avx512::head::<32, false>(q, k, v, stride, tokens, scale, kt, out, out_stride)
                }
                (false, false) => {
                    avx512::head::<32, true>(q, k, v, stride, tokens, scale, kt, out, out_stride)
                }
            }
        }
    }
    // Unreachable elsewhere (`fits` said no above); the arguments are only used on x86-64.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (scale, out, out_stride);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::simd_x86::lanes;
    use super::MAX_TOKENS;

    /// `e^x` lane by lane: the same Cephes polynomial and constants as `vecmath`'s `exp`
    /// (within 2 ulp on [-87, 88]; clamped outside), so both paths round alike.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; only `head`, compiled for it, calls this.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        const ROUNDER: f32 = 12_582_912.0; // 1.5 * 2^23
        let set = _mm512_set1_ps;
        let x = _mm512_min_ps(_mm512_max_ps(x, set(-87.0)), set(88.0));
        let shifted = _mm512_fmadd_ps(x, set(LOG2E), set(ROUNDER));
        let n = _mm512_sub_ps(shifted, set(ROUNDER));
        let r = _mm512_fnmadd_ps(n, set(LN2_LO), _mm512_fnmadd_ps(n, set(LN2_HI), x));
        let mut p = set(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, set(c));
        }
        let y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, set(1.0)));
        // n + 127 in the exponent field: 2^n.
        let bits = _mm512_add_epi32(
            _mm512_sub_epi32(
                _mm512_castps_si512(shifted),
                _mm512_set1_epi32(ROUNDER.to_bits() as i32),
            ),
            _mm512_set1_epi32(127),
        );
        _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(bits)))
    }

    /// `super::head` for heads `D` wide (32 or 64); `WIDE`: more than 16 tokens, so the
    /// scores of a row take two vectors.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `tokens <= 32` (`<= 16` unless `WIDE`); `q`, `k`, `v`
    /// readable for `tokens` rows of `D` floats, `stride` apart; `keys_t` writable for
    /// `D * MAX_TOKENS` floats; `out` as in `super::head`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn head<const D: usize, const WIDE: bool>(
        q: *const f32,
        k: *const f32,
        v: *const f32,
        stride: usize,
        tokens: usize,
        scale: f32,
        keys_t: *mut f32,
        out: *mut f32,
        out_stride: usize,
    ) {
        const W: usize = MAX_TOKENS;
        let chunks = D / 16;
        // SAFETY: every offset below stays inside the regions the caller vouched for: key
        // t of row j at t * W + j < D * W, rows i, j < tokens, columns < D.
        unsafe {
            // Kᵀ: D rows of W lanes, zero past the last key (those scores are masked off by
            // the softmax, which only reads the first `tokens`).
            for t in 0..D {
                _mm512_storeu_ps(keys_t.add(t * W), _mm512_setzero_ps());
                _mm512_storeu_ps(keys_t.add(t * W + 16), _mm512_setzero_ps());
            }
            for j in 0..tokens {
                let key = k.add(j * stride);
                for t in 0..D {
                    *keys_t.add(t * W + j) = *key.add(t);
                }
            }
            let mut probs = [0.0f32; W];
            for i in 0..tokens {
                let query = q.add(i * stride);
                // Four partial sums over the head dimension: four independent FMA chains.
                let mut low = [_mm512_setzero_ps(); 4];
                let mut high = [_mm512_setzero_ps(); 4];
                for t in (0..D).step_by(4) {
                    for u in 0..4 {
                        let x = _mm512_set1_ps(*query.add(t + u));
                        let row = keys_t.add((t + u) * W);
                        low[u] = _mm512_fmadd_ps(x, _mm512_loadu_ps(row), low[u]);
                        if WIDE {
                            high[u] = _mm512_fmadd_ps(x, _mm512_loadu_ps(row.add(16)), high[u]);
                        }
                    }
                }
                let sum = |p: [__m512; 4]| {
                    _mm512_add_ps(_mm512_add_ps(p[0], p[1]), _mm512_add_ps(p[2], p[3]))
                };
                // The softmax in registers: lanes past the last key get -inf, then exp 0.
                let (low_keys, high_keys) = (lanes(tokens), lanes(tokens.saturating_sub(16)));
                let minus_inf = _mm512_set1_ps(f32::NEG_INFINITY);
                let scaled = _mm512_set1_ps(scale);
                let low = _mm512_mask_mul_ps(minus_inf, low_keys, sum(low), scaled);
                let high = if WIDE {
                    _mm512_mask_mul_ps(minus_inf, high_keys, sum(high), scaled)
                } else {
                    minus_inf
                };
                let max = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(low, high)));
                let low = _mm512_maskz_mov_ps(low_keys, exp(_mm512_sub_ps(low, max)));
                let high = if WIDE {
                    _mm512_maskz_mov_ps(high_keys, exp(_mm512_sub_ps(high, max)))
                } else {
                    _mm512_setzero_ps()
                };
                let inv_sum = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(_mm512_add_ps(low, high)));
                _mm512_storeu_ps(probs.as_mut_ptr(), _mm512_mul_ps(low, inv_sum));
                _mm512_storeu_ps(probs.as_mut_ptr().add(16), _mm512_mul_ps(high, inv_sum));
                let mut acc = [_mm512_setzero_ps(); 4];
                for (j, &p) in probs[..tokens].iter().enumerate() {
                    let p = _mm512_set1_ps(p);
                    let value = v.add(j * stride);
                    for (c, a) in acc.iter_mut().enumerate().take(chunks) {
                        *a = _mm512_fmadd_ps(p, _mm512_loadu_ps(value.add(16 * c)), *a);
                    }
                }
                let row = out.add(i * out_stride);
                for (c, a) in acc.iter().enumerate().take(chunks) {
                    _mm512_storeu_ps(row.add(16 * c), *a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                ((state >> 8) as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// softmax(q Kᵀ · scale) V in f64, one head.
    fn reference(qkv: &[f32], offsets: [usize; 3], stride: usize, n: usize, d: usize) -> Vec<f64> {
        let at = |which: usize, row: usize, t: usize| qkv[offsets[which] + row * stride + t] as f64;
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0.0; n * d];
        for i in 0..n {
            let scores: Vec<f64> = (0..n)
                .map(|j| (0..d).map(|t| at(0, i, t) * at(1, j, t)).sum::<f64>() * scale)
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for t in 0..d {
                out[i * d + t] = (0..n).map(|j| exps[j] / total * at(2, j, t)).sum();
            }
        }
        out
    }

    #[test]
    fn matches_the_f64_reference_where_it_fits() {
        for isa in Isa::available() {
            for d in [32, 64] {
                for n in [1, 2, 7, 15, 16, 17, 31, 32] {
                    if !fits(isa, n, d) {
                        continue;
                    }
                    let stride = 3 * 12 * d; // a fused QKV row of 12 heads
                    let qkv = data(n * stride, (n * d) as u32);
                    let offsets = [d, 12 * d + d, 24 * d + d];
                    let [q, k, v] = offsets.map(|o| &qkv[o..]);
                    let mut keys_t = vec![f32::NAN; scratch_len(d)];
                    // Output rows 2d apart; the gaps must stay untouched.
                    let mut out = vec![f32::NAN; n * 2 * d];
                    let scale = 1.0 / (d as f32).sqrt();
                    // SAFETY: `out` holds n rows of 2d floats, so rows of d at stride 2d fit.
                    unsafe {
                        head(
                            isa,
                            q,
                            k,
                            v,
                            stride,
                            n,
                            d,
                            scale,
                            &mut keys_t,
                            out.as_mut_ptr(),
                            2 * d,
                        );
                    }
                    let want = reference(&qkv, offsets, stride, n, d);
                    for i in 0..n {
                        assert!(out[i * 2 * d + d..(i + 1) * 2 * d]
                            .iter()
                            .all(|x| x.is_nan()));
                        for t in 0..d {
                            let (got, want) = (out[i * 2 * d + t] as f64, want[i * d + t]);
                            assert!(
                                (got - want).abs() < 2e-6 * (1.0 + want.abs()),
                                "{isa:?} d={d} n={n} at ({i}, {t}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn only_short_sequences_and_known_head_widths_fit() {
        let isa = Isa::detected();
        assert!(!fits(isa, 0, 64) && !fits(isa, 33, 64) && !fits(isa, 16, 48));
        assert!(!fits(Isa::scalar(), 16, 64));
        if isa.name() == "avx512f" {
            assert!(fits(isa, 1, 64) && fits(isa, 32, 64) && fits(isa, 32, 32));
        }
    }
}
