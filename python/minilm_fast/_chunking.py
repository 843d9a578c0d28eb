"""Texts to the token-id rows the engine runs: one framed row per text that fits, and for a long
text in chunk mode overlapping windows, whose vectors are then averaged back into one per text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._tokenize import SentenceTokenizer, TokenIds

__all__ = ["Rows", "combine_windows", "token_rows"]


@dataclass
class Rows:
    """The rows of a window of texts: `ids[i]` belongs to text `owners[i]` (rows of one text
    are consecutive); `truncated[t]` says whether text `t` was cut."""

    ids: list[TokenIds]
    owners: npt.NDArray[np.intp]
    truncated: npt.NDArray[np.bool_]

    @property
    def chunked(self) -> bool:
        """Whether some text has several rows (windows)."""
        return len(self.ids) != len(self.truncated)


def token_rows(
    tokenizer: SentenceTokenizer,
    texts: list[str],
    prompt: str,
    chunk: bool,
    stride: int,
    *,
    parallel: bool,
) -> Rows:
    """The token-id rows to run for `texts`, each with `prompt` before it.

    A text that fits is one framed row, exactly as sentence-transformers feeds it. With
    `chunk`, a longer text becomes overlapping windows that share `stride` word pieces, each
    with the prompt; without it, the text is cut (and marked so).
    """
    prompted = [prompt + text for text in texts] if prompt else texts
    budget = tokenizer.content_budget
    # Truncation needs only the first word pieces: a 10 MB text is not read to its end.
    pieces = tokenizer.word_pieces(prompted, parallel=parallel, limit=None if chunk else budget)
    truncated = np.fromiter((len(p) > budget for p in pieces), dtype=bool, count=len(pieces))
    if not chunk or not truncated.any():
        owners = np.arange(len(texts), dtype=np.intp)
        return Rows([tokenizer.frame(p) for p in pieces], owners, truncated)
    head = tokenizer.word_pieces([prompt])[0] if prompt else []
    rows: list[TokenIds] = []
    owner_list: list[int] = []
    for index, text_pieces in enumerate(pieces):
        if not truncated[index]:
            rows.append(tokenizer.frame(text_pieces))
            owner_list.append(index)
            continue
        body = tokenizer.word_pieces([texts[index]])[0] if prompt else text_pieces
        windows = tokenizer.windows(body, head, stride)
        rows.extend(windows)
        owner_list.extend([index] * len(windows))
    owners = np.asarray(owner_list, dtype=np.intp)
    return Rows(rows, owners, np.zeros(len(texts), dtype=bool))


def combine_windows(
    vectors: npt.NDArray[np.float32],
    lengths: npt.NDArray[np.float64],
    owners: npt.NDArray[np.intp],
    normalize: bool,
) -> npt.NDArray[np.float32]:
    """One vector per text from the `vectors` of its windows (rows of one owner consecutive):
    their mean weighted by each window's word pieces of text (`lengths`), L2-normalised when
    `normalize` (a mean of unit vectors is shorter than 1). Texts in order of `owners`."""
    starts = np.flatnonzero(np.diff(owners, prepend=-1))
    totals = np.add.reduceat(vectors.astype(np.float64) * lengths[:, None], starts, axis=0)
    weights = np.maximum(np.add.reduceat(lengths, starts), 1.0)
    combined: npt.NDArray[np.float32] = (totals / weights[:, None]).astype(np.float32)
    if normalize:
        combined /= np.maximum(np.linalg.norm(combined, axis=1, keepdims=True), 1e-12)
    return combined
