//! Single-precision GEMM for the encoder's fixed shapes: `C = A·B (+ epilogue)` with `B` packed
//! once (weights at load, or K/V per attention head) and `A` the activations, row-major.
//!
//! Why our own: Candle's CPU matmul (the `gemm` crate) repacks the weights on every call, runs
//! single-threaded below a size threshold and reached ~45 GFLOP/s per core on these shapes,
//! half of what a Zen 4 core does (2 × 256-bit FMA per cycle, ~95 GFLOP/s). The micro-kernels
//! keep an MR × NR tile of C in registers over the whole K loop (AVX-512: 14 × 32 in 28 zmm,
//! AVX2: 6 × 16 in 12 ymm), reading B from a contiguous K × NR panel and A row by row (AVX2:
//! from a packed K × MR tile), so each step is one broadcast and two loads per row of FMAs.
//! Bias, activation and residual are applied per row of a task's block while it is in L2.
//!
//! Work is split into (row block × column range) tasks on the caller's rayon pool: row blocks
//! when there are many rows, column ranges when there are few (one query), so both threads
//! have work either way.

use std::ops::Range;

use rayon::prelude::*;

use super::{vecmath, Activation, Isa, Kind};

#[cfg(target_arch = "x86_64")]
use super::gemm_x86;

/// A `K × N` matrix packed in panels of `nr` columns: panel `p` holds rows `0..K` of columns
/// `p*nr .. p*nr+nr` contiguously (`K × nr`), zero-padded past `N`.
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    nr: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs `b[kk * ldb + j]` (row-major `K × N`) for the kernels of `isa`.
    pub fn from_rows(isa: Isa, b: &[f32], k: usize, n: usize, ldb: usize) -> PackedB {
        let mut packed = PackedB::empty(isa, k, n);
        packed.refill_rows(b, k, n, ldb);
        packed
    }

    /// Packs the transpose of `bt` (row-major `N × K`, e.g. a Linear weight [out, in] or the
    /// keys of one head): column `j` of B is row `j` of `bt`.
    pub fn from_transposed(isa: Isa, bt: &[f32], k: usize, n: usize, ldbt: usize) -> PackedB {
        let mut packed = PackedB::empty(isa, k, n);
        packed.refill_transposed(bt, k, n, ldbt);
        packed
    }

    /// An unfilled packing buffer, to be refilled with `refill_*` (reused per attention head).
    pub fn empty(isa: Isa, k: usize, n: usize) -> PackedB {
        let nr = tile(isa).1;
        let panels = n.div_ceil(nr);
        PackedB {
            k,
            n,
            nr,
            data: vec![0.0; panels * k * nr],
        }
    }

    /// Repacks from a row-major `K × N` source (no allocation when it fits). Attention repacks
    /// V for every (sequence, head), so this copies whole row pieces, not element by element.
    pub fn refill_rows(&mut self, b: &[f32], k: usize, n: usize, ldb: usize) {
        self.reshape(k, n);
        let nr = self.nr;
        for (p, panel) in self.panels_mut() {
            let (first, width) = (p * nr, nr.min(n - p * nr));
            for (kk, row) in panel.chunks_exact_mut(nr).enumerate() {
                let source = &b[kk * ldb + first..][..width];
                row[..width].copy_from_slice(source);
                row[width..].fill(0.0);
            }
        }
    }

    /// Repacks from the transpose of a row-major `N × K` source (no allocation when it fits).
    /// Reads each source row once, contiguously (it is a key vector or a weight row), and
    /// scatters it down its column of the panel, which stays in L1.
    pub fn refill_transposed(&mut self, bt: &[f32], k: usize, n: usize, ldbt: usize) {
        self.reshape(k, n);
        let nr = self.nr;
        for (p, panel) in self.panels_mut() {
            let (first, width) = (p * nr, nr.min(n - p * nr));
            if width < nr {
                panel.fill(0.0);
            }
            for jj in 0..width {
                let source = &bt[(first + jj) * ldbt..][..k];
                for (kk, &value) in source.iter().enumerate() {
                    panel[kk * nr + jj] = value;
                }
            }
        }
    }

    /// The panels covering the current `N`, each `K × nr`, with their index.
    fn panels_mut(&mut self) -> impl Iterator<Item = (usize, &mut [f32])> {
        let panels = self.n.div_ceil(self.nr);
        self.data
            .chunks_exact_mut(self.k * self.nr)
            .take(panels)
            .enumerate()
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    fn reshape(&mut self, k: usize, n: usize) {
        self.k = k;
        self.n = n;
        let needed = n.div_ceil(self.nr) * k * self.nr;
        if self.data.len() < needed {
            self.data.resize(needed, 0.0);
        }
    }

    fn panel(&self, p: usize) -> &[f32] {
        let size = self.k * self.nr;
        &self.data[p * size..(p + 1) * size]
    }
}

