"""Reliability of ``Encoder.encode`` against whatever users typed or crawled.

Every bad input gets a clear exception of the right type that names the problem, and the next
call gives exactly what it gave before; inputs that are valid but extreme (lone surrogates are
not, NUL bytes are; a 10 MB text; a million empty strings) are encoded in bounded time and
memory. ``tests/api/test_encoder.py`` and ``tests/api/test_encode_api.py`` already cover None,
bytes, ints, dicts, a list mixing str and int, nested lists, batch_size 0 and -1 and one unknown
keyword; this file covers the rest.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import random
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from support.reliability import record, run_python
from tokenizers import Tokenizer

import minilm_fast._pipeline as pipeline_module
import minilm_fast._tokenize as tokenize_module
from minilm_fast import Encoder
from minilm_fast._tokenize import SentenceTokenizer

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "",
    "CJK 中文 and emoji 😀 mixed in.",
]


@pytest.fixture(autouse=True)
def _category(record_property: Any) -> None:
    record(record_property, category="encode() inputs")


@pytest.fixture(scope="module")
def reference(encoder: Encoder) -> npt.NDArray[np.float32]:
    """``encode(TEXTS)`` before any bad input was tried."""
    return encoder.encode(TEXTS)


def _still_works(encoder: Encoder, reference: npt.NDArray[np.float32]) -> None:
    """After an error, the Encoder gives bit for bit what it gave before."""
    np.testing.assert_array_equal(encoder.encode(TEXTS), reference)


# --- the wrong kind of input ------------------------------------------------------------------


def _raises_midway() -> Iterator[str]:
    yield "fine"
    yield "also fine"
    raise OSError("the crawler lost its connection")


class _BrokenIterable:
    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")


BAD_SENTENCES: list[tuple[str, Any, type[BaseException], str]] = [
    ("float", 3.5, TypeError, "float"),
    ("bool", True, TypeError, "bool"),
    ("numpy-float", np.float32(1.0), TypeError, "float32"),
    ("bytearray", bytearray(b"text"), TypeError, "bytearray"),
    ("memoryview", memoryview(b"text"), TypeError, "memoryview"),
    ("frozenset", frozenset({"a"}), TypeError, "frozenset"),
    ("object", object(), TypeError, "object"),
    ("list-with-None", ["a", "b", None], TypeError, r"sentences\[2\].*NoneType"),
    ("list-with-bytes", ["a", b"b"], TypeError, r"sentences\[1\].*bytes"),
    ("list-with-float", ["a", float("nan")], TypeError, r"sentences\[1\].*float"),
    ("tuple-in-list", [("a", "b")], TypeError, r"sentences\[0\].*tuple"),
    ("dict-in-list", ["a", {"text": "b"}], TypeError, r"sentences\[1\].*dict"),
    ("numbers-array", np.array([1, 2]), TypeError, r"sentences\[0\]"),
    ("2-D-str-array", np.array([["a", "b"]]), TypeError, r"sentences\[0\].*ndarray"),
    ("generator-with-int", (t for t in ["a", 7]), TypeError, r"sentences\[1\].*int"),
    ("generator-raises", _raises_midway(), OSError, "lost its connection"),
    ("iter-raises", _BrokenIterable(), RuntimeError, "cannot iterate"),
]


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [case[1:] for case in BAD_SENTENCES],
    ids=[case[0] for case in BAD_SENTENCES],
)
def test_bad_sentences_are_refused_by_position_and_type(
    encoder: Encoder,
    reference: npt.NDArray[np.float32],
    bad: Any,
    exc: type[BaseException],
    match: str,
) -> None:
    with pytest.raises(exc, match=match):
        encoder.encode(bad)
    _still_works(encoder, reference)


def test_str_subclasses_are_texts(encoder: Encoder, reference: npt.NDArray[np.float32]) -> None:
    """numpy's str_ (what ``np.array(texts)`` holds) and other str subclasses are texts."""

    class Tagged(str):
        pass

    np.testing.assert_array_equal(encoder.encode([Tagged(t) for t in TEXTS]), reference)
    np.testing.assert_array_equal(encoder.encode([np.str_(t) for t in TEXTS]), reference)


