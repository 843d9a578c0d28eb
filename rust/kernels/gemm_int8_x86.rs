//! The x86 int8 GEMM micro-kernels ([`Kernel`] implementations) and the row quantizers that
//! feed them: AVX-512 VNNI (`vpdpbusd`, u8 × s8 → i32; 14 × 32 tiles in 28 zmm, the shape of
//! the float32 AVX-512 kernel) and AVX2 (`vpmaddubsw` + `vpmaddwd` with 7-bit weights; 2 × 32
//! tiles). A is read from the task's quantized rows (one broadcast per row and step), B from
//! a packed panel ([`PackedI8`]). One step covers 4 values of K per lane, so per instruction
//! a tile does 4× the float32 work, and the weights it streams are 4× smaller.

use std::arch::x86_64::*;
use std::ops::Range;

use super::gemm::Kernel;
use super::gemm_int8::{with_quantized_rows, Affine, PackedI8, QuantizedRows, NR};
use super::simd_x86::{lanes, with_rows};
use super::Int8Kind;

/// Tiles of at most this many rows prefetch their panel `PREFETCH_BYTES` ahead: with a query's
/// few rows the weights come from DRAM on every call and a tile does too little work per byte
/// to hide the miss (the float32 and bfloat16 kernels do the same).
const PREFETCH_ROWS: usize = 10;
const PREFETCH_BYTES: usize = 4096;

/// The AVX-512 VNNI kernel. Exists only on CPUs with AVX-512F/BW/VL and VNNI
/// ([`Vnni512::new`]); an [`super::Int8Dot`] may hold one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Vnni512(());

impl Vnni512 {
    /// `Some` on CPUs with AVX-512F/BW/VL and AVX512-VNNI.
    pub(super) fn new() -> Option<Vnni512> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni"))
        .then_some(Vnni512(()))
    }

    /// Quantizes one row, times `smooth`, into `out` (see [`quantize_row_u8`]).
    pub(super) fn quantize_row(self, x: &[f32], smooth: &[f32], out: &mut [u8]) -> Affine {
        assert!(smooth.len() == x.len() && out.len() >= x.len());
        // SAFETY: `self` proves AVX-512F/BW/VL; the lengths are checked above.
        unsafe { quantize_row_u8(x, smooth, out) }
    }
}

impl Kernel for Vnni512 {
    type PackedB = PackedI8;
    type Rows<'a> = QuantizedRows;
    const MR: usize = 14;
    const NR: usize = NR;

    fn shape(self, b: &PackedI8) -> (usize, usize) {
        b.shape_for(Int8Kind::Vnni512(self))
    }

    fn with_rows<R>(
        self,
        a: &[f32],
        lda: usize,
        rows: Range<usize>,
        b: &PackedI8,
        f: impl FnOnce(&QuantizedRows) -> R,
    ) -> R {
        let quantize =
            |x: &[f32], smooth: &[f32], out: &mut [u8]| self.quantize_row(x, smooth, out);
        with_quantized_rows(a, lda, rows, b, quantize, f)
    }

    unsafe fn tile(
        self,
        block: &QuantizedRows,
        first: usize,
        rows: usize,
        b: &PackedI8,
        panel: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        let kq = b.kq();
        let (weights, sums, scales) = b.panel(panel);
        let a = block.bytes[first * kq..].as_ptr();
        let (row_scales, row_zeros) = (
            block.scales[first..].as_ptr(),
            block.zeros[first..].as_ptr(),
        );
        // SAFETY: `self` proves AVX-512F/BW and VNNI, and `shape` checked the weights were
        // quantized for this kernel; the caller guarantees the block holds `rows` quantized
        // rows from `first` (kq bytes, a scale and a zero point each); the panel holds
        // kq × NR bytes with NR sums and scales; `c` is a rows × cols rectangle only this task
        // writes.
        unsafe {
            with_rows!(
                rows,
                int8_rows(
                    kq,
                    a,
                    kq,
                    row_scales,
                    row_zeros,
                    weights.as_ptr(),
                    sums.as_ptr(),
                    scales.as_ptr(),
                    c,
                    ldc,
                    cols
                )
            )
        }
    }
}

