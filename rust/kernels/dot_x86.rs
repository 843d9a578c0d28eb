//! The reduced-precision x86 micro-kernels: int8 (AVX-512 VNNI `vpdpbusd`, u8 × s8 → i32) and
//! bfloat16 (AVX512-BF16 `vdpbf16ps`, bf16 pairs → f32), plus the row conversions that feed
//! them. Same shape as the float32 AVX-512 kernel in `gemm_x86`: a tile of R ≤ 14 rows × 32
//! columns in 28 zmm accumulators over the whole K loop, A read in place (one broadcast per
//! row and step, folded into the dot product), B from a packed panel. One step covers 4 (int8)
//! or 2 (bf16) values of K per lane, so per instruction a tile does 4× or 2× the float32 work,
//! and the weights it streams are 4× or 2× smaller.

use std::arch::x86_64::*;

use super::gemm_x86::lanes;

/// Rows × columns of one register tile (both kernels).
pub const MR: usize = 14;
pub const NR: usize = 32;
/// Tiles of at most this many rows prefetch their panel `PREFETCH_BYTES` ahead: with a query's
/// few rows the weights come from DRAM on every call and a tile does too little work per byte
/// to hide the miss (the float32 kernel does the same, see `gemm_x86`).
const PREFETCH_ROWS: usize = 10;
const PREFETCH_BYTES: usize = 4096;

/// `C[R × cols] = dequantize(A·B)` for one int8 tile: `A` u8 rows (row `i` at `a + i * lda`,
/// `kq` bytes, each value offset by +128), `B` a packed s8 panel (`kq / 4` steps of 32 columns
/// × 4 bytes). `c[i][j] = (acc[i][j] - offsets[j]) * scales_a[i] * scales_b[j]`, where
/// `offsets[j] = 128 · Σ_k B[k][j]` removes the +128 of A.
///
/// # Safety
/// The CPU must support AVX-512F/BW and VNNI. `a` points at `R` rows of `kq` (a multiple of 4)
/// readable bytes with stride `lda`, `scales_a` at `R` floats, `b` at `kq × 32` bytes,
/// `offsets` and `scales_b` at 32 values each, `c` at `R` rows of `cols ≤ 32` writable floats
/// with row stride `ldc`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn int8_rows<const R: usize>(
    kq: usize,
    a: *const u8,
    lda: usize,
    scales_a: *const f32,
    b: *const i8,
    offsets: *const i32,
    scales_b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut low = [_mm512_setzero_si512(); R];
    let mut high = [_mm512_setzero_si512(); R];
    // SAFETY: step < kq / 4 and i < R keep every read inside the rows and the panel; a
    // prefetch never faults, and `wrapping_add` keeps its address arithmetic defined.
    unsafe {
        for step in 0..kq / 4 {
            let panel = b.add(step * 4 * NR);
            if R <= PREFETCH_ROWS {
                let ahead = panel.wrapping_add(PREFETCH_BYTES);
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            let b0 = _mm512_loadu_si512(panel.cast());
            let b1 = _mm512_loadu_si512(panel.add(64).cast());
            for i in 0..R {
                let quad = a.add(i * lda + step * 4).cast::<i32>().read_unaligned();
                let ai = _mm512_set1_epi32(quad);
                low[i] = _mm512_dpbusd_epi32(low[i], ai, b0);
                high[i] = _mm512_dpbusd_epi32(high[i], ai, b1);
            }
        }
    }
    // SAFETY: 32 offsets and scales are readable (the panel's, padded); only the R rows and
    // (masked) columns < `cols` of C are written.
    unsafe {
        let (offset0, offset1) = (
            _mm512_loadu_si512(offsets.cast()),
            _mm512_loadu_si512(offsets.add(16).cast()),
        );
        let (scale0, scale1) = (_mm512_loadu_ps(scales_b), _mm512_loadu_ps(scales_b.add(16)));
        let (mask_low, mask_high) = (lanes(cols.min(16)), lanes(cols.saturating_sub(16)));
        for i in 0..R {
            let row_scale = _mm512_set1_ps(*scales_a.add(i));
            let row = c.add(i * ldc);
            let value = _mm512_cvtepi32_ps(_mm512_sub_epi32(low[i], offset0));
            let value = _mm512_mul_ps(value, _mm512_mul_ps(scale0, row_scale));
            _mm512_mask_storeu_ps(row, mask_low, value);
            if cols > 16 {
                let value = _mm512_cvtepi32_ps(_mm512_sub_epi32(high[i], offset1));
                let value = _mm512_mul_ps(value, _mm512_mul_ps(scale1, row_scale));
                _mm512_mask_storeu_ps(row.add(16), mask_high, value);
            }
        }
    }
}

