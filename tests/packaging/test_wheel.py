"""The way users get minilm_fast: the release wheel installed into a fresh virtualenv that has no
Rust build directory, then used from outside the source tree."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import venv

import numpy as np
import pytest

from minilm_fast import Encoder

pytestmark = pytest.mark.slow

SCRIPT = """
import sys, numpy as np, minilm_fast
from minilm_fast import Encoder
print(minilm_fast.__file__)
vectors = Encoder(sys.argv[1], threads=1).encode(["A wheel, installed.", "Second text."])
np.save(sys.argv[2], vectors)
"""


@pytest.fixture(scope="module")
def wheel() -> pathlib.Path:
    path = os.environ.get("MINILM_FAST_WHEEL", "")
    if not path:
        pytest.skip("MINILM_FAST_WHEEL is not set; `make test` builds the wheel and sets it")
    wheel = pathlib.Path(path).resolve()
    assert wheel.is_file(), f"MINILM_FAST_WHEEL={path} does not exist"
    return wheel


def test_release_wheel_installs_and_encodes_in_a_fresh_venv(
    wheel: pathlib.Path, model_dir: pathlib.Path, encoder: Encoder, tmp_path: pathlib.Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    wheelhouse = os.environ.get("MINILM_FAST_WHEELHOUSE")
    offline = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *offline, str(wheel)],
        check=True,
        cwd=tmp_path,
    )
    out = tmp_path / "vectors.npy"
    result = subprocess.run(
        [str(python), "-c", SCRIPT, str(model_dir), str(out)],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    installed_at = pathlib.Path(result.stdout.strip().splitlines()[0])
    assert env_dir in installed_at.parents, f"imported from {installed_at}, not the venv"
    assert (env_dir / "bin" / "minilm-fast").exists(), "console script missing"
    assert list(installed_at.parent.glob("_minilm_fast*.so")), "native module missing"
    np.testing.assert_allclose(
        np.load(out), encoder.encode(["A wheel, installed.", "Second text."]), atol=1e-6
    )
    assert sys.executable != str(python)


def test_release_wheel_is_abi3_and_manylinux2014(wheel: pathlib.Path) -> None:
    """One wheel for every CPython from 3.9 on, installable on glibc 2.17 (manylinux2014)."""
    _, _, python_tag, abi_tag, platform_tag = wheel.stem.split("-")
    assert (python_tag, abi_tag) == ("cp39", "abi3"), wheel.name
    assert "manylinux_2_17_x86_64" in platform_tag.split("."), wheel.name
    # auditwheel reads the symbol versions the native module needs, whatever the name says.
    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    words = " ".join(shown.split())  # auditwheel wraps its lines
    assert 'consistent with the following platform tag: "manylinux_2_17_x86_64"' in words, shown
