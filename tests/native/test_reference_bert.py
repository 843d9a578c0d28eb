"""The native forward pass against an independent NumPy float64 BERT, on random tiny models.

Each case writes a random model folder (see ``support.tiny_bert.write_tiny_bert``) with its own
sizes, LayerNorm epsilon, tensor-name prefix and pooling, then checks
``NativeModel.token_embeddings`` and ``NativeModel.encode`` against ``numpy_bert_forward`` /
``numpy_pool``; plus padding and batch invariance and agreement between thread counts. The
kernels are picked once per process, so ``test_lesser_instruction_sets_match_the_reference_too``
reruns this file in a subprocess under forced AVX2 and portable dispatch (``MINILM_FAST_ISA``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from support.tiny_bert import (
    POOLING_ORDER,
    numpy_bert_forward,
    numpy_pool,
    random_batch,
    read_config,
    write_tiny_bert,
)

from minilm_fast._minilm_fast import NativeModel

# Tolerances are relative to the largest reference value (~3-5 here). HF's float32 BertModel
# differs from the float64 reference by ~1e-6 of that; the tanh GELU approximation by 1.5e-4 to
# 5e-4, an epsilon of 1e-5 instead of 1e-12 by ~1.5e-5. 2e-5 leaves 20x room for other
# summation orders and still catches a wrong GELU.
HIDDEN_TOL = 2e-5
# Unit-norm outputs have entries of ~1/sqrt(dim): hold them to an absolute 1e-5.
NORMALIZED_TOL = 1e-5


@dataclass(frozen=True)
class Case:
    """One random tiny model: sizes, epsilon, activation, tensor-name prefix, pooling."""

    name: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int = 2
    eps: float = 1e-12
    prefix: str = ""
    pooling: tuple[str, ...] | None = ("mean",)
    normalize: bool = True
    hidden_act: str = "gelu"

    @property
    def effective_pooling(self) -> list[str]:
        """Pooling modes as the model reports them: sentence-transformers' order, mean if none."""
        modes = self.pooling if self.pooling is not None else ("mean",)
        return [mode for mode in POOLING_ORDER if mode in modes]


CASES = [
    Case("h32-l1-a1", 32, 1, 1, 128, 100, 16),
    Case("h48-l2-a2-bert-cls", 48, 2, 2, 80, 150, 24, eps=1e-5, prefix="bert.", pooling=("cls",),
         normalize=False),
    Case("h64-l3-a4-bert-max", 64, 3, 4, 256, 300, 64, prefix="bert.", pooling=("max",)),
    Case("h96-l2-a8-sqrt", 96, 2, 8, 200, 200, 32, type_vocab=3, eps=1e-5,
         pooling=("mean_sqrt_len_tokens",), normalize=False),
    Case("h64-l2-a8-mean-cls", 64, 2, 8, 96, 120, 20, pooling=("mean", "cls")),
    Case("h32-l3-a2-bert-all", 32, 3, 2, 48, 257, 40, eps=1e-5, prefix="bert.",
         pooling=("mean_sqrt_len_tokens", "mean", "max", "cls")),
    # A large epsilon makes a LayerNorm that ignores config.json's value show up clearly.
    Case("h32-l2-a4-eps1e-3-max-mean", 32, 2, 4, 100, 64, 32, eps=1e-3, pooling=("max", "mean"),
         normalize=False),
    # The other activations config.json may name.
    Case("h40-l2-a4-gelu-new", 40, 2, 4, 120, 80, 24, hidden_act="gelu_new"),
    Case("h32-l2-a2-relu-bert", 32, 2, 2, 64, 80, 24, prefix="bert.", hidden_act="relu",
         pooling=("cls", "mean")),
    Case("h48-l1-a4-no-modules", 48, 1, 4, 192, 100, 16, pooling=None, normalize=False),
]  # fmt: skip


@dataclass
class Loaded:
    """A written model folder, its weights and config, and the native model loaded from it."""

    case: Case
    folder: Path
    weights: dict[str, npt.NDArray[np.float32]]
    config: dict[str, Any]
    model: NativeModel


def _write(case: Case, folder: Path, seed: int) -> dict[str, npt.NDArray[np.float32]]:
    return write_tiny_bert(
        folder,
        hidden=case.hidden,
        layers=case.layers,
        heads=case.heads,
        intermediate=case.intermediate,
        vocab=case.vocab,
        max_positions=case.max_positions,
        type_vocab=case.type_vocab,
        eps=case.eps,
        pooling=case.pooling,
        normalize=case.normalize,
        seed=seed,
        prefix=case.prefix,
        hidden_act=case.hidden_act,
    )


