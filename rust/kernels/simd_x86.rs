//! Small x86 helpers the AVX-512 kernels share: lane masks for partial vectors, and the
//! dispatch from a run-time row count to a kernel compiled for that count.

use std::arch::x86_64::__mmask16;

/// The first `n` of 16 lanes (all 16 from 16 on): the masked loads and stores of partial
/// tiles and rows.
#[inline]
pub(super) fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Calls `kernel::<R>(args)` for a run-time row count `R` in `1..=14` (nothing for others):
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
pub(super) use with_rows;