/// `C[R × cols] = dequantize(A·B)` for one int8 tile: `A` u8 rows (row `i` at `a + i * lda`,
/// `kq` bytes, standing for `scales_a[i] · (q - zeros_a[i])`), `B` a packed s8 panel
/// (`kq / 4` steps of 32 columns × 4 bytes, column `j` standing for `scales_b[j] · w`).
/// `c[i][j] = (acc[i][j] - zeros_a[i] · sums[j]) · scales_a[i] · scales_b[j]`, with
/// `sums[j] = Σ_k B[k][j]`: the zero point comes out in exact integer arithmetic.
///
/// # Safety
/// The CPU must support AVX-512F/BW and VNNI. `a` points at `R` rows of `kq` (a multiple of 4)
/// readable bytes with stride `lda`, `scales_a` and `zeros_a` at `R` values each, `b` at
/// `kq × 32` bytes, `sums` and `scales_b` at 32 values each, `c` at `R` rows of `cols ≤ 32`
/// writable floats with row stride `ldc`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn int8_rows<const R: usize>(
    kq: usize,
    a: *const u8,
    lda: usize,
    scales_a: *const f32,
    zeros_a: *const i32,
    b: *const i8,
    sums: *const i32,
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
    // SAFETY: 32 sums and scales are readable (the panel's, padded); only the R rows and
    // (masked) columns < `cols` of C are written.
    unsafe {
        let sum0 = _mm512_loadu_si512(sums.cast());
        let sum1 = _mm512_loadu_si512(sums.add(16).cast());
        let (scale0, scale1) = (_mm512_loadu_ps(scales_b), _mm512_loadu_ps(scales_b.add(16)));
        let (mask_low, mask_high) = (lanes(cols.min(16)), lanes(cols.saturating_sub(16)));
        for i in 0..R {
            let row_scale = _mm512_set1_ps(*scales_a.add(i));
            let row_zero = _mm512_set1_epi32(*zeros_a.add(i));
            let row = c.add(i * ldc);
            let exact = _mm512_sub_epi32(low[i], _mm512_mullo_epi32(sum0, row_zero));
            let value = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(scale0, row_scale));
            _mm512_mask_storeu_ps(row, mask_low, value);
            if cols > 16 {
                let exact = _mm512_sub_epi32(high[i], _mm512_mullo_epi32(sum1, row_zero));
                let scale = _mm512_mul_ps(scale1, row_scale);
                let value = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), scale);
                _mm512_mask_storeu_ps(row.add(16), mask_high, value);
            }
        }
    }
}

/// Quantizes one row, smoothed per channel, to u8 over its own range (asymmetric, per token):
/// `out[j] = round(x[j] · smooth[j] / scale) + zero` (see [`Affine`]); pads `out` past
/// `x.len()` with `zero` (the weights there are 0). A row of GELU outputs spans about
/// [-0.17, max]: its own range gives it nearly twice the steps a symmetric ±max would.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL; `smooth.len() == x.len() <= out.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_row_u8(x: &[f32], smooth: &[f32], out: &mut [u8]) -> Affine {
    let n = x.len();
    // SAFETY: masked loads read only lanes < n of x and smooth (both n long); masked stores
    // write only bytes < n ≤ out.len().
    unsafe {
        let load = |start: usize| {
            let mask = lanes(n - start);
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(start));
            (
                mask,
                _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, smooth.as_ptr().add(start))),
            )
        };
        let (mut low, mut high) = (
            _mm512_set1_ps(f32::INFINITY),
            _mm512_set1_ps(f32::NEG_INFINITY),
        );
        for start in (0..n).step_by(16) {
            let (mask, v) = load(start);
            low = _mm512_mask_min_ps(low, mask, low, v);
            high = _mm512_mask_max_ps(high, mask, high, v);
        }
        let (min, max) = (_mm512_reduce_min_ps(low), _mm512_reduce_max_ps(high));
        let affine = Affine::of_range(min, max);
        let (inverse, zero) = (
            _mm512_set1_ps(affine.inverse),
            _mm512_set1_epi32(affine.zero),
        );
        for start in (0..n).step_by(16) {
            let (mask, v) = load(start);
            // Round to nearest even (the default MXCSR mode), as `round_ties_even` does;
            // clamped at 0, then saturated to 255 by the conversion to bytes.
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, inverse)), zero);
            let bytes = _mm512_cvtusepi32_epi8(_mm512_max_epi32(q, _mm512_setzero_si512()));
            _mm_mask_storeu_epi8(out.as_mut_ptr().add(start).cast(), mask, bytes);
        }
        out[n..].fill(affine.zero as u8);
        affine
    }
}

