"""minilm_fast.ray and ``minilm-fast encode --ray`` on a local Ray: a few thousand real texts read
from Parquet, embedded by 1 and 2 actors, written to Parquet; every id once, every vector the
Encoder's; the actor class pickles without weights; a killed actor is restarted by Ray and the
job still writes every row exactly once.

One local Ray serves the whole module. It gets 4 logical CPUs on this 2-core machine: actors
reserve CPUs for as long as they live, and Ray's read and write tasks need CPUs of their own,
so a Ray with as many CPUs as the actors reserve would never finish a job.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from support.corpus import real_sentences

from minilm_fast import Encoder
from minilm_fast.cli import main

DATA = pathlib.Path(__file__).parents[1] / "data"
DIM = 384
TEXTS = 2000
RAY_REASON = 'Ray Data is not installed (pip install "minilm-fast[ray]")'

# Ray's own deprecation notices (DataContext fields it still sets itself) are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray with 4 logical CPUs, quiet and offline, shut down after the module."""
    ray = pytest.importorskip("ray", reason=RAY_REASON)
    pytest.importorskip("ray.data", reason=RAY_REASON)
    saved = {key: os.environ.get(key) for key in ("RAY_USAGE_STATS_ENABLED", "HF_HUB_OFFLINE")}
    # Workers of a local Ray inherit this environment: no usage reports, no Hub.
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["HF_HUB_OFFLINE"] = "1"
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def corpus() -> tuple[npt.NDArray[np.int64], list[str]]:
    """TEXTS distinct texts: real sentences, numbered where they repeat; ids shuffled, so a
    test cannot pass by reading row i as id i."""
    sentences = real_sentences()
    texts = [
        sentence if i < len(sentences) else f"{sentence} ({i // len(sentences)})"
        for i, sentence in ((i, sentences[i % len(sentences)]) for i in range(TEXTS))
    ]
    ids = np.random.default_rng(6).permutation(np.arange(10_000, 10_000 + TEXTS, dtype=np.int64))
    return ids, texts


@pytest.fixture(scope="module")
def expected(encoder: Encoder, corpus: tuple[Any, list[str]]) -> dict[int, Any]:
    """id -> what Encoder.encode gives for that id's text."""
    ids, texts = corpus
    return dict(zip(ids.tolist(), encoder.encode(texts)))


@pytest.fixture(scope="module")
def corpus_parquet(
    tmp_path_factory: pytest.TempPathFactory, corpus: tuple[Any, list[str]]
) -> pathlib.Path:
    """The corpus as a folder of 8 Parquet files, as corpora come."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    ids, texts = corpus
    folder = tmp_path_factory.mktemp("ray-input")
    step = TEXTS // 8
    for part, start in enumerate(range(0, TEXTS, step)):
        table = pa.table({"id": ids[start : start + step], "text": texts[start : start + step]})
        pq.write_table(table, folder / f"part-{part}.parquet")
    return folder


def check_output(
    folder: pathlib.Path,
    expected: dict[int, Any],
    texts_by_id: dict[int, str] | None = None,
    id_column: str = "id",
) -> None:
    """The Parquet folder holds every id once, a fixed_size_list<float>[384] embedding column,
    and for each id the Encoder's vector (cosine >= 0.99999)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(folder)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    ids = table.column(id_column).to_numpy()
    assert len(ids) == len(expected)
    assert len(np.unique(ids)) == len(ids), "an id came back twice"
    assert set(ids.tolist()) == set(expected)
    got = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(-1, DIM)
    want = np.stack([expected[i] for i in ids.tolist()])
    cosine = np.sum(got * want, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    )
    assert cosine.min() >= 0.99999, cosine.min()
    if texts_by_id is not None:
        texts = table.column("text").to_pylist()
        assert texts == [texts_by_id[i] for i in ids.tolist()]


# --------------------------------------------------------------------------------------------
# embed_dataset on a local Ray