/// What happens to a tile of `A·B` before it is stored.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    /// `C = A·B`.
    None,
    /// `C = A·B + bias`.
    Bias(&'a [f32]),
    /// `C = activation(A·B + bias)`.
    BiasActivation {
        bias: &'a [f32],
        activation: Activation,
    },
    /// `C = A·B + bias + residual`, `residual` laid out like C (row stride `ldr`).
    BiasResidual {
        bias: &'a [f32],
        residual: &'a [f32],
        ldr: usize,
    },
}

/// (MR, NR): the register tile of the micro-kernel `isa` runs.
fn tile(isa: Isa) -> (usize, usize) {
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => (gemm_x86::MR_512, gemm_x86::NR_512),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2Fma => (gemm_x86::MR_256, gemm_x86::NR_256),
        _ => (SCALAR_MR, SCALAR_NR),
    }
}

const SCALAR_MR: usize = 4;
const SCALAR_NR: usize = 8;

/// Rows of A packed and run per task: a few register tiles, so a B panel read from L2 serves
/// several of them and a task is big enough to amortise scheduling.
const ROW_TILES_PER_BLOCK: usize = 4;

/// Tasks per thread a GEMM is cut into at least (by columns when rows are few), so rayon's
/// stealing can even out the shares: with one or two tasks per thread, one task more or less
/// is a large imbalance. Attention groups its heads to the same count.
pub(crate) const TASKS_PER_THREAD: usize = 8;

/// `C[m × n] = epilogue(A[m × k] · B)`, `A` row-major with row stride `lda`, `C` with `ldc`.
/// Runs on the current rayon pool when `parallel` (the encoder's own pool); the caller
/// guarantees the slices cover the rows and columns named.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue,
    parallel: bool,
) {
    if m == 0 || b.n == 0 {
        return;
    }
    assert!(ldc >= b.n && c.len() >= (m - 1) * ldc + b.n);
    // SAFETY: `c` is an exclusive borrow covering every element written (asserted above).
    unsafe { matmul_to(isa, a, lda, m, b, c.as_mut_ptr(), ldc, epilogue, parallel) }
}

/// `matmul` writing through a raw pointer, for callers whose outputs interleave with other
/// writers' (attention heads write disjoint column ranges of the same rows).
///
/// # Safety
/// `c` must point at `m` rows of `b.n()` writable floats with row stride `ldc >= b.n()`, and
/// no one else may access those elements during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_to(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
    parallel: bool,
) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        b.nr == tile(isa).1,
        "B was packed for another instruction set"
    );
    assert!(lda >= k && ldc >= n && a.len() >= (m - 1) * lda + k);
    check_epilogue(&epilogue, m, n);

    let (mr, nr) = tile(isa);
    let body = |rows: Range<usize>, panels: Range<usize>, c: *mut f32| {
        if strided_a(isa) {
            for p in panels {
                let columns = p * nr..((p + 1) * nr).min(n);
                for row0 in rows.clone().step_by(mr) {
                    let tile_rows = mr.min(rows.end - row0);
                    // SAFETY: the task owns rows × panels of C (see `run_tasks`); A holds
                    // rows row0..row0+tile_rows of k floats.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        gemm_x86::strided_tile_avx512(
                            k,
                            a.as_ptr().add(row0 * lda),
                            lda,
                            b.panel(p).as_ptr(),
                            c.add(row0 * ldc + columns.start),
                            ldc,
                            tile_rows,
                            columns.len(),
                        );
                    }
                }
            }
        } else {
            let mut packed_a = vec![0.0f32; rows.len().div_ceil(mr) * mr * k];
            pack_a(
                &a[rows.start * lda..],
                lda,
                rows.len(),
                k,
                mr,
                &mut packed_a,
            );
            for p in panels {
                let columns = p * nr..((p + 1) * nr).min(n);
                for (t, tile_a) in packed_a.chunks_exact(mr * k).enumerate() {
                    let row0 = rows.start + t * mr;
                    // SAFETY: the task owns rows × panels of C (see `run_tasks`).
                    let c_tile = unsafe { c.add(row0 * ldc + columns.start) };
                    let tile_rows = mr.min(rows.end - row0);
                    run_tile(
                        isa,
                        tile_a,
                        b.panel(p),
                        k,
                        c_tile,
                        ldc,
                        tile_rows,
                        columns.len(),
                    );
                }
            }
        }
    };
    // SAFETY: forwarded from the caller (C covers m rows × n columns, ours alone); `body`
    // writes only its task's rectangle.
    unsafe { run_tasks(isa, m, n, mr, nr, c, ldc, &epilogue, parallel, body) }
}

