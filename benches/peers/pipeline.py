"""The text-to-vector pipeline shared by the peers that only run a graph (ONNX Runtime,
OpenVINO, CTranslate2), so that they differ from minilm_fast only in the forward pass.

- Tokenizer: the model's ``tokenizer.json`` through the ``tokenizers`` package, truncation at
  sentence-transformers' ``max_seq_length`` (256 for all-MiniLM-L6-v2, from
  ``sentence_bert_config.json``; the file's own pinned 128 and fixed padding are switched off).
- Batches: texts sorted by word pieces, longest first, ``batch_size`` at a time, each padded
  (id 0, mask 0) to its own longest text only.
- Pooling: mean of the last hidden state over the mask, then L2 normalisation (what the model's
  ``modules.json`` asks for: Pooling mean + Normalize), in NumPy, rows back in input order.

Everything here is NumPy + tokenizers; no engine is imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

# hidden state of one padded batch: (ids int64 (b, L), mask int64 (b, L)) -> float32 (b, L, H)
ForwardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def max_seq_length(model_dir: Path) -> int:
    """sentence-transformers' limit for this model (``sentence_bert_config.json``), else 512."""
    path = model_dir / "sentence_bert_config.json"
    if path.is_file():
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return 512


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The model's tokenizer, truncating at ``max_seq_length``, never padding."""
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_seq_length(model_dir))
    return tok


class Pipeline:
    """Texts -> normalised mean-pooled embeddings around a caller's forward function."""

    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = load_tokenizer(model_dir)
        st_config = model_dir / "sentence_bert_config.json"
        lower = False
        if st_config.is_file():
            lower = bool(json.loads(st_config.read_text(encoding="utf-8")).get("do_lower_case"))
        self.lower = lower

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if self.lower:
            texts = [t.lower() for t in texts]
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def batches(
        self, texts: Sequence[str], batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(row indices, ids, mask) per batch: length-sorted, padded to the batch's longest."""
        ids = self.token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            longest = len(ids[rows[0]])
            batch = np.zeros((len(rows), longest), dtype=np.int64)
            mask = np.zeros((len(rows), longest), dtype=np.int64)
            for r, i in enumerate(rows):
                batch[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            yield np.asarray(rows), batch, mask

    def encode(self, texts: Sequence[str], batch_size: int, forward: ForwardFn) -> np.ndarray:
        out: np.ndarray | None = None
        for rows, ids, mask in self.batches(texts, batch_size):
            pooled = mean_pool_normalize(forward(ids, mask), mask)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        if out is None:
            raise ValueError("no texts")
        return out


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean over the sequence axis, then unit length (sentence-transformers' clamps)."""
    weights = mask.astype(np.float32)
    summed = np.matmul(weights[:, None, :], hidden)[:, 0, :]
    pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
