"""Horizontal scale stays honest: replicas share nothing at run time, yet route every targeting key the
same way, because fractional bucketing is a pure function of (flag key, targeting key). Two servers on
two ports, reading one repository and one flags file (as pods read one volume and one ConfigMap), must
agree on the variant and version of each of 1,000 keys; so must a server with several worker processes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import numpy as np

from ortserve.client import AsyncClient
from tests import onnx_models as m

A = np.ones((1, 4), np.float32)
FLAGS = {
    "flags": {
        "addmul": {
            "state": "ENABLED",
            "defaultVariant": "stable",
            "variants": {"stable": "1", "int8": "2", "pruned": "3"},
            "targeting": {
                "if": [
                    {"in": [{"var": "region"}, ["eu-west", "eu-north"]]},
                    "stable",  # a rule on an attribute first, then the split
                    {"fractional": [["stable", 50], ["int8", 30], ["pruned", 20]]},
                ]
            },
        }
    }
}
KEYS = [f"user-{i}" for i in range(1000)]


async def routes(target: str, region: str = "") -> dict[str, tuple[str, str, float]]:
    """key -> (variant, version, output) as the server at ``target`` answers it."""
    metadata = [("region", region)] if region else None
    in_flight = asyncio.Semaphore(32)  # well under the batcher's queue bound (256)

    async with AsyncClient(target) as c:

        async def one(key: str):
            async with in_flight:
                return await c.predict(
                    "addmul", {"a": A, "b": A}, targeting_key=key, metadata=metadata, timeout=60
                )

        results = await asyncio.gather(*(one(k) for k in KEYS))
    return {k: (r.variant, r.version, float(r["sum"][0, 0])) for k, r in zip(KEYS, results)}


def test_replicas_with_the_same_flags_route_every_key_alike(tmp_path, start_server):
    repo = tmp_path / "models"
    for version in (1, 2, 3):
        m.publish(repo, "addmul", version, m.addmul(offset=100 * version))
    flags = tmp_path / "flags.json"  # outside the repository, like a mounted ConfigMap
    flags.write_text(json.dumps(FLAGS))
    replicas = [start_server(repo, "--flags", str(flags)) for _ in range(2)]
    workers = start_server(repo, "--flags", str(flags), "--workers", "2")
    assert replicas[0].port != replicas[1].port

    seen = [asyncio.run(routes(s.target)) for s in (*replicas, workers)]
    assert seen[0] == seen[1] == seen[2]
    split = Counter(variant for variant, _, _ in seen[0].values())
    assert set(split) == {"stable", "int8", "pruned"}
    assert 430 < split["stable"] < 570 and 230 < split["int8"] < 370 and 130 < split["pruned"] < 270
    for variant, version, output in seen[0].values():
        assert FLAGS["flags"]["addmul"]["variants"][variant] == version
        assert output == 2 + 100 * int(version)  # the version that answered is the one named

    # A targeting rule on a request attribute is evaluated the same everywhere too.
    eu = [asyncio.run(routes(s.target, region="eu-west")) for s in replicas]
    assert eu[0] == eu[1] and {v for v, _, _ in eu[0].values()} == {"stable"}
