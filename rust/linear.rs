//! The linear layer behind one small interface: each weight format (float32, bfloat16, int8)
//! is one implementation of [`Linear`], and the forward pass does not change with it.

use crate::compute::Compute;
use crate::config::Activation;
use crate::kernels::gemm::{self, Epilogue, PackedB};
use crate::kernels::gemm_bf16::{self, PackedBf16};
use crate::kernels::gemm_int8::{self, PackedI8};
use crate::kernels::{Bf16Dot, Int8Dot, Isa};

/// What is applied to `x W` before it is stored, fused into the GEMM's tiles.
#[derive(Clone, Copy)]
pub enum Finish<'a> {
    /// `x W + b`
    Bias,
    /// `act(x W + b)`
    Activation(Activation),
    /// `x W + b + residual`, `residual` shaped like the output.
    Residual(&'a [f32]),
}

/// `out[rows × outputs] = finish(x[rows × inputs] · W)`, on the caller's thread pool.
pub trait Linear: Send + Sync {
    fn inputs(&self) -> usize;
    fn outputs(&self) -> usize;
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], finish: Finish);
}

/// A linear layer computing in `compute` from a PyTorch-layout weight `[outputs, inputs]`
/// (row-major) and its bias. `input_range` estimates the magnitude of each input channel when
/// it is known (the output of a LayerNorm); int8 uses it to smooth outlier channels. A mode
/// whose kernels this CPU lacks computes in float32 (`Compute::resolve` never picks one).
pub fn dense(
    compute: Compute,
    isa: Isa,
    weight: &[f32],
    bias: Vec<f32>,
    (inputs, outputs): (usize, usize),
    input_range: Option<&[f32]>,
) -> Box<dyn Linear> {
    match compute {
        Compute::Int8 => {
            if let Some(dot) = Int8Dot::detected() {
                let weight = match input_range {
                    Some(range) => PackedI8::quantize_smoothed(dot, weight, inputs, outputs, range),
                    None => PackedI8::quantize_transposed(dot, weight, inputs, outputs),
                };
                return Box::new(DenseInt8 {
                    dot,
                    isa,
                    weight,
                    bias,
                });
            }
        }
        Compute::BFloat16 => {
            if let Some(dot) = Bf16Dot::detected() {
                return Box::new(DenseBf16 {
                    dot,
                    isa,
                    weight: PackedBf16::from_transposed(weight, inputs, outputs),
                    bias,
                });
            }
        }
        Compute::Float32 => {}
    }
    Box::new(DenseF32::new(isa, weight, bias, inputs, outputs))
}

/// The GEMM epilogue that carries out `finish` with `bias` (`outputs` wide).
fn epilogue<'a>(finish: Finish<'a>, bias: &'a [f32], outputs: usize) -> Epilogue<'a> {
    match finish {
        Finish::Bias => Epilogue::Bias(bias),
        Finish::Activation(activation) => Epilogue::BiasActivation { bias, activation },
        Finish::Residual(residual) => Epilogue::BiasResidual {
            bias,
            residual,
            ldr: outputs,
        },
    }
}

/// Float32 weights, packed once at load into the GEMM kernel's panels.
pub struct DenseF32 {
    isa: Isa,
    weight: PackedB,
    bias: Vec<f32>,
}

impl DenseF32 {
    /// From a PyTorch-layout weight `[outputs, inputs]` (row-major) and its bias.
    pub fn new(isa: Isa, weight: &[f32], bias: Vec<f32>, inputs: usize, outputs: usize) -> Self {
        Self {
            isa,
            weight: PackedB::from_transposed(isa, weight, inputs, outputs, inputs),
            bias,
        }
    }
}

impl Linear for DenseF32 {
    fn inputs(&self) -> usize {
        self.weight.k()
    }

    fn outputs(&self) -> usize {
        self.weight.n()
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], finish: Finish) {
        let (k, n) = (self.inputs(), self.outputs());
        let epilogue = epilogue(finish, &self.bias, n);
        gemm::matmul(self.isa, x, k, rows, &self.weight, out, n, epilogue, true);
    }
}

/// Int8 weights (symmetric, one scale per output channel), activations quantized per token by
/// the GEMM task that reads them.
struct DenseInt8 {
    dot: Int8Dot,
    isa: Isa,
    weight: PackedI8,
    bias: Vec<f32>,
}

impl Linear for DenseInt8 {
    fn inputs(&self) -> usize {
        self.weight.k()
    }

    fn outputs(&self) -> usize {
        self.weight.n()
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], finish: Finish) {
        let (k, n) = (self.inputs(), self.outputs());
        let epilogue = epilogue(finish, &self.bias, n);
        let (dot, isa) = (self.dot, self.isa);
        gemm_int8::matmul(dot, isa, x, k, rows, &self.weight, out, n, epilogue, true);
    }
}

/// bfloat16 weights, activations rounded to bf16 by the GEMM task that reads them.
struct DenseBf16 {
    dot: Bf16Dot,
    isa: Isa,
    weight: PackedBf16,
    bias: Vec<f32>,
}

impl Linear for DenseBf16 {
    fn inputs(&self) -> usize {
        self.weight.k()
    }

    fn outputs(&self) -> usize {
        self.weight.n()
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], finish: Finish) {
        let (k, n) = (self.inputs(), self.outputs());
        let epilogue = epilogue(finish, &self.bias, n);
        let (dot, isa) = (self.dot, self.isa);
        gemm_bf16::matmul(dot, isa, x, k, rows, &self.weight, out, n, epilogue, true);
    }
}
