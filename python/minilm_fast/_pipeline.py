"""The data path of `Encoder.encode`: texts -> windows of texts -> token-id rows -> length-sorted
batches -> one ragged native call per batch, which writes each text's vector straight into its
row of one preallocated output array (normalised and cut to ``truncate_dim`` by the engine)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from ._chunking import Rows, combine_windows, token_rows
from ._minilm_fast import NativeModel
from ._options import Plan, Sentences, checked_texts, count
from ._progress import Bar, add_to_total, progress
from ._tokenize import SentenceTokenizer, TokenIds

__all__ = [
    "MAX_BATCH_TOKENS",
    "WINDOW_TEXTS",
    "encode_rows",
    "iter_sentence_embeddings",
    "sentence_embeddings",
    "token_embeddings",
]

#: Texts tokenized, length-sorted and encoded together; bounds memory for streamed input.
WINDOW_TEXTS = 4096

#: The default of `Encoder(max_batch_tokens=)`: most tokens (rows x longest row) given to the
#: engine in one call. A larger `batch_size` is run in several calls, so working memory (~40 KB a
#: token for all-MiniLM-L6-v2) stays bounded whatever `batch_size` says; concurrent calls are
#: coalesced up to it. 32 texts of 256 word pieces, the default batch, is one call.
MAX_BATCH_TOKENS = 8192

Embeddings = tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]


def sentence_embeddings(
    native: NativeModel,
    tokenizer: SentenceTokenizer,
    sentences: Sentences,
    plan: Plan,
    show_progress_bar: bool | None,
) -> Embeddings:
    """All sentence embeddings of `sentences` (float32), and which texts were cut."""
    total = count(sentences)
    dim = plan.truncate_dim or native.output_dim
    # With the count known, every window is written into its rows of the one result.
    output = np.empty((total or 0, dim), dtype=np.float32)
    filled = 0
    parts: list[npt.NDArray[np.float32]] = []
    cuts: list[npt.NDArray[np.bool_]] = []
    with progress(total, show_progress_bar) as bar:
        for window in _windows(checked_texts(sentences), plan.batch_size):
            if not parts and filled + len(window) <= len(output):
                target = output[filled : filled + len(window)]
                filled += len(window)
            else:  # no count, or a sequence that grew while it was read
                target = np.empty((len(window), dim), dtype=np.float32)
                parts.append(target)
            cuts.append(_embed_window(native, tokenizer, window, plan, bar, target))
    truncated = cuts[0] if len(cuts) == 1 else np.concatenate([np.zeros(0, dtype=bool), *cuts])
    if not parts:
        return output[:filled], truncated
    return np.concatenate([output[:filled], *parts]), truncated


def iter_sentence_embeddings(
    native: NativeModel,
    tokenizer: SentenceTokenizer,
    texts: Iterable[str],
    total: int | None,
    plan: Plan,
    show_progress_bar: bool | None,
) -> Iterator[Embeddings]:
    """The embeddings of `texts` a window at a time, for corpora larger than memory."""
    dim = plan.truncate_dim or native.output_dim
    with progress(total, show_progress_bar) as bar:
        for window in _windows(texts, plan.batch_size):
            output = np.empty((len(window), dim), dtype=np.float32)
            yield output, _embed_window(native, tokenizer, window, plan, bar, output)


def token_embeddings(
    native: NativeModel,
    tokenizer: SentenceTokenizer,
    texts: Iterable[str],
    plan: Plan,
    show_progress_bar: bool | None,
) -> tuple[list[npt.NDArray[np.float32]], npt.NDArray[np.bool_]]:
    """One (tokens, hidden) array per text, padding removed, and which texts were cut."""
    outputs: list[npt.NDArray[np.float32]] = []
    cuts: list[npt.NDArray[np.bool_]] = []
    with progress(None, show_progress_bar) as bar:
        for window in _windows(texts, plan.batch_size):
            rows = token_rows(tokenizer, window, plan.prompt, False, 0, parallel=plan.parallel)
            per_row: list[npt.NDArray[np.float32]] = [np.empty(0, np.float32)] * len(rows.ids)
            lengths = _lengths(rows.ids)
            order = _longest_first(lengths)
            for batch in _batches(order, lengths, plan.batch_size, plan.max_batch_tokens):
                ids, mask = _pad([rows.ids[i] for i in batch])
                hidden = native.token_embeddings(ids, mask)
                for slot, index in enumerate(batch):
                    per_row[index] = hidden[slot, : lengths[index]].copy()
                bar.update(len(batch))
            outputs.extend(per_row)
            cuts.append(rows.truncated)
    truncated = np.concatenate(cuts) if cuts else np.zeros(0, dtype=bool)
    return outputs, truncated


def _embed_window(
    native: NativeModel,
    tokenizer: SentenceTokenizer,
    texts: list[str],
    plan: Plan,
    bar: Bar,
    output: npt.NDArray[np.float32],
) -> npt.NDArray[np.bool_]:
    """Sentence embeddings of one window of texts written into `output` (a row per text), and
    which texts were cut.

    A text that occurs several times is computed once (crawls repeat empty strings and
    boilerplate by the million), into the row of its first occurrence, then copied to the rest.
    """
    distinct = list(dict.fromkeys(texts))
    inverse: npt.NDArray[np.intp] | None = None
    if len(distinct) == len(texts):
        targets = np.arange(len(texts), dtype=np.intp)
    else:
        slot = {text: index for index, text in enumerate(distinct)}
        inverse = np.fromiter((slot[text] for text in texts), dtype=np.intp, count=len(texts))
        targets = np.unique(inverse, return_index=True)[1]  # each text's first occurrence
        bar.update(len(texts) - len(distinct))
    chunk = plan.long_text == "chunk"
    rows = token_rows(tokenizer, distinct, plan.prompt, chunk, plan.stride, parallel=plan.parallel)
    if not rows.chunked:
        encode_rows(
            native,
            rows.ids,
            targets,
            output,
            plan.unit,
            plan.batch_size,
            plan.max_batch_tokens,
            bar,
        )
    else:
        _run_chunked(native, tokenizer, rows, targets, output, plan, bar)
    if inverse is None:
        return rows.truncated
    copies = np.flatnonzero(targets[inverse] != np.arange(len(texts)))
    output[copies] = output[targets[inverse[copies]]]
    return rows.truncated[inverse]


def _run_chunked(
    native: NativeModel,
    tokenizer: SentenceTokenizer,
    rows: Rows,
    targets: npt.NDArray[np.intp],
    output: npt.NDArray[np.float32],
    plan: Plan,
    bar: Bar,
) -> None:
    """`encode_rows` for a window where some texts became several windows: texts of one row are
    written in place as usual; the windows of the others are computed into a buffer of their
    own, combined per text and then written to the text's row."""
    per_text = np.bincount(rows.owners, minlength=len(targets))
    windowed = per_text[rows.owners] > 1
    add_to_total(bar, len(rows.ids) - len(targets))
    single = np.flatnonzero(~windowed)
    encode_rows(
        native,
        [rows.ids[i] for i in single],
        targets[rows.owners[single]],
        output,
        plan.unit,
        plan.batch_size,
        plan.max_batch_tokens,
        bar,
    )
    several = np.flatnonzero(windowed)
    window_ids = [rows.ids[i] for i in several]
    vectors = np.empty((len(window_ids), native.output_dim), dtype=np.float32)
    # Whole vectors, unit length when the caller or the model asks, averaged and normalised
    # again; then cut to `truncate_dim` (and normalised once more if the caller asked).
    whole_unit = plan.normalize and plan.truncate_dim is None
    unit = True if whole_unit else None
    encode_rows(
        native, window_ids, None, vectors, unit, plan.batch_size, plan.max_batch_tokens, bar
    )
    specials = len(tokenizer.prefix) + len(tokenizer.suffix)
    lengths = np.asarray([len(r) - specials for r in window_ids], dtype=np.float64)
    owners = rows.owners[several]
    combined = combine_windows(vectors, lengths, owners, whole_unit or native.normalize)
    combined = combined[:, : output.shape[1]]
    if plan.normalize and plan.truncate_dim is not None:
        combined /= np.maximum(np.linalg.norm(combined, axis=1, keepdims=True), 1e-12)
    output[targets[np.unique(owners)]] = combined


