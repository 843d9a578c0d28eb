//! Multi-head self-attention over packed tokens: for each (sequence, head), in parallel,
//! `softmax(Q Kᵀ / √d) V` on that sequence's tokens only, written into the head's columns of
//! the context. Q, K and V are read in place from the fused QKV projection; K and V are packed
//! per head into GEMM panels (a few KB), the score matrix lives in a per-thread scratch buffer.
//! Sequences of up to 32 tokens, most sentences, take a kernel made for them
//! (`kernels::short_attention`, float32 in registers) instead of the two GEMMs. In bfloat16
//! mode the two GEMMs of longer sequences run in bf16 (`kernels::gemm_bf16`), like the linear
//! layers; int8 mode keeps attention in float32.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::kernels::gemm::{self, Epilogue, PackedB};
use crate::kernels::gemm_bf16::{self, PackedBf16};
use crate::kernels::{short_attention, vecmath, Bf16Dot, Isa};

/// Buffers one attention task needs, kept per worker thread and reused across tasks.
struct Scratch {
    isa: Isa,
    scores: Vec<f32>,
    keys: PackedB,
    values: PackedB,
    /// Kᵀ of one head, for `short_attention`.
    keys_t: Vec<f32>,
    /// K and V of one head in bf16, for bfloat16 mode.
    keys_bf16: PackedBf16,
    values_bf16: PackedBf16,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// `qkv`: [tokens, 3 * hidden] (Q | K | V, heads side by side in each); `context`: [tokens,
/// hidden], every element overwritten; sequence `s` is rows `offsets[s]..offsets[s + 1]`
/// (rising, ending at `tokens`). `bf16`: run the GEMMs of long sequences in bf16.
pub fn self_attention(
    isa: Isa,
    bf16: Option<Bf16Dot>,
    offsets: &[u32],
    qkv: &[f32],
    heads: usize,
    head_dim: usize,
    context: &mut [f32],
) {
    let hidden = heads * head_dim;
    let row = 3 * hidden;
    let tokens = offsets.last().map_or(0, |&t| t as usize);
    assert!(qkv.len() >= tokens * row && context.len() >= tokens * hidden);
    let scale = 1.0 / (head_dim as f32).sqrt();
    // A (sequence, head) of a short sentence is a few microseconds of work, less than the
    // cost of a rayon task and a scratch lookup: heads are grouped so that there are about
    // gemm::TASKS_PER_THREAD tasks per thread, and a task runs its heads back to back.
    let sequences = offsets.len().saturating_sub(1);
    let wanted = gemm::TASKS_PER_THREAD * rayon::current_num_threads();
    let heads_per_task = (sequences * heads / wanted).clamp(1, heads.max(1));
    let context_addr = context.as_mut_ptr() as usize;
    let task = |(sequence, first_head): (usize, usize)| {
        let range = offsets[sequence] as usize..offsets[sequence + 1] as usize;
        let n = range.len();
        if n == 0 {
            return;
        }
        SCRATCH.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|s| s.isa != isa) {
                *slot = Some(Scratch {
                    isa,
                    scores: Vec::new(),
                    keys: PackedB::empty(isa, head_dim, 1),
                    values: PackedB::empty(isa, 1, head_dim),
                    keys_t: Vec::new(),
                    keys_bf16: PackedBf16::empty(),
                    values_bf16: PackedBf16::empty(),
                });
            }
            let Some(scratch) = slot.as_mut() else { return };
            let short = short_attention::fits(isa, n, head_dim);
            if short {
                scratch
                    .keys_t
                    .resize(short_attention::scratch_len(head_dim), 0.0);
            } else if scratch.scores.len() < n * n {
                scratch.scores.resize(n * n, 0.0);
            }
            for head in first_head..(first_head + heads_per_task).min(heads) {
                let q = &qkv[range.start * row + head * head_dim..];
                let k = &qkv[range.start * row + hidden + head * head_dim..];
                let v = &qkv[range.start * row + 2 * hidden + head * head_dim..];
                // Only this task writes rows `range` × columns `head*d .. head*d + d` of
                // `context` (tasks differ in sequence or head), inside its asserted length.
                let out =
                    (context_addr as *mut f32).wrapping_add(range.start * hidden + head * head_dim);
                if short {
                    // SAFETY: `out` is this task's block of `context`, as said above.
                    unsafe {
                        short_attention::head(
                            isa,
                            q,
                            k,
                            v,
                            row,
                            n,
                            head_dim,
                            scale,
                            &mut scratch.keys_t,
                            out,
                            hidden,
                        );
                    }
                    continue;
                }
                let scores = &mut scratch.scores[..n * n];
                if let Some(dot) = bf16 {
                    scratch.keys_bf16.refill_transposed(k, head_dim, n, row);
                    let keys = &scratch.keys_bf16;
                    gemm_bf16::matmul(dot, isa, q, row, n, keys, scores, n, Epilogue::None, false);
                    for scores_row in scores.chunks_exact_mut(n) {
                        vecmath::softmax_scaled(isa, scores_row, scale);
                    }
                    scratch.values_bf16.refill_rows(v, n, head_dim, row);
                    let values = &scratch.values_bf16;
                    // SAFETY: `out` is this task's block of `context`, as said above.
                    unsafe {
                        gemm_bf16::matmul_to(
                            dot,
                            isa,
                            scores,
                            n,
                            n,
                            values,
                            out,
                            hidden,
                            Epilogue::None,
                            false,
                        );
                    }
                    continue;
                }
                scratch.keys.refill_transposed(k, head_dim, n, row);
                gemm::matmul(
                    isa,
                    q,
                    row,
                    n,
                    &scratch.keys,
                    scores,
                    n,
                    Epilogue::None,
                    false,
                );
                for scores_row in scores.chunks_exact_mut(n) {
                    vecmath::softmax_scaled(isa, scores_row, scale);
                }
                scratch.values.refill_rows(v, n, head_dim, row);
                // SAFETY: `out` is this task's block of `context`, as said above.
                unsafe {
                    gemm::matmul_to(
                        isa,
                        scores,
                        n,
                        n,
                        &scratch.values,
                        out,
                        hidden,
                        Epilogue::None,
                        false,
                    );
                }
            }
        });
    };
    let tasks: Vec<(usize, usize)> = (0..sequences)
        .flat_map(|s| (0..heads).step_by(heads_per_task).map(move |h| (s, h)))
        .collect();
    tasks.into_par_iter().for_each(task);
}
