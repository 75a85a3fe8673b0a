"""Recognising and loading the model argument: an ``.onnx`` file, a ``.pt2`` torch.export program, a
transformers directory, or ``package.module:factory`` with ``--weights`` (safetensors or a ``.pt`` state dict
loaded with ``weights_only=True``: arbitrary pickles are never loaded)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.dtypes import TensorSpec
from ortserve.optimize.artifacts import Artifact, OnnxArtifact, TorchArtifact
from ortserve.optimize.errors import OptimizeError
from ortserve.optimize.specs import check_dtype, onnx_input_specs

__all__ = ["Source", "load_source", "parse_input_spec"]

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class Source:
    kind: str  # onnx | pt2 | torch | transformers
    artifact: Artifact
    specs: list[TensorSpec]
    hints: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def parse_input_spec(text: str) -> TensorSpec:
    """``name:dtype:dim,dim`` e.g. ``x:float32:batch,3,32,32`` (named dims are dynamic)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise OptimizeError(f"--input {text!r}: write NAME:DTYPE:DIMS, e.g. x:float32:batch,3,32,32")
    name, dtype, dims = parts
    check_dtype(dtype, f"--input {text!r}")
    shape = tuple(int(d) if d.isdigit() else d for d in dims.split(",") if d)
    return TensorSpec.of(name, dtype, shape)


def kind_of(model: str) -> str:
    p = Path(model)
    if p.suffix == ".onnx":
        return "onnx"
    if p.suffix == ".pt2":
        return "pt2"
    if p.is_dir():
        return "transformers"
    if _FACTORY.match(model):
        return "torch"
    raise OptimizeError(
        f"cannot tell what {model!r} is: give an .onnx or .pt2 file, a transformers directory, "
        "or package.module:factory with --weights"
    )


def load_source(
    model: str,
    weights: str | None = None,
    inputs: list[TensorSpec] | None = None,
    output_names: list[str] | None = None,
) -> Source:
    kind = kind_of(model)
    if kind in ("onnx", "pt2", "transformers") and not Path(model).exists():
        raise OptimizeError(f"model {model} not found")
    if kind == "onnx":
        return _load_onnx(Path(model))
    if kind == "pt2":
        return _load_pt2(Path(model), inputs, output_names)
    if kind == "transformers":
        return _load_transformers(Path(model))
    return _load_factory(model, weights, inputs, output_names)


def _load_onnx(path: Path) -> Source:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:  # onnx raises several types for bad files
        raise OptimizeError(f"{path}: not a valid ONNX model ({str(e).splitlines()[0][:200]})") from e
    specs = onnx_input_specs(path)
    hints: dict[str, Any] = {}
    m = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in m.graph.node}
    hints["exporter"] = "dynamo" if m.producer_name == "pytorch" and m.functions else m.producer_name
    if "Conv" in ops:
        hints["family"] = "cnn"
    return Source("onnx", OnnxArtifact(path), specs, hints, f"ONNX file {path}")


def _torch_specs_from_example(args: tuple[Any, ...], names: list[str]) -> list[TensorSpec]:
    specs = []
    for name, a in zip(names, args, strict=False):
        dtype = str(a.dtype).replace("torch.", "")
        shape: tuple[int | str, ...] = ("batch", *(int(d) for d in a.shape[1:]))
        specs.append(TensorSpec.of(name, dtype, shape))
    return specs


def _load_pt2(path: Path, inputs: list[TensorSpec] | None, output_names: list[str] | None) -> Source:
    import torch

    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise OptimizeError(f"{path}: not a torch.export program ({str(e).splitlines()[0][:200]})") from e
    module = ep.module()
    if inputs is None:
        names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
        specs = []
        for i, name in enumerate(names):
            val = placeholders[name].meta.get("val")
            shape = tuple(
                ("batch" if j == 0 else f"dim{i}_{j}") if not isinstance(d, int) else d
                for j, d in enumerate(val.shape)
            )
            if shape and isinstance(shape[0], int):
                shape = ("batch", *shape[1:])  # dynamic for optimize even where the program fixed it
            specs.append(TensorSpec.of(name, str(val.dtype).replace("torch.", ""), shape))
    else:
        specs = inputs
    art = TorchArtifact(module, specs, output_names or ["output"], program=ep)
    return Source("pt2", art, specs, {}, f"torch.export program {path}")


