"""The `minilm-fast` command line: output, files, exit codes and messages, with the real model.

Most cases call `main([...])` in-process (fast); a few run `python -m minilm_fast` and the
installed console script to check real exit codes and that stdout carries nothing but the data.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import platform
import selectors
import signal
import subprocess
import sys
import time

import numpy as np
import numpy.typing as npt
import pytest
from support.cpu import cpu_flags

from minilm_fast import Encoder, __version__
from minilm_fast.cli import main
from minilm_fast.cli.info import X86_FEATURES

SCRIPT = pathlib.Path(sys.executable).parent / "minilm-fast"
LINES = [
    "A man is eating food.",
    "",  # a blank line is an empty text: row i must stay line i
    "A man is eating pasta.",
    "  Ein Mann isst Nudeln. \u00e9\u4e2d\u6587 \U0001f35d",
    "The new movie is awesome.",
]
#: Six topics far apart, so the nearest neighbour of an obvious query is not in doubt.
CORPUS = [
    "The cat sleeps on the sofa all afternoon.",
    "Stock markets fell sharply after the interest rate decision.",
    "Whisk two eggs with flour and sugar to make the batter.",
    "The striker scored a goal in the final minute of the match.",
    "Heavy rain and strong winds are expected tomorrow.",
    "The new laptop has a fast processor and a bright screen.",
]
#: Longer than 256 word pieces, and its end is about something else than its beginning.
LONG_TEXT = "The cat sleeps on the sofa. " * 40 + "Stock markets fell sharply today. " * 40


def _run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command with the environment of the test run; fail instead of hanging."""
    return subprocess.run(
        args,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _write_lines(path: pathlib.Path, lines: list[str], newline: str = "\n") -> pathlib.Path:
    path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
    return path


def _write_jsonl(path: pathlib.Path, records: list[object]) -> pathlib.Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _cosines(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Row-wise cosine similarity of two (n, dim) arrays."""
    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    cosines: npt.NDArray[np.float64] = (left * right).sum(axis=1) / norms
    return cosines


class _Terminal(io.StringIO):
    """A standard input that says it is an interactive terminal."""

    def isatty(self) -> bool:
        return True


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """Pipe ``data`` into the in-process standard input."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# encode: inputs


def test_encode_texts_prints_summary_with_similarity(
    model_dir: pathlib.Path, encoder: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = ["A man is eating food.", "A man is eating pasta.", "A plane is taking off."]
    code = main(["encode", "--model", str(model_dir), *(f"--text={t}" for t in texts)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "3 x 384 float32" in out
    assert "texts/s" in out
    assert str(model_dir) in out
    assert "cosine similarity" in out
    for text in texts:
        assert text in out
    expected = encoder.encode(texts)
    similarity = expected @ expected.T
    matrix = out.split("cosine similarity:\n", 1)[1].splitlines()
    assert matrix[0].split() == ["[0]", "[1]", "[2]"]
    row0 = [float(v) for v in matrix[1].split()[1:]]
    np.testing.assert_allclose(row0, similarity[0], atol=1.5e-3)
    assert row0[0] == 1.0
    assert err == ""  # not a terminal: no progress bar, no chatter


@pytest.mark.parametrize("form", ["positional", "-f"])
def test_encode_file_writes_npy_rows_in_line_order(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    form: str,
) -> None:
    source = _write_lines(tmp_path / "texts.txt", LINES)
    output = tmp_path / "out.npy"
    where = [str(source)] if form == "positional" else ["-f", str(source)]
    code = main(["encode", "--model", str(model_dir), *where, "-o", str(output)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == ""
    assert str(output) in err and f"{len(LINES)} x 384" in err

    embeddings = np.load(output)
    assert embeddings.shape == (len(LINES), 384)
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, encoder.encode(LINES), atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "texts.txt"]  # no temp left


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"one\r\ntwo\r\n", ["one", "two"]),  # Windows line ends
        (b"one\ntwo", ["one", "two"]),  # no final newline
        (b"\xef\xbb\xbfone\n\n", ["one", ""]),  # byte order mark; a trailing blank line counts
        (
            b"form\x0cfeed\nline\xe2\x80\xa8sep\n",
            ["form\x0cfeed", "line\u2028sep"],
        ),  # not splitlines
    ],
    ids=["crlf", "no-final-newline", "bom-blank", "only-newline-splits"],
)
def test_encode_file_line_splitting(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    raw: bytes,
    expected: list[str],
) -> None:
    source = tmp_path / "texts.txt"
    source.write_bytes(raw)
    output = tmp_path / "out.npy"
    assert main(["encode", "-q", "--model", str(model_dir), str(source), "-o", str(output)]) == 0
    np.testing.assert_allclose(np.load(output), encoder.encode(expected), atol=1e-6)


@pytest.mark.parametrize("form", ["omitted", "dash"])
def test_encode_reads_piped_stdin(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    form: str,
) -> None:
    _stdin(monkeypatch, "".join(line + "\n" for line in LINES).encode("utf-8"))
    output = tmp_path / "out.npy"
    where = [] if form == "omitted" else ["-"]
    assert main(["encode", "--model", str(model_dir), *where, "-o", str(output)]) == 0
    assert "reading texts from the terminal" not in capsys.readouterr().err
    np.testing.assert_allclose(np.load(output), encoder.encode(LINES), atol=1e-6)


def test_encode_jsonl_input_by_suffix_field_and_format(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [
        {"id": 7, "text": "A man is eating food.", "body": "Rain is expected tomorrow."},
        {"text": "Ein Mann isst Nudeln. \u4e2d\u6587 \U0001f35d", "body": "", "extra": [1, 2]},
        {"text": "", "body": "The new movie is awesome."},
    ]
    texts = [str(r["text"]) for r in records]
    bodies = [str(r["body"]) for r in records]
    output = tmp_path / "out.npy"
    base = ["encode", "-q", "--model", str(model_dir), "-o", str(output)]

    # .jsonl suffix -> JSONL with the default field "text"; CRLF line ends are fine
    source = tmp_path / "docs.jsonl"
    source.write_bytes("".join(json.dumps(r) + "\r\n" for r in records).encode("utf-8"))
    assert main([*base, str(source)]) == 0
    np.testing.assert_allclose(np.load(output), encoder.encode(texts), atol=1e-6)

    # --field picks another field, and implies JSONL whatever the suffix (here: stdin)
    _stdin(monkeypatch, source.read_bytes())
    assert main([*base, "--field", "body"]) == 0
    np.testing.assert_allclose(np.load(output), encoder.encode(bodies), atol=1e-6)

    # --format jsonl for a file whose suffix says nothing; --format lines reads it as text
    plain = tmp_path / "docs.txt"
    plain.write_bytes(source.read_bytes())
    assert main([*base, str(plain), "--format", "jsonl"]) == 0
    np.testing.assert_allclose(np.load(output), encoder.encode(texts), atol=1e-6)
    assert main([*base, str(source), "--format", "lines"]) == 0
    lines = [json.dumps(r) for r in records]
    np.testing.assert_allclose(np.load(output), encoder.encode(lines), atol=1e-6)


@pytest.mark.parametrize(
    ("raw", "line", "message"),
    [
        (b'{"text": "a"}\nnot json\n', 2, "is not valid JSON"),
        (b'{"text": "a"}\n["a", "b"]\n', 2, "is a JSON array, not an object"),
        (b'{"text": "a"}\n{"title": "b"}\n', 2, "has no field 'text' (its fields: 'title')"),
        (b'{"text": "a"}\n{"text": "b"}\n{"text": 3}\n', 3, "field 'text' is a JSON number"),
        (b'{"text": null}\n', 1, "field 'text' is a JSON null, not a string"),
        (b'{"text": "a"}\n\n{"text": "b"}\n', 2, "is blank"),
        (b'{"text": "a"}\n   \n', 2, "is blank"),
        (b'{"text": "a"}\n\n', 2, "is blank"),  # more than the newline ending the last line
        (b'{"text": "\\ud800"}\n', 1, "unpaired surrogate"),
    ],
    ids=[
        "not-json",
        "not-object",
        "missing-field",
        "number",
        "null",
        "blank-inside",
        "whitespace-line",
        "blank-at-end",
        "lone-surrogate",
    ],
)
def test_encode_jsonl_bad_line_names_its_number(
    model_dir: pathlib.Path,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    raw: bytes,
    line: int,
    message: str,
) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_bytes(raw)
    output = tmp_path / "out.npy"
    assert main(["encode", "--model", str(model_dir), str(source), "-o", str(output)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"minilm-fast: error: input file '{source}', line {line}")
    assert message in err
    assert "Traceback" not in err
    assert not output.exists()


# --------------------------------------------------------------------------------------------
# encode: outputs


def test_encode_jsonl_output(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = _write_lines(tmp_path / "texts.txt", LINES)
    output = tmp_path / "out.jsonl"
    assert main(["encode", "--model", str(model_dir), str(source), "-o", str(output)]) == 0
    assert f"wrote {len(LINES)} x 384 float32 embeddings to {output}" in capsys.readouterr().err

    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == list(range(len(LINES)))
    assert [r["text"] for r in records] == LINES
    assert all(set(r) == {"id", "text", "embedding"} for r in records)
    embeddings = np.array([r["embedding"] for r in records], dtype=np.float32)
    assert embeddings.shape == (len(LINES), 384)
    assert _cosines(embeddings, encoder.encode(LINES)).min() >= 0.99999
    assert "\u4e2d\u6587" in output.read_text(encoding="utf-8")  # UTF-8, not \u escapes


@pytest.mark.parametrize("precision", ["float32", "uint8"])
def test_encode_parquet_output(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    precision: str,
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    source = _write_lines(tmp_path / "texts.txt", LINES)
    output = tmp_path / "out.parquet"
    args = ["encode", "-q", "--model", str(model_dir), str(source), "-o", str(output)]
    assert main([*args, "--precision", precision, "--threads", "2"]) == 0

    table = pq.read_table(output)
    value_type = pa.float32() if precision == "float32" else pa.uint8()
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("text").type == pa.string()
    assert table.schema.field("embedding").type == pa.list_(value_type, 384)
    assert table.column("id").to_pylist() == list(range(len(LINES)))
    assert table.column("text").to_pylist() == LINES
    embeddings = np.array(table.column("embedding").to_pylist())
    expected = encoder.encode(LINES, precision=precision)
    if precision == "float32":
        assert _cosines(embeddings, expected).min() >= 0.99999
    else:
        assert np.abs(embeddings.astype(np.int16) - expected).max() <= 1


def test_encode_parquet_without_pyarrow_fails_before_encoding(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    output = tmp_path / "out.parquet"
    # The model does not exist either: the pyarrow check comes first, so no time is wasted.
    code = main(["encode", "--model", str(tmp_path / "no_model"), "-t", "x", "-o", str(output)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith("minilm-fast: error:") and "pip install pyarrow" in err
    assert "no_model" not in err
    assert not output.exists()


@pytest.mark.parametrize(
    ("precision", "dtype", "dim"),
    [("int8", np.int8, 384), ("uint8", np.uint8, 384), ("ubinary", np.uint8, 48)],
)
def test_encode_precision(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    precision: str,
    dtype: type,
    dim: int,
) -> None:
    source = _write_lines(tmp_path / "texts.txt", LINES)
    output = tmp_path / "out.npy"
    args = ["encode", "--model", str(model_dir), str(source), "-o", str(output)]
    assert main([*args, "--precision", precision, "--threads", "2"]) == 0
    assert f"{len(LINES)} x {dim} {np.dtype(dtype)}" in capsys.readouterr().err
    embeddings = np.load(output)
    assert embeddings.dtype == dtype
    assert embeddings.shape == (len(LINES), dim)
    expected = encoder.encode(LINES, precision=precision)
    if precision == "ubinary":  # packed sign bits: a bit may flip only for a value at ~0
        bits = np.unpackbits(embeddings) != np.unpackbits(expected)
        assert bits.mean() < 0.01
    else:
        assert np.abs(embeddings.astype(np.int16) - expected).max() <= 1


def test_encode_int8_needs_two_texts(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.npy"
    args = ["encode", "--model", str(model_dir), "-t", "only one", "-o", str(output)]
    assert main([*args, "--precision", "int8"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minilm-fast: error: int8 quantization needs ranges")
    assert "Traceback" not in err and "looks like a bug" not in err
    assert not output.exists()


def test_encode_long_text_chunk_vs_truncate(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "out.npy"
    args = ["encode", "--model", str(model_dir), "-t", LONG_TEXT, "-t", "short", "-o", str(output)]

    assert main(args) == 0
    truncated = np.load(output)
    err = capsys.readouterr().err
    assert (
        "minilm-fast: 1 of 2 texts were longer than 256 word pieces and were truncated; "
        "--long-text chunk embeds all of them"
    ) in err
    np.testing.assert_allclose(truncated, encoder.encode([LONG_TEXT, "short"]), atol=1e-6)

    assert main([*args, "--long-text", "chunk", "--chunk-stride", "16"]) == 0
    chunked = np.load(output)
    assert "truncated" not in capsys.readouterr().err
    expected = encoder.encode([LONG_TEXT, "short"], long_text="chunk", chunk_stride=16)
    np.testing.assert_allclose(chunked, expected, atol=1e-6)
    assert _cosines(chunked[:1], truncated[:1])[0] < 0.99  # the end of the text counts now
    np.testing.assert_allclose(chunked[1], truncated[1], atol=1e-6)  # short texts: the same

    assert main([*args, "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q: no truncation note either

    assert main([*args, "--long-text", "chunk", "--chunk-stride", "1000"]) == 1
    assert "chunk_stride must be between" in capsys.readouterr().err


def test_encode_replaces_existing_output(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.npy"
    output.write_bytes(b"old contents")
    assert main(["encode", "--model", str(model_dir), "-t", "hello", "-o", str(output)]) == 0
    assert np.load(output).shape == (1, 384)
    assert output.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600


@pytest.mark.parametrize(
    ("precision", "dtype", "dim"), [("float32", np.float32, 384), ("int8", np.int8, 384)]
)
def test_encode_empty_file_gives_empty_array(
    model_dir: pathlib.Path,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    precision: str,
    dtype: type,
    dim: int,
) -> None:
    source = tmp_path / "empty.txt"
    source.write_bytes(b"")
    output = tmp_path / "out.npy"
    args = ["encode", "--model", str(model_dir), str(source), "-o", str(output)]
    assert main([*args, "--precision", precision]) == 0
    embeddings = np.load(output)
    assert embeddings.shape == (0, dim) and embeddings.dtype == dtype
    assert "holds no text" in capsys.readouterr().err


def test_encode_progress_bar_when_forced(
    model_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", "--model", str(model_dir), "--progress", "-t", "a", "-t", "b"]) == 0
    out, err = capsys.readouterr()
    assert "Encoding" in err and "Encoding" not in out
    assert "2/2" in err and "text/s" in err  # known total, throughput
    assert "<" in err  # tqdm's "[elapsed<remaining" ETA


# --------------------------------------------------------------------------------------------
# search


def test_search_prints_nearest_neighbours(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A blank line is skipped but still counts for the line numbers shown.
    corpus = _write_lines(tmp_path / "corpus.txt", [CORPUS[0], "", *CORPUS[1:]])
    queries = ["Which pet is napping on the couch?", "football game result"]
    code = main(["search", "--model", str(model_dir), str(corpus), *queries, "-k", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    first = blocks[0].splitlines()
    assert first[0] == f"query: {queries[0]}"
    assert len(first) == 3  # header + k hits
    assert first[1].startswith("  1. 0.")
    assert first[1].endswith(f"  [line 1] {CORPUS[0]}")
    assert first[2].startswith("  2. ")
    second = blocks[1].splitlines()
    assert second[0] == f"query: {queries[1]}"
    assert second[1].endswith(f"  [line 5] {CORPUS[3]}")  # line 5: after the blank line
    score_1, score_2 = float(second[1].split()[1]), float(second[2].split()[1])
    assert score_1 > score_2
    assert len(second[1].split()[1].split(".")[1]) == 4  # 4 decimals


def test_search_json_from_jsonl_corpus(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", [{"body": t} for t in CORPUS])
    queries = ["It is going to pour with rain", "a computer with a quick CPU"]
    args = ["search", "--model", str(model_dir), str(corpus), *queries, "--field", "body"]
    assert main([*args, "--json", "-k", "10"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["query"] for r in results] == queries
    expected = encoder.similarity(encoder.encode(queries), encoder.encode(CORPUS))
    for result, scores, best in zip(results, expected, [4, 5]):
        hits = result["hits"]
        assert len(hits) == len(CORPUS)  # -k larger than the corpus: every text, once
        assert [h["rank"] for h in hits] == list(range(1, len(CORPUS) + 1))
        assert hits[0]["line"] == best + 1 and hits[0]["text"] == CORPUS[best]
        for hit in hits:
            assert hit["text"] == CORPUS[hit["line"] - 1]
            assert hit["score"] == pytest.approx(scores[hit["line"] - 1], abs=1e-5)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_search_errors(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = _write_lines(tmp_path / "blank.txt", ["", "  "])
    assert main(["search", "--model", str(model_dir), str(blank), "anything"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minilm-fast: error:") and "holds no text to search" in err

    corpus = _write_lines(tmp_path / "corpus.txt", CORPUS)
    assert main(["search", "--model", str(model_dir), str(corpus)]) == 2  # no QUERY
    assert "QUERY" in capsys.readouterr().err
    assert main(["search", "--model", str(model_dir), str(corpus), "q", "-k", "0"]) == 2
    assert "--top-k" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# usage errors: exit 2


def test_encode_two_inputs_is_usage_error(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(_write_lines(tmp_path / "texts.txt", ["x"]))
    for extra in (["-t", "some text", source], [source, "-f", source]):
        assert main(["encode", "--model", str(model_dir), *extra]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert "not both" in err and "usage:" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "nothing to encode: give an INPUT file"),
        (["-t", "x", "--batch-size", "0"], "--batch-size"),
        (["-t", "x", "--threads", "two"], "--threads"),
        (["-t", "x", "--max-seq-length", "100000"], "--max-seq-length"),
        (["-t", "x", "--no-such-option"], "unrecognized"),
        (["-t", "x", "-o", "out.csv"], "use one of .npy, .jsonl, .ndjson, .parquet"),
        (["-t", "x", "--precision", "int4"], "--precision"),
        (["-t", "x", "--chunk-stride", "8"], "--chunk-stride applies to --long-text chunk"),
        (["-t", "x", "--field", "body"], "--format and --field describe an INPUT file"),
        (["in.txt", "--format", "lines", "--field", "body"], "--format lines"),
    ],
    ids=[
        "no-input",
        "batch-size",
        "threads",
        "max-seq-length",
        "unknown-option",
        "output-suffix",
        "precision",
        "chunk-stride",
        "field-with-text",
        "field-with-lines",
    ],
)
def test_encode_bad_usage_exits_2(
    model_dir: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", _Terminal())  # nothing piped in
    assert main(["encode", "--model", str(model_dir), *extra]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# runtime errors: exit 1, one message, no traceback


def test_encode_missing_file_names_it(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no_such_texts.txt"
    assert main(["encode", "--model", str(model_dir), "-f", str(missing)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("minilm-fast: error:")
    assert str(missing) in err and "does not exist" in err
    assert "Traceback" not in err


def test_encode_old_style_text_argument_hints_at_text_option(
    model_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", "--model", str(model_dir), "A man is eating food."]) == 1
    err = capsys.readouterr().err
    assert "input file 'A man is eating food.' does not exist" in err
    assert "-t 'A man is eating food.'" in err


def test_encode_not_utf8_file_names_the_line(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "latin1.txt"
    source.write_bytes("caf\u00e9\nna\u00efve\n".encode("latin-1"))
    assert main(["encode", "--model", str(model_dir), str(source)]) == 1
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "line 1" in err and str(source) in err


def test_encode_output_folder_missing(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "missing" / "out.npy"
    assert main(["encode", "--model", str(model_dir), "-t", "x", "-o", str(output)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minilm-fast: error:") and str(output.parent) in err


def test_nonexistent_model_folder(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "no_model_here"
    assert main(["encode", "--model", str(folder), "-t", "x"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("minilm-fast: error:")
    assert str(folder) in err
    assert "Traceback" not in err


def test_debug_env_shows_traceback(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINILM_FAST_DEBUG", "1")
    assert main(["info", "--model", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "minilm-fast: error:" in err


# --------------------------------------------------------------------------------------------
# download, info, help, version


@pytest.mark.parametrize("form", ["positional", "option"])
def test_download_prints_the_model_folder(
    model_dir: pathlib.Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    args = [str(model_dir)] if form == "positional" else ["--model", str(model_dir)]
    assert main(["download", *args]) == 0
    out, err = capsys.readouterr()
    folder = pathlib.Path(out.strip())
    assert out.count("\n") == 1
    assert folder.is_dir() and (folder / "model.safetensors").is_file()
    assert folder == model_dir.resolve()
    assert err == ""


def test_download_offline_not_found_speaks_of_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The library says local_files_only=...; on the command line that is --offline.
    assert main(["download", "--offline", "nobody/no-such-model"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("minilm-fast: error: could not find the model 'nobody/no-such-model'")
    assert "allow downloads: drop --offline" in err
    assert "pass local_files_only=False" not in err
    assert "local_files_only=True" not in err


def test_info_shows_dimension_kernel_and_cpu_features(
    model_dir: pathlib.Path, encoder: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--model", str(model_dir), "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "embedding dim:  384" in out
    assert __version__ in out
    assert f"SIMD kernel:    {encoder.native.isa}\n" in out
    assert "threads:        2" in out
    cpu = next(line for line in out.splitlines() if line.startswith("CPU:"))
    machine, _, features = cpu.removeprefix("CPU:").strip().partition(", ")
    assert machine == platform.machine()
    assert features.split() == [f for f in X86_FEATURES if f in cpu_flags()]


def test_info_json(model_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", str(model_dir), "--json", "--max-seq-length", "128"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["dim"] == 384
    assert facts["max_seq_length"] == 128
    assert facts["model_folder"] == str(model_dir.resolve())
    assert facts["threads"] >= 1
    assert facts["simd"]
    assert facts["cpu"] == platform.machine()
    assert facts["cpu_features"] == [f for f in X86_FEATURES if f in cpu_flags()]


@pytest.mark.parametrize(
    ("command", "forms"),
    [
        ([], ["encode sentences.txt -o", "--field body", "encode -o -", "-t ", "search "]),
        (
            ["encode"],
            [
                "encode sentences.txt -o embeddings.npy",
                "--field body -o embeddings.parquet",
                "-o embeddings.jsonl",
                "| minilm-fast encode -o -",
                "--precision int8",
                "--precision ubinary",
                "--long-text chunk",
                '-t "A man is eating food."',
            ],
        ),
        (["search"], ["search faq.txt", "--field question -k 3", "--json"]),
        (["download"], ["download sentence-transformers/"]),
        (["info"], ["info --json", "--threads 4"]),
    ],
    ids=["top", "encode", "search", "download", "info"],
)
def test_help_has_examples(
    command: list[str], forms: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    examples = out.split("examples:", 1)[1]
    assert "minilm-fast " + (command[0] if command else "encode") in examples
    for form in forms:
        assert form in examples, form


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"minilm-fast {__version__}"


# --------------------------------------------------------------------------------------------
# real processes: python -m, the console script, stdin, signals


def test_module_stdin_to_stdout_carries_only_the_array(
    model_dir: pathlib.Path, encoder: Encoder
) -> None:
    data = "".join(line + "\n" for line in LINES).encode("utf-8")
    cmd = [sys.executable, "-m", "minilm_fast", "encode", "--model", str(model_dir)]
    result = _run([*cmd, "-o", "-"], stdin=data)  # no INPUT: the pipe is read
    assert result.returncode == 0, result.stderr.decode()
    embeddings = np.load(io.BytesIO(result.stdout), allow_pickle=False)  # stdout is the .npy only
    assert embeddings.shape == (len(LINES), 384)
    np.testing.assert_allclose(embeddings, encoder.encode(LINES), atol=1e-6)
    assert b"wrote 5 x 384" in result.stderr


def test_module_usage_error_exit_code(model_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    source = _write_lines(tmp_path / "texts.txt", ["x"])
    cmd = [sys.executable, "-m", "minilm_fast", "encode", "--model", str(model_dir)]
    result = _run([*cmd, "-t", "text", str(source)])
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"usage: minilm-fast encode" in result.stderr


@pytest.fixture(scope="module")
def script() -> pathlib.Path:
    if not SCRIPT.exists():
        pytest.skip(
            f"console script not installed at {SCRIPT} (pip install -e . / maturin develop)"
        )
    return SCRIPT


def test_console_script_writes_file_and_nothing_to_stdout(
    script: pathlib.Path, model_dir: pathlib.Path, encoder: Encoder, tmp_path: pathlib.Path
) -> None:
    output = tmp_path / "out.npy"
    texts = ["first text", "second text"]
    result = _run(
        [str(script), "encode", "--model", str(model_dir), "-t", texts[0], "-t", texts[1]]
        + ["-o", str(output)]
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""
    np.testing.assert_allclose(np.load(output), encoder.encode(texts), atol=1e-6)


def test_console_script_errors(
    script: pathlib.Path, model_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    missing = tmp_path / "missing.txt"
    result = _run([str(script), "encode", "--model", str(model_dir), "-f", str(missing)])
    assert result.returncode == 1
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert stderr.startswith("minilm-fast: error:") and str(missing) in stderr
    assert "Traceback" not in stderr

    result = _run([str(script), "download", "--offline", str(tmp_path / "no_model")])
    assert result.returncode == 1
    assert result.stdout == b""
    assert str(tmp_path / "no_model") in result.stderr.decode()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_interrupt_exits_130(model_dir: pathlib.Path) -> None:
    cmd = [sys.executable, "-m", "minilm_fast", "encode", "-v", "--model", str(model_dir), "-"]
    # A terminal's Ctrl-C reaches a program whose SIGINT is at its default. A suite started in
    # the background (`cmd &` in a script) inherits SIGINT ignored, and then Python installs no
    # handler in the child: reset it so the test does not depend on how pytest was started.
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Wait until it is blocked reading stdin (Python's SIGINT handler is installed by then).
        assert proc.stderr is not None
        seen = b""
        deadline = time.monotonic() + 60
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stderr, selectors.EVENT_READ)
            while b"reading texts from standard input" not in seen:
                assert time.monotonic() < deadline, seen
                if selector.select(timeout=1):
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    assert chunk, seen
                    seen += chunk
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (seen + stderr).decode()
    assert stdout == b""
    assert b"interrupted" in stderr and b"Traceback" not in stderr


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
