"""Shared fixtures: the real all-MiniLM-L6-v2 weights, found the way a user's Encoder finds them.

The Makefile points the resolver at a local wheelhouse (PIP_FIND_LINKS, PIP_NO_INDEX) and a
repo-local cache (MINILM_FAST_CACHE) with HF_HUB_OFFLINE=1, so the suite runs offline through the
real mirror path. MINILM_FAST_TEST_MODEL may name an already unpacked model folder instead.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import numpy.typing as npt
import pytest

from minilm_fast import DEFAULT_MODEL, Encoder, resolve_model

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def model_dir() -> pathlib.Path:
    explicit = os.environ.get("MINILM_FAST_TEST_MODEL")
    return pathlib.Path(explicit) if explicit else resolve_model(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def encoder(model_dir: pathlib.Path) -> Encoder:
    return Encoder(model_dir, threads=2)


@pytest.fixture(scope="session")
def parity_texts() -> list[str]:
    texts: list[str] = json.loads((DATA / "parity_texts.json").read_text(encoding="utf-8"))
    return texts


@pytest.fixture(scope="session")
def parity_reference() -> npt.NDArray[np.float32]:
    """sentence-transformers' embeddings of parity_texts (scripts/make_reference.py)."""
    return np.load(DATA / "parity_reference.npy")


@pytest.fixture(scope="session")
def parity_meta() -> dict[str, object]:
    meta: dict[str, object] = json.loads((DATA / "parity_reference_meta.json").read_text())
    return meta
