"""Tokenization exactly as sentence-transformers does it, with the `tokenizers` package.

sentence-transformers' Transformer module lowercases each text when `sentence_bert_config.json`
says `do_lower_case` and calls the Hugging Face tokenizer with `truncation="longest_first"` at
`max_seq_length` word pieces (special tokens included) and padding to the longest text of the
batch. Versions up to 5 also stripped each text, 6 does not; for BERT's whitespace-splitting
pre-tokenizer the ids are the same either way (tests/parity/test_parity.py checks the counts).

The `tokenizer.json` shipped with all-MiniLM-L6-v2 pins Fixed(128) padding and truncation at 128;
both are switched off here, never inherited. Texts are tokenized whole, without special tokens,
and cut and framed by `frame` / `windows`: for one sequence this is what the tokenizer's own
longest-first truncation does, and it tells us which texts were cut and lets a long text be split
into overlapping windows without tokenizing it twice.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence

from tokenizers import Tokenizer, models

from ._minilm_fast import MiniLMError, TextConfig, read_text_config

__all__ = ["SentenceTokenizer", "TokenIds"]

TokenIds = list[int]

#: Texts longer than this many characters are tokenized a segment at a time, cut between words,
#: so a 10 MB text needs memory for one segment (tokenizers keeps ~100 bytes per character of
#: the text it is given) and a truncated one stops being read once it has enough word pieces.
_SEGMENT_CHARS = 16_384
#: A whitespace character followed by a word: cutting before it splits no word (nor, for
#: byte-level BPE, a run of whitespace) for BERT, byte-level and Metaspace pre-tokenizers.
_SPACE_BEFORE_WORD = re.compile(r"[ \t\n\r](?=[^ \t\n\r])")
#: Text without whitespace (Chinese, a URL) is cut where the tokenizer starts a word, found by
#: tokenizing windows of this many characters (overlapping by a few), at most _PROBES of them.
_PROBE_CHARS = 1_024
_PROBES = 16
_OVERLAP = 8


class SentenceTokenizer:
    """Texts to word-piece ids for one model folder, with sentence-transformers' length limit.

    `text_config` is the folder's settings as the native module read them
    (``read_text_config``); read here when not given.
    """

    def __init__(
        self,
        model_dir: pathlib.Path,
        max_positions: int,
        max_seq_length: int | None = None,
        text_config: TextConfig | None = None,
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
        # Added tokens ([SEP], [MASK]) are matched in the raw text before anything else: a
        # segment must not end inside one.
        self._added = sorted(
            {t.content for t in self._tokenizer.get_added_tokens_decoder().values() if t.content}
        )
        model = self._tokenizer.model
        # WordPiece makes any word longer than max_input_chars_per_word one unknown token.
        self._unk_id = (
            self._tokenizer.token_to_id(model.unk_token)
            if isinstance(model, models.WordPiece)
            else None
        )
        self._max_positions = max_positions
        config = read_text_config(model_dir) if text_config is None else text_config
        self.do_lower_case = config.do_lower_case
        if max_seq_length is None:
            # The model's own limit, capped by its position table as transformers caps it.
            max_seq_length = min(config.max_seq_length or max_positions, max_positions)
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

    def word_pieces(
        self, texts: Sequence[str], *, parallel: bool = True, limit: int | None = None
    ) -> list[TokenIds]:
        """Every word piece of each text, without special tokens.

        With `limit`, a text may stop being read once it has more than `limit` word pieces:
        its first `limit` pieces are exact and it has more than `limit` exactly when the
        whole text does, which is all truncation needs. `parallel=False` tokenizes on the
        calling thread: `encode_batch` would use the tokenizers package's own pool of every
        CPU, which a `threads=1` Encoder must not.
        """
        prepared = list(texts)
        if self.do_lower_case:
            prepared = [text.lower() for text in prepared]
        long = {i for i, text in enumerate(prepared) if len(text) > _SEGMENT_CHARS}
        short = [text for i, text in enumerate(prepared) if i not in long] if long else prepared
        if parallel:
            encodings = self._tokenizer.encode_batch(short, add_special_tokens=False)
        else:
            encodings = [self._tokenizer.encode(t, add_special_tokens=False) for t in short]
        if not long:
            return [encoding.ids for encoding in encodings]
        pieces = iter(encodings)
        return [
            self._segmented(text, limit) if i in long else next(pieces).ids
            for i, text in enumerate(prepared)
        ]

    def _segmented(self, text: str, limit: int | None) -> TokenIds:
        """The word pieces of a long text, tokenized a segment at a time.

        Segments end where a word starts, so the pieces are those of the whole text: the
        normalizer and pre-tokenizer of BERT-like tokenizers act on each character and split
        words at whitespace and punctuation. Only a run of over 16,000 characters with no word
        boundary at all (a blob, not language) is cut inside; WordPiece makes such a word one
        unknown token, so the rest of it is skipped and the pieces stay exact.
        """
        pieces: TokenIds = []
        start = 0
        inside_long_word = False
        while start < len(text) and (limit is None or len(pieces) <= limit):
            end, cut_inside_word = self._segment_end(text, start)
            before = self._before_added_token(text, end)
            if before != end:  # an added token starts a word: the cut is between words now
                end, cut_inside_word = before, False
            encoding = self._tokenizer.encode(text[start:end], add_special_tokens=False)
            ids = encoding.ids
            if inside_long_word and ids:
                words = encoding.word_ids
                ids = ids[next((i for i, w in enumerate(words) if w != words[0]), len(ids)) :]
            pieces += ids
            inside_long_word = (
                cut_inside_word and self._unk_id is not None and pieces[-1:] == [self._unk_id]
            )
            start = end
        return pieces

    def _before_added_token(self, text: str, cut: int) -> int:
        """`cut`, or the start of an added token that `cut` would split."""
        for token in self._added:
            found = text.find(token, max(cut - len(token) + 1, 0), cut + len(token) - 1)
            if found != -1:
                return found
        return cut

    def _segment_end(self, text: str, start: int) -> tuple[int, bool]:
        """Where the segment from `start` ends, and whether that is inside a (very long) word."""
        cut = start + _SEGMENT_CHARS
        if cut >= len(text):
            return len(text), False
        space = _SPACE_BEFORE_WORD.search(text, cut, cut + _SEGMENT_CHARS)
        if space:
            return space.start(), False
        one_word = False
        for _ in range(_PROBES):
            encoding = self._tokenizer.encode(
                text[cut : cut + _PROBE_CHARS], add_special_tokens=False
            )
            words = encoding.word_ids
            # The window may start inside a word; a second word starts at a true boundary.
            for index in range(1, len(words)):
                if words[index] != words[0]:
                    return cut + encoding.offsets[index][0], False
            if cut + _PROBE_CHARS >= len(text):
                return len(text), False
            one_word = bool(words)
            cut += _PROBE_CHARS - _OVERLAP
        # No boundary in the last window, which reaches _OVERLAP characters past the cut.
        return cut, one_word

    def count_tokens(self, texts: Sequence[str], *, parallel: bool = True) -> list[int]:
        """Word pieces each text runs with: special tokens included, cut at max_seq_length."""
        budget = self.content_budget
        specials = len(self.prefix) + len(self.suffix)
        pieces = self.word_pieces(texts, parallel=parallel, limit=budget)
        return [min(len(p), budget) + specials for p in pieces]

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


def _special_frame(tokenizer: Tokenizer) -> tuple[TokenIds, TokenIds]:
    """The special tokens the post-processor puts before and after one sequence."""
    encoding = tokenizer.encode("a", add_special_tokens=True)
    special = encoding.special_tokens_mask
    first = special.index(0) if 0 in special else len(special)
    last = len(special) - special[::-1].index(0) if 0 in special else len(special)
    return encoding.ids[:first], encoding.ids[last:]
