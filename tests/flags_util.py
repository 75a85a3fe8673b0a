"""Helpers for the flag tests: write a flags file the way an operator would, read metrics."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def write_flags(path: Path, doc: dict | str) -> None:
    """Replace the flags file atomically (write a temporary file, rename it over)."""
    text = doc if isinstance(doc, str) else json.dumps(doc)
    tmp = path.with_name(f".{path.name}.{time.monotonic_ns()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def metric(server, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def wait_metric(server, name: str, at_least: float, timeout: float = 10.0, **labels: str) -> float:
    end = time.monotonic() + timeout
    while True:
        value = metric(server, name, **labels)
        if value >= at_least or time.monotonic() > end:
            return value
        time.sleep(0.05)


def install_flags(server, path: Path, doc: dict | str, *, refused: str = "") -> None:
    """Write the flags file and wait until the server accepted it (or refused it for ``refused``)."""
    if refused:
        name, labels = "ortserve_flags_rejected_total", {"reason": refused}
    else:
        name, labels = "ortserve_flags_loads_total", {"source": "file"}
    before = metric(server, name, **labels)
    write_flags(path, doc)
    assert wait_metric(server, name, before + 1, **labels) >= before + 1, f"flags not {refused or 'loaded'}"
