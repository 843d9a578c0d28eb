//! Where the forward pass spends its time: CPU time per stage (summed over the layers) for
//! three batch shapes, as a markdown table. Needs the real model and the `stage-timing` feature:
//!
//! ```text
//! MINILM_FAST_MODEL_DIR=<model folder> cargo bench --bench stages --features stage-timing
//! ```
//!
//! Add `-- --quick` for a short run. The encoder runs with `threads = 1`: a stage is clocked on
//! the thread that runs it (see `rust/stage_timing.rs`), so only then do the stages add up.
//! "everything else" is the process's CPU time minus the stages: building the batch, packing
//! it, buffers and copies, and whatever a worker does between jobs. Every figure is CPU time,
//! so it holds on a busy machine; wall time is never used.

use std::hint::black_box;

use minilm_fast::stage_timing::{self, Stage};
use minilm_fast::{Compute, IdsView, SentenceEncoder, TokenBatch};
use ndarray::Array2;

const CLS: i64 = 101;
const SEP: i64 = 102;

/// (batch, tokens per sequence, what it stands for)
const SHAPES: [(usize, usize, &str); 3] = [
    (32, 15, "short sentences"),
    (32, 256, "long documents"),
    (1, 10, "one query"),
];

/// Fixed pseudo-random ids in 1000..20000, [CLS] first and [SEP] last; no padding.
fn ids(batch: usize, seq: usize, seed: u64) -> Array2<i64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((batch, seq), |(_, col)| {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match col {
            0 => CLS,
            c if c + 1 == seq => SEP,
            _ => 1000 + (state % 19_000) as i64,
        }
    })
}

/// CPU time of one shape, per batch: each stage, the whole process, the caller's thread; stage
/// calls per batch and how many batches were run.
struct Measured {
    stages: Vec<f64>,
    process_ms: f64,
    caller_ms: f64,
    calls: f64,
    batches: usize,
}

fn measure(encoder: &SentenceEncoder, batch: usize, seq: usize, target_cpu_s: f64) -> Measured {
    let ids = ids(batch, seq, (batch * 1000 + seq) as u64);
    let mask = Array2::<i64>::ones((batch, seq));
    let run = || {
        // Batch building is part of what a caller pays for, so it is inside the measurement.
        let tokens = TokenBatch::new(
            IdsView::I64(ids.view()),
            IdsView::I64(mask.view()),
            None,
            encoder.config(),
        )
        .expect("a valid batch");
        black_box(encoder.encode(&tokens, None).expect("encode"));
    };
    // Warm-up: first-touch page faults, workspaces, caches; it also sizes the run.
    let start = stage_timing::process_cpu_nanos();
    run();
    run();
    let warm_s = (stage_timing::process_cpu_nanos() - start) as f64 / 2e9;
    let batches = ((target_cpu_s / warm_s.max(1e-6)).ceil() as usize).clamp(3, 2000);

    stage_timing::reset();
    let (process0, caller0) = (
        stage_timing::process_cpu_nanos(),
        stage_timing::thread_cpu_nanos(),
    );
    for _ in 0..batches {
        run();
    }
    let process = stage_timing::process_cpu_nanos() - process0;
    let caller = stage_timing::thread_cpu_nanos() - caller0;
    let per_batch = |nanos: f64| nanos / 1e6 / batches as f64;
    Measured {
        stages: Stage::ALL
            .iter()
            .map(|&stage| per_batch(stage_timing::total(stage).0.as_nanos() as f64))
            .collect(),
        process_ms: per_batch(process as f64),
        caller_ms: per_batch(caller as f64),
        calls: Stage::ALL
            .iter()
            .map(|&stage| stage_timing::total(stage).1 as f64 / batches as f64)
            .sum(),
        batches,
    }
}

/// Three significant figures or so, whatever the size.
fn milliseconds(ms: f64) -> String {
    match ms.abs() {
        m if m < 1.0 => format!("{ms:.3}"),
        m if m < 100.0 => format!("{ms:.2}"),
        _ => format!("{ms:.1}"),
    }
}

fn main() {
    // Candle's matmul (the forward before the speed work) splits its GEMMs into
    // RAYON_NUM_THREADS tasks; 1 keeps them on the calling thread, like the encoder's pool.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let Some(dir) = std::env::var_os("MINILM_FAST_MODEL_DIR") else {
        eprintln!(
            "set MINILM_FAST_MODEL_DIR to a model folder (config.json, model.safetensors, ...)"
        );
        std::process::exit(2);
    };
    let quick = std::env::args().any(|a| a == "--quick");
    let target_cpu_s = if quick { 1.0 } else { 6.0 };
    // MINILM_FAST_COMPUTE=int8 (or bfloat16, auto) times a reduced-precision mode.
    let request = std::env::var("MINILM_FAST_COMPUTE").unwrap_or_else(|_| "float32".into());
    let compute = match Compute::resolve(&request) {
        Ok(compute) => compute,
        Err(e) => {
            eprintln!("MINILM_FAST_COMPUTE: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("compute: {}", compute.name());
    let loaded = SentenceEncoder::load_with_compute(std::path::Path::new(&dir), Some(1), compute);
    let encoder = match loaded {
        Ok(encoder) => encoder,
        Err(e) => {
            eprintln!("loading the model from {}: {e}", dir.to_string_lossy());
            std::process::exit(1);
        }
    };

    let results: Vec<Measured> = SHAPES
        .iter()
        .map(|&(batch, seq, _)| measure(&encoder, batch, seq, target_cpu_s))
        .collect();

    let mut header = String::from("| stage |");
    let mut rule = String::from("|---|");
    for &(batch, seq, what) in &SHAPES {
        header.push_str(&format!(" {batch} × {seq} ({what}) ms | % |"));
        rule.push_str("---:|---:|");
    }
    println!("CPU time per batch, threads = 1, summed over the layers\n");
    println!("{header}\n{rule}");
    let row = |label: &str, values: &mut dyn Iterator<Item = (f64, f64)>| {
        let cells: String = values
            .map(|(ms, total)| format!(" {} | {:.1} |", milliseconds(ms), 100.0 * ms / total))
            .collect();
        println!("| {label} |{cells}");
    };
    for (i, stage) in Stage::ALL.iter().enumerate() {
        row(
            stage.label(),
            &mut results.iter().map(|m| (m.stages[i], m.process_ms)),
        );
    }
    row(
        "everything else (batch, packing, copies)",
        &mut results
            .iter()
            .map(|m| (m.process_ms - m.stages.iter().sum::<f64>(), m.process_ms)),
    );
    row(
        "**whole encode (process CPU)**",
        &mut results.iter().map(|m| (m.process_ms, m.process_ms)),
    );
    println!();
    // What the timing itself costs: two clock reads per stage call.
    let reads = 100_000;
    let start = stage_timing::thread_cpu_nanos();
    for _ in 0..reads {
        black_box(stage_timing::thread_cpu_nanos());
    }
    let read_ns = (stage_timing::thread_cpu_nanos() - start) as f64 / reads as f64;
    println!("one thread-CPU clock read: {read_ns:.0} ns");
    for (&(batch, seq, _), m) in SHAPES.iter().zip(&results) {
        let stages: f64 = m.stages.iter().sum();
        println!(
            "{batch} × {seq}: {} batches; stages {stages:.2} ms = {:.1}% of process CPU \
             {:.2} ms; caller thread {:.2} ms; {:.0} stage calls per batch",
            m.batches,
            100.0 * stages / m.process_ms,
            m.process_ms,
            m.caller_ms,
            m.calls,
        );
    }
}
