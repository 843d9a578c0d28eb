"""The Encoder contract: shapes, order, norms, batching and padding invariance, threads, errors."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from minilm_fast import Encoder
from minilm_fast._minilm_fast import default_threads

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "",
]
LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 40)


def test_list_gives_rows_in_input_order_and_unit_norm(encoder: Encoder) -> None:
    batch = encoder.encode(SENTENCES)
    assert batch.shape == (len(SENTENCES), 384)
    assert batch.dtype == np.float32
    assert batch.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-6)
    for row, sentence in zip(batch, SENTENCES):
        np.testing.assert_allclose(encoder.encode(sentence), row, atol=1e-6)


def test_single_string_gives_a_vector(encoder: Encoder) -> None:
    vector = encoder.encode("A man is eating food.")
    assert vector.shape == (384,)
    np.testing.assert_allclose(vector, encoder.encode(["A man is eating food."])[0], atol=1e-6)


def test_empty_list_gives_zero_rows(encoder: Encoder) -> None:
    empty = encoder.encode([])
    assert empty.shape == (0, 384)
    assert empty.dtype == np.float32


def test_similar_sentences_are_closer_than_unrelated_ones(encoder: Encoder) -> None:
    food, bread, violin = encoder.encode(
        ["A man is eating food.", "A man is eating a piece of bread.", "A woman plays violin."]
    )
    assert float(food @ bread) > float(food @ violin) + 0.2


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 7, 10, 64])
def test_batch_size_does_not_change_results(encoder: Encoder, batch_size: int) -> None:
    reference = encoder.encode(SENTENCES + [LONG_TEXT], batch_size=1)
    got = encoder.encode(SENTENCES + [LONG_TEXT], batch_size=batch_size)
    np.testing.assert_allclose(got, reference, atol=1e-6)


def test_input_order_does_not_change_results(encoder: Encoder) -> None:
    forward = encoder.encode(SENTENCES)
    backward = encoder.encode(SENTENCES[::-1])
    np.testing.assert_allclose(backward[::-1], forward, atol=1e-6)


def test_padding_does_not_change_a_sentences_embedding(encoder: Encoder) -> None:
    """Batched with a 256-token text, a short sentence is padded with ~245 [PAD] tokens."""
    alone = encoder.encode(["A monkey is playing drums."])
    padded = encoder.encode(["A monkey is playing drums.", LONG_TEXT], batch_size=2)
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-6)


def test_native_padding_invariance_with_explicit_arrays(encoder: Encoder) -> None:
    encoding = encoder._tokenizer.encode(["A woman is playing violin."])[0]
    ids = np.array([encoding], dtype=np.int64)
    mask = np.ones_like(ids)
    pad = 50
    ids_padded = np.concatenate([ids, np.zeros((1, pad), np.int64)], axis=1)
    mask_padded = np.concatenate([mask, np.zeros((1, pad), np.int64)], axis=1)
    np.testing.assert_allclose(
        encoder.native.encode(ids_padded, mask_padded), encoder.native.encode(ids, mask), atol=1e-6
    )


def test_one_and_two_threads_agree(model_dir: pathlib.Path, encoder: Encoder) -> None:
    one = Encoder(model_dir, threads=1)
    assert one.threads == 1
    np.testing.assert_allclose(
        one.encode(SENTENCES + [LONG_TEXT]), encoder.encode(SENTENCES + [LONG_TEXT]), atol=1e-6
    )


def _cpu_per_wall(model: Encoder, batch: int, seq: int, repeats: int) -> float:
    """Process CPU seconds per wall second while the engine encodes batches of this shape."""
    ids = np.full((batch, seq), 2023, dtype=np.int64)
    mask = np.ones_like(ids)
    model.native.encode(ids, mask)  # warm up: thread start, page faults
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        model.native.encode(ids, mask)
    return (time.process_time() - cpu0) / (time.perf_counter() - wall0)


# Short and long batches take different paths through the element-wise ops (libraries switch
# to their own thread pools above a size), so both shapes are checked.
@pytest.mark.parametrize(("batch", "seq", "repeats"), [(32, 16, 8), (16, 256, 1)])
def test_threads_one_uses_one_core(
    model_dir: pathlib.Path, batch: int, seq: int, repeats: int
) -> None:
    ratio = _cpu_per_wall(Encoder(model_dir, threads=1), batch, seq, repeats)
    assert ratio < 1.1, f"threads=1 kept {ratio:.2f} cores busy"


def test_threads_one_stays_on_one_core_through_tokenization(model_dir: pathlib.Path) -> None:
    single = Encoder(model_dir, threads=1)
    texts = [f"{sentence} ({i})" for i in range(40) for sentence in SENTENCES]
    single.encode(texts[:64])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    single.encode(texts)
    ratio = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    assert ratio < 1.1, f"threads=1 encode kept {ratio:.2f} cores busy"


def test_sequential_and_parallel_tokenization_agree(
    encoder: Encoder, parity_texts: list[str]
) -> None:
    parallel = encoder._tokenizer.encode(parity_texts, parallel=True)
    sequential = encoder._tokenizer.encode(parity_texts, parallel=False)
    assert parallel == sequential


def _worker_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of each engine worker thread ("minilm-fast-N"), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds: dict[str, float] = {}
    for task in pathlib.Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        if name.startswith("minilm-fast-"):
            seconds[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.skipif(not pathlib.Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_threads_two_shares_the_work_between_two_workers(model_dir: pathlib.Path) -> None:
    """Both workers compute (per-thread CPU time), a check that holds on a busy machine too."""
    other_encoders = set(_worker_cpu_seconds())  # workers of Encoders other tests left alive
    two = Encoder(model_dir, threads=2)
    ids = np.full((16, 256), 2023, dtype=np.int64)
    two.native.encode(ids, np.ones_like(ids))  # warm up: the workers start
    before = _worker_cpu_seconds()
    for _ in range(3):
        two.native.encode(ids, np.ones_like(ids))
    after = _worker_cpu_seconds()
    used = {
        name: after[name] - before.get(name, 0.0) for name in after if name not in other_encoders
    }
    assert len(used) == 2, f"expected two engine workers, found {sorted(used)}"
    total = sum(used.values())
    assert total > 0.2, f"the workers used only {total:.2f} CPU seconds"
    assert min(used.values()) >= 0.25 * total, f"work was not shared: {used}"


def test_default_threads_follow_the_cpus_this_process_may_use(model_dir: pathlib.Path) -> None:
    # A container CPU quota may lower it further; it never exceeds the affinity mask.
    assert 1 <= default_threads() <= len(os.sched_getaffinity(0))
    script = (
        "import os, sys\n"
        "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
        "from minilm_fast import Encoder\n"
        "print(Encoder(sys.argv[1]).threads)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(model_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "1"


def test_max_seq_length_truncates_and_is_settable(model_dir: pathlib.Path) -> None:
    short = Encoder(model_dir, max_seq_length=16)
    assert short.max_seq_length == 16
    encoding = short._tokenizer.encode([LONG_TEXT])[0]
    assert len(encoding) == 16
    assert encoding[0] == 101  # [CLS]
    assert encoding[-1] == 102  # [SEP] survives truncation, as in transformers
    ids = np.array([encoding], dtype=np.int64)
    np.testing.assert_allclose(
        short.encode(LONG_TEXT), short.native.encode(ids, np.ones_like(ids))[0], atol=1e-6
    )
    short.max_seq_length = 256
    assert len(short._tokenizer.encode([LONG_TEXT])[0]) == 256
    with pytest.raises(ValueError, match="max_seq_length"):
        short.max_seq_length = 513
    with pytest.raises(TypeError, match="max_seq_length"):
        short.max_seq_length = "64"  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        (None, TypeError, "NoneType"),
        (b"bytes", TypeError, "bytes"),
        (42, TypeError, "int"),
        ({"a": 1}, TypeError, "dict"),
        (["fine", 3], TypeError, r"sentences\[1\]"),
        ([["nested"]], TypeError, r"sentences\[0\]"),
    ],
)
def test_bad_sentences_are_refused_clearly(
    encoder: Encoder, bad: object, exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        encoder.encode(bad)  # type: ignore[arg-type]
    assert encoder.encode("still works").shape == (384,)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_bad_batch_size_is_refused(encoder: Encoder, batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["a"], batch_size=batch_size)


def test_bad_thread_counts_are_refused(model_dir: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="threads"):
        Encoder(model_dir, threads=0)
    with pytest.raises(TypeError, match="threads"):
        Encoder(model_dir, threads="2")  # type: ignore[arg-type]


def test_repr_names_the_model(encoder: Encoder) -> None:
    assert "dim=384" in repr(encoder)
