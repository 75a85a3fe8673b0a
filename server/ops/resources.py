"""What the machine gives the server, the admission bounds that follow from it, and giving memory back.

memory_available()           # bytes: physical memory, or the cgroup's limit when lower
limits = admission_limits(settings)   # Limits(inflight_bytes=..., concurrent_rpcs=...)
give_back_large_blocks()     # glibc: blocks of 1 MiB and more mapped on their own
trimmer = HeapTrimmer(interval=1.0); trimmer.start(); ...; trimmer.stop()   # glibc: free heap back
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ortserve.ops.settings import Settings

__all__ = [
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "HeapTrimmer",
    "Limits",
    "admission_limits",
    "give_back_large_blocks",
    "memory_available",
]

log = logging.getLogger("ortserve")

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
    mallopt = _libc_function("mallopt")
    return bool(mallopt is not None and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("c")  # may run ldconfig: once
    try:
        return ctypes.CDLL(path) if path else None
    except OSError:
        return None


def _libc_function(name: str):
    """A function of the C library (a fresh object: its restype is the caller's), None where it has
    none by that name (not glibc, or too old)."""
    libc = _libc()
    try:
        return libc[name] if libc is not None else None
    except AttributeError:
        return None


class _Mallinfo2(ctypes.Structure):  # glibc >= 2.33, <malloc.h>
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


TRIM_THRESHOLD = 32 << 20


class HeapTrimmer:
    """Gives the memory that glibc's malloc keeps free back to the system, from a thread of its own.

    Blocks under ``MMAP_THRESHOLD`` come from malloc's heaps, one per thread that allocates (gRPC's
    own threads read the messages). Freed, such a block stays resident unless it lies at the very
    top of its heap: after a few large requests (60 MB messages read in pieces) the server kept
    20-100 MiB it no longer used in one run of five, until ``malloc_trim`` gave it back. Every
    ``interval`` seconds the thread estimates the free memory that is still resident: the process's
    resident memory less what malloc has handed out (``mallinfo2``: in its heaps and mapped on their
    own); when that grew by ``threshold`` from its lowest since the last trim, it calls
    ``malloc_trim(0)``, which returns the free pages of every heap (milliseconds, without the GIL).
    Memory in use does not trigger it, nor do free bytes whose pages were given back already. A
    no-op where the C library is not glibc 2.33 or later, or where /proc/self/statm cannot be read."""

    def __init__(self, interval: float = 1.0, threshold: int = TRIM_THRESHOLD) -> None:
        self.interval = interval
        self.threshold = threshold
        self.trims = 0
        self._mallinfo2 = _libc_function("mallinfo2")
        self._trim = _libc_function("malloc_trim")
        if self._mallinfo2 is not None:
            self._mallinfo2.restype = _Mallinfo2
        self._low = self.slack() or 0  # the lowest since the last trim
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self._trim is not None and self.slack() is not None

    def slack(self) -> int | None:
        """Resident bytes that malloc has not handed out: its free memory still resident, and memory
        it never managed (code, Python's object arenas, stacks), which changes little. None
        without glibc or /proc."""
        rss = _resident()
        if rss is None or self._mallinfo2 is None:
            return None
        info = self._mallinfo2()
        return rss - int(info.uordblks) - int(info.hblkhd)

    def check(self) -> bool:
        """Trim when it is worth it (see the class); True when it did."""
        slack = self.slack()
        if slack is None or self._trim is None:
            return False
        if slack - self._low < self.threshold:
            self._low = min(self._low, slack)
            return False
        self._trim(0)
        self.trims += 1
        self._low = self.slack() or 0
        return True

    def start(self) -> bool:
        """Start the thread; False when there is nothing to do (``interval`` 0, or not glibc)."""
        if self.interval <= 0 or not self.available or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="heap-trim", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # never fatal: the server serves on, keeping its memory
                log.exception("giving free memory back failed")
                return


def _resident() -> int | None:
    """This process's resident memory in bytes (Linux), None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
