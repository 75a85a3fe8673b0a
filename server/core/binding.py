"""Runs through ONNX Runtime's IO binding (``[runtime] io_binding``), with batches padded to fixed sizes
(``cuda_graph_batch_sizes``) that the CUDA execution provider can capture as CUDA graphs.

``session.run`` hands ONNX Runtime numpy arrays and gets numpy arrays back: on a GPU it copies the
inputs to the device and the outputs back inside each run, into buffers it allocates for that run.
Here each run binds its inputs once (on the CPU the batch's own arrays, no copy; on a CUDA device one
copy of each into a device buffer), binds its outputs to the device, and copies each output back
once, when the batch is answered.

With padded sizes, a batch of ``n`` rows runs as the next size ``m >= n``: its rows are written into an
input buffer of ``m`` rows whose other rows are zero, and the first ``n`` rows of each output are
returned. Each shape (padded size, row shapes and dtypes) gets its own input and output buffers,
allocated and bound once, so every run of that shape reads and writes the same device addresses,
which is what a CUDA graph replays. When the session has the CUDA provider's ``enable_cuda_graph``,
each shape also gets its own graph (RunOptions ``gpu_graph_id``): ONNX Runtime runs it normally once,
captures it on the next run and replays it from then on. A batch larger than the largest size, and
shapes beyond ``MAX_SHAPES`` per session, run unpadded with ``gpu_graph_id = -1`` (never captured).
A runner serves one session and is used by one thread at a time (the pool's instances).

    runner = BoundRunner(session, ["y"], Device("cuda", 0), sizes=(8, 32), graphs=True)
    outputs = runner.run({"x": batch})       # numpy arrays of the batch's rows, on the host
"""

from __future__ import annotations

import bisect
import ctypes
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ortserve.dtypes import DTYPES

__all__ = ["BF16", "MAX_SHAPES", "BoundRunner", "Device", "from_ort_value", "ort_value"]

log = logging.getLogger("ortserve.runtime")

MAX_SHAPES = 64  # padded shapes per session, each with its buffers (and graph): bounded device memory
BF16 = "tensor(bfloat16)"
_ONNX_BF16 = 16  # onnx.TensorProto.BFLOAT16
_GRAPH_ID = "gpu_graph_id"


def ort_value(array: np.ndarray, device: str = "cpu", device_id: int = 0) -> ort.OrtValue:
    """An OrtValue of ``array``: on the CPU its own memory (no copy) when it is contiguous, on a
    device a copy. bfloat16 (which ONNX Runtime's numpy binding lacks) stays on the CPU, typed."""
    if array.dtype == DTYPES.get("bfloat16"):
        raw = np.ascontiguousarray(array).view(np.uint16)
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, onnx_element_type=_ONNX_BF16)
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, device_id)


def from_ort_value(value: ort.OrtValue) -> np.ndarray:
    """A host array of ``value`` that owns its memory (a copy: bound buffers are reused)."""
    if value.data_type() != BF16:
        array = value.numpy()  # a device value is copied to the host; a CPU one is a view
        return array.copy() if value.device_name().lower() == "cpu" else array
    raw = (ctypes.c_char * value.tensor_size_in_bytes()).from_address(value.data_ptr())
    return np.frombuffer(bytes(raw), np.uint16).view(DTYPES["bfloat16"]).reshape(value.shape())


@dataclass(frozen=True)
class Device:
    """Where bound buffers live: ``cpu``, or ``cuda`` with its device id."""

    kind: str = "cpu"
    id: int = 0


class _Shape:
    """One padded shape's buffers: host staging arrays, the bound input values, the output values
    (fixed after the first run), and the run options that name its graph."""

    __slots__ = ("binding", "device", "filled", "host", "options", "outputs", "rows")

    def __init__(self, session: ort.InferenceSession, rows: int) -> None:
        self.binding = session.io_binding()
        self.rows = rows
        self.filled = 0  # rows of the staging arrays that may hold data (the rest are zero)
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, ort.OrtValue] = {}
        self.outputs: list[ort.OrtValue] | None = None
        self.options: ort.RunOptions | None = None


