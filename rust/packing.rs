//! A padded batch packed into its real tokens: every linear layer then runs one GEMM over
//! `total_tokens` rows and no work is spent on padding. Attention runs per sequence on the
//! sequence's own tokens, which is what the padding mask achieves in a padded batch.

use crate::batch::TokenBatch;

/// The attended tokens of a batch, sequence after sequence.
pub struct PackedTokens {
    /// Sequence `s` owns packed rows `starts[s]..starts[s + 1]`.
    pub starts: Vec<usize>,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Position ids: the token's column in the padded batch, as transformers numbers them.
    pub positions: Vec<u32>,
    /// Index of each packed token in the padded `[batch, seq_len]` layout.
    pub origin: Vec<usize>,
}

impl PackedTokens {
    pub fn new(batch: &TokenBatch) -> Self {
        let total = batch.mask.iter().filter(|&&m| m == 1).count();
        let mut packed = PackedTokens {
            starts: Vec::with_capacity(batch.batch + 1),
            ids: Vec::with_capacity(total),
            type_ids: Vec::with_capacity(total),
            positions: Vec::with_capacity(total),
            origin: Vec::with_capacity(total),
        };
        packed.starts.push(0);
        for row in 0..batch.batch {
            for column in 0..batch.seq_len {
                let index = row * batch.seq_len + column;
                if batch.mask[index] == 1 {
                    packed.ids.push(batch.ids[index]);
                    packed.type_ids.push(batch.type_ids[index]);
                    packed.positions.push(column as u32);
                    packed.origin.push(index);
                }
            }
            packed.starts.push(packed.ids.len());
        }
        packed
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn sequences(&self) -> usize {
        self.starts.len() - 1
    }

    /// Packed rows of sequence `s`.
    pub fn range(&self, s: usize) -> std::ops::Range<usize> {
        self.starts[s]..self.starts[s + 1]
    }
}
