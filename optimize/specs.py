"""Input signatures, evaluation/calibration data, and seeded synthetic inputs.

A model input is an :class:`ortserve.dtypes.TensorSpec` (the server's own), whose dynamic dimensions
optimize names (``TensorSpec.of("input_ids", "int64", ("batch", "sequence"))``; ``spec.dims`` gives them
back by name). Data comes from ``.npz`` files (arrays named like the inputs, optional ``labels``) or,
without one, from :func:`synthetic_inputs`, seeded so that the same run gives the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ortserve.dtypes import DTYPES, TensorSpec
from ortserve.optimize.errors import OptimizeError

__all__ = [
    "FEEDABLE",
    "Dataset",
    "check_dtype",
    "load_npz",
    "onnx_input_specs",
    "resolve_shape",
    "synthetic_inputs",
]

#: Defaults for dynamic dimensions a flag (``--dim NAME=VALUE``) did not set, by name fragment.
DEFAULT_DIMS = {"seq": 128, "len": 128, "token": 128}
#: Integer inputs get values in ``[0, INT_HIGH)``: small non-negative ids are valid for most embeddings.
INT_HIGH = 100

#: The dtypes optimize can make or load data for (every numeric one of ortserve.dtypes; no strings).
FEEDABLE = tuple(name for name in DTYPES if name != "string")


@dataclass
class Dataset:
    """Rows of inputs (the first axis is the batch), optional labels, and where they came from."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    synthetic: bool = False
    source: str = ""

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, size: int) -> list[dict[str, np.ndarray]]:
        return [{k: v[i : i + size] for k, v in self.inputs.items()} for i in range(0, self.rows, size)]

    def head(self, n: int) -> Dataset:
        labels = None if self.labels is None else self.labels[:n]
        return Dataset({k: v[:n] for k, v in self.inputs.items()}, labels, self.synthetic, self.source)


def onnx_input_specs(path: Path) -> list[TensorSpec]:
    """The graph inputs of an ONNX file (initializers excluded), as the ONNX Runtime session sees them; every
    dynamic dimension gets a name (``dim0_1`` where the model gives none)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    specs = []
    for i, arg in enumerate(sess.get_inputs()):
        dims = [d if isinstance(d, int) else (d or f"dim{i}_{j}") for j, d in enumerate(arg.shape)]
        try:
            spec = TensorSpec.from_onnx(arg.name, arg.type, dims)
        except ValueError:
            spec = None
        if spec is None or spec.dtype not in FEEDABLE:
            raise OptimizeError(f"{path}: input {arg.name!r} has type {arg.type}, which optimize cannot feed")
        specs.append(spec)
    return specs


def resolve_shape(spec: TensorSpec, batch: int, dims: dict[str, int]) -> tuple[int, ...]:
    """Concrete shape: the first dynamic dimension is the batch; others come from ``dims`` or defaults."""
    out: list[int] = []
    for axis, d in enumerate(spec.dims):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif axis == 0:
            out.append(batch)
        elif isinstance(d, str) and d in dims:
            out.append(dims[d])
        else:
            name = str(d).lower()
            out.append(next((v for k, v in DEFAULT_DIMS.items() if k in name), 16))
    return tuple(out)


def check_dtype(dtype: str, where: str) -> None:
    """A dtype optimize can feed, or a one-line error saying which ones are meant."""
    if dtype not in FEEDABLE:
        raise OptimizeError(
            f"{where}: unknown dtype {dtype!r}, expected e.g. float32, float16, int64, int32, bool"
        )


def synthetic_inputs(specs: list[TensorSpec], rows: int, dims: dict[str, int], seed: int) -> Dataset:
    """Seeded inputs from the signature: floats ~ N(0, 1); masks all ones; type ids zero; other integers
    uniform in ``[0, INT_HIGH)``."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = resolve_shape(spec, rows, dims)
        dtype = DTYPES[spec.dtype]
        name = spec.name.lower()
        if dtype.kind == "f":
            arr = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b" or "mask" in name:
            arr = np.ones(shape, dtype)
        elif "type" in name or "segment" in name:
            arr = np.zeros(shape, dtype)
        else:
            arr = rng.integers(0, INT_HIGH, size=shape).astype(dtype)
        arrays[spec.name] = arr
    return Dataset(arrays, None, synthetic=True, source=f"synthetic (seed {seed}, {rows} rows)")


def load_npz(path: Path, specs: list[TensorSpec]) -> Dataset:
    """Load and check a data file against the inputs: every input present, same rank, fixed dims equal,
    dtypes castable, equal row counts; ``labels`` optional."""
    path = Path(path)
    if not path.is_file():
        raise OptimizeError(f"data file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise OptimizeError(f"{path}: not a readable .npz file ({e})") from e
    labels = arrays.pop("labels", None)
    inputs: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name not in arrays:
            have = ", ".join(sorted(arrays)) or "none"
            raise OptimizeError(f"{path}: no array named {spec.name!r} (the model's input); arrays: {have}")
        arr = arrays.pop(spec.name)
        if arr.ndim != len(spec.shape):
            raise OptimizeError(
                f"{path}: array {spec.name!r} has shape {arr.shape}, the input wants rank {len(spec.shape)} "
                f"{list(spec.dims)}"
            )
        for axis, d in enumerate(spec.shape):
            if d > 0 and arr.shape[axis] != d and axis > 0:
                raise OptimizeError(
                    f"{path}: array {spec.name!r} has shape {arr.shape}, the input wants {list(spec.dims)}"
                )
        want = DTYPES[spec.dtype]
        if arr.dtype != want:
            if not np.can_cast(arr.dtype, want, casting="same_kind"):
                raise OptimizeError(f"{path}: array {spec.name!r} is {arr.dtype}, the input wants {want}")
            arr = arr.astype(want)
        inputs[spec.name] = np.ascontiguousarray(arr)
    rows = {len(a) for a in inputs.values()} | ({len(labels)} if labels is not None else set())
    if len(rows) != 1:
        raise OptimizeError(f"{path}: arrays have different row counts {sorted(rows)}")
    if not inputs:
        raise OptimizeError(f"{path}: the model has no inputs to feed")
    if rows == {0}:
        raise OptimizeError(f"{path}: the arrays have no rows")
    return Dataset(inputs, labels, synthetic=False, source=str(path))