@pytest.fixture(scope="module", params=CASES, ids=[case.name for case in CASES])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """Each case's model folder, written once per module and loaded with the default threads."""
    case: Case = request.param
    folder = tmp_path_factory.mktemp(case.name)
    weights = _write(case, folder, seed=CASES.index(case))
    return Loaded(case, folder, weights, read_config(folder), NativeModel(str(folder)))


def _seq_len(case: Case) -> int:
    """A batch length that hits max_position_embeddings for the small cases."""
    return min(case.max_positions, 24)


def _assert_close(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    """``got`` within ``tol * max(1, max|want|)`` of ``want``, elementwise."""
    atol = tol * max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


def _pooled_tol(normalized: bool) -> float:
    return NORMALIZED_TOL if normalized else HIDDEN_TOL


def test_attributes(loaded: Loaded) -> None:
    """The model reports the sizes, pooling and normalisation of the folder it was loaded from."""
    case, model = loaded.case, loaded.model
    assert model.hidden_size == case.hidden
    assert model.num_layers == case.layers
    assert model.vocab_size == case.vocab
    assert model.max_position_embeddings == case.max_positions
    assert model.type_vocab_size == case.type_vocab
    assert model.pooling == case.effective_pooling
    assert model.output_dim == case.hidden * len(case.effective_pooling)
    assert model.normalize is case.normalize
    assert isinstance(model.threads, int) and model.threads >= 1
    forced = os.environ.get("MINILM_FAST_ISA")
    if forced:  # the subprocess run of the lesser instruction sets really ran them
        assert model.isa.startswith(forced), (forced, model.isa)


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_lesser_instruction_sets_match_the_reference_too(isa: str) -> None:
    """This file's tests again with AVX2 or the portable kernels forced, in a subprocess."""
    if os.environ.get("MINILM_FAST_ISA"):
        pytest.skip("already the forced-ISA run")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider",
         "-k", "not lesser_instruction_sets"],
        env={**os.environ, "MINILM_FAST_ISA": isa},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


def test_token_embeddings_match_reference(loaded: Loaded) -> None:
    """Last hidden state equals the NumPy BertModel on every attended position.

    The batch has full-length rows, right-padded rows, a left-padded row and random token types.
    """
    case = loaded.case
    rng = np.random.default_rng(1000 + CASES.index(case))
    ids, mask, types = random_batch(
        rng,
        batch=7,
        seq=_seq_len(case),
        vocab=case.vocab,
        type_vocab=case.type_vocab,
        full_rows=2,
        left_padded_rows=1,
    )
    got = loaded.model.token_embeddings(ids, mask, types)
    want = numpy_bert_forward(loaded.weights, loaded.config, ids, mask, types)
    assert got.shape == want.shape == (7, _seq_len(case), case.hidden)
    assert got.dtype == np.float32
    attended = mask.astype(bool)
    _assert_close(got[attended], want[attended], HIDDEN_TOL, "attended positions")
    assert np.isfinite(got).all()


@pytest.mark.parametrize("normalize", [None, True, False], ids=["default", "on", "off"])
def test_encode_matches_reference(loaded: Loaded, normalize: bool | None) -> None:
    """Pooled (and, per the model or the override, normalised) outputs equal the reference."""
    case = loaded.case
    rng = np.random.default_rng(2000 + CASES.index(case))
    # Right padding only: sentence-transformers >= 6 pools cls from the first attended token,
    # older versions (and this contract) from position 0; they agree when padding is on the right.
    ids, mask, types = random_batch(
        rng, batch=6, seq=_seq_len(case), vocab=case.vocab, type_vocab=case.type_vocab
    )
    got = loaded.model.encode(ids, mask, types, normalize=normalize)
    effective = case.normalize if normalize is None else normalize
    hidden = numpy_bert_forward(loaded.weights, loaded.config, ids, mask, types)
    want = numpy_pool(hidden, mask, case.effective_pooling, normalize=effective)
    assert got.shape == (6, loaded.model.output_dim)
    assert got.dtype == np.float32
    _assert_close(got, want, _pooled_tol(effective), "pooled")
    if effective:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_token_types_default_to_zero(loaded: Loaded) -> None:
    """Leaving out ``token_type_ids`` is the same as passing zeros."""
    case = loaded.case
    rng = np.random.default_rng(3000 + CASES.index(case))
    ids, mask, _ = random_batch(rng, batch=4, seq=_seq_len(case), vocab=case.vocab)
    zeros = np.zeros_like(ids)
    np.testing.assert_array_equal(
        loaded.model.encode(ids, mask), loaded.model.encode(ids, mask, zeros)
    )
    got = loaded.model.token_embeddings(ids, mask)
    want = numpy_bert_forward(loaded.weights, loaded.config, ids, mask, None)
    attended = mask.astype(bool)
    _assert_close(got[attended], want[attended], HIDDEN_TOL, "attended positions")