def _load_weights(module: Any, weights: str) -> None:
    import torch

    path = Path(weights)
    if not path.is_file():
        raise OptimizeError(f"weights file {weights} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:  # a corrupt or foreign file
            raise OptimizeError(
                f"{weights}: cannot read as safetensors ({str(e).splitlines()[0][:160]})"
            ) from e
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise OptimizeError(
                f"{weights}: cannot load as a weights-only state dict ({str(e).splitlines()[0][:160]}); "
                "save it with torch.save(model.state_dict()) or as safetensors"
            ) from e
    if not isinstance(state, dict):
        raise OptimizeError(f"{weights}: expected a state dict, found {type(state).__name__}")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise OptimizeError(f"{weights}: does not match the model ({str(e).splitlines()[0][:200]})") from e


def _load_factory(
    target: str, weights: str | None, inputs: list[TensorSpec] | None, output_names: list[str] | None
) -> Source:
    import torch

    modname, _, attr = target.partition(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`, factories in the current directory are importable
    try:
        mod = importlib.import_module(modname)
    except ImportError as e:
        raise OptimizeError(f"cannot import {modname!r} for factory {target!r}: {e}") from e
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise OptimizeError(f"{target!r}: module {modname!r} has no callable {attr!r}")
    try:
        module = factory()
    except Exception as e:  # the user's code: say where, in one line
        raise OptimizeError(
            f"{target!r} raised {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''} "
            "(the factory is called with no arguments)"
        ) from e
    if not isinstance(module, torch.nn.Module):
        raise OptimizeError(f"{target!r} returned {type(module).__name__}, not a torch.nn.Module")
    if weights:
        _load_weights(module, weights)
    module.eval()
    specs = inputs or getattr(module, "input_specs", None) or getattr(factory, "input_specs", None)
    if not specs:
        raise OptimizeError(
            f"{target!r}: the input signature is unknown; give --input NAME:DTYPE:DIMS "
            "(e.g. x:float32:batch,3,32,32) or [[inputs]] in the recipe"
        )
    specs = [s if isinstance(s, TensorSpec) else parse_input_spec(s) for s in specs]
    outputs = list(output_names or getattr(module, "output_names", None) or ["output"])
    return Source("torch", TorchArtifact(module, specs, outputs), specs, {}, f"factory {target}")


def _encoder_kwargs(input_ids: Any, attention_mask: Any, token_type_ids: Any) -> dict[str, Any]:
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    return kwargs


class _SentenceEmbedder:
    """Factory for a module that mean-pools (and optionally normalizes) a transformer's token embeddings,
    as sentence-transformers' Pooling(mean) + Normalize modules do."""

    @staticmethod
    def build(base: Any, normalize: bool, names: list[str]) -> Any:
        import torch

        class SentenceEmbedding(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = base

            def forward(
                self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: Any = None
            ) -> torch.Tensor:
                kwargs = _encoder_kwargs(input_ids, attention_mask, token_type_ids)
                h = self.encoder(**kwargs).last_hidden_state
                mask = kwargs["attention_mask"].unsqueeze(-1).to(h.dtype)
                emb = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb

        return SentenceEmbedding()


def _load_transformers(path: Path) -> Source:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise OptimizeError(f"{path}: a directory model needs a transformers config.json")
    try:
        import transformers
    except ImportError as e:
        raise OptimizeError(
            "transformers directories need the 'transformers' package (pip install .[optimize])"
        ) from e
    config = json.loads(config_file.read_text())
    # Eager attention exports the classic MatMul/Softmax pattern that ONNX Runtime fuses into Attention.
    try:
        base = transformers.AutoModel.from_pretrained(str(path), attn_implementation="eager")
    except (OSError, ValueError) as e:
        raise OptimizeError(
            f"{path}: cannot load the transformers model ({str(e).splitlines()[0][:200]})"
        ) from e
    base.eval()
    names = ["input_ids", "attention_mask"]
    if config.get("type_vocab_size", 0) > 0:
        names.append("token_type_ids")
    specs = [TensorSpec.of(n, "int64", ("batch", "sequence")) for n in names]
    hints = {
        "model_type": config.get("model_type", ""),
        "num_heads": int(config.get("num_attention_heads", 0)),
        "hidden_size": int(config.get("hidden_size", 0)),
        "exporter": "torchscript",
        "family": "transformer",
    }
    modules_file = path / "modules.json"
    pooling = path / "1_Pooling" / "config.json"
    if (
        modules_file.is_file()
        and pooling.is_file()
        and json.loads(pooling.read_text()).get("pooling_mode_mean_tokens")
    ):
        mods = json.loads(modules_file.read_text())
        normalize = any(m.get("type", "").endswith("Normalize") for m in mods)
        module = _SentenceEmbedder.build(base, normalize, names)
        outputs = ["sentence_embedding"]
    else:
        import torch

        class Hidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = base

            def forward(
                self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: Any = None
            ) -> torch.Tensor:
                kwargs = _encoder_kwargs(input_ids, attention_mask, token_type_ids)
                return self.encoder(**kwargs).last_hidden_state

        module = Hidden()
        outputs = ["last_hidden_state"]
    module.eval()
    return Source(
        "transformers", TorchArtifact(module, specs, outputs), specs, hints, f"transformers directory {path}"
    )
