//! Where the forward pass spends its time, stage by stage, behind the `stage-timing` cargo
//! feature (off by default).
//!
//! [`timed`] wraps one stage's call in `model.rs` / `engine.rs`. With the feature off it is just
//! `f()`, inlined: no clock read, no counter, nothing in the binary. With it on, it adds the
//! calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) over the call to that stage's total;
//! `benches/stages.rs` reads the totals.
//!
//! Only the thread that runs the stage is clocked, so work a stage hands to other rayon
//! workers is not counted: the breakdown is meaningful **only with `threads = 1`**, where every
//! stage runs on the encoder pool's single worker. Each stage costs two clock reads (a system
//! call, well under a microsecond), ~90 per forward of six layers.

#[cfg(all(feature = "stage-timing", not(unix)))]
compile_error!("the `stage-timing` feature reads CLOCK_THREAD_CPUTIME_ID, which needs a Unix");

/// The stages of a forward pass, each summed over every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Word + position + token type lookups and their LayerNorm.
    Embeddings,
    /// The fused Q, K, V projection (+ bias).
    Qkv,
    /// Scores QKᵀ, the scaled masked softmax and the weighted sum PV, every head.
    Attention,
    /// Attention output projection + bias + residual.
    AttentionOutput,
    /// The LayerNorm after the attention block.
    AttentionNorm,
    /// FFN intermediate projection + bias + GELU.
    Intermediate,
    /// FFN output projection + bias + residual.
    Output,
    /// The LayerNorm after the feed-forward block.
    OutputNorm,
    /// Pooling of the last hidden state and the L2 normalisation.
    Pooling,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Embeddings,
        Stage::Qkv,
        Stage::Attention,
        Stage::AttentionOutput,
        Stage::AttentionNorm,
        Stage::Intermediate,
        Stage::Output,
        Stage::OutputNorm,
        Stage::Pooling,
    ];

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Embeddings => "embeddings + LayerNorm",
            Stage::Qkv => "QKV projection",
            Stage::Attention => "attention (QKᵀ, softmax, PV)",
            Stage::AttentionOutput => "attention output + bias + residual",
            Stage::AttentionNorm => "attention LayerNorm",
            Stage::Intermediate => "FFN intermediate + bias + GELU",
            Stage::Output => "FFN output + bias + residual",
            Stage::OutputNorm => "FFN LayerNorm",
            Stage::Pooling => "pooling + normalisation",
        }
    }
}

/// Runs `f`, adding this thread's CPU time over it to `stage`'s total when the `stage-timing`
/// feature is on; with the feature off this is `f()` and nothing else.
#[inline(always)]
pub(crate) fn timed<R>(stage: Stage, f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "stage-timing")]
    {
        use std::sync::atomic::Ordering::Relaxed;
        let start = thread_cpu_nanos();
        let result = f();
        let spent = thread_cpu_nanos().saturating_sub(start);
        enabled::NANOS[stage as usize].fetch_add(spent, Relaxed);
        enabled::CALLS[stage as usize].fetch_add(1, Relaxed);
        result
    }
    #[cfg(not(feature = "stage-timing"))]
    {
        let _ = stage;
        f()
    }
}

#[cfg(feature = "stage-timing")]
pub use enabled::{process_cpu_nanos, reset, thread_cpu_nanos, total};

#[cfg(feature = "stage-timing")]
mod enabled {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::Stage;

    // One counter per stage, process-wide: stages run on the pool's worker, the reader is the
    // caller's thread.
    pub(super) static NANOS: [AtomicU64; Stage::ALL.len()] =
        [const { AtomicU64::new(0) }; Stage::ALL.len()];
    pub(super) static CALLS: [AtomicU64; Stage::ALL.len()] =
        [const { AtomicU64::new(0) }; Stage::ALL.len()];

    /// CPU time this thread has used, in nanoseconds (0 if the clock cannot be read).
    pub fn thread_cpu_nanos() -> u64 {
        cpu_nanos(libc::CLOCK_THREAD_CPUTIME_ID)
    }

    /// CPU time every thread of this process has used, in nanoseconds (0 if unreadable).
    pub fn process_cpu_nanos() -> u64 {
        cpu_nanos(libc::CLOCK_PROCESS_CPUTIME_ID)
    }

    fn cpu_nanos(clock: libc::clockid_t) -> u64 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec for the duration of the call, and both
        // clock ids are supported by Linux and the BSDs/macOS; on failure nothing is written
        // and the zeroed value is returned.
        if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
            return 0;
        }
        let secs = u64::try_from(now.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
        secs * 1_000_000_000 + nanos
    }

    /// Zeroes every stage's total.
    pub fn reset() {
        for counter in NANOS.iter().chain(&CALLS) {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// CPU time spent in `stage` since the last [`reset`], and how many calls that was.
    pub fn total(stage: Stage) -> (Duration, u64) {
        let nanos = NANOS[stage as usize].load(Ordering::Relaxed);
        let calls = CALLS[stage as usize].load(Ordering::Relaxed);
        (Duration::from_nanos(nanos), calls)
    }
}

#[cfg(all(test, feature = "stage-timing"))]
mod tests {
    use super::*;

    #[test]
    fn timed_returns_the_value_and_counts_the_call() {
        let before = total(Stage::Pooling).1;
        let value: u64 = timed(Stage::Pooling, || {
            (0..100_000u64).map(std::hint::black_box).sum()
        });
        assert_eq!(value, 4_999_950_000u64);
        assert!(total(Stage::Pooling).1 > before);
        assert!(thread_cpu_nanos() > 0);
        assert!(process_cpu_nanos() >= thread_cpu_nanos());
    }
}
