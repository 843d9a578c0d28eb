"""The options of `Encoder` and its `encode` calls: their types, and the checks that turn a bad
value into a TypeError or ValueError saying what was expected."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict, Union

import numpy as np
import numpy.typing as npt

from ._minilm_fast import COMPUTE_MODES
from ._quantize import Precision, check_precision

__all__ = [
    "COMPUTE_MODES",
    "DEFAULT_CHUNK_STRIDE",
    "Compute",
    "EncodeOptions",
    "EncoderArgs",
    "LongText",
    "OutputValue",
    "Plan",
    "Sentences",
    "check_batch_size",
    "check_compute",
    "check_flag",
    "check_long_text",
    "check_output_options",
    "check_streamed_precision",
    "check_stride",
    "check_threads",
    "check_token_output",
    "check_truncate_dim",
    "check_unicode",
    "checked_texts",
    "count",
    "resolve_plan",
    "warn_if_computing_less",
]

Sentences = Union[str, Iterable[str]]
OutputValue = Literal["sentence_embedding", "token_embeddings"]
LongText = Literal["truncate", "chunk"]
#: Word pieces shared by consecutive windows of a chunked long text (at most half a window).
DEFAULT_CHUNK_STRIDE = 32

#: The names of ``COMPUTE_MODES`` (defined by the native module) for type checkers.
Compute = Literal["float32", "bfloat16", "int8", "auto"]


class EncoderArgs(TypedDict, total=False):
    """The keyword arguments of :class:`~minilm_fast.Encoder` after ``model``; see ``Encoder``
    for their meaning. Adapters that build an Encoder pass these on."""

    threads: int | None
    max_seq_length: int | None
    cache_dir: str | os.PathLike[str] | None
    revision: str | None
    local_files_only: bool
    long_text: LongText
    chunk_stride: int | None
    prompts: Mapping[str, str] | None
    default_prompt_name: str | None
    truncate_dim: int | None
    compute: Compute
    max_batch_tokens: int
    coalesce: bool


class EncodeOptions(TypedDict, total=False):
    """Keyword arguments `encode_query`, `encode_document` and the async methods pass through."""

    prompt_name: str | None
    prompt: str | None
    batch_size: int
    show_progress_bar: bool | None
    output_value: OutputValue
    precision: Precision
    convert_to_numpy: bool
    convert_to_tensor: bool
    device: str | None
    normalize_embeddings: bool
    truncate_dim: int | None
    long_text: LongText | None
    chunk_stride: int | None
    quantization_ranges: npt.ArrayLike | None
    return_truncation: bool


@dataclass(frozen=True)
class Plan:
    """One call's resolved options."""

    prompt: str
    batch_size: int
    normalize: bool
    truncate_dim: int | None
    long_text: LongText
    stride: int
    parallel: bool
    max_batch_tokens: int

    @property
    def unit(self) -> bool | None:
        """The engine's `normalize`: True to make every written row unit length (after the cut
        to `truncate_dim`), None to leave it to the model's own Normalize module."""
        return True if self.normalize else None


