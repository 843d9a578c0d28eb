"""minilm_fast: sentence-transformers' all-MiniLM-L6-v2 (and BERT-shaped siblings) on a CPU, fast.

>>> from minilm_fast import Encoder
>>> encoder = Encoder()  # doctest: +SKIP
>>> encoder.encode(["A man is eating food.", "A man is eating pasta."]).shape  # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

from ._hub import DEFAULT_MODEL, ChecksumError, ModelNotFoundError, resolve_model
from ._minilm_fast import MiniLMError, NativeModel
from ._minilm_fast import __version__ as __version__
from .encoder import Encoder

__all__ = [
    "DEFAULT_MODEL",
    "ChecksumError",
    "Encoder",
    "MiniLMError",
    "ModelNotFoundError",
    "NativeModel",
    "__version__",
    "resolve_model",
]