/// The AVX2 int8 kernel, for CPUs without VNNI. Exists only on CPUs with AVX2 and FMA
/// ([`Avx2::new`]); an [`super::Int8Dot`] may hold one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Avx2(());

impl Avx2 {
    /// `Some` on CPUs with AVX2 and FMA.
    pub(super) fn new() -> Option<Avx2> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }

    /// Quantizes one row, times `smooth`, into `out` (see [`quantize_row_u8_avx2`]).
    pub(super) fn quantize_row(self, x: &[f32], smooth: &[f32], out: &mut [u8]) -> Affine {
        assert!(smooth.len() == x.len() && out.len() >= x.len());
        // SAFETY: `self` proves AVX2; the lengths are checked above.
        unsafe { quantize_row_u8_avx2(x, smooth, out) }
    }
}

impl Kernel for Avx2 {
    type PackedB = PackedI8;
    type Rows<'a> = QuantizedRows;
    /// 2 rows × 32 columns are 8 ymm accumulators, plus the two rows' broadcasts, a B vector,
    /// a product and the ones of `vpmaddwd` (13 of 16 registers).
    const MR: usize = 2;
    const NR: usize = NR;

    fn shape(self, b: &PackedI8) -> (usize, usize) {
        b.shape_for(Int8Kind::Avx2(self))
    }

    fn with_rows<R>(
        self,
        a: &[f32],
        lda: usize,
        rows: Range<usize>,
        b: &PackedI8,
        f: impl FnOnce(&QuantizedRows) -> R,
    ) -> R {
        let quantize =
            |x: &[f32], smooth: &[f32], out: &mut [u8]| self.quantize_row(x, smooth, out);
        with_quantized_rows(a, lda, rows, b, quantize, f)
    }

    unsafe fn tile(
        self,
        block: &QuantizedRows,
        first: usize,
        rows: usize,
        b: &PackedI8,
        panel: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        let kq = b.kq();
        let (weights, sums, scales) = b.panel(panel);
        let a = block.bytes[first * kq..].as_ptr();
        let (row_scales, row_zeros) = (
            block.scales[first..].as_ptr(),
            block.zeros[first..].as_ptr(),
        );
        let args = (weights.as_ptr(), sums.as_ptr(), scales.as_ptr());
        // SAFETY: `self` proves AVX2, and `shape` checked the weights were quantized for this
        // kernel (within ±63); otherwise as for `Vnni512::tile`.
        unsafe {
            match rows {
                2 => int8_rows_avx2::<2>(
                    kq, a, kq, row_scales, row_zeros, args.0, args.1, args.2, c, ldc, cols,
                ),
                1 => int8_rows_avx2::<1>(
                    kq, a, kq, row_scales, row_zeros, args.0, args.1, args.2, c, ldc, cols,
                ),
                _ => {}
            }
        }
    }
}

