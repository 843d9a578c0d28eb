//! The pooling and normalisation vector ops (`add_assign`, `max_assign`, `scale`,
//! `sum_squares` in `kernels`) for aarch64 NEON (part of the base ARMv8-A profile, still
//! detected at run time for uniformity). Tails are finished with the scalar kernels.

use std::arch::aarch64::*;

use super::pooling_scalar;

const W: usize = 4;

/// # Safety
/// The CPU must support NEON; `acc` and `x` must have the same length.
#[target_feature(enable = "neon")]
pub unsafe fn add_assign(acc: &mut [f32], x: &[f32]) {
    let n = acc.len();
    let (pa, px) = (acc.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    // SAFETY: every access is below `n`, the length of both slices.
    unsafe {
        while i + W <= n {
            vst1q_f32(
                pa.add(i),
                vaddq_f32(vld1q_f32(pa.add(i)), vld1q_f32(px.add(i))),
            );
            i += W;
        }
    }
    pooling_scalar::add_assign(&mut acc[i..], &x[i..]);
}

/// # Safety
/// The CPU must support NEON; `acc` and `x` must have the same length.
#[target_feature(enable = "neon")]
pub unsafe fn max_assign(acc: &mut [f32], x: &[f32]) {
    let n = acc.len();
    let (pa, px) = (acc.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    // SAFETY: every access is below `n`, the length of both slices.
    unsafe {
        while i + W <= n {
            vst1q_f32(
                pa.add(i),
                vmaxq_f32(vld1q_f32(pa.add(i)), vld1q_f32(px.add(i))),
            );
            i += W;
        }
    }
    pooling_scalar::max_assign(&mut acc[i..], &x[i..]);
}

/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub unsafe fn scale(x: &mut [f32], factor: f32) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut i = 0;
    // SAFETY: every access is below `n`, the slice length.
    unsafe {
        while i + W <= n {
            vst1q_f32(p.add(i), vmulq_n_f32(vld1q_f32(p.add(i)), factor));
            i += W;
        }
    }
    pooling_scalar::scale(&mut x[i..], factor);
}

/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub unsafe fn sum_squares(x: &[f32]) -> f32 {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    // SAFETY: every access is below `n`, the slice length.
    unsafe {
        while i + W <= n {
            let v = vld1q_f32(p.add(i));
            acc = vfmaq_f32(acc, v, v);
            i += W;
        }
    }
    vaddvq_f32(acc) + pooling_scalar::sum_squares(&x[i..])
}
