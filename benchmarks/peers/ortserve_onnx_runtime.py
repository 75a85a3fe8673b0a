"""An MLServer custom runtime serving an ONNX file with ONNX Runtime: the peer in the benchmarks.

Runs inside MLServer's own virtual environment (``benchmarks/.venv-mlserver``), never in
ortserve's. Adaptive batching is MLServer's own (``max_batch_size`` / ``max_batch_time`` in
model-settings.json): MLServer concatenates queued requests along the first dimension, calls
``predict`` once and splits the outputs by rows. Like MLServer's bundled runtimes (sklearn,
xgboost), ``predict`` calls the model directly; with ``parallel_workers`` >= 1 it runs in
MLServer's inference worker processes, not on the process that serves gRPC.

model-settings.json parameters.extra: ``intra_op_threads`` (0: ONNX Runtime's default).
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        extra = (self._settings.parameters.extra if self._settings.parameters else None) or {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_threads", 0))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        arrays = self._session.run(None, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, a) for name, a in zip(self._outputs, arrays)],
        )
