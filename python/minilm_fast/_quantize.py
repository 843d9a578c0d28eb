"""Output quantization for compact vector stores, with sentence-transformers' semantics.

`int8` / `uint8` map each dimension's calibration range [min, max] onto 256 buckets (floor,
clipped at the ends); `binary` / `ubinary` keep one sign bit per dimension, packed eight to a
byte (`binary` is the packed byte minus 128 as int8, as sentence-transformers stores it).
Vectors quantized with the same ranges are comparable; ranges computed from different batches
are not, which is why `Encoder.encode_iter` asks for them.
"""

from __future__ import annotations

from typing import Literal, Union, cast, get_args

import numpy as np
import numpy.typing as npt

__all__ = ["PRECISIONS", "Precision", "quantization_ranges", "quantize_embeddings"]

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

QuantizedArray = Union[npt.NDArray[np.float32], npt.NDArray[np.int8], npt.NDArray[np.uint8]]


def check_precision(precision: object) -> Precision:
    """`precision` if it is one of PRECISIONS, else a ValueError listing them."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return cast(Precision, precision)


def quantization_ranges(embeddings: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The (2, dim) per-dimension [min; max] of `embeddings`: calibration for int8/uint8.

    Compute it once from a representative sample and pass it to every later call so all
    vectors share one scale.

    >>> quantization_ranges([[0.0, -1.0], [0.5, 1.0]]).tolist()
    [[0.0, -1.0], [0.5, 1.0]]
    """
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        raise ValueError(
            "quantization ranges need at least two embeddings in a 2-D array, got shape "
            f"{matrix.shape}"
        )
    return np.stack((matrix.min(axis=0), matrix.max(axis=0)))


def quantize_embeddings(
    embeddings: npt.ArrayLike,
    precision: Precision,
    ranges: npt.ArrayLike | None = None,
    calibration_embeddings: npt.ArrayLike | None = None,
) -> QuantizedArray:
    """Quantize float embeddings to `precision` (see the module docstring for the schemes).

    For int8/uint8, `ranges` (from `quantization_ranges`) wins over `calibration_embeddings`,
    which wins over the embeddings themselves; one embedding alone cannot calibrate.

    >>> import numpy as np
    >>> quantize_embeddings(np.array([[0.2, -0.3], [-0.1, 0.4]]), "ubinary").tolist()
    [[128], [64]]
    >>> quantize_embeddings(np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.25]]), "int8").tolist()
    [[-128, 126], [126, -128], [-1, -65]]

    (A dimension's maximum lands in bucket 254, not 255, when float32 rounding puts
    ``(max - min) / step`` just below 255: sentence-transformers gives the same bytes.)
    """
    precision = check_precision(precision)
    matrix = np.asarray(embeddings)
    if not np.issubdtype(matrix.dtype, np.floating):
        raise TypeError(f"embeddings to quantize must be floats, got {matrix.dtype}")
    matrix = matrix.astype(np.float32, copy=False)
    if precision == "float32":
        return matrix
    if precision in ("binary", "ubinary"):
        packed = np.packbits(matrix > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None and matrix.shape[0] == 0:
        ranges = np.zeros((2, matrix.shape[-1]), dtype=np.float32)  # nothing to calibrate
    if ranges is None:
        source = matrix if calibration_embeddings is None else calibration_embeddings
        bounds = quantization_ranges(source)
    else:
        bounds = np.asarray(ranges, dtype=np.float32)
    dim = matrix.shape[-1]
    if bounds.shape != (2, dim):
        raise ValueError(f"ranges must have shape (2, {dim}), got {bounds.shape}")
    starts = bounds[0]
    steps = (bounds[1] - starts) / 255
    steps = np.where(steps == 0, 1, steps)  # a constant dimension lands in the first bucket
    buckets = np.clip(np.floor((matrix - starts) / steps), 0, 255)
    if precision == "uint8":
        unsigned: npt.NDArray[np.uint8] = buckets.astype(np.uint8)
        return unsigned
    signed: npt.NDArray[np.int8] = (buckets - 128).astype(np.int8)
    return signed
