"""The installed wheel, checked in whichever interpreter runs this file.

`make test-interpreters` installs the one release wheel into a fresh virtualenv of each CPython
it finds (3.9 to 3.13) and runs this folder there; the full suite runs it on the default
interpreter too. Each test needs only the wheel, its runtime dependencies and pytest: parity
against the committed sentence-transformers references, the console script, pickling and the
native call's errors. The optional extras are installed when the interpreter has wheels for
them; where one is not installed the test that needs it is skipped, saying so
(scripts/test_interpreters.py reports when an interpreter had no wheels for an extra).
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest

import minilm_fast
from minilm_fast import Encoder, NativeModel

REPO_PYTHON = pathlib.Path(__file__).resolve().parents[2] / "python"
SCRIPTS = pathlib.Path(sys.executable).parent
# A handful of the parity texts, short and long, ASCII and not.
PARITY_ROWS = [0, 1, 2, 5, 8, 13, 21, 34]
PYTHON = f"Python {sys.version_info.major}.{sys.version_info.minor}"


def _is_editable_install() -> bool:
    """Whether minilm_fast was installed editable (`make dev`), per PEP 610's direct_url.json."""
    direct_url = importlib.metadata.distribution("minilm-fast").read_text("direct_url.json")
    return bool(direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))


def test_the_package_is_the_installed_wheel_not_the_source_tree() -> None:
    if _is_editable_install():
        pytest.skip("an editable install (make dev) imports the source tree by design")
    installed_at = pathlib.Path(minilm_fast.__file__).resolve()
    assert REPO_PYTHON not in installed_at.parents, f"imported from the checkout: {installed_at}"
    assert list(installed_at.parent.glob("_minilm_fast*.so")), "the native module is missing"
    from minilm_fast import _minilm_fast

    assert _minilm_fast.__version__ == minilm_fast.__version__


def test_encodes_like_sentence_transformers(
    encoder: Encoder,
    parity_texts: list[str],
    parity_reference: npt.NDArray[np.float32],
) -> None:
    texts = [parity_texts[i] for i in PARITY_ROWS]
    vectors = encoder.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 384)
    assert vectors.flags.c_contiguous
    reference = parity_reference[PARITY_ROWS]
    cosines = np.sum(vectors * reference, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosines.min() >= 0.99999, f"{PYTHON}: cosines {cosines}"


def _run_cli(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    script = SCRIPTS / "minilm-fast"
    assert script.exists(), f"the console script is not installed beside {sys.executable}"
    return subprocess.run(
        [str(script), *args], check=True, capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_console_script_reports_its_version(tmp_path: pathlib.Path) -> None:
    out = _run_cli("--version", cwd=tmp_path).stdout
    assert minilm_fast.__version__ in out


def test_console_script_encodes_a_file(
    encoder: Encoder, model_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    texts = ["A wheel in every interpreter.", "Zweiter Satz, mit Umlauten: äöü."]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    _run_cli("encode", "in.txt", "-o", "out.npy", "--model", str(model_dir), "-q", cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), encoder.encode(texts), atol=1e-6)


def test_console_script_writes_parquet_when_the_extra_is_installed(
    model_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    pq = pytest.importorskip(
        "pyarrow.parquet", reason=f"pyarrow (the [parquet] extra) is not installed for {PYTHON}"
    )
    (tmp_path / "in.jsonl").write_text(
        "\n".join(json.dumps({"text": t}) for t in ["one", "two", "three"]) + "\n"
    )
    _run_cli(
        "encode", "in.jsonl", "--field", "text", "-o", "out.parquet",
        "--model", str(model_dir), "-q", cwd=tmp_path,
    )  # fmt: skip
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 3


def test_langchain_adapter_when_the_extra_is_installed(encoder: Encoder) -> None:
    pytest.importorskip(
        "langchain_core",
        reason=f"langchain-core (the [langchain] extra) is not installed for {PYTHON}",
    )
    from minilm_fast.integrations.langchain import MiniLMEmbeddings

    embeddings = MiniLMEmbeddings(encoder=encoder)
    vector = embeddings.embed_query("a query")
    np.testing.assert_allclose(vector, encoder.encode("a query"), atol=1e-6)


def test_pickled_encoder_encodes_the_same(encoder: Encoder) -> None:
    clone = pickle.loads(pickle.dumps(encoder))
    texts = ["Pickled for a worker process.", "Second."]
    np.testing.assert_array_equal(clone.encode(texts), encoder.encode(texts))


def test_native_call_rejects_bad_input_with_python_errors(encoder: Encoder) -> None:
    native = encoder.native
    ids = np.array([[101, 7592, 102]], dtype=np.int64)
    mask = np.ones_like(ids)
    assert native.encode(ids, mask).shape == (1, 384)
    with pytest.raises(TypeError, match="int32"):
        native.encode(ids.astype(np.float32), mask)
    with pytest.raises(ValueError, match="attention_mask"):
        native.encode(ids, np.ones((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="input_ids"):
        native.encode(np.array([[101, 10**9, 102]], dtype=np.int64), mask)
    with pytest.raises(FileNotFoundError):
        NativeModel("/no/such/model/folder")
    with pytest.raises(ValueError, match="compute"):
        NativeModel(encoder.model_path, compute="float64")
