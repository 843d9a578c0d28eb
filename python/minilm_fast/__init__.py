"""minilm_fast: sentence-transformers' all-MiniLM-L6-v2 (and BERT-shaped siblings) on a CPU, fast.

>>> from minilm_fast import Encoder
>>> encoder = Encoder()  # sentence-transformers/all-MiniLM-L6-v2
>>> encoder.encode(["A man is eating food.", "A man is eating pasta."]).shape
(2, 384)
"""

from __future__ import annotations

from ._hub import DEFAULT_MODEL, ChecksumError, ModelNotFoundError, resolve_model
from ._minilm_fast import MiniLMError, NativeModel
from ._minilm_fast import __version__ as __version__
from ._quantize import quantization_ranges, quantize_embeddings
from .encoder import BatchInfo, EncodeOptions, Encoder, TruncationWarning

__all__ = [
    "DEFAULT_MODEL",
    "BatchInfo",
    "ChecksumError",
    "EncodeOptions",
    "Encoder",
    "MiniLMError",
    "ModelNotFoundError",
    "NativeModel",
    "TruncationWarning",
    "__version__",
    "quantization_ranges",
    "quantize_embeddings",
    "resolve_model",
]