/// Cuts a GEMM of `m` rows × `n` columns (panels of `nr`, register tiles of `mr` rows) into
/// (row block × panel range) tasks, runs `body(rows, panels, c)` for each on the current rayon
/// pool when `parallel`, then finishes each task's rectangle with `epilogue` while it is in
/// L2. Shared by the float32, bfloat16 and int8 GEMMs, which differ only in their tiles.
///
/// # Safety
/// `c` must point at `m` rows of `n` writable floats with row stride `ldc`, which no one else
/// accesses during the call; `body` may write only its task's rows × panels of C.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run_tasks(
    isa: Isa,
    m: usize,
    n: usize,
    mr: usize,
    nr: usize,
    c: *mut f32,
    ldc: usize,
    epilogue: &Epilogue,
    parallel: bool,
    body: impl Fn(Range<usize>, Range<usize>, *mut f32) + Sync,
) {
    let block_rows = mr * ROW_TILES_PER_BLOCK;
    let row_blocks = m.div_ceil(block_rows);
    let panels = n.div_ceil(nr);
    // Few row blocks (short batches, a single query): split the columns too. A batch of 32
    // short sentences is ~9 row blocks, which 2 threads share 5 : 4; with every block halved
    // by columns the shares differ by half a block instead of a whole one.
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let column_splits = if threads == 1 || row_blocks >= TASKS_PER_THREAD * threads {
        1
    } else {
        (TASKS_PER_THREAD * threads)
            .div_ceil(row_blocks)
            .min(panels)
    };
    let panels_per_split = panels.div_ceil(column_splits);
    let tasks = row_blocks * column_splits;

    let c_addr = c as usize;
    let run = |task: usize| {
        let (block, split) = (task / column_splits, task % column_splits);
        let rows = block * block_rows..((block + 1) * block_rows).min(m);
        let first_panel = split * panels_per_split;
        let last_panel = ((split + 1) * panels_per_split).min(panels);
        if first_panel >= last_panel {
            return;
        }
        // Tasks cover disjoint (rows, columns) rectangles of C, so no two threads touch the
        // same element; each rectangle lies inside the m × n block the caller vouched for.
        body(rows.clone(), first_panel..last_panel, c_addr as *mut f32);
        if !matches!(epilogue, Epilogue::None) {
            let (start, end) = (first_panel * nr, (last_panel * nr).min(n));
            for row in rows {
                // SAFETY: as above; columns start..end of this row belong to this task.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        (c_addr as *mut f32).add(row * ldc + start),
                        end - start,
                    )
                };
                apply_epilogue(isa, out, epilogue, row, start);
            }
        }
    };
    if parallel && tasks > 1 && threads > 1 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        (0..tasks).for_each(run);
    }
}

pub(super) fn check_epilogue(epilogue: &Epilogue, m: usize, n: usize) {
    match *epilogue {
        Epilogue::None => {}
        Epilogue::Bias(bias) | Epilogue::BiasActivation { bias, .. } => assert!(bias.len() >= n),
        Epilogue::BiasResidual {
            bias,
            residual,
            ldr,
        } => {
            assert!(bias.len() >= n && ldr >= n && residual.len() >= (m - 1) * ldr + n);
        }
    }
}

/// Packs `rows` rows of A into consecutive `k × mr` tiles (`tile[kk * mr + i]`), zero rows
/// past the end, so the kernel broadcasts from one contiguous stream.
fn pack_a(a: &[f32], lda: usize, rows: usize, k: usize, mr: usize, out: &mut [f32]) {
    for (t, tile) in out.chunks_exact_mut(mr * k).enumerate() {
        for i in 0..mr {
            let row = t * mr + i;
            if row < rows {
                let src = &a[row * lda..row * lda + k];
                for (kk, &v) in src.iter().enumerate() {
                    tile[kk * mr + i] = v;
                }
            } else {
                for kk in 0..k {
                    tile[kk * mr + i] = 0.0;
                }
            }
        }
    }
}

fn strided_a(isa: Isa) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa.0 == Kind::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        false
    }
}

/// `out` = one row's columns `col0..col0 + out.len()` of C, finished in place.
fn apply_epilogue(isa: Isa, out: &mut [f32], epilogue: &Epilogue, row: usize, col0: usize) {
    let cols = out.len();
    match *epilogue {
        Epilogue::None => {}
        Epilogue::Bias(bias) => vecmath::add(isa, out, &bias[col0..col0 + cols]),
        Epilogue::BiasActivation { bias, activation } => {
            vecmath::bias_activation(isa, out, &bias[col0..col0 + cols], activation)
        }
        Epilogue::BiasResidual {
            bias,
            residual,
            ldr,
        } => {
            let start = row * ldr + col0;
            vecmath::add2(
                isa,
                out,
                &bias[col0..col0 + cols],
                &residual[start..start + cols],
            );
        }
    }
}