/// `int8_rows` without VNNI: `vpmaddubsw` multiplies u8 × s8 and adds pairs into i16, then
/// `vpmaddwd` by ones adds pairs of those into the i32 lane, which is `vpdpbusd`'s sum as long
/// as no i16 pair sum saturates: with weights within ±63, `2 · 255 · 63 = 32130 < 32767`.
///
/// # Safety
/// The CPU must support AVX2. As `int8_rows`, and every weight in the panel within ±63.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // acc[row][group]: 2-D
unsafe fn int8_rows_avx2<const R: usize>(
    kq: usize,
    a: *const u8,
    lda: usize,
    scales_a: *const f32,
    zeros_a: *const i32,
    b: *const i8,
    sums: *const i32,
    scales_b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 4]; R];
    // SAFETY: step < kq / 4 and i < R keep every read inside the rows and the panel.
    unsafe {
        for step in 0..kq / 4 {
            let panel = b.add(step * 4 * NR);
            let mut quads = [_mm256_setzero_si256(); R];
            for (i, quad) in quads.iter_mut().enumerate() {
                *quad = _mm256_set1_epi32(a.add(i * lda + step * 4).cast::<i32>().read_unaligned());
            }
            for group in 0..4 {
                let weights = _mm256_loadu_si256(panel.add(32 * group).cast());
                for i in 0..R {
                    let pairs = _mm256_maddubs_epi16(quads[i], weights);
                    let sums = _mm256_madd_epi16(pairs, ones);
                    acc[i][group] = _mm256_add_epi32(acc[i][group], sums);
                }
            }
        }
    }
    // SAFETY: 32 sums and scales are readable (the panel's, padded); only the R rows and
    // columns < `cols` of C are written (a partial row goes through a stack buffer).
    unsafe {
        for (i, row_acc) in acc.iter().enumerate() {
            let row_scale = _mm256_set1_ps(*scales_a.add(i));
            let row_zero = _mm256_set1_epi32(*zeros_a.add(i));
            let mut values = [0.0f32; NR];
            for (group, &dots) in row_acc.iter().enumerate() {
                let sum = _mm256_loadu_si256(sums.add(8 * group).cast());
                let exact = _mm256_sub_epi32(dots, _mm256_mullo_epi32(sum, row_zero));
                let scale = _mm256_mul_ps(_mm256_loadu_ps(scales_b.add(8 * group)), row_scale);
                let value = _mm256_mul_ps(_mm256_cvtepi32_ps(exact), scale);
                _mm256_storeu_ps(values.as_mut_ptr().add(8 * group), value);
            }
            std::ptr::copy_nonoverlapping(values.as_ptr(), c.add(i * ldc), cols);
        }
    }
}

/// `quantize_row_u8` for AVX2 CPUs; the same bytes, scale and minimum.
///
/// # Safety
/// The CPU must support AVX2; `smooth.len() == x.len() <= out.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_row_u8_avx2(x: &[f32], smooth: &[f32], out: &mut [u8]) -> Affine {
    let n = x.len();
    let full = n / 8 * 8;
    // SAFETY: vector loads read x and smooth at start + 8 <= full <= n; stores write bytes
    // start..start + 8 <= full <= out.len().
    unsafe {
        let load = |start: usize| {
            _mm256_mul_ps(
                _mm256_loadu_ps(x.as_ptr().add(start)),
                _mm256_loadu_ps(smooth.as_ptr().add(start)),
            )
        };
        let (mut low, mut high) = (
            _mm256_set1_ps(f32::INFINITY),
            _mm256_set1_ps(f32::NEG_INFINITY),
        );
        for start in (0..full).step_by(8) {
            let v = load(start);
            low = _mm256_min_ps(low, v);
            high = _mm256_max_ps(high, v);
        }
        let (mut lows, mut highs) = ([0.0f32; 8], [0.0f32; 8]);
        _mm256_storeu_ps(lows.as_mut_ptr(), low);
        _mm256_storeu_ps(highs.as_mut_ptr(), high);
        let tail: Vec<f32> = x[full..]
            .iter()
            .zip(&smooth[full..])
            .map(|(&v, &s)| v * s)
            .collect();
        let min = lows
            .iter()
            .chain(&tail)
            .fold(f32::INFINITY, |m, &v| m.min(v));
        let max = highs
            .iter()
            .chain(&tail)
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let affine = Affine::of_range(min, max);
        let inverse = _mm256_set1_ps(affine.inverse);
        let zero = _mm256_set1_epi32(affine.zero);
        for start in (0..full).step_by(8) {
            // Round to nearest even (the default MXCSR mode), as `round_ties_even` does.
            let q = _mm256_cvtps_epi32(_mm256_mul_ps(load(start), inverse));
            let q = _mm256_add_epi32(q, zero);
            // Packing to i16, then u8 (saturating to 0..=255), leaves each 128-bit half's
            // four bytes in its first dword.
            let words = _mm256_packs_epi32(q, q);
            let bytes = _mm256_packus_epi16(words, words);
            let low = _mm256_extract_epi32::<0>(bytes);
            let high = _mm256_extract_epi32::<4>(bytes);
            out.as_mut_ptr()
                .add(start)
                .cast::<i32>()
                .write_unaligned(low);
            out.as_mut_ptr()
                .add(start + 4)
                .cast::<i32>()
                .write_unaligned(high);
        }
        for (slot, &v) in out[full..n].iter_mut().zip(&tail) {
            *slot = affine.quantize(v);
        }
        out[n..].fill(affine.zero as u8);
        affine
    }
}