def test_padding_invariance(loaded: Loaded) -> None:
    """More padding (holding arbitrary ids and types) and batching leave each row's output alone.

    A right-padded batch is padded further to max_position_embeddings with random ids and token
    types under a zero mask; each row is also encoded alone, unpadded.
    """
    case, model = loaded.case, loaded.model
    rng = np.random.default_rng(4000 + CASES.index(case))
    short = max(2, case.max_positions // 2)
    ids, mask, types = random_batch(
        rng, batch=5, seq=short, vocab=case.vocab, type_vocab=case.type_vocab
    )
    extra = case.max_positions - short
    pad_ids = rng.integers(0, case.vocab, size=(5, extra))
    pad_types = rng.integers(0, case.type_vocab, size=(5, extra))
    long_ids = np.concatenate([ids, pad_ids], axis=1)
    long_mask = np.concatenate([mask, np.zeros((5, extra), dtype=mask.dtype)], axis=1)
    long_types = np.concatenate([types, pad_types], axis=1)

    base = model.encode(ids, mask, types)
    np.testing.assert_allclose(model.encode(long_ids, long_mask, long_types), base, atol=1e-5)

    base_tokens = model.token_embeddings(ids, mask, types)
    long_tokens = model.token_embeddings(long_ids, long_mask, long_types)[:, :short]
    attended = mask.astype(bool)
    np.testing.assert_allclose(long_tokens[attended], base_tokens[attended], atol=1e-5)

    for row in range(5):
        n = int(mask[row].sum())
        alone = model.encode(
            ids[row : row + 1, :n], mask[row : row + 1, :n], types[row : row + 1, :n]
        )
        np.testing.assert_allclose(alone[0], base[row], atol=1e-5, err_msg=f"row {row}")


def test_thread_counts_agree(loaded: Loaded) -> None:
    """One and two threads give the same embeddings (to float32 summation noise)."""
    case = loaded.case
    one = NativeModel(str(loaded.folder), threads=1)
    two = NativeModel(str(loaded.folder), threads=2)
    assert (one.threads, two.threads) == (1, 2)
    rng = np.random.default_rng(5000 + CASES.index(case))
    ids, mask, types = random_batch(
        rng, batch=16, seq=_seq_len(case), vocab=case.vocab, type_vocab=case.type_vocab
    )
    np.testing.assert_allclose(
        one.encode(ids, mask, types), two.encode(ids, mask, types), atol=1e-6
    )
    np.testing.assert_allclose(
        one.token_embeddings(ids, mask, types), two.token_embeddings(ids, mask, types), atol=1e-6
    )


POOLING_COMBOS: list[tuple[str, ...]] = [
    *((mode,) for mode in POOLING_ORDER),
    ("cls", "mean"),
    ("mean_sqrt_len_tokens", "max"),
    ("max", "cls"),
    ("mean", "mean_sqrt_len_tokens"),
    ("mean", "max", "cls"),
    tuple(reversed(POOLING_ORDER)),
]


@pytest.mark.parametrize("normalize", [True, False], ids=["normalize", "raw"])
@pytest.mark.parametrize("pooling", POOLING_COMBOS, ids=["+".join(c) for c in POOLING_COMBOS])
def test_pooling_modes(tmp_path: Path, pooling: Sequence[str], normalize: bool) -> None:
    """Every pooling mode and several concatenations, with and without a Normalize module.

    The modes are listed in the pooling config in any order; the output concatenates them in
    sentence-transformers' order (cls, max, mean, mean_sqrt_len_tokens).
    """
    weights = write_tiny_bert(
        tmp_path,
        hidden=40,
        layers=2,
        heads=4,
        intermediate=72,
        vocab=90,
        max_positions=20,
        pooling=pooling,
        normalize=normalize,
        seed=11,
    )
    model = NativeModel(str(tmp_path))
    expected_modes = [mode for mode in POOLING_ORDER if mode in pooling]
    assert model.pooling == expected_modes
    assert model.output_dim == 40 * len(expected_modes)
    assert model.normalize is normalize

    rng = np.random.default_rng(6000)
    ids, mask, types = random_batch(rng, batch=5, seq=20, vocab=90)
    hidden = numpy_bert_forward(weights, read_config(tmp_path), ids, mask, types)
    for override in (None, not normalize):
        effective = normalize if override is None else override
        got = model.encode(ids, mask, types, normalize=override)
        want = numpy_pool(hidden, mask, pooling, normalize=effective)
        _assert_close(got, want, _pooled_tol(effective), f"normalize={override}")
