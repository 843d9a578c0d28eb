//! The arithmetic the encoder's linear layers run in: float32 (exact parity with
//! sentence-transformers, the default), bfloat16 or int8. A request names one of them or
//! "auto"; what runs is what this CPU has kernels for (int8: AVX-512 VNNI, or AVX2 with 7-bit
//! weights; bfloat16: AVX512-BF16), so a request the CPU cannot run computes in float32
//! rather than failing, and [`Compute`] reports which.

use crate::error::{Error, Result};
use crate::kernels::{Bf16Dot, Int8Dot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// f32 weights and activations throughout.
    Float32,
    /// bf16 weights and activations in the linear layers, f32 accumulation (AVX512-BF16).
    BFloat16,
    /// s8 weights (per output channel) × u8 activations (per token) in the linear layers,
    /// i32 accumulation (AVX-512 VNNI, or AVX2); attention, LayerNorm and pooling stay f32.
    Int8,
}

/// The names a caller may ask for.
pub const REQUESTS: [&str; 4] = ["float32", "bfloat16", "int8", "auto"];

impl Compute {
    pub fn name(self) -> &'static str {
        match self {
            Compute::Float32 => "float32",
            Compute::BFloat16 => "bfloat16",
            Compute::Int8 => "int8",
        }
    }

    /// What runs for `request` on this CPU: the mode asked for when its kernels run here,
    /// float32 when they do not. "auto" is the fastest mode available, int8 (AVX-512 VNNI or
    /// AVX2), then bfloat16: both pass their quality gates with either int8 kernel
    /// (docs/PERFORMANCE.md).
    pub fn resolve(request: &str) -> Result<Compute> {
        let int8 = Int8Dot::detected().map(|_| Compute::Int8);
        let bf16 = Bf16Dot::detected().map(|_| Compute::BFloat16);
        let resolved = match request {
            "float32" => Some(Compute::Float32),
            "bfloat16" => bf16,
            "int8" => int8,
            "auto" => int8.or(bf16),
            other => {
                return Err(Error::InvalidInput(format!(
                    "compute must be one of {}, got {other:?}",
                    REQUESTS.map(|name| format!("{name:?}")).join(", ")
                )))
            }
        };
        Ok(resolved.unwrap_or(Compute::Float32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_resolve_to_what_the_cpu_runs() {
        assert_eq!(Compute::resolve("float32").unwrap(), Compute::Float32);
        let int8 = Compute::resolve("int8").unwrap();
        assert_eq!(int8 == Compute::Int8, Int8Dot::detected().is_some());
        let bf16 = Compute::resolve("bfloat16").unwrap();
        assert_eq!(bf16 == Compute::BFloat16, Bf16Dot::detected().is_some());
        let auto = Compute::resolve("auto").unwrap();
        let expected = if Int8Dot::detected().is_some() {
            Compute::Int8
        } else if Bf16Dot::detected().is_some() {
            Compute::BFloat16
        } else {
            Compute::Float32
        };
        assert_eq!(auto, expected);
        let err = Compute::resolve("fp8").unwrap_err().to_string();
        assert!(err.contains("\"int8\"") && err.contains("\"fp8\""), "{err}");
    }
}
