"""One ``encode`` call from its checked options to its result, written once for threads and
coroutines: a generator that yields the engine work it needs and is sent back each result.

The work is either a `Call` (one batch's worth of texts, tokenized, for the coalescer's queue)
or a job to run whole (larger inputs through the pipeline's windows, token embeddings). A
thread's `encode` runs both on the spot (`Coalescer.drive`); a coroutine's `aencode` awaits
the call and runs the job in a thread of its own (`Coalescer.drive_async`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy.typing as npt

from . import _options as checks
from . import _pipeline as pipeline
from ._coalescing import Coalescer, Steps
from ._minilm_fast import NativeModel
from ._options import OutputValue, Plan, Sentences
from ._outputs import TruncationReport, finish, finish_tokens
from ._progress import shows_bar
from ._quantize import Precision, quantize_embeddings
from ._tokenize import SentenceTokenizer

__all__ = [
    "EncoderParts",
    "Finishing",
    "encode_steps",
    "option_defaults",
    "stream",
    "with_defaults",
]

#: The TruncationWarning's stack level from `encode_steps`: the report, these steps, the
#: coalescer's `drive` (or `drive_async`), `encode` (or `aencode`), the caller's line.
_CALLER = 5


@dataclass(frozen=True)
class EncoderParts:
    """What an Encoder computes with."""

    native: NativeModel
    tokenizer: SentenceTokenizer
    coalescer: Coalescer
    report_truncation: TruncationReport


@dataclass(frozen=True)
class Finishing:
    """How the float32 rows become what the caller asked for (`_outputs.finish`)."""

    precision: Precision
    ranges: npt.ArrayLike | None
    convert_to_numpy: bool
    convert_to_tensor: bool
    return_truncation: bool


def encode_steps(
    parts: EncoderParts,
    sentences: Sentences,
    plan: Plan,
    output_value: OutputValue,
    show_progress_bar: bool | None,
    finishing: Finishing,
) -> Steps:
    """The steps of one ``encode`` call; its return value is what ``encode`` returns."""
    single = isinstance(sentences, str)
    max_seq_length = parts.tokenizer.max_seq_length
    returned = finishing.return_truncation
    if output_value == "token_embeddings":
        checks.check_token_output(plan.long_text, finishing.precision)
        texts = checks.checked_texts(sentences)
        tokens, truncated = yield lambda: pipeline.token_embeddings(
            parts.native, parts.tokenizer, texts, plan, show_progress_bar
        )
        parts.report_truncation(truncated, returned, max_seq_length, stacklevel=_CALLER)
        return finish_tokens(tokens, truncated, single=single, return_truncation=returned)
    # A progress bar asks for the pipeline's batches, which it counts.
    shared = not shows_bar(show_progress_bar)
    call = parts.coalescer.prepare(sentences, plan) if shared else None
    if call is not None:
        embeddings, truncated = (yield call), call.truncated
    else:
        embeddings, truncated = yield lambda: pipeline.sentence_embeddings(
            parts.native, parts.tokenizer, sentences, plan, show_progress_bar
        )
    parts.report_truncation(truncated, returned, max_seq_length, stacklevel=_CALLER)
    result: Any = finish(
        embeddings,
        truncated,
        single=single,
        precision=finishing.precision,
        ranges=finishing.ranges,
        convert_to_numpy=finishing.convert_to_numpy,
        convert_to_tensor=finishing.convert_to_tensor,
        return_truncation=returned,
    )
    return result


def stream(
    parts: EncoderParts,
    sentences: Iterable[str],
    plan: Plan,
    precision: Precision,
    ranges: npt.ArrayLike | None,
    show_progress_bar: bool | None,
) -> Iterator[npt.NDArray[Any]]:
    """What ``encode_iter`` yields: arrays of ``plan.batch_size`` rows, a window at a time."""
    if isinstance(sentences, str):
        raise TypeError("encode_iter takes an iterable of texts, not one str")
    total = checks.count(sentences)
    for embeddings, truncated in pipeline.iter_sentence_embeddings(
        parts.native,
        parts.tokenizer,
        checks.checked_texts(sentences),
        total,
        plan,
        show_progress_bar,
    ):
        max_seq_length = parts.tokenizer.max_seq_length
        # the report, this generator, encode_iter, the caller's line
        parts.report_truncation(truncated, False, max_seq_length, stacklevel=4)
        for start in range(0, len(embeddings), plan.batch_size):
            rows = embeddings[start : start + plan.batch_size]
            yield quantize_embeddings(rows, precision, ranges=ranges)


def option_defaults(encode: Callable[..., Any]) -> dict[str, Any]:
    """`encode`'s options (the parameters after ``self`` and ``sentences``) and their defaults,
    in its order."""
    parameters = inspect.signature(encode).parameters
    return {name: p.default for name, p in parameters.items() if name not in ("self", "sentences")}


def with_defaults(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[Any]:
    """The value of every option, in the order of `defaults`: what ``aencode``'s keywords say,
    else the default. An unknown keyword is refused as a call of ``encode`` would refuse it
    (without the cost of `inspect.Signature.bind` on every call)."""
    unknown = [name for name in options if name not in defaults]
    if unknown:
        raise TypeError(f"aencode() got an unexpected keyword argument {unknown[0]!r}")
    return list({**defaults, **options}.values())
