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

    /// The sequences padded on the right into a batch of the longest one's width, for
    /// Candle's stock backend, which runs padded batches.
    pub fn padded(&self) -> TokenBatch {
        let batch = self.sequences();
        let seq_len = (0..batch).map(|s| self.range(s).len()).max().unwrap_or(0);
        let mut padded = TokenBatch {
            batch,
            seq_len,
            ids: vec![0; batch * seq_len],
            type_ids: vec![0; batch * seq_len],
            mask: vec![0; batch * seq_len],
        };
        for s in 0..batch {
            let row = s * seq_len;
            let range = self.range(s);
            let n = range.len();
            padded.ids[row..row + n].copy_from_slice(&self.ids[range.clone()]);
            padded.type_ids[row..row + n].copy_from_slice(&self.type_ids[range]);
            padded.mask[row..row + n].fill(1);
        }
        padded
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

    /// The batch cut into at most `groups` runs of whole sequences with about equal numbers
    /// of tokens, each packed on its own and paired with its first sequence's index. Groups
    /// are independent all the way through the encoder (attention never crosses sequences),
    /// so each can run on its own thread without meeting the others at every layer.
    pub fn split(&self, groups: usize) -> Vec<(usize, PackedTokens)> {
        let sequences = self.sequences();
        let groups = groups.clamp(1, sequences.max(1));
        let mut cuts = vec![0];
        for g in 1..groups {
            let goal = self.len() * g / groups;
            let previous = cuts[cuts.len() - 1];
            // The sequence boundary nearest to `goal` tokens, after the previous cut.
            let mut s = previous + 1;
            while s < sequences && self.starts[s] < goal {
                s += 1;
            }
            if s > previous + 1 && goal - self.starts[s - 1] < self.starts[s] - goal {
                s -= 1;
            }
            if s >= sequences {
                break;
            }
            cuts.push(s);
        }
        cuts.push(sequences);
        cuts.windows(2)
            .map(|w| (w[0], self.slice(w[0]..w[1])))
            .collect()
    }

    /// Sequences `range` as a batch of their own (`origin` still indexes the whole batch).
    fn slice(&self, range: std::ops::Range<usize>) -> PackedTokens {
        let rows = self.starts[range.start]..self.starts[range.end];
        PackedTokens {
            starts: self.starts[range.start..=range.end]
                .iter()
                .map(|s| s - rows.start)
                .collect(),
            ids: self.ids[rows.clone()].to_vec(),
            type_ids: self.type_ids[rows.clone()].to_vec(),
            positions: self.positions[rows.clone()].to_vec(),
            origin: self.origin[rows].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(lengths: &[usize]) -> PackedTokens {
        let mut starts = vec![0];
        for &n in lengths {
            starts.push(starts[starts.len() - 1] + n);
        }
        let total = starts[starts.len() - 1];
        PackedTokens {
            starts,
            ids: (0..total as u32).collect(),
            type_ids: vec![0; total],
            positions: (0..total as u32).map(|i| i % 7).collect(),
            origin: (0..total).map(|i| i * 2).collect(),
        }
    }

    #[test]
    fn split_keeps_every_token_once_in_order_in_balanced_groups() {
        let lengths = [30, 28, 20, 17, 15, 15, 14, 12, 10, 9, 9, 8, 5];
        let whole = packed(&lengths);
        for groups in 1..=16 {
            let parts = whole.split(groups);
            assert_eq!(parts.len(), groups.min(lengths.len()));
            let mut next_sequence = 0;
            let mut ids = Vec::new();
            for (first, part) in &parts {
                assert_eq!(*first, next_sequence);
                assert!(part.sequences() >= 1);
                for s in 0..part.sequences() {
                    assert_eq!(part.range(s).len(), lengths[first + s]);
                }
                next_sequence += part.sequences();
                ids.extend_from_slice(&part.ids);
                let rows = whole.starts[*first]..whole.starts[first + part.sequences()];
                assert_eq!(part.positions, whole.positions[rows.clone()]);
                assert_eq!(part.origin, whole.origin[rows]);
            }
            assert_eq!(next_sequence, lengths.len());
            assert_eq!(ids, whole.ids);
            if groups == 2 {
                // 192 tokens: 95 and 97, not the 78 / 114 of a cut by sequence count.
                let sizes: Vec<usize> = parts.iter().map(|(_, p)| p.len()).collect();
                assert!(sizes.iter().all(|&n| n.abs_diff(96) <= 15), "{sizes:?}");
            }
        }
        assert_eq!(packed(&[]).split(4).len(), 1);
    }
}
