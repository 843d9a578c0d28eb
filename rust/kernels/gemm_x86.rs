//! The x86 GEMM micro-kernels: an MR × NR tile of C held in registers over the whole K loop.
//! Callers (kernels::gemm) check the CPU features through `Isa` and hand over packed B panels.
//! AVX-512 reads A in place (the broadcast folds into the FMA; a kernel per row count keeps
//! partial tiles exact); AVX2 reads a packed K × MR tile of A.

use std::arch::x86_64::*;

/// AVX-512: 14 rows × 32 columns = 28 zmm accumulators, 2 for B, 1 broadcast (31 of 32).
pub const MR_512: usize = 14;
pub const NR_512: usize = 32;
/// Tiles of at most this many rows (a query or two) prefetch their B panel PREFETCH_STEPS
/// rows of K (4 KB) ahead: with so few rows the tile does too little arithmetic per byte of
/// weights to hide a miss, and the weights (42 MB for all-MiniLM-L6-v2) come from DRAM on
/// every call. One query: ~3% at threads=2 (1.54 -> 1.50 ms median, alternating builds).
/// Larger tiles reuse the panel from L1/L2 and skip the extra instructions.
const PREFETCH_ROWS: usize = 10;
const PREFETCH_STEPS: usize = 32;
/// AVX2: 6 rows × 16 columns = 12 ymm accumulators, 2 for B, 1 broadcast (15 of 16).
pub const MR_256: usize = 6;
pub const NR_256: usize = 16;

/// The first `n` of 16 lanes (all 16 from 16 on); also the short-attention kernel's masks.
#[inline]
pub(super) fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// `C[rows × cols] = A·B` for one tile.
///
/// # Safety
/// The CPU must support AVX2 and FMA. `a` points at a packed `k × MR_256` tile, `b` at a
/// packed `k × NR_256` panel, `c` at `rows ≤ MR_256` rows of `cols ≤ NR_256` writable floats
/// with row stride `ldc`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_avx2(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    let mut low = [_mm256_setzero_ps(); MR_256];
    let mut high = [_mm256_setzero_ps(); MR_256];
    // SAFETY: kk < k keeps every read inside the packed tile (k × 6) and panel (k × 16).
    unsafe {
        for kk in 0..k {
            let b0 = _mm256_loadu_ps(b.add(kk * NR_256));
            let b1 = _mm256_loadu_ps(b.add(kk * NR_256 + 8));
            let ak = a.add(kk * MR_256);
            for i in 0..MR_256 {
                let ai = _mm256_broadcast_ss(&*ak.add(i));
                low[i] = _mm256_fmadd_ps(ai, b0, low[i]);
                high[i] = _mm256_fmadd_ps(ai, b1, high[i]);
            }
        }
    }
    // SAFETY: full rows are stored directly; a partial row goes through a stack buffer so
    // nothing past column `cols` is written.
    unsafe {
        for i in 0..rows {
            let row = c.add(i * ldc);
            if cols == NR_256 {
                _mm256_storeu_ps(row, low[i]);
                _mm256_storeu_ps(row.add(8), high[i]);
            } else {
                let mut buffer = [0.0f32; NR_256];
                _mm256_storeu_ps(buffer.as_mut_ptr(), low[i]);
                _mm256_storeu_ps(buffer.as_mut_ptr().add(8), high[i]);
                std::ptr::copy_nonoverlapping(buffer.as_ptr(), row, cols);
            }
        }
    }
}

/// `C[R × cols] = A·B` for one tile, A read in place: row `i` at `a + i * lda`.
///
/// # Safety
/// The CPU must support AVX-512F. `a` points at `R` rows of `k` readable floats with row
/// stride `lda`, `b` at a packed `k × NR_512` panel, `c` at `R` rows of `cols ≤ NR_512`
/// writable floats with row stride `ldc`.
#[target_feature(enable = "avx512f")]
pub unsafe fn rows_avx512<const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut low = [_mm512_setzero_ps(); R];
    let mut high = [_mm512_setzero_ps(); R];
    // SAFETY: kk < k and i < R keep every read inside the rows and the panel.
    unsafe {
        for kk in 0..k {
            if R <= PREFETCH_ROWS {
                // A prefetch never faults, so running past the panel's end is harmless;
                // `wrapping_add` keeps the address arithmetic itself defined.
                let ahead = b.wrapping_add((kk + PREFETCH_STEPS) * NR_512) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            let b0 = _mm512_loadu_ps(b.add(kk * NR_512));
            let b1 = _mm512_loadu_ps(b.add(kk * NR_512 + 16));
            for i in 0..R {
                let ai = _mm512_set1_ps(*a.add(i * lda + kk));
                low[i] = _mm512_fmadd_ps(ai, b0, low[i]);
                high[i] = _mm512_fmadd_ps(ai, b1, high[i]);
            }
        }
    }
    let mask_low = lanes(cols.min(16));
    let mask_high = lanes(cols.saturating_sub(16));
    // SAFETY: only the R rows and (masked) columns < `cols` are written.
    unsafe {
        for i in 0..R {
            let row = c.add(i * ldc);
            _mm512_mask_storeu_ps(row, mask_low, low[i]);
            if cols > 16 {
                _mm512_mask_storeu_ps(row.add(16), mask_high, high[i]);
            }
        }
    }
}

/// `rows_avx512` for a run-time row count `1..=MR_512`.
///
/// # Safety
/// As `rows_avx512` with `R = rows`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn strided_tile_avx512(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    // SAFETY: forwarded from the caller with R = rows.
    unsafe {
        match rows {
            14 => rows_avx512::<14>(k, a, lda, b, c, ldc, cols),
            13 => rows_avx512::<13>(k, a, lda, b, c, ldc, cols),
            12 => rows_avx512::<12>(k, a, lda, b, c, ldc, cols),
            11 => rows_avx512::<11>(k, a, lda, b, c, ldc, cols),
            10 => rows_avx512::<10>(k, a, lda, b, c, ldc, cols),
            9 => rows_avx512::<9>(k, a, lda, b, c, ldc, cols),
            8 => rows_avx512::<8>(k, a, lda, b, c, ldc, cols),
            7 => rows_avx512::<7>(k, a, lda, b, c, ldc, cols),
            6 => rows_avx512::<6>(k, a, lda, b, c, ldc, cols),
            5 => rows_avx512::<5>(k, a, lda, b, c, ldc, cols),
            4 => rows_avx512::<4>(k, a, lda, b, c, ldc, cols),
            3 => rows_avx512::<3>(k, a, lda, b, c, ldc, cols),
            2 => rows_avx512::<2>(k, a, lda, b, c, ldc, cols),
            1 => rows_avx512::<1>(k, a, lda, b, c, ldc, cols),
            _ => {}
        }
    }
}