def test_generator_failing_after_several_windows_leaves_nothing_behind(
    encoder: Encoder,
    reference: npt.NDArray[np.float32],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Any,
) -> None:
    """A stream that breaks after whole windows were encoded: the error, then a clean Encoder."""
    monkeypatch.setattr(pipeline_module, "WINDOW_TEXTS", 4)
    read = 0

    def stream() -> Iterator[str]:
        nonlocal read
        for text in itertools.islice(itertools.cycle(TEXTS), 13):
            read += 1
            yield text
        raise ValueError("row 14 is corrupt")

    with pytest.raises(ValueError, match="row 14"):
        encoder.encode(stream(), batch_size=2)
    assert read == 13
    record(record_property, fault="the input stream raises after 3 windows were encoded")
    with pytest.raises(ValueError, match="row 14"):
        list(encoder.encode_iter(stream(), batch_size=2))
    _still_works(encoder, reference)


BAD_OPTIONS: list[tuple[str, dict[str, Any], type[BaseException], str]] = [
    ("batch_size-None", {"batch_size": None}, TypeError, "batch_size"),
    ("batch_size-str", {"batch_size": "32"}, TypeError, "batch_size"),
    ("batch_size-bool", {"batch_size": True}, TypeError, "batch_size"),
    ("batch_size-float", {"batch_size": 1.0}, TypeError, "batch_size"),
    ("batch_size-very-negative", {"batch_size": -(2**63)}, ValueError, "batch_size"),
    ("chunk_stride-negative", {"long_text": "chunk", "chunk_stride": -1}, ValueError, "stride"),
    ("chunk_stride-huge", {"long_text": "chunk", "chunk_stride": 10**6}, ValueError, "stride"),
    ("long_text-unknown", {"long_text": "split"}, ValueError, "long_text"),
    ("native-name-normalize", {"normalize": True}, TypeError, "normalize"),
    ("misspelt-batchsize", {"batchsize": 8}, TypeError, "batchsize"),
    ("show_progress", {"show_progress": False}, TypeError, "show_progress"),
]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [case[1:] for case in BAD_OPTIONS],
    ids=[case[0] for case in BAD_OPTIONS],
)
def test_bad_options_are_refused_by_name(
    encoder: Encoder,
    reference: npt.NDArray[np.float32],
    kwargs: dict[str, Any],
    exc: type[BaseException],
    match: str,
) -> None:
    with pytest.raises(exc, match=match):
        encoder.encode(["a long enough text " * 200, "b"], **kwargs)
    _still_works(encoder, reference)


def test_too_many_positional_arguments(encoder: Encoder) -> None:
    with pytest.raises(TypeError, match="positional"):
        encoder.encode(TEXTS, *([None] * 12))  # type: ignore[call-overload]