/// One register tile of the packed-A kernels (AVX2, portable).
#[allow(clippy::too_many_arguments)]
fn run_tile(
    isa: Isa,
    a: &[f32],
    b: &[f32],
    k: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    // SAFETY: `isa` is supported by this CPU (an `Isa` proves it); `a` is a packed k × MR
    // tile and `b` a packed k × NR panel of this ISA's shape (asserted in `matmul_to`); `c`
    // points at a rows × cols rectangle of C with row stride ldc that only this task writes.
    unsafe {
        match isa.0 {
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2Fma => gemm_x86::tile_avx2(k, a.as_ptr(), b.as_ptr(), c, ldc, rows, cols),
            _ => tile_scalar(k, a, b, c, ldc, rows, cols),
        }
    }
}

/// The portable micro-kernel (any CPU): a 4 × 8 tile, plain loops the compiler vectorises.
///
/// # Safety
/// `c` must point at `rows` rows of `cols` writable floats with row stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_scalar(
    k: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    let mut acc = [[0.0f32; SCALAR_NR]; SCALAR_MR];
    for kk in 0..k {
        let bk = &b[kk * SCALAR_NR..(kk + 1) * SCALAR_NR];
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let aik = a[kk * SCALAR_MR + i];
            for (slot, &bv) in acc_row.iter_mut().zip(bk) {
                *slot += aik * bv;
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate().take(rows) {
        for (j, &v) in acc_row.iter().enumerate().take(cols) {
            // SAFETY: i < rows and j < cols, inside the rectangle the caller owns.
            unsafe { *c.add(i * ldc + j) = v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::uniform as data;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for kk in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + kk] as f64 * b[kk * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn every_isa_matches_the_f64_reference_on_odd_shapes() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for isa in Isa::available() {
            for &(m, k, n) in &[
                (1, 7, 5),
                (13, 64, 33),
                (29, 384, 96),
                (100, 31, 100),
                (57, 5, 1),
            ] {
                let a = data(m * k, 1);
                let b = data(k * n, 2);
                let expected = naive(&a, &b, m, k, n);
                for parallel in [false, true] {
                    let packed = PackedB::from_rows(isa, &b, k, n, n);
                    let mut c = vec![f32::NAN; m * n];
                    pool.install(|| {
                        matmul(isa, &a, k, m, &packed, &mut c, n, Epilogue::None, parallel)
                    });
                    for (i, (&got, &want)) in c.iter().zip(&expected).enumerate() {
                        assert!(
                            (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{} m{m} k{k} n{n} at {i}: {got} vs {want}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn strides_transposed_packing_and_epilogues() {
        let (m, k, n) = (17, 40, 37);
        let (lda, ldc) = (k + 3, n + 5);
        for isa in Isa::available() {
            let a_dense = data(m * k, 3);
            let mut a = vec![9.0f32; m * lda];
            for i in 0..m {
                a[i * lda..i * lda + k].copy_from_slice(&a_dense[i * k..(i + 1) * k]);
            }
            let b = data(k * n, 4);
            let bt: Vec<f32> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
            let bias = data(n, 5);
            let residual = data(m * n, 6);
            let expected = naive(&a_dense, &b, m, k, n);
            let packed = PackedB::from_transposed(isa, &bt, k, n, k);
            let mut c = vec![7.0f32; m * ldc];
            let epilogue = Epilogue::BiasResidual {
                bias: &bias,
                residual: &residual,
                ldr: n,
            };
            matmul(isa, &a, lda, m, &packed, &mut c, ldc, epilogue, false);
            for i in 0..m {
                for j in 0..n {
                    let want = expected[i * n + j] + bias[j] as f64 + residual[i * n + j] as f64;
                    let got = c[i * ldc + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{} ({i},{j}) {got} {want}",
                        isa.name()
                    );
                }
                assert!(
                    c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 7.0),
                    "wrote past n"
                );
            }
            let mut g = vec![0.0f32; m * n];
            let gelu = Epilogue::BiasActivation {
                bias: &bias,
                activation: Activation::GeluErf,
            };
            matmul(isa, &a, lda, m, &packed, &mut g, n, gelu, false);
            for (idx, &got) in g.iter().enumerate() {
                let x = expected[idx] + bias[idx % n] as f64;
                let want = 0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2));
                assert!(
                    (got as f64 - want).abs() < 1e-5,
                    "{} gelu {got} {want}",
                    isa.name()
                );
            }
        }
    }

    /// erf in f64, the reference for the vectorised GELU.
    fn erf64(x: f64) -> f64 {
        // The Taylor series, exact to ~1e-9 for |x| <= 4.5; beyond, erf is ±1 within 2e-10.
        if x.abs() > 4.5 {
            return x.signum();
        }
        let mut sum = x;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
