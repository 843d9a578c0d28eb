//! The pooling and normalisation vector ops (`add_assign`, `max_assign`, `scale`,
//! `sum_squares` in `kernels`) for AVX-512F and AVX2+FMA. Callers must have checked the CPU
//! features (see `Isa`). AVX-512 handles tails with masked loads and stores; AVX2 finishes
//! them with scalar code.

use std::arch::x86_64::*;

use super::pooling_scalar;

const W512: usize = 16;
const W256: usize = 8;

/// Lane mask selecting the first `n` (< 16) lanes of a 512-bit vector.
#[inline]
fn tail_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// # Safety
/// The CPU must support AVX-512F; `acc` and `x` must have the same length.
#[target_feature(enable = "avx512f")]
pub unsafe fn add_assign_avx512(acc: &mut [f32], x: &[f32]) {
    let n = acc.len();
    let (pa, px) = (acc.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    // SAFETY: every access is below `n`, the length of both slices; unaligned loads/stores.
    unsafe {
        while i + W512 <= n {
            let sum = _mm512_add_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(px.add(i)));
            _mm512_storeu_ps(pa.add(i), sum);
            i += W512;
        }
        if i < n {
            let m = tail_mask(n - i);
            let sum = _mm512_add_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, px.add(i)),
            );
            _mm512_mask_storeu_ps(pa.add(i), m, sum);
        }
    }
}

/// # Safety
/// The CPU must support AVX-512F; `acc` and `x` must have the same length.
#[target_feature(enable = "avx512f")]
pub unsafe fn max_assign_avx512(acc: &mut [f32], x: &[f32]) {
    let n = acc.len();
    let (pa, px) = (acc.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    // SAFETY: every access is below `n`, the length of both slices; unaligned loads/stores.
    unsafe {
        while i + W512 <= n {
            let max = _mm512_max_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(px.add(i)));
            _mm512_storeu_ps(pa.add(i), max);
            i += W512;
        }
        if i < n {
            let m = tail_mask(n - i);
            let max = _mm512_max_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, px.add(i)),
            );
            _mm512_mask_storeu_ps(pa.add(i), m, max);
        }
    }
}

/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn scale_avx512(x: &mut [f32], factor: f32) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let f = _mm512_set1_ps(factor);
    let mut i = 0;
    // SAFETY: every access is below `n`, the slice length; unaligned loads/stores.
    unsafe {
        while i + W512 <= n {
            _mm512_storeu_ps(p.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), f));
            i += W512;
        }
        if i < n {
            let m = tail_mask(n - i);
            let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(i)), f);
            _mm512_mask_storeu_ps(p.add(i), m, v);
        }
    }
}

/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn sum_squares_avx512(x: &[f32]) -> f32 {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: every access is below `n`, the slice length; masked lanes beyond it read nothing.
    unsafe {
        while i + W512 <= n {
            let v = _mm512_loadu_ps(p.add(i));
            acc = _mm512_fmadd_ps(v, v, acc);
            i += W512;
        }
        if i < n {
            let v = _mm512_maskz_loadu_ps(tail_mask(n - i), p.add(i));
            acc = _mm512_fmadd_ps(v, v, acc);
        }
    }
    _mm512_reduce_add_ps(acc)
}

/// # Safety
/// The CPU must support AVX2 and FMA; `acc` and `x` must have the same length.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn add_assign_avx2(acc: &mut [f32], x: &[f32]) {
    let n = acc.len();
    let (pa, px) = (acc.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    // SAFETY: every access is below `n`, the length of both slices; unaligned loads/stores.
    unsafe {
        while i + W256 <= n {
            let sum = _mm256_add_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(px.add(i)));
            _mm256_storeu_ps(pa.add(i), sum);
            i += W256;
        }
    }
    pooling_scalar::add_assign(&mut acc[i..], &x[i..]);
}

/// # Safety
/// The CPU must support AVX2 and FMA; `acc` and `x` must have the same length.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn max_assign_avx2(acc: &mut [f32], x: &[f32]) {
    let n = acc.len();
    let (pa, px) = (acc.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    // SAFETY: every access is below `n`, the length of both slices; unaligned loads/stores.
    unsafe {
        while i + W256 <= n {
            let max = _mm256_max_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(px.add(i)));
            _mm256_storeu_ps(pa.add(i), max);
            i += W256;
        }
    }
    pooling_scalar::max_assign(&mut acc[i..], &x[i..]);
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn scale_avx2(x: &mut [f32], factor: f32) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let f = _mm256_set1_ps(factor);
    let mut i = 0;
    // SAFETY: every access is below `n`, the slice length; unaligned loads/stores.
    unsafe {
        while i + W256 <= n {
            _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), f));
            i += W256;
        }
    }
    pooling_scalar::scale(&mut x[i..], factor);
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sum_squares_avx2(x: &[f32]) -> f32 {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: every access is below `n`, the slice length.
    unsafe {
        while i + W256 <= n {
            let v = _mm256_loadu_ps(p.add(i));
            acc = _mm256_fmadd_ps(v, v, acc);
            i += W256;
        }
    }
    // Horizontal sum of the eight lanes.
    let halves = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
    let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
    let total = _mm_add_ss(pairs, _mm_shuffle_ps::<0b01>(pairs, pairs));
    _mm_cvtss_f32(total) + pooling_scalar::sum_squares(&x[i..])
}
