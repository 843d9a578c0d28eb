"""Tokenization exactly as sentence-transformers does it, with the `tokenizers` package.

sentence-transformers' Transformer module lowercases each text when `sentence_bert_config.json`
says `do_lower_case` and calls the Hugging Face tokenizer with `truncation="longest_first"` at
`max_seq_length` word pieces (special tokens included) and padding to the longest text of the
batch. Versions up to 5 also stripped each text, 6 does not; for BERT's whitespace-splitting
pre-tokenizer the ids are the same either way (tests/test_parity.py checks the counts).

The `tokenizer.json` shipped with all-MiniLM-L6-v2 pins Fixed(128) padding and truncation at 128;
both are replaced here, never inherited.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from tokenizers import Encoding, Tokenizer

from ._minilm_fast import MiniLMError

__all__ = ["SentenceTokenizer"]


class SentenceTokenizer:
    """Texts to token ids for one model folder, with sentence-transformers' truncation limit."""

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
        if not 3 <= value <= self._max_positions:
            raise ValueError(
                f"max_seq_length must be between 3 and the model's {self._max_positions} "
                f"positions, got {value}"
            )
        self._max_seq_length = value
        self._tokenizer.enable_truncation(max_length=value, strategy="longest_first")

    def encode(self, texts: Sequence[str], *, parallel: bool = True) -> list[Encoding]:
        """Unpadded encodings of `texts` (stripped and, if configured, lowercased first).

        `parallel=False` tokenizes on the calling thread: `encode_batch` would use the
        tokenizers package's own pool of every CPU, which a `threads=1` Encoder must not.
        """
        prepared = [text.strip() for text in texts]
        if self.do_lower_case:
            prepared = [text.lower() for text in prepared]
        if parallel:
            return self._tokenizer.encode_batch(prepared, add_special_tokens=True)
        return [self._tokenizer.encode(text, add_special_tokens=True) for text in prepared]

    @staticmethod
    def pad(
        encodings: Sequence[Encoding],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(input_ids, attention_mask) padded on the right to the longest encoding."""
        width = max((len(e.ids) for e in encodings), default=0)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            ids[row, :length] = encoding.ids
            mask[row, :length] = 1
        return ids, mask


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
