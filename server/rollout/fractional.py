"""flagd's ``fractional`` bucketing: the canonical CBOR encoding of the value bucketed by (by
default ``[flagKey, targetingKey]``), hashed with murmur3 32-bit, and the bucket
``(hash * total) >> 32`` looked up in the cumulative weights.

    split = make_split([["stable", 90], ["int8", 10]])
    split.pick(b"\x82" + cbor("digits") + cbor("user-42"))   # -> "stable" or "int8"

Facts from flagd's reference evaluator (openfeature-flagd-core); the code is ours.
"""

from __future__ import annotations

import bisect
import math
import struct
from dataclasses import dataclass
from typing import Any

import mmh3

__all__ = ["Split", "cbor", "cbor_head", "make_split"]


# Canonical CBOR (RFC 8949 4.2.1) of the values a rule can compute.
def cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    for extra, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes((major << 5 | extra,)) + struct.pack(fmt, n)
    raise ValueError("integer too large for CBOR")


def cbor(v: Any) -> bytes:
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if v is None:
        return b"\xf6"
    if isinstance(v, float) and v.is_integer() and -(2**63) <= v <= 2**64 - 1:
        v = int(v)  # flagd normalizes integral floats before encoding
    if isinstance(v, int):
        return cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)
    if isinstance(v, str):
        b = v.encode()
        return cbor_head(3, len(b)) + b
    if isinstance(v, float):
        for prefix, fmt in ((b"\xf9", ">e"), (b"\xfa", ">f")):
            try:
                packed = struct.pack(fmt, v)
            except OverflowError:
                continue
            if struct.unpack(fmt, packed)[0] == v or math.isnan(v):
                return prefix + packed
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, list):
        return cbor_head(4, len(v)) + b"".join(cbor(x) for x in v)
    raise TypeError(f"cannot bucket by a {type(v).__name__}")


@dataclass(frozen=True)
class Split:
    variants: tuple[Any, ...]
    ends: tuple[int, ...]  # cumulative weights
    total: int

    def pick(self, data: bytes) -> Any:
        bucket = (mmh3.hash(data, signed=False) * self.total) >> 32
        i = bisect.bisect_right(self.ends, bucket)
        return self.variants[i] if i < len(self.variants) else None


def make_split(entries: list[Any]) -> Split | None:
    """The split of evaluated fraction entries, or None where flagd returns null."""
    variants, ends, total = [], [], 0
    for e in entries:
        if not isinstance(e, list) or not e or len(e) > 2:
            return None
        weight = 1
        if len(e) == 2:
            if isinstance(e[1], bool) or not isinstance(e[1], int):
                return None
            weight = max(0, e[1])
        total += weight
        variants.append(e[0])
        ends.append(total)
    if total <= 0 or total > 2_147_483_647:
        return None
    return Split(tuple(variants), tuple(ends), total)
