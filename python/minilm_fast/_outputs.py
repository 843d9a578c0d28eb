"""What `encode` hands back: the embeddings quantized, as a torch tensor or a list, one row for a
str, with the truncation flags if asked; the once-per-Encoder warning when texts were cut; and
the cosine similarities of `Encoder.similarity`."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from ._quantize import Precision, quantize_embeddings

__all__ = [
    "TruncationReport",
    "TruncationWarning",
    "cosine_similarity",
    "finish",
    "finish_tokens",
    "pairwise_cosine_similarity",
    "unit_rows",
]


class TruncationWarning(UserWarning):
    """Texts were longer than `max_seq_length` word pieces and were cut (shown once per Encoder)."""


class TruncationReport:
    """Warns the first time texts are cut, unless the caller asked for the flags."""

    def __init__(self) -> None:
        self.warned = False

    def __call__(
        self,
        truncated: npt.NDArray[np.bool_],
        returned: bool,
        max_seq_length: int,
        *,
        stacklevel: int,
    ) -> None:
        """Warn if texts were cut; `stacklevel` counts the frames up to the user's line."""
        if returned or self.warned:
            return
        cut = int(np.count_nonzero(truncated))  # cheaper than .sum(), a ufunc reduction
        if cut == 0:
            return
        self.warned = True
        warnings.warn(
            TruncationWarning(
                f"{cut} of {len(truncated)} texts were longer than {max_seq_length} word "
                "pieces and were truncated, as sentence-transformers does. Pass "
                'long_text="chunk" to embed all of each text, or return_truncation=True to '
                "see which were cut. (Shown once per Encoder.)"
            ),
            stacklevel=stacklevel,
        )


def finish(
    embeddings: npt.NDArray[np.float32],
    truncated: npt.NDArray[np.bool_],
    *,
    single: bool,
    precision: Precision,
    ranges: npt.ArrayLike | None,
    convert_to_numpy: bool,
    convert_to_tensor: bool,
    return_truncation: bool,
) -> Any:
    """`encode`'s result from the float32 embeddings and the truncation flags."""
    if precision in ("int8", "uint8") and ranges is None and len(embeddings) == 1:
        raise ValueError(
            f"{precision} quantization needs ranges from at least two embeddings; pass "
            "quantization_ranges= (see minilm_fast.quantization_ranges)"
        )
    output: Any = (
        embeddings  # float32 already; the dtype checks are a few microseconds per query
        if precision == "float32"
        else quantize_embeddings(embeddings, precision, ranges=ranges)
    )
    if convert_to_tensor:
        output = _to_torch(output)
    elif not convert_to_numpy:
        output = list(output)
    return finish_tokens(output, truncated, single=single, return_truncation=return_truncation)


def finish_tokens(
    output: Any, truncated: npt.NDArray[np.bool_], *, single: bool, return_truncation: bool
) -> Any:
    """The first row of `output` for a single text, with the truncation flags if asked."""
    if single:
        output = output[0]
    if return_truncation:
        return output, (bool(truncated[0]) if single else truncated)
    return output


def unit_rows(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """`values` (one row, or rows) as float32 rows of unit length; zero rows stay zero."""
    matrix = np.asarray(values, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be 1-D or 2-D, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Cosine similarity of every row of `a` with every row of `b`: shape (len(a), len(b)).

    A 1-D argument counts as one row. Zero vectors have similarity 0 to everything.

    >>> queries = encoder.encode(["How do I bake bread?"])
    >>> docs = encoder.encode(["Knead the dough, let it rise, bake it.", "Tax forms."])
    >>> encoder.similarity(queries, docs).argmax()
    np.int64(0)
    """
    similarities: npt.NDArray[np.float32] = unit_rows(a) @ unit_rows(b).T
    return similarities


def pairwise_cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Cosine similarity of row i of `a` with row i of `b`: shape (len(a),)."""
    left, right = unit_rows(a), unit_rows(b)
    if left.shape != right.shape:
        raise ValueError(
            f"pairwise similarity needs equal shapes, got {left.shape} and {right.shape}"
        )
    pairwise: npt.NDArray[np.float32] = np.einsum("ij,ij->i", left, right)
    return pairwise


def _to_torch(embeddings: npt.NDArray[Any]) -> Any:
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise ImportError(
            "convert_to_tensor=True needs torch; install it, or use the NumPy array "
            "minilm_fast returns by default"
        ) from None
    return torch.from_numpy(embeddings)
