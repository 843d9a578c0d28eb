"""Tokenization exactly as sentence-transformers does it, with the `tokenizers` package.

sentence-transformers' Transformer module lowercases each text when `sentence_bert_config.json`
says `do_lower_case` and calls the Hugging Face tokenizer with `truncation="longest_first"` at
`max_seq_length` word pieces (special tokens included) and padding to the longest text of the
batch. Versions up to 5 also stripped each text, 6 does not; for BERT's whitespace-splitting
pre-tokenizer the ids are the same either way (tests/test_parity.py checks the counts).

The `tokenizer.json` shipped with all-MiniLM-L6-v2 pins Fixed(128) padding and truncation at 128;
both are switched off here, never inherited. Texts are tokenized whole, without special tokens,
and cut and framed by `frame` / `windows`: for one sequence this is what the tokenizer's own
longest-first truncation does, and it tells us which texts were cut and lets a long text be split
into overlapping windows without tokenizing it twice.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from ._minilm_fast import MiniLMError

__all__ = ["SentenceTokenizer", "pad"]

TokenIds = list[int]


class SentenceTokenizer:
    """Texts to word-piece ids for one model folder, with sentence-transformers' length limit."""

    def __init__(
        self, model_dir: pathlib.Path, max_positions: int, max_seq_length: int | None = None
    ) -> None:
        path = model_dir / "tokenizer.json"
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for unparsable files
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file") from exc
            raise MiniLMError(f"reading {path}: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.prefix, self.suffix = _special_frame(self._tokenizer)
        self._max_positions = max_positions
        st_config = _read_json(model_dir / "sentence_bert_config.json")
        self.do_lower_case = bool(st_config.get("do_lower_case", False))
        if max_seq_length is None:
            # The model's own limit, capped by its position table as transformers caps it.
            configured = st_config.get("max_seq_length")
            if not isinstance(configured, int) or configured < 1:
                configured = _model_max_length(model_dir) or max_positions
            max_seq_length = min(configured, max_positions)
        self.max_seq_length = max_seq_length  # an explicit value is checked by the setter

    @property
    def max_seq_length(self) -> int:
        """Longest sequence in word pieces, [CLS] and [SEP] included; longer texts are cut."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"max_seq_length must be an int, got {type(value).__name__}")
        lowest = len(self.prefix) + len(self.suffix) + 1
        if not lowest <= value <= self._max_positions:
            raise ValueError(
                f"max_seq_length must be between {lowest} and the model's {self._max_positions} "
                f"positions, got {value}"
            )
        self._max_seq_length = value

    @property
    def content_budget(self) -> int:
        """Word pieces of text that fit in one sequence beside the special tokens."""
        return self._max_seq_length - len(self.prefix) - len(self.suffix)

    def word_pieces(self, texts: Sequence[str], *, parallel: bool = True) -> list[TokenIds]:
        """Every word piece of each text, untruncated and without special tokens.

        `parallel=False` tokenizes on the calling thread: `encode_batch` would use the
        tokenizers package's own pool of every CPU, which a `threads=1` Encoder must not.
        """
        prepared = list(texts)
        if self.do_lower_case:
            prepared = [text.lower() for text in prepared]
        if parallel:
            encodings = self._tokenizer.encode_batch(prepared, add_special_tokens=False)
        else:
            encodings = [self._tokenizer.encode(t, add_special_tokens=False) for t in prepared]
        return [encoding.ids for encoding in encodings]

    def frame(self, pieces: TokenIds) -> TokenIds:
        """`pieces` cut to the length limit, between the special tokens ([CLS] ... [SEP])."""
        return [*self.prefix, *pieces[: self.content_budget], *self.suffix]

    def windows(self, pieces: TokenIds, head: TokenIds, stride: int) -> list[TokenIds]:
        """Overlapping framed windows covering all of `pieces`, each starting with `head`.

        Consecutive windows share `stride` word pieces (the tokenizers meaning of stride).
        `head` (a prompt's word pieces) is repeated in every window so each is encoded as
        the model expects; it must leave room for more than `stride` word pieces of text.
        """
        width = self.content_budget - len(head)
        if not 0 <= stride < width:
            raise ValueError(
                f"chunk_stride must be between 0 and {width - 1} word pieces for windows of "
                f"{width} word pieces (max_seq_length {self._max_seq_length}), got {stride}"
            )
        step = width - stride
        starts = range(0, max(len(pieces) - stride, 1), step)
        return [[*self.prefix, *head, *pieces[s : s + width], *self.suffix] for s in starts]

    def encode(self, texts: Sequence[str], *, parallel: bool = True) -> list[TokenIds]:
        """Token ids of each text as sentence-transformers feeds them to the model."""
        return [self.frame(p) for p in self.word_pieces(texts, parallel=parallel)]


def pad(rows: Sequence[TokenIds]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(input_ids, attention_mask) padded on the right to the longest row."""
    width = max((len(row) for row in rows), default=0)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return ids, mask


def _special_frame(tokenizer: Tokenizer) -> tuple[TokenIds, TokenIds]:
    """The special tokens the post-processor puts before and after one sequence."""
    encoding = tokenizer.encode("a", add_special_tokens=True)
    special = encoding.special_tokens_mask
    first = special.index(0) if 0 in special else len(special)
    last = len(special) - special[::-1].index(0) if 0 in special else len(special)
    return encoding.ids[:first], encoding.ids[last:]


def _read_json(path: pathlib.Path) -> dict[str, object]:
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MiniLMError(f"reading {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise MiniLMError(f"reading {path}: expected a JSON object")
    return value


def _model_max_length(model_dir: pathlib.Path) -> int | None:
    """A plain checkpoint's limit from tokenizer_config.json, as transformers would use it."""
    value = _read_json(model_dir / "tokenizer_config.json").get("model_max_length")
    return value if isinstance(value, int) and value > 0 else None