/// `C[R × cols] = A·B` for one bfloat16 tile: `A` bf16 rows (row `i` at `a + i * lda`,
/// `pairs` pairs), `B` a packed panel (`pairs` steps of 32 columns × 2 bf16), accumulated in
/// f32.
///
/// # Safety
/// The CPU must support AVX-512F/BW and BF16. `a` points at `R` rows of `2 * pairs` readable
/// bf16 with stride `lda`, `b` at `pairs × 64` bf16, `c` at `R` rows of `cols ≤ 32` writable
/// floats with row stride `ldc`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn bf16_rows<const R: usize>(
    pairs: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut low = [_mm512_setzero_ps(); R];
    let mut high = [_mm512_setzero_ps(); R];
    // SAFETY: step < pairs and i < R keep every read inside the rows and the panel; prefetches
    // never fault. `__m512i` and `__m512bh` are both 64 plain bytes, so the transmutes only
    // retype the same bits.
    unsafe {
        for step in 0..pairs {
            let panel = b.add(step * 2 * NR);
            if R <= PREFETCH_ROWS {
                let ahead = panel.cast::<i8>().wrapping_add(PREFETCH_BYTES);
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(panel.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(panel.add(32).cast()));
            for i in 0..R {
                let pair = a.add(i * lda + step * 2).cast::<i32>().read_unaligned();
                let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                low[i] = _mm512_dpbf16_ps(low[i], ai, b0);
                high[i] = _mm512_dpbf16_ps(high[i], ai, b1);
            }
        }
    }
    // SAFETY: only the R rows and (masked) columns < `cols` are written.
    unsafe {
        let (mask_low, mask_high) = (lanes(cols.min(16)), lanes(cols.saturating_sub(16)));
        for i in 0..R {
            let row = c.add(i * ldc);
            _mm512_mask_storeu_ps(row, mask_low, low[i]);
            if cols > 16 {
                _mm512_mask_storeu_ps(row.add(16), mask_high, high[i]);
            }
        }
    }
}

/// Quantizes one row, smoothed per channel, to u8 with one symmetric scale:
/// `out[j] = round(x[j] * smooth[j] / scale) + 128`, `scale = max|x * smooth| / 127`, and pads
/// `out` past `x.len()` with 128 (zero). Returns the scale (0 for an all-zero row, whose bytes
/// are all 128).
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL; `smooth.len() == x.len() <= out.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn quantize_row_u8(x: &[f32], smooth: &[f32], out: &mut [u8]) -> f32 {
    let n = x.len();
    // SAFETY: masked loads read only lanes < n of x and smooth (both n long); masked stores
    // write only bytes < n ≤ out.len().
    unsafe {
        let load = |start: usize| {
            let mask = lanes(n - start);
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(start));
            _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, smooth.as_ptr().add(start)))
        };
        let mut max = _mm512_setzero_ps();
        for start in (0..n).step_by(16) {
            max = _mm512_max_ps(max, _mm512_abs_ps(load(start)));
        }
        let max = _mm512_reduce_max_ps(max);
        if max == 0.0 || !max.is_finite() {
            // A non-finite row has no meaningful scale; zeros keep the output finite.
            out.fill(128);
            return 0.0;
        }
        let inverse = _mm512_set1_ps(127.0 / max);
        let bias = _mm512_set1_epi32(128);
        for start in (0..n).step_by(16) {
            // Round to nearest even (the default MXCSR mode), as `round_ties_even` does.
            let q = _mm512_cvtps_epi32(_mm512_mul_ps(load(start), inverse));
            let bytes = _mm512_cvtusepi32_epi8(_mm512_add_epi32(q, bias));
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(start).cast(), lanes(n - start), bytes);
        }
        out[n..].fill(128);
        max / 127.0
    }
}

/// Converts one row to bf16 (round to nearest even), zero-padding `out` past `x.len()`.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL and BF16; `out.len() >= x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub unsafe fn bf16_row(x: &[f32], out: &mut [u16]) {
    let n = x.len();
    // SAFETY: masked loads read only lanes < n; masked stores write only elements < n. The
    // transmute retypes 32 bytes of bf16 as a 256-bit integer vector.
    unsafe {
        for start in (0..n).step_by(16) {
            let mask = lanes(n - start);
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(start));
            let halves: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_mask_storeu_epi16(out.as_mut_ptr().add(start).cast(), mask, halves);
        }
        out[n..].fill(0);
    }
}

/// Calls `kernel::<R>(args)` for a run-time row count `R` in `1..=MR` (nothing for others):
/// a kernel per row count keeps partial tiles exact and every accumulator in a register.
macro_rules! with_rows {
    ($rows:expr, $kernel:ident($($arg:expr),* $(,)?)) => {
        match $rows {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            6 => $kernel::<6>($($arg),*),
            7 => $kernel::<7>($($arg),*),
            8 => $kernel::<8>($($arg),*),
            9 => $kernel::<9>($($arg),*),
            10 => $kernel::<10>($($arg),*),
            11 => $kernel::<11>($($arg),*),
            12 => $kernel::<12>($($arg),*),
            13 => $kernel::<13>($($arg),*),
            14 => $kernel::<14>($($arg),*),
            _ => {}
        }
    };
}

/// `int8_rows` for a run-time row count `1..=MR`.
///
/// # Safety
/// As `int8_rows` with `R = rows`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn int8_tile(
    rows: usize,
    kq: usize,
    a: *const u8,
    lda: usize,
    scales_a: *const f32,
    b: *const i8,
    offsets: *const i32,
    scales_b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    // SAFETY: forwarded from the caller with R = rows.
    unsafe {
        with_rows!(
            rows,
            int8_rows(kq, a, lda, scales_a, b, offsets, scales_b, c, ldc, cols)
        )
    }
}

/// `bf16_rows` for a run-time row count `1..=MR`.
///
/// # Safety
/// As `bf16_rows` with `R = rows`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn bf16_tile(
    rows: usize,
    pairs: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    // SAFETY: forwarded from the caller with R = rows.
    unsafe { with_rows!(rows, bf16_rows(pairs, a, lda, b, c, ldc, cols)) }
}
