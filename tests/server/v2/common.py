"""What the V2 test modules share: the repository they serve, tritonclient and bare-stub fixtures,
and request helpers. tritonclient's generated modules define the same ``inference.*`` protobuf
symbols as the server's; they coexist because ortserve's live in a descriptor pool of their own.
Requests tritonclient cannot build (typed contents, malformed ones) are built with
``tritonclient.grpc.service_pb2``."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as triton
from onnx import TensorProto, helper
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import triton_to_np_dtype

from tests import onnx_models as m

ADDMUL_CONFIG = """
max_batch_size = 16
[batching]
max_queue_delay_us = 20000
preferred_batch_sizes = [4, 8]
max_queue_size = 64
"""

# "routed" goes to its canary version for French requests and for the targeting key "vip".
FLAGS = {
    "flags": {
        "routed": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "canary": "2"},
            "targeting": {
                "if": [
                    {"or": [{"==": [{"var": "country"}, "fr"]}, {"==": [{"var": "targetingKey"}, "vip"]}]},
                    "canary",
                    "stable",
                ]
            },
        }
    }
}

# Every numeric V2 datatype, with tritonclient's numpy dtype and the matching ONNX element type.
TYPES = {
    t: (helper.np_dtype_to_tensor_dtype(np.dtype(triton_to_np_dtype(t))), np.dtype(triton_to_np_dtype(t)))
    for t in [
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
    ]
}
TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def identities(datatypes):
    """out_T = in_T for each datatype; with FP16, also half_as_float = Cast(in_FP16, float)."""
    nodes = [helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]) for t in datatypes]
    inputs = [helper.make_tensor_value_info(f"in_{t}", TYPES[t][0], ["batch", 3]) for t in datatypes]
    outputs = [helper.make_tensor_value_info(f"out_{t}", TYPES[t][0], ["batch", 3]) for t in datatypes]
    if "FP16" in datatypes:
        nodes.append(helper.make_node("Cast", ["in_FP16"], ["half_as_float"], to=TensorProto.FLOAT))
        outputs.append(helper.make_tensor_value_info("half_as_float", TensorProto.FLOAT, ["batch", 3]))
    return m._model(nodes, inputs, outputs)


def bf16_model():
    """as_float = Cast(x, float), same = x; x bfloat16 [batch, 4]."""
    bf16 = TensorProto.BFLOAT16
    return m._model(
        [
            helper.make_node("Cast", ["x"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Identity", ["x"], ["same"]),
        ],
        [helper.make_tensor_value_info("x", bf16, ["batch", 4])],
        [
            helper.make_tensor_value_info("as_float", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("same", bf16, ["batch", 4]),
        ],
    )


def random_inputs(datatypes, rows=2, seed=2):
    rng = np.random.default_rng(seed)
    x = {}
    for t in datatypes:
        dt = TYPES[t][1]
        if dt == np.bool_:
            x[f"in_{t}"] = rng.integers(0, 2, (rows, 3)).astype(dt)
        elif np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            x[f"in_{t}"] = rng.integers(info.min, info.max, (rows, 3), dtype=dt, endpoint=True)
        else:
            x[f"in_{t}"] = rng.standard_normal((rows, 3)).astype(dt)
    return x


def session(repo, name, version=1):
    return ort.InferenceSession(
        str(repo / name / str(version) / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def infer_input(name, array, datatype=None):
    i = triton.InferInput(name, list(array.shape), datatype or triton.np_to_triton_dtype(array.dtype))
    i.set_data_from_numpy(array)
    return i


def addmul_inputs(rows=2, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((rows, 4)).astype(np.float32) for n in ("a", "b")}


def raw_request(model, arrays, **fields):
    """A ModelInferRequest with raw contents, built by hand (numeric arrays only)."""
    req = pb.ModelInferRequest(model_name=model, **fields)
    for name, a in arrays.items():
        req.inputs.add(name=name, datatype=triton.np_to_triton_dtype(a.dtype), shape=a.shape)
        req.raw_input_contents.append(a.tobytes())
    return req


def typed_request(model, arrays, **fields):
    req = pb.ModelInferRequest(model_name=model, **fields)
    for name, a in arrays.items():
        datatype = "BYTES" if a.dtype == object else triton.np_to_triton_dtype(a.dtype)
        t = req.inputs.add(name=name, datatype=datatype, shape=a.shape)
        if datatype == "BYTES":
            t.contents.bytes_contents.extend(s.encode() for s in a.reshape(-1))
        elif datatype in TYPED_FIELDS:  # FP16 has no typed field: left empty
            getattr(t.contents, TYPED_FIELDS[datatype]).extend(a.reshape(-1).tolist())
    return req


def outputs_of(response):
    """Decode a ModelInferResponse's raw outputs with tritonclient's own result class."""
    result = triton.InferResult(response)
    return {o.name: result.as_numpy(o.name) for o in response.outputs}
