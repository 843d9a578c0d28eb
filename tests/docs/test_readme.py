"""The README's usage section and docs/USAGE.md run: every python block in order in one namespace
(the README's first, then the guide's), every bash block of the README in a scratch folder with
the installed `minilm-fast` on PATH."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "USAGE.md"
FRAMEWORKS = ("langchain_core", "llama_index", "chromadb", "pyarrow")


def _readme_usage() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Usage")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


PYTHON_BLOCKS = [
    (f"README.md python block {i}", b) for i, b in enumerate(_blocks(_readme_usage(), "python"))
] + [
    (f"docs/USAGE.md python block {i}", b)
    for i, b in enumerate(_blocks(GUIDE.read_text(encoding="utf-8"), "python"))
]
BASH_BLOCKS = _blocks(_readme_usage(), "bash")
NAMESPACE: dict[str, object] = {"__name__": "readme"}


def test_usage_section_has_the_snippets_the_issue_asks_for() -> None:
    code = "\n".join([block for _, block in PYTHON_BLOCKS] + BASH_BLOCKS)
    for needle in (
        "import Encoder as SentenceTransformer",  # the one-line switch
        "minilm-fast encode",
        "minilm-fast search",
        "MiniLMEmbeddings",
        "MiniLMEmbedding(",
        "MiniLMEmbeddingFunction",
    ):
        assert needle in code, needle


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_snippet_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    where, block = PYTHON_BLOCKS[index]
    for module in FRAMEWORKS:
        if re.search(rf"^(from|import) {module}\b", block, flags=re.MULTILINE):
            pytest.importorskip(module)
    exec(compile(block, where, "exec"), NAMESPACE)
    printed = capsys.readouterr().out
    # The comments in the snippets say what they print; check the ones that can drift.
    for expected in re.findall(r"print\(.*?\)\s+# (.+)$", block, flags=re.MULTILINE):
        if expected.startswith(("(", "[", "int8", "384")):
            assert expected.split(" float32")[0] in printed, (expected, printed)


@pytest.mark.parametrize("index", range(len(BASH_BLOCKS)))
def test_bash_snippet_runs(index: int, tmp_path: pathlib.Path) -> None:
    if importlib.util.find_spec("pyarrow") is None:
        pytest.skip("the snippet writes Parquet, which needs pyarrow")
    env = dict(os.environ)
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", BASH_BLOCKS[index]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "embeddings.npy").shape == (3, 384)
    assert np.load(tmp_path / "piped.npy").shape == (3, 384)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "vectors.parquet")
    assert table.num_rows == 2 and "embedding" in table.column_names
    # search: the meal query ranks the eating sentences first.
    first_hit = result.stdout.split("1.", 1)[1].splitlines()[0]
    assert "eating" in first_hit, result.stdout
    assert "384" in result.stdout  # info shows the dimension
