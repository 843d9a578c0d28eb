"""Documentation that runs: every docstring example of the public modules, with the real model.

Examples that use an ``encoder`` get the session's Encoder, as the docs assume one is at hand.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import types

import pytest

import minilm_fast
from minilm_fast import Encoder

OPTIONAL_FRAMEWORKS = {
    "minilm_fast.server": "starlette",
    "minilm_fast.server.app": "starlette",
    "minilm_fast.server.runner": "uvicorn",
    "minilm_fast.integrations.langchain": "langchain_core",
    "minilm_fast.integrations.llama_index": "llama_index.core",
    "minilm_fast.integrations.chroma": "chromadb",
    "minilm_fast.ray": "ray",
}
MODULES = sorted(
    ["minilm_fast"]
    + [
        info.name
        for info in pkgutil.walk_packages(minilm_fast.__path__, "minilm_fast.")
        if not info.name.endswith("_minilm_fast")
    ]
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, encoder: Encoder) -> None:
    if name in OPTIONAL_FRAMEWORKS:
        pytest.importorskip(OPTIONAL_FRAMEWORKS[name])
    module: types.ModuleType = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []  # doctest swaps sys.stdout while it runs, so collect its report
    for test in finder.find(module, extraglobs={"encoder": encoder}):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_every_public_name_has_a_runnable_example() -> None:
    """The user-facing API documents itself with examples (and no skipped ones)."""
    finder = doctest.DocTestFinder()
    for name in ("Encoder", "quantize_embeddings", "quantization_ranges", "resolve_model"):
        tests = finder.find(getattr(minilm_fast, name))
        examples = [e for t in tests for e in t.examples]
        assert examples, f"{name} has no example"
        assert not any(doctest.SKIP in e.options for e in examples), f"{name} skips examples"
