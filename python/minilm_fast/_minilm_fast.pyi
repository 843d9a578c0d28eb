"""Type stub for the native module built from rust/py.rs."""

from os import PathLike
from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "COMPUTE_MODES",
    "MiniLMError",
    "NativeModel",
    "TextConfig",
    "__version__",
    "default_threads",
    "read_text_config",
]
from typing_extensions import TypeAlias

__version__: str
#: The names `compute=` accepts.
COMPUTE_MODES: tuple[str, ...]

_IntArray: TypeAlias = npt.NDArray[np.int32] | npt.NDArray[np.int64]
_FlatIntArray: TypeAlias = npt.NDArray[np.int32] | npt.NDArray[np.int64] | npt.NDArray[np.intp]

class MiniLMError(Exception):
    """Raised when a model cannot be loaded or run (bad weights, unsupported configuration)."""

@final
class NativeModel:
    """A loaded BERT sentence encoder; immutable, safe to share between threads."""

    def __new__(
        cls, model_dir: str | PathLike[str], threads: int | None = None, compute: str = "float32"
    ) -> NativeModel: ...
    def encode(
        self,
        input_ids: _IntArray,
        attention_mask: _IntArray,
        token_type_ids: _IntArray | None = None,
        *,
        normalize: bool | None = None,
    ) -> npt.NDArray[np.float32]: ...
    def encode_ragged(
        self,
        input_ids: _FlatIntArray,
        offsets: _FlatIntArray,
        *,
        out: npt.NDArray[np.float32] | None = None,
        rows: _FlatIntArray | None = None,
        normalize: bool | None = None,
    ) -> npt.NDArray[np.float32]: ...
    def token_embeddings(
        self,
        input_ids: _IntArray,
        attention_mask: _IntArray,
        token_type_ids: _IntArray | None = None,
    ) -> npt.NDArray[np.float32]: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def output_dim(self) -> int: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def max_position_embeddings(self) -> int: ...
    @property
    def type_vocab_size(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def pooling(self) -> list[str]: ...
    @property
    def normalize(self) -> bool: ...
    @property
    def include_prompt(self) -> bool: ...
    @property
    def isa(self) -> str: ...
    @property
    def compute(self) -> str: ...

@final
class TextConfig:
    """How a model folder's text becomes tokens: its sentence-transformers settings."""

    @property
    def max_seq_length(self) -> int | None: ...
    @property
    def do_lower_case(self) -> bool: ...
    @property
    def prompts(self) -> dict[str, str]: ...
    @property
    def default_prompt_name(self) -> str | None: ...

def default_threads() -> int: ...
def read_text_config(model_dir: str | PathLike[str]) -> TextConfig: ...
