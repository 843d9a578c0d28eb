//! Deterministic pseudo-random inputs for the kernels' unit tests, without a dependency.

/// `len` values in [-1, 1) (multiples of 0.001), the same for the same `seed`.
pub fn uniform(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}
