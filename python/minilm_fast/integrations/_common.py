"""What the adapters share: building the Encoder they wrap (from the Encoder arguments, typed
once as ``EncoderArgs`` beside the Encoder's other option types), the message for a framework
that is not installed, and Ray Data's default batch size."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

from .._options import EncoderArgs, check_batch_size
from ..encoder import Encoder

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: Rows Ray Data hands an actor per call (``minilm_fast.ray.embed_dataset``'s ``batch_size``).
#: Large enough that the Encoder's length sorting leaves little padding and Ray's per-batch cost
#: is amortised; small enough to keep a batch of long documents in a few MB. Defined here, not
#: in ``minilm_fast.ray`` (which imports Ray), so ``minilm-fast --help`` can show it without Ray.
DEFAULT_RAY_BATCH_SIZE = 256

__all__ = [
    "DEFAULT_RAY_BATCH_SIZE",
    "EncoderArgs",
    "ModelArg",
    "build_encoder",
    "check_batch_size",
    "missing_framework",
]

ModelArg = Union[str, "os.PathLike[str]"]
"""A Hub repo id or a local model folder, as ``Encoder`` takes it."""


def missing_framework(module: str, package: str, extra: str) -> str:
    """The ImportError message for an adapter whose framework is not installed."""
    return (
        f"minilm_fast.integrations.{module} needs {package}, which is not installed; "
        f'install it with: pip install "minilm-fast[{extra}]"'
    )


def build_encoder(
    encoder: Encoder | None, model: ModelArg | None, **encoder_args: Unpack[EncoderArgs]
) -> Encoder:
    """Return ``encoder``, or a new Encoder built from ``model`` and ``encoder_args``.

    ``model=None`` leaves the Encoder's default model. Passing an encoder together with Encoder
    arguments is a mistake the caller hears about rather than one silently ignored.
    """
    if encoder is None:
        return Encoder(**encoder_args) if model is None else Encoder(model, **encoder_args)
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder must be a minilm_fast.Encoder, got {type(encoder).__name__}")
    if model is not None or encoder_args:
        given = ", ".join((["model"] if model is not None else []) + sorted(encoder_args))
        raise TypeError(
            f"pass either encoder= or the Encoder arguments, not both (got encoder= and {given})"
        )
    return encoder