def test_huge_batch_size_runs_in_bounded_engine_calls(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batch_size=10**9 on long texts: engine calls stay under the token cap, results agree."""
    texts = [f"text number {i} " * (90 + i) for i in range(40)]  # all cut to 256
    want = encoder.encode(texts, batch_size=8)
    calls: list[tuple[int, ...]] = []
    native = encoder.native

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(native, name)

        def encode_ragged(self, ids: np.ndarray, offsets: np.ndarray, **kwargs: Any) -> Any:
            lengths = np.diff(offsets)
            calls.append((len(lengths), int(lengths.max())))  # (rows, longest): padded size
            return native.encode_ragged(ids, offsets, **kwargs)

    # The engine as the call path sees it: through the pipeline and through the coalescer.
    recording = Recording()
    monkeypatch.setattr(encoder, "_parts", dataclasses.replace(encoder._parts, native=recording))
    monkeypatch.setattr(encoder._coalescer, "_native", recording)
    for sentences in (texts, iter(texts)):  # one call's worth for the queue; a stream
        calls.clear()
        got = encoder.encode(sentences, batch_size=10**9)
        assert max(b * t for b, t in calls) <= pipeline_module.MAX_BATCH_TOKENS
        assert len(calls) > 1
        np.testing.assert_allclose(got, want, atol=1e-6)


# --- text that is not valid Unicode, control characters ---------------------------------------

SURROGATES: list[tuple[str, Any, str]] = [
    ("alone", "\ud800", r"sentences is not valid Unicode.*'\\ud800' at position 0"),
    ("inside", "abc\udfffdef", r"position 3"),
    ("surrogateescape", b"caf\xe9".decode("utf-8", "surrogateescape"), r"'\\udce9'"),
    ("in-a-list", ["ok", "fine", "x", "bad \ud83d"], r"sentences\[3\].*position 4"),
    ("in-a-generator", (t for t in ["ok", "\udc80"]), r"sentences\[1\]"),
]


@pytest.mark.parametrize(
    ("bad", "match"), [case[1:] for case in SURROGATES], ids=[case[0] for case in SURROGATES]
)
def test_lone_surrogates_are_value_errors_naming_the_text(
    encoder: Encoder, reference: npt.NDArray[np.float32], bad: Any, match: str
) -> None:
    """tokenizers cannot take them ("TextInputSequence must be str"); say which text and where."""
    with pytest.raises(ValueError, match=match):
        encoder.encode(bad)
    _still_works(encoder, reference)


@pytest.mark.parametrize(
    "options",
    [
        {"prompt": "query: \ud800 "},
        {"output_value": "token_embeddings"},
        {"long_text": "chunk"},
        {"return_truncation": True},
    ],
    ids=["prompt", "token-embeddings", "chunk", "return-truncation"],
)
def test_lone_surrogates_are_refused_on_every_path(
    encoder: Encoder, reference: npt.NDArray[np.float32], options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="not valid Unicode"):
        encoder.encode(["fine", "bad \udfff"], **options)
    with pytest.raises(ValueError, match="not valid Unicode"):
        list(encoder.encode_iter(["fine", "bad \udfff"]))
    _still_works(encoder, reference)


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("nul\x00byte", "nulbyte"),
        ("\x00" * 1000, ""),
        ("\x1b[31mred\x1b[0m alert", "[31mred[0m alert"),
        ("tab\tnew\nline\rreturn", "tab new line return"),
        ("zero\u200bwidth", "zerowidth"),
        ("\ufffd replacement", " replacement"),
    ],
    ids=["nul-inside", "only-nuls", "ansi-escapes", "whitespace-controls", "zero-width", "fffd"],
)
def test_control_characters_are_text(encoder: Encoder, text: str, same_as: str) -> None:
    """NUL and other control characters encode as BERT's normalizer sees them: removed."""
    got = encoder.encode([text, "other"])
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[0], encoder.encode([same_as, "other"])[0], atol=1e-6)


# --- extreme sizes ----------------------------------------------------------------------------

_BIG_TEXT = """
import time
import numpy as np
from minilm_fast import Encoder

encoder = Encoder(MODEL, threads=2)
encoder.encode(["warm up"])
tokenizer = encoder._tokenizer
real = tokenizer._tokenizer
read = 0

class Counting:
    # The tokenizer, counting the characters it is given.
    def __getattr__(self, name):
        return getattr(real, name)

    def encode(self, text, **kwargs):
        global read
        read += len(text)
        return real.encode(text, **kwargs)

    def encode_batch(self, texts, **kwargs):
        global read
        read += sum(map(len, texts))
        return real.encode_batch(texts, **kwargs)

tokenizer._tokenizer = Counting()
figures = {}
words = "the committee reviewed a budget and approved new funds for schools".split()
rng = np.random.default_rng(0)
natural = " ".join(rng.choice(words, 1_900_000))
for name, text in [
    ("words", natural),
    ("cjk", "中文字" * (10 * 2**20 // 9 + 1)),
    ("no-whitespace", "a" * (10 * 2**20)),
    ("whitespace", " \\n" * (5 * 2**20)),
]:
    assert len(text.encode()) >= 10 * 2**20
    read = 0
    before = rss_mb()
    reset_peak()
    start = time.perf_counter()
    vector, cut = encoder.encode(text, return_truncation=True)
    seconds = time.perf_counter() - start
    growth = peak_mb() - before
    prefix = encoder.encode(text[:20_000])
    figures[name] = {
        "seconds": round(seconds, 2),
        "peak_growth_mb": round(growth, 1),
        "chars_tokenized": read,
        "truncated": bool(cut),
        "same_as_prefix": bool(np.array_equal(vector, prefix)),
        "finite": bool(np.isfinite(vector).all()),
    }
figures["peak_mb"] = peak_mb()
emit(**figures)
"""


