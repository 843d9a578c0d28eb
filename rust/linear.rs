//! The linear layer behind one small interface, so a weight format (fp32 today; int8 or bf16
//! later) is one more implementation of [`Linear`] and the forward pass does not change.

use crate::config::Activation;
use crate::kernels::gemm::{self, Epilogue, PackedB};
use crate::kernels::Isa;

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
        let epilogue = match finish {
            Finish::Bias => Epilogue::Bias(&self.bias),
            Finish::Activation(activation) => Epilogue::BiasActivation {
                bias: &self.bias,
                activation,
            },
            Finish::Residual(residual) => Epilogue::BiasResidual {
                bias: &self.bias,
                residual,
                ldr: n,
            },
        };
        gemm::matmul(self.isa, x, k, rows, &self.weight, out, n, epilogue, true);
    }
}
