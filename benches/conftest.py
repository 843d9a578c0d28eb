"""Fixtures for the benchmarks: the real model, resolved as users resolve it."""

from __future__ import annotations

import os
import pathlib

import pytest

from minilm_fast import DEFAULT_MODEL, Encoder, resolve_model


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    explicit = os.environ.get("MINILM_FAST_TEST_MODEL")
    folder = pathlib.Path(explicit) if explicit else resolve_model(DEFAULT_MODEL)
    threads = int(os.environ.get("MINILM_FAST_BENCH_THREADS", "2"))
    return Encoder(folder, threads=threads)
