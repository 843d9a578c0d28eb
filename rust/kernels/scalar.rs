//! Plain-Rust kernels: the fallback on CPUs without the SIMD extensions, and the reference the
//! SIMD kernels are tested against.

pub fn add_assign(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}

pub fn max_assign(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = a.max(v);
    }
}

pub fn scale(x: &mut [f32], factor: f32) {
    for v in x {
        *v *= factor;
    }
}

pub fn sum_squares(x: &[f32]) -> f32 {
    x.iter().map(|&v| v * v).sum()
}
