//! The one GEMM driver: `C = A·B (+ epilogue)` with `B` packed once (weights at load, or K/V
//! per attention head) and `A` the activations, row-major, over the micro-kernel trait
//! [`Kernel`]. Every number format and instruction set is an implementation of it: float32
//! (AVX-512, AVX2+FMA, portable: `gemm_f32`), bfloat16 (AVX512-BF16: `gemm_bf16`) and int8
//! (AVX-512 VNNI, AVX2: `gemm_int8`). The driver owns what they share: cutting the product
//! into tasks on the caller's rayon pool, walking a task's register tiles panel by panel, and
//! the epilogue (bias, activation, residual), applied per row of a task's block while it is
//! in L2.
//!
//! Work is split into (row block × column range) tasks: row blocks when there are many rows,
//! column ranges when there are few (one query), so both threads have work either way.
//!
//! The float32 entry points (`matmul`, `matmul_to`, `PackedB`) live in `gemm_f32` and are
//! re-exported here, where callers have always found them.

use std::ops::Range;

use rayon::prelude::*;

use super::{vecmath, Activation, Isa};

pub use super::gemm_f32::{matmul, matmul_to, PackedB};

/// A GEMM micro-kernel: keeps an `MR × NR` tile of C in registers over the whole K loop,
/// reading B from a panel of `NR` columns packed for it, and A from the rows a task readied
/// for it (packed into tiles, rounded to bf16, quantized, or A itself, read in place).
///
/// A value proves the CPU has the kernel's instructions: each implementation's constructor
/// returns `None` on CPUs that lack them, which is what makes calling `tile` sound. A new
/// instruction set is one new implementation (one new file), not a new driver.
pub(super) trait Kernel: Copy + Sync {
    /// B packed for this kernel, in panels of `NR` columns.
    type PackedB: Sync;
    /// A task's rows of A as `tile` reads them.
    type Rows<'a>;
    /// Rows of the register tile.
    const MR: usize;
    /// Columns of the register tile, and of a panel of B.
    const NR: usize;

    /// `(K, N)` of `b`, after asserting that `b` was packed for this kernel (its tiles would
    /// read past the panels of another's).
    fn shape(self, b: &Self::PackedB) -> (usize, usize);

    /// Readies rows `rows` of `a` (row stride `lda`, K columns each) for `tile` and runs `f`
    /// on them. A kernel that converts them keeps one buffer per worker thread, reused by every
    /// task the thread runs, so the converted rows stay in L1/L2 and nothing is allocated per
    /// call.
    fn with_rows<R>(
        self,
        a: &[f32],
        lda: usize,
        rows: Range<usize>,
        b: &Self::PackedB,
        f: impl FnOnce(&Self::Rows<'_>) -> R,
    ) -> R;

    /// `C = A·B` for one tile: rows `first..first + rows` of the readied `block` times panel
    /// `panel` of `b`, the first `cols` columns stored at `c`.
    ///
    /// # Safety
    /// `block` came from `with_rows` for the same `b`, `first + rows` is within its row count
    /// and `rows <= MR`; `panel` is one of `b`'s panels and `cols <= NR` (and within `N`);
    /// `c` points at `rows` rows of `cols` writable floats with row stride `ldc`, which no one
    /// else accesses during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        self,
        block: &Self::Rows<'_>,
        first: usize,
        rows: usize,
        b: &Self::PackedB,
        panel: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    );
}

/// `C[m × n] = epilogue(A[m × k] · B)` with `kernel`, `A` row-major with row stride `lda`,
/// `C` with `ldc`, `(k, n)` the shape of `b`. Runs on the current rayon pool when `parallel`;
/// `isa` runs the epilogue.
///
/// # Safety
/// `c` must point at `m` rows of `n` writable floats with row stride `ldc >= n`, which no one
/// else accesses during the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run<K: Kernel>(
    kernel: K,
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &K::PackedB,
    c: *mut f32,
    ldc: usize,
    epilogue: &Epilogue,
    parallel: bool,
) {
    let (k, n) = kernel.shape(b);
    if m == 0 || n == 0 {
        return;
    }
    assert!(lda >= k && a.len() >= (m - 1) * lda + k && ldc >= n);
    check_epilogue(epilogue, m, n);
    let (mr, nr) = (K::MR, K::NR);
    let body = |rows: Range<usize>, panels: Range<usize>, c: *mut f32| {
        kernel.with_rows(a, lda, rows.clone(), b, |block| {
            for p in panels {
                let columns = p * nr..((p + 1) * nr).min(n);
                for first in (0..rows.len()).step_by(mr) {
                    let tile_rows = mr.min(rows.len() - first);
                    let row0 = rows.start + first;
                    // SAFETY: `block` holds the task's rows (from `with_rows`, for this `b`)
                    // and `first + tile_rows <= rows.len()`; `p` is one of `b`'s panels
                    // (`run_tasks` keeps panels below `n.div_ceil(nr)`) and `columns` lies
                    // within it and within N; the task owns these rows × columns of C.
                    unsafe {
                        kernel.tile(
                            block,
                            first,
                            tile_rows,
                            b,
                            p,
                            c.add(row0 * ldc + columns.start),
                            ldc,
                            columns.len(),
                        );
                    }
                }
            }
        })
    };
    // SAFETY: forwarded from the caller (C covers m rows × n columns, ours alone); `body`
    // writes only its task's rectangle.
    unsafe { run_tasks(isa, m, n, mr, nr, c, ldc, epilogue, parallel, body) }
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

/// Rows of A run per task: a few register tiles, so a B panel read from L2 serves several of
/// them and a task is big enough to amortise scheduling.
const ROW_TILES_PER_BLOCK: usize = 4;

/// Tasks per thread a GEMM is cut into at least (by columns when rows are few), so rayon's
/// stealing can even out the shares: with one or two tasks per thread, one task more or less
/// is a large imbalance. Attention groups its heads to the same count.
pub(crate) const TASKS_PER_THREAD: usize = 8;

/// Cuts a GEMM of `m` rows × `n` columns (panels of `nr`, register tiles of `mr` rows) into
/// (row block × panel range) tasks, runs `body(rows, panels, c)` for each on the current rayon
/// pool when `parallel`, then finishes each task's rectangle with `epilogue` while it is in
/// L2.
///
/// # Safety
/// `c` must point at `m` rows of `n` writable floats with row stride `ldc`, which no one else
/// accesses during the call; `body` may write only its task's rows × panels of C.
#[allow(clippy::too_many_arguments)]
unsafe fn run_tasks(
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

fn check_epilogue(epilogue: &Epilogue, m: usize, n: usize) {
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
