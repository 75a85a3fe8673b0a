"""CPU features that decide the best quantization settings and that every benchmark records."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_info"]

_FLAGS = {
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_tile": "amx_tile",
    "amx_int8": "amx_int8",
}


@functools.cache
def cpu_info() -> dict[str, Any]:
    """``{"machine", "model", "cores", "features": [...], "vnni": bool}`` from /proc/cpuinfo where it exists."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("flags", "Features") and not flags:
                flags = set(value.split())
            elif key == "model name" and value.strip():
                model = value.strip()
    except OSError:
        pass
    features = sorted(name for name, flag in _FLAGS.items() if flag in flags)
    if platform.machine().lower() in ("aarch64", "arm64"):
        features.append("arm64" + ("-dotprod" if "asimddp" in flags else ""))
    return {
        "machine": platform.machine(),
        "model": model,
        "cores": os.cpu_count() or 1,
        "features": features,
        "vnni": bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(features)) or "asimddp" in flags,
    }