class BoundRunner:
    """One session's runs through IO binding (see the module docstring)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        output_names: Sequence[str],
        device: Device = Device(),
        sizes: Sequence[int] = (),
        graphs: bool = False,
    ) -> None:
        self._session = session
        self._names = list(output_names)
        self._device = self.device = device
        self._sizes = sorted(sizes)
        self._graphs = self.graphs = graphs
        types = {a.name: a.type for a in [*session.get_inputs(), *session.get_outputs()]}
        strings = [n for n, t in types.items() if t == "tensor(string)"]
        if strings:
            raise ValueError(f"io_binding: '{strings[0]}' is a string tensor, which IO binding cannot bind")
        bf16 = [a.name for a in session.get_inputs() if a.type == BF16]
        if bf16 and sizes and device.kind != "cpu":
            raise ValueError(
                f"cuda_graph_batch_sizes: input '{bf16[0]}' is bfloat16, which cannot be padded on {device.kind}"
            )
        # bfloat16 outputs come back through the host: ort_value/from_ort_value read them there.
        self._out_device = {n: Device() if types.get(n) == BF16 else device for n in self._names}
        self._shapes: dict[tuple, _Shape] = {}
        self._free = session.io_binding()
        self._skip: ort.RunOptions | None = None
        if graphs:  # runs that must never be captured: their shapes and addresses vary
            self._skip = ort.RunOptions()
            self._skip.add_run_config_entry(_GRAPH_ID, "-1")
        self._warned = False

    def padded_size(self, rows: int) -> int | None:
        """The size a batch of ``rows`` runs as (None: unpadded)."""
        at = bisect.bisect_left(self._sizes, rows)
        return self._sizes[at] if at < len(self._sizes) else None

    @property
    def shapes(self) -> int:
        """Padded shapes with buffers of their own so far."""
        return len(self._shapes)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        first = next(iter(feeds.values()))
        size = self.padded_size(first.shape[0]) if self._sizes and first.ndim else None
        if size is None:
            return self._run_free(feeds)
        key = (size, *((n, a.dtype.str, a.shape[1:]) for n, a in feeds.items()))
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= MAX_SHAPES:
                if not self._warned:
                    self._warned = True
                    log.warning("more than %d padded shapes: further shapes run unpadded", MAX_SHAPES)
                return self._run_free(feeds)
            shape = self._shapes[key] = self._new_shape(size, feeds)
        return self._run_padded(shape, feeds, first.shape[0])

    def _run_free(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        b, d = self._free, self._device
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        for name, array in feeds.items():
            b.bind_ortvalue_input(name, ort_value(array, d.kind, d.id))
        for name in self._names:
            out = self._out_device[name]
            b.bind_output(name, out.kind, out.id)
        self._session.run_with_iobinding(b, self._skip)
        return [from_ort_value(v) for v in b.get_outputs()]

    def _new_shape(self, size: int, feeds: Mapping[str, np.ndarray]) -> _Shape:
        shape, d = _Shape(self._session, size), self._device
        for name, array in feeds.items():
            dims = (size, *array.shape[1:])
            if array.dtype == DTYPES.get("bfloat16"):  # on the CPU only (checked when made)
                raw = np.zeros(dims, np.uint16)
                shape.host[name] = raw.view(array.dtype)
                value = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(raw, onnx_element_type=_ONNX_BF16)
            else:
                shape.host[name] = np.zeros(dims, array.dtype)
                if d.kind == "cpu":  # bound to the staging array itself
                    value = ort.OrtValue.ortvalue_from_numpy(shape.host[name])
                else:
                    value = ort.OrtValue.ortvalue_from_shape_and_type(dims, array.dtype, d.kind, d.id)
            shape.device[name] = value
            shape.binding.bind_ortvalue_input(name, value)
        for name in self._names:
            out = self._out_device[name]
            shape.binding.bind_output(name, out.kind, out.id)
        if self._graphs:
            shape.options = ort.RunOptions()
            shape.options.add_run_config_entry(_GRAPH_ID, str(len(self._shapes)))
        return shape

    def _run_padded(self, shape: _Shape, feeds: Mapping[str, np.ndarray], rows: int) -> list[np.ndarray]:
        on_device = self._device.kind != "cpu"
        full = rows == shape.rows and on_device
        for name, array in feeds.items():
            if full:  # no padding: straight into the device buffer
                shape.device[name].update_inplace(np.ascontiguousarray(array))
                continue
            host = shape.host[name]
            host[:rows] = array
            if shape.filled > rows:  # rows a larger batch left: padding is zeros
                host[rows : shape.filled] = 0
            if on_device:
                shape.device[name].update_inplace(host)  # the one copy to the device
        if not full:
            shape.filled = rows
        self._session.run_with_iobinding(shape.binding, shape.options)
        if shape.outputs is None:
            # The first run allocated the outputs; bound from now on, they keep their addresses.
            shape.outputs = list(shape.binding.get_outputs())
            for name, value in zip(self._names, shape.outputs):
                shape.binding.bind_ortvalue_output(name, value)
        return [_rows(v, rows) for v in shape.outputs]


def _rows(value: ort.OrtValue, rows: int) -> np.ndarray:
    """The first ``rows`` rows of a reused output buffer, as a host array of their own."""
    if value.data_type() == BF16 or value.device_name().lower() != "cpu":
        return from_ort_value(value)[:rows]
    return value.numpy()[:rows].copy()
