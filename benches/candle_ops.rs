//! The fixed cost of the Candle plumbing the fused forward pass adds: one in-place custom op
//! call (`inplace_op1/2/3`: storage locks, layout checks, dispatch), one `narrow` view and
//! one small tensor from a `Vec`, each on a do-nothing op over tiny tensors, so only the
//! plumbing is timed. A forward pass of L layers makes 7 L + 2 op calls, 6 narrows and 2
//! small tensors (rust/model.rs, rust/workspace.rs); docs/PERFORMANCE.md puts the sum beside
//! a query's time.
//!
//! ```text
//! cargo bench --bench candle_ops
//! ```

use std::hint::black_box;
use std::time::Instant;

use candle_core::{CpuStorage, Device, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Result, Tensor};

/// An op that reads its operands' lengths and writes nothing: what is left is Candle's share.
struct Touch;

impl InplaceOp1 for Touch {
    fn name(&self) -> &'static str {
        "touch1"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        black_box((s, l.contiguous_offsets()));
        Ok(())
    }
}

impl InplaceOp2 for Touch {
    fn name(&self) -> &'static str {
        "touch2"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout, a: &CpuStorage, la: &Layout) -> Result<()> {
        black_box((s, l.contiguous_offsets(), a, la.contiguous_offsets()));
        Ok(())
    }
}

impl InplaceOp3 for Touch {
    fn name(&self) -> &'static str {
        "touch3"
    }
    fn cpu_fwd(
        &self,
        s: &mut CpuStorage,
        l: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<()> {
        black_box((s, l.contiguous_offsets(), a, la, b, lb.contiguous_offsets()));
        Ok(())
    }
}

/// Nanoseconds per call of `f`, the best of five rounds of `calls`.
fn per_call(calls: u32, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..calls {
            f()?;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(calls));
    }
    Ok(best)
}

fn main() -> Result<()> {
    let cpu = Device::Cpu;
    let out = Tensor::zeros((64, 384), candle_core::DType::F32, &cpu)?;
    let a = Tensor::zeros((64, 384), candle_core::DType::F32, &cpu)?;
    let b = Tensor::zeros((65,), candle_core::DType::U32, &cpu)?;
    let calls = 200_000;
    let op1 = per_call(calls, || out.inplace_op1(&Touch))?;
    let op2 = per_call(calls, || out.inplace_op2(&a, &Touch))?;
    let op3 = per_call(calls, || out.inplace_op3(&a, &b, &Touch))?;
    let narrow = per_call(calls, || black_box(out.narrow(0, 0, 10)).map(drop))?;
    let small = per_call(calls, || {
        black_box(Tensor::from_vec(vec![0u32; 30], (10, 3), &cpu)).map(drop)
    })?;
    println!("| plumbing | ns per call |");
    println!("|---|---|");
    println!("| inplace_op1 | {op1:.0} |");
    println!("| inplace_op2 | {op2:.0} |");
    println!("| inplace_op3 | {op3:.0} |");
    println!("| narrow | {narrow:.0} |");
    println!("| small tensor from a Vec | {small:.0} |");
    let layers = 6.0;
    // Per layer: QKV, attention, attention output, LayerNorm, FFN in, FFN out, LayerNorm
    // (two op2, three op3, two op1); then embeddings (op2) and pooling (op3).
    let forward =
        layers * (2.0 * op2 + 3.0 * op3 + 2.0 * op1) + op2 + op3 + 6.0 * narrow + 2.0 * small;
    println!(
        "\nOne forward pass of {layers} layers: {:.1} µs of Candle plumbing",
        forward / 1000.0
    );
    Ok(())
}
