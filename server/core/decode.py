"""Decoding the inputs a request still holds encoded, once it has passed every header check.

Small tensors decode on the event loop (a thread hop costs more than they do). Large ones decode
in one worker thread, one request at a time: a thread that holds the GIL for a long decode hands
it to the event loop every ``sys.getswitchinterval()`` (the server sets it: ``--gil-switch-interval-us``), so health checks and other requests
keep being served; a second such thread would halve the loop's share again.

    decoder = Decoder()
    arrays = await decoder.decode(request.inputs)   # dict[str, np.ndarray], in the same order
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ortserve.tensors import Encoded, Tensor

__all__ = ["INLINE_BYTES", "INLINE_ELEMENTS", "Decoder"]

# Below both, a tensor decodes on the event loop: well under a millisecond.
INLINE_BYTES = 64 * 1024
INLINE_ELEMENTS = 2048


def _cheap(t: Encoded) -> bool:
    return t.inline or (t.nbytes <= INLINE_BYTES and t.size <= INLINE_ELEMENTS)


def _decode_all(tensors: list[Encoded]) -> list[np.ndarray]:
    return [t.decode() for t in tensors]


class Decoder:
    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    async def decode(self, inputs: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        """Every input as an array; raises InvalidInput for values that do not fit their header."""
        heavy: list[tuple[str, Encoded]] = []
        out: dict[str, np.ndarray] = {}
        for name, t in inputs.items():
            if not isinstance(t, Encoded):
                out[name] = t
            elif _cheap(t):
                out[name] = t.decode()
            else:
                heavy.append((name, t))
        if not heavy:
            return out if len(out) == len(inputs) else {n: out[n] for n in inputs}
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        loop = asyncio.get_running_loop()
        arrays = await loop.run_in_executor(self._executor, _decode_all, [t for _, t in heavy])
        for (name, _), array in zip(heavy, arrays):
            out[name] = array
        return {n: out[n] for n in inputs}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
