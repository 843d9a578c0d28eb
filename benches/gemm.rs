//! GFLOP/s of the GEMM on the encoder's shapes, per instruction set, compute mode (float32,
//! bfloat16, int8: GOP/s, a multiply-add counted as 2 like a float one) and thread count,
//! against the machine's FMA peak. `cargo bench --bench gemm` (add `-- --quick` for a short
//! run).
//!
//! Shapes: K = 384 (QKV, attention output, FFN in) or 1536 (FFN out); N = 1152 (fused QKV),
//! 384, 1536; M = tokens in a batch (10: one query; 480: 32 short texts; 8192: 32 × 256).

use std::time::Instant;

use minilm_fast::kernels::gemm::{matmul, Epilogue, PackedB};
use minilm_fast::kernels::gemm_bf16::{self, PackedBf16};
use minilm_fast::kernels::gemm_int8::{self, PackedI8};
use minilm_fast::kernels::{Bf16Dot, Int8Dot, Isa};

/// The arithmetic a GEMM runs in, with the proof its instructions exist.
#[derive(Clone, Copy)]
enum Mode {
    Float32,
    BFloat16(Bf16Dot),
    Int8(Int8Dot),
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Float32 => "float32",
            Mode::BFloat16(_) => "bfloat16",
            Mode::Int8(dot) if dot.name() == "avx2" => "int8 (avx2)",
            Mode::Int8(_) => "int8",
        }
    }
}

const SHAPES: [(usize, usize); 4] = [(384, 1152), (384, 384), (384, 1536), (1536, 384)];

/// CPU time of the calling thread (Linux), so a single-threaded figure holds on a busy machine.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(nanos / 1e9)
}

/// (GFLOP/s of wall time, GFLOP per CPU-second of this thread when single-threaded).
#[allow(clippy::too_many_arguments)]
fn gflops(
    isa: Isa,
    mode: Mode,
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
    seconds: f64,
) -> (f64, f64) {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 97) as f32 / 97.0 - 0.5).collect();
    // The weight in PyTorch layout [N, K], as the encoder loads it.
    let bt: Vec<f32> = (0..k * n).map(|i| (i % 89) as f32 / 89.0 - 0.5).collect();
    let dense = PackedB::from_transposed(isa, &bt, k, n, k);
    let bf16 = PackedBf16::from_transposed(&bt, k, n);
    let int8 = match mode {
        Mode::Int8(dot) => Some(PackedI8::quantize_transposed(dot, &bt, k, n)),
        Mode::Float32 | Mode::BFloat16(_) => None,
    };
    let mut c = vec![0.0f32; m * n];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    let parallel = threads > 1;
    pool.install(|| {
        let run = |c: &mut [f32]| match mode {
            Mode::Float32 => matmul(isa, &a, k, m, &dense, c, n, Epilogue::None, parallel),
            Mode::BFloat16(dot) => {
                gemm_bf16::matmul(dot, isa, &a, k, m, &bf16, c, n, Epilogue::None, parallel)
            }
            Mode::Int8(dot) => {
                if let Some(int8) = &int8 {
                    gemm_int8::matmul(dot, isa, &a, k, m, int8, c, n, Epilogue::None, parallel)
                }
            }
        };
        run(&mut c);
        let flop = 2.0 * (m * k * n) as f64;
        let iterations = ((seconds * 150e9 / flop) as usize).max(3);
        let (start, cpu_start) = (Instant::now(), thread_cpu_seconds());
        for _ in 0..iterations {
            run(&mut c);
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = match (cpu_start, thread_cpu_seconds()) {
            (Some(a), Some(b)) if !parallel => b - a,
            _ => f64::NAN,
        };
        let total = flop * iterations as f64 / 1e9;
        (total / wall, total / cpu)
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 0.2 } else { 1.0 };
    let max_threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!("| isa | compute | threads | M | K | N | G(FL)OP/s | per CPU-second |");
    println!("|---|---|---|---|---|---|---|---|");
    let best = Isa::detected();
    let mut runs: Vec<(Isa, Mode)> = Isa::available()
        .into_iter()
        .rev()
        .take(2)
        .map(|isa| (isa, Mode::Float32))
        .collect();
    runs.extend(Bf16Dot::detected().map(|dot| (best, Mode::BFloat16(dot))));
    runs.extend(
        Int8Dot::available()
            .into_iter()
            .map(|dot| (best, Mode::Int8(dot))),
    );
    for (isa, mode) in runs {
        for threads in [1, max_threads.min(2)] {
            for m in [10, 480, 8192] {
                for (k, n) in SHAPES {
                    let (rate, per_cpu) = gflops(isa, mode, m, k, n, threads, seconds);
                    let (name, compute) = (isa.name(), mode.name());
                    println!(
                        "| {name} | {compute} | {threads} | {m} | {k} | {n} | {rate:.1} | \
                         {per_cpu:.1} |"
                    );
                }
            }
        }
    }
}