@pytest.mark.parametrize(("actors", "threads"), [(1, 2), (2, 1)])
def test_embed_dataset_parquet_to_parquet(
    ray_local: Any,
    model_dir: pathlib.Path,
    corpus: tuple[Any, list[str]],
    corpus_parquet: pathlib.Path,
    expected: dict[int, Any],
    tmp_path: pathlib.Path,
    actors: int,
    threads: int,
) -> None:
    from minilm_fast.ray import embed_dataset

    ds = ray_local.data.read_parquet(str(corpus_parquet))
    embedded = embed_dataset(
        ds, model=model_dir, num_actors=actors, threads_per_actor=threads, batch_size=128
    )
    embedded.write_parquet(str(tmp_path / "out"))
    ids, texts = corpus
    check_output(tmp_path / "out", expected, dict(zip(ids.tolist(), texts)))


def test_killed_actor_is_restarted_and_every_row_written_once(
    ray_local: Any,
    model_dir: pathlib.Path,
    corpus_parquet: pathlib.Path,
    expected: dict[int, Any],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first batch any actor takes kills its process (os._exit, as a lost node or the OOM
    killer would); Ray's fault tolerance restarts the actor and retries the batch."""
    import minilm_fast.ray

    marker = tmp_path / "killed-once"

    class DyingOnce(minilm_fast.ray.BatchEmbedder):  # pickled by value: defined in a function
        def __call__(self, batch: Any) -> Any:
            try:
                descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return super().__call__(batch)
            os.close(descriptor)
            os._exit(1)

    monkeypatch.setattr(minilm_fast.ray, "BatchEmbedder", DyingOnce)
    ds = ray_local.data.read_parquet(str(corpus_parquet))
    embedded = minilm_fast.ray.embed_dataset(
        ds, model=model_dir, num_actors=2, threads_per_actor=1, batch_size=128
    )
    embedded.write_parquet(str(tmp_path / "out"))
    assert marker.exists(), "no actor was killed: the test proved nothing"
    check_output(tmp_path / "out", expected)


def test_embed_dataset_checks_its_arguments(ray_local: Any, model_dir: pathlib.Path) -> None:
    from minilm_fast.ray import embed_dataset

    ds = ray_local.data.from_items([{"id": 1, "text": "A cat sleeps."}])
    with pytest.raises(TypeError, match="threads_per_actor"):
        embed_dataset(ds, model=model_dir, threads=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="num_actors must be at least 1"):
        embed_dataset(ds, model=model_dir, num_actors=0)
    with pytest.raises(TypeError, match="num_cpus"):
        embed_dataset(ds, model=model_dir, map_batches_args={"num_cpus": 4})
    with pytest.raises(TypeError, match="ray.data.Dataset"):
        embed_dataset([{"text": "x"}], model=model_dir)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The callable class, without a cluster


def test_actor_class_pickles_settings_not_weights(model_dir: pathlib.Path) -> None:
    """What Ray ships to an actor (the class and its arguments) and an instance both pickle
    to a few hundred bytes with no weight bytes in them; the copy embeds the same."""
    pytest.importorskip("ray", reason=RAY_REASON)
    from ray import cloudpickle

    from minilm_fast.ray import BatchEmbedder

    weights = (model_dir / "model.safetensors").read_bytes()
    samples = [weights[offset : offset + 32] for offset in (len(weights) // 3, len(weights) // 2)]
    shipped = cloudpickle.dumps((BatchEmbedder, (str(model_dir),), {"threads": 1}))
    embedder = BatchEmbedder(model_dir, threads=1, column="body")
    instance = pickle.dumps(embedder)
    for blob in (shipped, instance):
        assert len(blob) < 4096, len(blob)
        assert not any(sample in blob for sample in samples)
    clone = pickle.loads(instance)
    batch = {"body": np.array(["A cat sleeps.", "Bread needs yeast."], dtype=object)}
    np.testing.assert_array_equal(clone(batch)["embedding"], embedder(batch)["embedding"])
    assert clone.column == "body" and clone.encoder.threads == 1


def test_batch_embedder_arrow_batches(model_dir: pathlib.Path, encoder: Encoder) -> None:
    pytest.importorskip("ray", reason=RAY_REASON)
    import pyarrow as pa

    from minilm_fast.ray import BatchEmbedder

    texts = ["A man is playing a guitar.", "", "word " * 300]
    embed = BatchEmbedder(model_dir, threads=1, truncated_column="cut")
    table = embed(pa.table({"id": [3, 1, 2], "text": pa.array(texts, pa.large_string())}))
    assert table.column_names == ["id", "text", "embedding", "cut"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(-1, DIM)
    np.testing.assert_allclose(vectors, encoder.encode(texts), atol=1e-6)
    assert table.column("cut").to_pylist() == [False, False, True]
    # An existing output column is replaced, not duplicated.
    again = embed(table.drop_columns(["cut"]))
    assert again.column_names == ["id", "text", "embedding", "cut"]
    empty = embed(pa.table({"text": pa.array([], pa.string())}))
    assert empty.num_rows == 0 and empty.schema.field("embedding").type.list_size == DIM

    with pytest.raises(ValueError, match="no column 'text'"):
        embed(pa.table({"body": ["x"]}))
    with pytest.raises(ValueError, match="null"):
        embed(pa.table({"text": ["x", None]}))
    with pytest.raises(TypeError, match="must hold strings"):
        embed(pa.table({"text": [1, 2]}))


def test_missing_ray_names_the_extra() -> None:
    """Without Ray, importing minilm_fast.ray says which pip extra brings it."""
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "try:\n    import minilm_fast.ray\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert 'pip install "minilm-fast[ray]"' in result.stdout, result.stdout


# --------------------------------------------------------------------------------------------
# minilm-fast encode --ray


def test_cli_ray_parquet_with_ids(
    ray_local: Any,
    model_dir: pathlib.Path,
    corpus: tuple[Any, list[str]],
    expected: dict[int, Any],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Parquet input with its own id and text column names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, texts = corpus
    source = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"doc_id": ids[:400], "body": texts[:400]}), source)
    code = main(
        ["encode", "--ray", str(source), "-o", str(tmp_path / "out"), "--model", str(model_dir)]
        + ["--field", "body", "--id-column", "doc_id", "--actors", "2"]
    )
    assert code == 0
    assert "wrote 400 rows" in capsys.readouterr().err
    subset = {i: expected[i] for i in ids[:400].tolist()}
    check_output(tmp_path / "out", subset, id_column="doc_id")


def test_cli_ray_jsonl_without_ids_is_numbered_in_file_order(
    ray_local: Any,
    model_dir: pathlib.Path,
    encoder: Encoder,
    corpus: tuple[Any, list[str]],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow.parquet as pq

    _, texts = corpus
    lines = texts[:300]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines), encoding="utf-8")
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # relative paths: the CLI hands Ray's workers absolute ones
    args = ["encode", "--ray", "docs.jsonl", "-o", "out", "--model", str(model_dir), "-q"]
    assert main([*args, "--actors", "2", "--threads-per-actor", "1"]) == 0
    table = pq.read_table(out).sort_by("id")
    assert table.column("id").to_pylist() == list(range(len(lines)))
    assert table.column("text").to_pylist() == lines
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(-1, DIM)
    np.testing.assert_allclose(vectors, encoder.encode(lines), atol=1e-5)
    # Ray appends to a folder, so a second run into the same one is refused.
    assert main([*args]) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--actors", "2"], "apply to --ray only"),
        (["--ray"], "-o OUTPUT_DIR"),
        (["--ray", "-o", "out", "--precision", "int8"], "float32"),
        (["--ray", "-o", "out", "--threads", "2"], "--threads-per-actor"),
        (["--ray", "-o", "out", "--format", "lines"], "Parquet or JSONL"),
    ],
)
def test_cli_ray_usage_errors(
    extra: list[str],
    message: str,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs.parquet").write_bytes(b"")
    assert main(["encode", "docs.parquet", *extra]) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The usage guide's Ray block runs


def test_guide_ray_snippet_runs(
    ray_local: Any,
    model_dir: pathlib.Path,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The python block of docs/SCALING.md's "How to use it", on the test's model folder."""
    import functools

    import minilm_fast.ray

    guide = pathlib.Path(__file__).resolve().parents[2] / "docs" / "SCALING.md"
    readme = guide.read_text("utf-8")
    start = readme.index("\n## How to use it")
    section = readme[start : readme.index("\n## ", start + 1)]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    monkeypatch.chdir(tmp_path)
    embed = functools.partial(minilm_fast.ray.embed_dataset, model=model_dir)
    monkeypatch.setattr(minilm_fast.ray, "embed_dataset", embed)
    exec(compile(block, "docs/SCALING.md Ray block", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    # What the block's comments say it prints.
    assert "fixed_size_list<element: float>[384]" in printed, printed
    assert "[10, 11, 12]" in printed, printed
