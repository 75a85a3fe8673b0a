"""Execution providers: which of those a model asks for this ONNX Runtime can use, and whether the
sessions it created really run on them.

ONNX Runtime falls back to the CPU quietly in two places: ``InferenceSession`` ignores a provider that
its build lacks (the CPU wheel has no CUDA), and a GPU build whose CUDA provider cannot be created (no
GPU visible, driver or CUDA/cuDNN libraries missing) prints an error and retries on the CPU. A model
served that way answers correctly but many times slower, which an autoscaler then answers with more
CPU pods. So ``check_sessions`` compares what each session reports (``get_providers()``) with what was
asked, and refuses the version (:class:`ortserve.errors.ProviderUnavailable`) when none of the
accelerators asked for is in use, unless CPU fallback is allowed for it.

    requested = ("CUDAExecutionProvider", "CPUExecutionProvider")
    options = provider_options(config.runtime, lambda: trt_cache_dir(version_dir, cache_dir))
    providers = resolve_providers(requested, options)   # (name, options) pairs for InferenceSession
    sessions = [ort.InferenceSession(path, providers=providers)]
    used = check_sessions(requested, sessions, allow_cpu_fallback=False)  # or ProviderUnavailable

Each provider's options are ortserve's defaults under the model's ``[runtime.provider_options]``:
TensorRT keeps its engines and timing cache (``trt_engine_cache_*``, ``trt_timing_cache_*``) in
``<version>/trt-cache`` when the version folder is writable and unsigned (a signature covers every file
in it), else under the server's ``--cache-dir``; CUDA captures CUDA graphs (``enable_cuda_graph``) when
``cuda_graph_batch_sizes`` gives the batches fixed shapes and TensorRT is not asked for too (TensorRT
would take nodes out of the CUDA provider's graph).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import onnxruntime as ort

from ortserve.errors import ProviderUnavailable
from ortserve.repository.config import RuntimeConfig
from ortserve.repository.layout import TRT_CACHE
from ortserve.repository.signing import SIGNATURE

__all__ = [
    "CPU",
    "CUDA",
    "TENSORRT",
    "check_sessions",
    "default_cache_dir",
    "preload_gpu_libraries",
    "provider_options",
    "resolve_providers",
    "trt_cache_dir",
]

log = logging.getLogger("ortserve.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
_TRT_PATHS = ("trt_engine_cache_path", "trt_timing_cache_path")
# Providers that need NVIDIA's CUDA libraries, which an image may ship as pip packages (nvidia-*-cu12).
_CUDA_BASED = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider"}
_preloaded = False


class _Session(Protocol):
    def get_providers(self) -> list[str]: ...


def resolve_providers(
    requested: Sequence[str], options: Mapping[str, Mapping[str, str]] | None = None
) -> list[tuple[str, dict[str, str]]]:
    """The requested providers this build of ONNX Runtime has, in order, with CPU last (it runs the
    operators a GPU provider does not implement), each with its ``options``. Missing ones are checked
    by ``check_sessions``."""
    available = set(ort.get_available_providers())
    chosen = [p for p in requested if p in available]
    if CPU not in chosen:
        chosen.append(CPU)
    options = options or {}
    return [(p, dict(options.get(p, {}))) for p in chosen]


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def provider_options(
    rt: RuntimeConfig, trt_cache: Callable[[], Path], available: Collection[str] | None = None
) -> dict[str, dict[str, str]]:
    """The options of each requested provider that ``available`` has (default: this build's), as the
    strings ONNX Runtime takes: ortserve's defaults, then ``[runtime.provider_options]`` over them.
    ``trt_cache`` gives (and creates) TensorRT's cache folder; it is called only when needed."""
    available = ort.get_available_providers() if available is None else available
    out: dict[str, dict[str, str]] = {}
    for name in rt.providers:
        if name not in available:
            continue
        given = {k: _text(v) for k, v in rt.provider_options.get(name, {}).items()}
        defaults: dict[str, str] = {}
        if name == CUDA and rt.cuda_graph_batch_sizes and TENSORRT not in rt.providers:
            defaults["enable_cuda_graph"] = "1"
        if name == TENSORRT:
            defaults = {"trt_engine_cache_enable": "1", "trt_timing_cache_enable": "1"}
            if any(k not in given for k in _TRT_PATHS):
                folder = str(trt_cache())
                defaults |= dict.fromkeys(_TRT_PATHS, folder)
        out[name] = defaults | given
    return out


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ortserve``, else ``~/.cache/ortserve`` (in the images HOME is /tmp)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ortserve"


def trt_cache_dir(version_dir: Path, cache_dir: Path | None = None) -> Path:
    """TensorRT's engine and timing cache folder for one version, created: ``<version>/trt-cache`` when
    the version folder is writable and unsigned, else ``<cache_dir>/<model>/<version>/trt-cache``
    (``cache_dir`` default: :func:`default_cache_dir`). A repository mounted read-only (Kubernetes)
    thus caches on the volume given as ``--cache-dir``. OSError when neither can be created."""
    local = Path(version_dir) / TRT_CACHE
    if not (Path(version_dir) / SIGNATURE).exists():
        try:
            local.mkdir(exist_ok=True)
            if os.access(local, os.W_OK):
                return local
        except OSError:
            pass
    shared = (cache_dir or default_cache_dir()) / Path(version_dir).parent.name / Path(version_dir).name
    shared /= TRT_CACHE
    shared.mkdir(parents=True, exist_ok=True)
    return shared


def preload_gpu_libraries(requested: Sequence[str]) -> None:
    """Load CUDA and cuDNN from the ``nvidia-*`` pip packages (the GPU image installs them with
    onnxruntime-gpu's ``[cuda,cudnn]`` extras) before the first CUDA session, once per process.
    A no-op on a CPU build of ONNX Runtime or when no CUDA-based provider is asked for."""
    global _preloaded
    if _preloaded or not _CUDA_BASED.intersection(requested):
        return
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return
    _preloaded = True
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is None:
        return
    try:
        preload(directory="")  # the nvidia site packages first, then the system's library path
    except OSError as e:  # libraries absent: the provider's own creation reports what is missing
        log.warning("could not preload the CUDA/cuDNN libraries: %s", e)


def check_sessions(
    requested: Sequence[str], sessions: Sequence[_Session], *, allow_cpu_fallback: bool
) -> list[str]:
    """The providers the sessions really use (every session's, in order). Raises ProviderUnavailable
    when accelerators were asked for and a session uses none of them, unless ``allow_cpu_fallback``;
    logs a warning for accelerators skipped while another one asked for is in use."""
    accelerators = [p for p in requested if p != CPU]
    used: list[str] = []
    for session in sessions:
        for p in session.get_providers():
            if p not in used:
                used.append(p)
    if not accelerators:
        return used
    available = ort.get_available_providers()
    on_cpu = [i for i, s in enumerate(sessions) if not set(accelerators) & set(s.get_providers())]
    if on_cpu:
        reasons = "; ".join(_why(p, available) for p in accelerators)
        if not allow_cpu_fallback:
            raise ProviderUnavailable(
                f"asks for {', '.join(accelerators)} but ONNX Runtime {ort.__version__} cannot use it here "
                f"({reasons}), and CPU fallback is not allowed: fix the image or node, or set "
                "[runtime] allow_cpu_fallback = true in its config.toml (or --allow-cpu-fallback) "
                "to serve it on the CPU"
            )
        log.warning(
            "serving on CPUExecutionProvider although %s was asked for (%s): allow_cpu_fallback is set",
            ", ".join(accelerators),
            reasons,
        )
        return used
    skipped = [p for p in accelerators if p not in used]
    if skipped:
        log.warning(
            "execution provider(s) %s not in use (%s); running on %s",
            ", ".join(skipped),
            "; ".join(_why(p, available) for p in skipped),
            ", ".join(used),
        )
    return used


def _why(provider: str, available: Sequence[str]) -> str:
    if provider not in available:
        return (
            f"{provider} is not in this onnxruntime build, which has {', '.join(available)}; "
            "a GPU needs the onnxruntime-gpu package (the GPU image)"
        )
    return (
        f"{provider} is in the build but could not be created: no GPU visible to the process, "
        "or its driver or CUDA/cuDNN libraries are missing (ONNX Runtime's own error is printed above)"
    )
