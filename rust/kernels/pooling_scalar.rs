//! The pooling and normalisation vector ops in plain Rust: the fallback on CPUs without the
//! SIMD extensions, and the reference `pooling_x86` and `pooling_neon` are tested against.

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