def encode_rows(
    native: NativeModel,
    rows: list[TokenIds],
    targets: npt.NDArray[np.intp] | None,
    output: npt.NDArray[np.float32],
    normalize: bool | None,
    batch_size: int,
    max_tokens: int,
    bar: Bar | None = None,
) -> None:
    """The vector of `rows[i]` into `output[targets[i]]` (or `output[i]`), longest rows first,
    in engine calls of at most `batch_size` rows and `max_tokens` tokens (rows x longest).

    The rows are laid out once, longest first, in one flat id array: every batch is then a
    slice of its offsets, and the engine reads its ids in place.
    """
    lengths = _lengths(rows)
    order = _longest_first(lengths)
    sorted_lengths = lengths[order]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(sorted_lengths, out=offsets[1:])
    flat = np.fromiter(
        itertools.chain.from_iterable([rows[i] for i in order]),
        dtype=np.int64,
        count=int(offsets[-1]),
    )
    destination = order if targets is None else targets[order]
    for start, stop in _batch_bounds(sorted_lengths, batch_size, max_tokens):
        native.encode_ragged(
            flat,
            offsets[start : stop + 1],
            out=output,
            rows=destination[start:stop],
            normalize=normalize,
        )
        if bar is not None:
            bar.update(stop - start)


def _windows(texts: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while window := list(itertools.islice(iterator, max(WINDOW_TEXTS, batch_size))):
        yield window


def _lengths(rows: list[TokenIds]) -> npt.NDArray[np.int64]:
    return np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))


def _longest_first(lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Row order longest first, like sentence-transformers; stable, so ties keep input order."""
    return np.argsort(-lengths, kind="stable")


def _batch_bounds(
    sorted_lengths: npt.NDArray[np.int64], batch_size: int, max_tokens: int
) -> Iterator[tuple[int, int]]:
    """[start, stop) of each engine call over rows sorted longest first: `batch_size` rows at
    a time, a batch split further when its rows, padded to the first (the longest), exceed
    `max_tokens`."""
    for start in range(0, len(sorted_lengths), batch_size):
        stop = min(start + batch_size, len(sorted_lengths))
        step = max(1, max_tokens // max(int(sorted_lengths[start]), 1))
        for first in range(start, stop, step):
            yield first, min(first + step, stop)


def _batches(
    order: npt.NDArray[np.intp],
    lengths: npt.NDArray[np.int64],
    batch_size: int,
    max_tokens: int,
) -> Iterator[npt.NDArray[np.intp]]:
    """The row indices of each padded engine call, as `_batch_bounds` cuts them."""
    for start, stop in _batch_bounds(lengths[order], batch_size, max_tokens):
        yield order[start:stop]


def _pad(rows: list[TokenIds]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(input_ids, attention_mask) padded on the right to the longest row."""
    width = max((len(row) for row in rows), default=0)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return ids, mask
