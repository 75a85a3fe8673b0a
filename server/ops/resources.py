"""What the machine gives the server, and the admission bounds that follow from it.

memory_available()           # bytes: physical memory, or the cgroup's limit when lower
limits = admission_limits(settings)   # Limits(inflight_bytes=..., concurrent_rpcs=...)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path

from ortserve.ops.settings import Settings

__all__ = ["MMAP_THRESHOLD", "Limits", "admission_limits", "give_back_large_blocks", "memory_available"]

_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2 (a container's memory limit)
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)
INFLIGHT_SHARE = 16  # the default bound on in-flight request bytes: 1/16 of memory
BYTES_PER_RPC = 256 * 1024  # the default bound on RPCs: one per this many bytes of that bound
RPC_BOUNDS = (64, 16384)


def memory_available() -> int:
    """Physical memory in bytes, or the memory limit of the server's cgroup when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


@dataclass(frozen=True)
class Limits:
    inflight_bytes: int
    concurrent_rpcs: int


def admission_limits(settings: Settings, memory: int | None = None) -> Limits:
    """The bounds of one server process: the settings where given, else derived from memory."""
    inflight = settings.max_inflight_bytes
    if not inflight:
        share = (memory if memory is not None else memory_available()) // INFLIGHT_SHARE // settings.workers
        inflight = max(settings.max_message_size, share)
    rpcs = settings.max_concurrent_rpcs
    if not rpcs:
        low, high = RPC_BOUNDS
        rpcs = min(high, max(low, inflight // BYTES_PER_RPC))
    return Limits(inflight, rpcs)


MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def give_back_large_blocks() -> bool:
    """Have glibc serve blocks of ``MMAP_THRESHOLD`` and more with their own mappings, returned to
    the system when freed. By default glibc raises that threshold (up to 32 MiB) each time such a
    block is freed, after which large request buffers come from its heap and stay resident: after
    a storm of large messages the server kept most of their memory. True when set; a no-op where
    the C library is not glibc, or when MALLOC_MMAP_THRESHOLD_ is set (the operator's choice)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    return bool(mallopt is not None and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
