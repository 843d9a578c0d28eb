"""pytest-benchmark groups for the workloads users run: short sentences in batches, long documents,
one query at a time, and the native call alone (no tokenization). Run with `make bench`.

Texts are built deterministically here so the numbers compare across machines and commits.
"""

from __future__ import annotations

import numpy as np
import pytest

from minilm_fast import Encoder

SUBJECTS = ["A man", "The girl", "A small dog", "Two children", "An old woman", "The chef"]
VERBS = ["is playing", "is cutting", "is riding", "watches", "is painting", "carries"]
OBJECTS = ["a guitar", "an onion", "a horse", "the sunset", "a fence", "a heavy box"]


def short_texts(n: int) -> list[str]:
    """STS-B-like captions, about 8-14 word pieces each."""
    return [
        f"{SUBJECTS[i % 6]} {VERBS[(i // 6) % 6]} {OBJECTS[(i // 36) % 6]} on day {i}."
        for i in range(n)
    ]


def long_texts(n: int) -> list[str]:
    """Distinct documents that reach the 256 word-piece limit (the Encoder computes a repeated
    text once, so repeats would flatter the figure)."""
    return [
        f"Report {i}: " + " ".join(short_texts(40)[i % 7 :] + short_texts(40)[: i % 7])
        for i in range(n)
    ]


@pytest.mark.benchmark(group="short texts, batch 32")
def test_short_texts(benchmark, encoder: Encoder) -> None:  # type: ignore[no-untyped-def]
    texts = short_texts(256)
    result = benchmark(encoder.encode, texts, batch_size=32)
    assert result.shape == (256, 384)


@pytest.mark.benchmark(group="long texts, batch 32")
def test_long_texts(benchmark, encoder: Encoder) -> None:  # type: ignore[no-untyped-def]
    texts = long_texts(32)
    result = benchmark.pedantic(encoder.encode, (texts,), rounds=3, iterations=1)
    assert result.shape == (32, 384)


@pytest.mark.benchmark(group="one query")
def test_single_query(benchmark, encoder: Encoder) -> None:  # type: ignore[no-untyped-def]
    result = benchmark(encoder.encode, "how do I reset my password?")
    assert result.shape == (384,)


@pytest.mark.benchmark(group="native call, 32 x 16 tokens")
def test_native_only(benchmark, encoder: Encoder) -> None:  # type: ignore[no-untyped-def]
    ids = np.full((32, 16), 2023, dtype=np.int64)
    mask = np.ones_like(ids)
    result = benchmark(encoder.native.encode, ids, mask)
    assert result.shape == (32, 384)
