"""The `minilm-fast` command line: output, files, exit codes and messages, with the real model.

Most cases call `main([...])` in-process (fast); a few run `python -m minilm_fast` and the
installed console script to check real exit codes and that stdout carries nothing but the data.
"""

from __future__ import annotations

import io
import os
import pathlib
import selectors
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minilm_fast import Encoder, __version__
from minilm_fast.cli import main

SCRIPT = pathlib.Path(sys.executable).parent / "minilm-fast"
LINES = [
    "A man is eating food.",
    "",  # a blank line is an empty text: row i must stay line i
    "A man is eating pasta.",
    "  Ein Mann isst Nudeln. \u00e9\u4e2d\u6587 \U0001f35d",
    "The new movie is awesome.",
]


def _run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command with the environment of the test run; fail instead of hanging."""
    return subprocess.run(args, input=stdin, capture_output=True, timeout=120, check=False)


def _write_lines(path: pathlib.Path, lines: list[str], newline: str = "\n") -> pathlib.Path:
    path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
    return path


# --------------------------------------------------------------------------------------------
# encode


def test_encode_arguments_prints_summary_with_similarity(
    model_dir: pathlib.Path, encoder: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = ["A man is eating food.", "A man is eating pasta.", "A plane is taking off."]
    code = main(["encode", "--model", str(model_dir), *texts])
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


def test_encode_file_writes_npy_rows_in_line_order(
    model_dir: pathlib.Path,
    encoder: Encoder,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = _write_lines(tmp_path / "texts.txt", LINES)
    output = tmp_path / "out.npy"
    code = main(["encode", "--model", str(model_dir), "-f", str(source), "-o", str(output)])
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
    assert (
        main(["encode", "-q", "--model", str(model_dir), "-f", str(source), "-o", str(output)]) == 0
    )
    np.testing.assert_allclose(np.load(output), encoder.encode(expected), atol=1e-6)


def test_encode_replaces_existing_output(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.npy"
    output.write_bytes(b"old contents")
    assert main(["encode", "--model", str(model_dir), "hello", "-o", str(output)]) == 0
    assert np.load(output).shape == (1, 384)
    assert output.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600


def test_encode_empty_file_gives_empty_array(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "empty.txt"
    source.write_bytes(b"")
    output = tmp_path / "out.npy"
    assert main(["encode", "--model", str(model_dir), "-f", str(source), "-o", str(output)]) == 0
    assert np.load(output).shape == (0, 384)
    assert "holds no text" in capsys.readouterr().err


def test_encode_progress_bar_when_forced(
    model_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", "--model", str(model_dir), "--progress", "a", "b"]) == 0
    out, err = capsys.readouterr()
    assert "Encoding" in err and "Encoding" not in out


# --------------------------------------------------------------------------------------------
# usage errors: exit 2


def test_encode_arguments_and_file_is_usage_error(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write_lines(tmp_path / "texts.txt", ["x"])
    code = main(["encode", "--model", str(model_dir), "some text", "-f", str(source)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "not both" in err and "usage:" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "nothing to encode"),
        (["x", "--batch-size", "0"], "--batch-size"),
        (["x", "--threads", "two"], "--threads"),
        (["x", "--max-seq-length", "100000"], "--max-seq-length"),
        (["x", "--no-such-option"], "unrecognized"),
    ],
    ids=["no-input", "batch-size", "threads", "max-seq-length", "unknown-option"],
)
def test_encode_bad_usage_exits_2(
    model_dir: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
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


def test_encode_not_utf8_file_names_the_line(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "latin1.txt"
    source.write_bytes("caf\u00e9\nna\u00efve\n".encode("latin-1"))
    assert main(["encode", "--model", str(model_dir), "-f", str(source)]) == 1
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "line 1" in err and str(source) in err


def test_encode_output_folder_missing(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "missing" / "out.npy"
    assert main(["encode", "--model", str(model_dir), "x", "-o", str(output)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minilm-fast: error:") and str(output.parent) in err


def test_nonexistent_model_folder(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "no_model_here"
    assert main(["encode", "--model", str(folder), "x"]) == 1
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


def test_info_shows_dimension_and_kernel(
    model_dir: pathlib.Path, encoder: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--model", str(model_dir), "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "embedding dim:  384" in out
    assert __version__ in out
    assert encoder.native.isa in out
    assert "threads:        2" in out


def test_info_json(model_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["info", "--model", str(model_dir), "--json", "--max-seq-length", "128"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["dim"] == 384
    assert facts["max_seq_length"] == 128
    assert facts["model_folder"] == str(model_dir.resolve())
    assert facts["threads"] >= 1


@pytest.mark.parametrize("command", [[], ["encode"], ["download"], ["info"]])
def test_help_has_examples(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "minilm-fast " + (command[0] if command else "encode") in out


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
    result = _run([*cmd, "-f", "-", "-o", "-"], stdin=data)
    assert result.returncode == 0, result.stderr.decode()
    embeddings = np.load(io.BytesIO(result.stdout), allow_pickle=False)  # stdout is the .npy only
    assert embeddings.shape == (len(LINES), 384)
    np.testing.assert_allclose(embeddings, encoder.encode(LINES), atol=1e-6)
    assert b"wrote 5 x 384" in result.stderr


def test_module_usage_error_exit_code(model_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    source = _write_lines(tmp_path / "texts.txt", ["x"])
    cmd = [sys.executable, "-m", "minilm_fast", "encode", "--model", str(model_dir)]
    result = _run([*cmd, "text", "-f", str(source)])
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
    result = _run([str(script), "encode", "--model", str(model_dir), *texts, "-o", str(output)])
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
    cmd = [
        sys.executable,
        "-m",
        "minilm_fast",
        "encode",
        "-v",
        "--model",
        str(model_dir),
        "-f",
        "-",
    ]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
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