def resolve_plan(
    *,
    prompt: str,
    batch_size: object,
    normalize: object,
    truncate_dim: object,
    long_text: object,
    stride: object,
    output_dim: int,
    content_budget: int,
    parallel: bool,
    max_batch_tokens: int,
) -> Plan:
    """One call's options checked, with the Encoder's already filled in where the call gave
    none (`truncate_dim`, `long_text`, `stride`: None means the default stride)."""
    if stride is None:
        stride = min(DEFAULT_CHUNK_STRIDE, content_budget // 2)
    return Plan(
        prompt=prompt,
        batch_size=check_batch_size(batch_size),
        normalize=check_flag("normalize_embeddings", normalize),
        truncate_dim=check_truncate_dim(truncate_dim, output_dim),
        long_text=check_long_text(long_text),
        stride=check_stride(stride),
        parallel=parallel,
        max_batch_tokens=max_batch_tokens,
    )


def check_compute(value: object) -> Compute:
    """`value` if it names a compute mode the native module knows."""
    if value not in COMPUTE_MODES:
        raise ValueError(
            f"compute must be one of {', '.join(map(repr, COMPUTE_MODES))}, got {value!r}"
        )
    return value  # type: ignore[return-value]  # one of COMPUTE_MODES, the names of Compute


def check_threads(value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"threads must be an int or None, got {type(value).__name__}")
    return value


def check_batch_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"batch_size must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"batch_size must be at least 1, got {value}")
    return value


def check_max_batch_tokens(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_batch_tokens must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"max_batch_tokens must be at least 1, got {value}")
    return value


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_long_text(value: object) -> LongText:
    if value == "truncate":
        return "truncate"
    if value == "chunk":
        return "chunk"
    raise ValueError(f'long_text must be "truncate" or "chunk", got {value!r}')


def check_truncate_dim(value: object, dim: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"truncate_dim must be an int or None, got {type(value).__name__}")
    if not 1 <= value <= dim:
        raise ValueError(f"truncate_dim must be between 1 and {dim}, got {value}")
    return value


def check_output_options(output_value: object, convert_to_tensor: object, device: object) -> None:
    if output_value not in ("sentence_embedding", "token_embeddings"):
        raise ValueError(
            f'output_value must be "sentence_embedding" or "token_embeddings", got {output_value!r}'
        )
    if convert_to_tensor and output_value != "sentence_embedding":
        raise ValueError('convert_to_tensor=True needs output_value="sentence_embedding"')
    if device is not None and device != "cpu":
        raise ValueError(
            f"minilm_fast computes on the CPU; device must be None or 'cpu', got {device!r}"
        )


def checked_texts(sentences: object) -> Iterator[str]:
    """The texts of `sentences` one by one, each checked to be a str (index in the message)."""
    if isinstance(sentences, str):
        return iter([check_unicode("sentences", sentences)])
    if isinstance(
        sentences, (bytes, bytearray, memoryview, Mapping, set, frozenset)
    ) or not isinstance(sentences, Iterable):
        raise TypeError(
            "sentences must be a str or an ordered iterable of str (list, tuple, generator), "
            f"got {type(sentences).__name__}"
        )

    def checked() -> Iterator[str]:
        for index, text in enumerate(sentences):
            if not isinstance(text, str):
                raise TypeError(f"sentences[{index}] must be a str, got {type(text).__name__}")
            yield check_unicode(f"sentences[{index}]", text)

    return checked()


def check_unicode(name: str, text: str) -> str:
    """`text`, refused with a ValueError if it is not valid Unicode (holds a lone surrogate).

    Such strings come from decoding bytes with ``errors="surrogateescape"`` (file names,
    ``sys.argv``) or from broken JSON escapes; tokenizers cannot take them.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} is not valid Unicode: it holds the lone surrogate {text[exc.start]!r} at "
            f"position {exc.start}; decode the bytes with errors='replace' (or remove it) first"
        ) from None
    return text


def count(sentences: object) -> int | None:
    """How many texts `sentences` holds, if it says (one for a str)."""
    if isinstance(sentences, str):
        return 1
    return len(sentences) if isinstance(sentences, Sequence) else None


#: What each compute mode needs from the CPU, for the warning when it is not there.
_COMPUTE_NEEDS = {"bfloat16": "AVX512-BF16", "int8": "AVX2 or AVX-512 VNNI", "float32": "nothing"}


def warn_if_computing_less(requested: Compute, running: str) -> None:
    """Warn when the native model computes in less than the mode asked for (not "auto")."""
    if requested not in ("auto", running):
        warnings.warn(
            f"compute={requested!r} needs {_COMPUTE_NEEDS[requested]}, which this process "
            f"cannot use (the CPU lacks it, or MINILM_FAST_ISA chose less); computing in "
            f"{running}",
            RuntimeWarning,
            stacklevel=3,
        )


def check_stride(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"chunk_stride must be an int, got {type(value).__name__}")
    return value


def check_token_output(long_text: LongText, precision: Precision) -> None:
    """``output_value="token_embeddings"`` goes with neither chunking nor quantization."""
    if long_text == "chunk":
        raise ValueError('output_value="token_embeddings" needs long_text="truncate"')
    if precision != "float32":
        raise ValueError('output_value="token_embeddings" needs precision="float32"')


def check_streamed_precision(precision: object, ranges: object) -> Precision:
    """`encode_iter`'s precision: int8/uint8 need ranges given, so every batch shares a scale."""
    checked = check_precision(precision)
    if checked in ("int8", "uint8") and ranges is None:
        raise ValueError(
            f"encode_iter with precision={checked!r} needs quantization_ranges, so every "
            "batch is quantized with the same scale (see minilm_fast.quantization_ranges)"
        )
    return checked