@pytest.mark.timeout(300)
def test_ten_megabyte_texts_are_truncated_in_bounded_memory(
    model_dir: pathlib.Path, record_property: Any
) -> None:
    """A 10 MB text (words, CJK, one endless word, only whitespace): bounded memory and work.

    Truncation reads a long text a segment at a time and stops once it has enough word
    pieces, so natural text and CJK are cut after the first ~16,000 characters. A text with no
    word in it (only whitespace) or one word of 10 MB (which WordPiece makes one [UNK]) is
    read to its end, a segment at a time. Tokenizing 10 MB whole kept ~1.4 GB; here the
    process grows by a few MB.
    """
    out = run_python(f"MODEL = {str(model_dir)!r}\n" + _BIG_TEXT, timeout=280).result
    print({k: v for k, v in out.items()})
    for name in ("words", "cjk"):
        assert out[name]["truncated"], name
        assert out[name]["chars_tokenized"] < 200_000, out[name]
    for name in ("no-whitespace", "whitespace"):
        assert not out[name]["truncated"], name  # [CLS] [UNK] [SEP] and [CLS] [SEP]
    for name in ("words", "cjk", "no-whitespace", "whitespace"):
        assert out[name]["same_as_prefix"], (name, out[name])
        assert out[name]["finite"], name
        assert out[name]["peak_growth_mb"] < 100, (name, out[name])
    record(
        record_property,
        cases=4,
        figure_10mb_text=", ".join(
            f"{name} {out[name]['seconds']} s" for name in ("words", "cjk", "no-whitespace")
        ),
    )


def test_ten_megabyte_word_is_one_unknown_token(encoder: Encoder) -> None:
    """No whitespace in 10 MB: the same vector as a short over-long word ([UNK]), not 160."""
    np.testing.assert_array_equal(encoder.encode("a" * (10 * 2**20)), encoder.encode("a" * 200))


_PIECES = [
    "Hello",
    "world",
    "Ünïcödé",
    "naïve",
    "中文字符",
    "東京",
    "😀",
    "don't",
    "U.S.A.",
    "https://example.com/a?b=c&d=e",
    "\x00",
    "\x1c",
    "\u200b",
    "\u00a0",
    "\u3000",
    "\t",
    "\n",
    "\r\n",
    "  ",
    "[SEP]",
    "[MASK]",
    "x" * 150,
    "e\u0301",
    "İstanbul",
    "ﬁ",
    "a-b-c",
    "1,000.5",
]


def test_segmented_tokenization_equals_whole_tokenization(
    model_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long texts are tokenized in segments cut between words; the pieces are the same.

    Segments are shrunk to 64 characters so that 1,500 random texts built from awkward
    pieces (CJK without spaces, special tokens written out, combining accents, control and
    zero-width characters, words longer than WordPiece's 100 characters) are cut everywhere.
    """
    monkeypatch.setattr(tokenize_module, "_SEGMENT_CHARS", 64)
    monkeypatch.setattr(tokenize_module, "_PROBE_CHARS", 64)
    monkeypatch.setattr(tokenize_module, "_PROBES", 3)
    tokenizer = SentenceTokenizer(model_dir, 512)
    whole = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    whole.no_truncation()
    whole.no_padding()
    rng = random.Random(1)
    for _ in range(1500):
        text = "".join(
            rng.choice(_PIECES) + rng.choice(["", " ", "\n"]) for _ in range(rng.randint(5, 300))
        )
        prepared = text.lower() if tokenizer.do_lower_case else text
        want = whole.encode(prepared, add_special_tokens=False).ids
        assert tokenizer.word_pieces([text], parallel=False)[0] == want, repr(text)
        head = tokenizer.word_pieces([text], parallel=False, limit=20)[0]
        assert head[:20] == want[:20]
        assert (len(head) > 20) == (len(want) > 20)


def test_chunked_long_text_equals_unsegmented(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """long_text="chunk" on a 20,000-character text gives what whole tokenization gives."""
    text = " ".join(f"sentence {i} about budgets, schools and rivers." for i in range(400))
    assert len(text) > tokenize_module._SEGMENT_CHARS
    got = encoder.encode(text, long_text="chunk")
    monkeypatch.setattr(tokenize_module, "_SEGMENT_CHARS", 10**9)
    np.testing.assert_array_equal(encoder.encode(text, long_text="chunk"), got)


_MILLION_EMPTY = """
import time
import numpy as np
from minilm_fast import Encoder

encoder = Encoder(MODEL, threads=2)
empty = encoder.encode("")
encoder.encode(["warm", "up"])
before = rss_mb()
reset_peak()
start = time.perf_counter()
out = encoder.encode([""] * 1_000_000)
seconds = time.perf_counter() - start
growth = peak_mb() - before
mixed = [""] * 200_000
for i in range(0, 200_000, 997):
    mixed[i] = f"text {i % 5}"
got = encoder.encode(mixed)
want = {i % 5: encoder.encode(f"text {i % 5}") for i in range(5)}
mixed_ok = all(
    np.allclose(got[i], want[i % 5], atol=1e-6) if mixed[i] else np.array_equal(got[i], empty)
    for i in range(0, 200_000, 331)
)
emit(
    shape=list(out.shape),
    all_equal=bool((out == empty).all()),
    mixed_ok=bool(mixed_ok),
    seconds=round(seconds, 2),
    growth_mb=round(growth, 1),
    output_mb=round(out.nbytes / 2**20, 1),
)
"""


@pytest.mark.timeout(300)
def test_a_million_empty_strings(model_dir: pathlib.Path, record_property: Any) -> None:
    """A crawl's million empty strings: each distinct text is computed once per window.

    Without that, all-MiniLM-L6-v2 computes 2 million tokens (~25 minutes on 2 cores). Memory
    is the (1000000, 384) float32 result (1.4 GiB), written in place, not held twice.
    """
    out = run_python(f"MODEL = {str(model_dir)!r}\n" + _MILLION_EMPTY, timeout=280).result
    print(out)
    assert out["shape"] == [1_000_000, 384]
    assert out["all_equal"]
    assert out["mixed_ok"]
    assert out["growth_mb"] < out["output_mb"] + 200, out
    record(record_property, cases=2, figure_million_empty=f"{out['seconds']} s")


def test_duplicates_get_the_vector_of_their_text(encoder: Encoder) -> None:
    """Rows of repeated texts equal the rows of those texts in a duplicate-free call."""
    distinct = encoder.encode(TEXTS)
    order = [4, 0, 0, 3, 1, 4, 4, 2, 3, 0]
    np.testing.assert_allclose(
        encoder.encode([TEXTS[i] for i in order]), distinct[order], atol=1e-6
    )
    cut, flags = encoder.encode(["word " * 400, "x", "word " * 400], return_truncation=True)
    assert flags.tolist() == [True, False, True]
    np.testing.assert_array_equal(cut[0], cut[2])


def test_error_messages_name_the_problem_not_internals(encoder: Encoder) -> None:
    """Messages say what the caller passed, never "TextInputSequence" or a Rust type."""
    for bad in (["a", 1], "\ud800", [b"x"]):
        with pytest.raises((TypeError, ValueError)) as info:
            encoder.encode(bad)  # type: ignore[arg-type]
        assert not re.search(r"TextInputSequence|PyErr|Bound<|unwrap", str(info.value))
