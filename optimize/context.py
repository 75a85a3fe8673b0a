"""What every step can see besides its own config: data, signature, seed, CPU, hints from the source."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ortserve.dtypes import TensorSpec
from ortserve.optimize.specs import Dataset

__all__ = ["Context", "Progress", "Task"]


class Task:
    """One long piece of work (export, calibration, benchmark, fine-tuning) that reports how far it got."""

    def __init__(self, progress: Progress, description: str, total: float | None) -> None:
        self.progress = progress
        self.description = description
        self.total = total
        self.completed = 0.0
        self.started = time.monotonic()

    def advance(self, amount: float = 1.0) -> None:
        self.update(self.completed + amount)

    def update(self, completed: float) -> None:
        self.completed = completed
        self.progress.updated(self)

    def __enter__(self) -> Task:
        self.progress.started(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.finished(self, failed=exc[0] is not None)


class Progress:
    """Progress on stderr: plain lines (``ortserve-optimize: ...``; a task says when it starts and how long it
    took), nothing with ``quiet``. :func:`ortserve.optimize.progress.make_progress` picks bars instead when
    stderr is a terminal.

        log("source: ...")                               # a line
        with log.task("calibration", total=8) as t:      # long work
            t.advance()
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"ortserve-optimize: {msg}", file=sys.stderr, flush=True)

    def task(self, description: str, total: float | None = None) -> Task:
        return Task(self, description, total)

    def started(self, task: Task) -> None:
        self(f"{task.description} ...")

    def updated(self, task: Task) -> None:
        """Plain lines say nothing between a task's start and end."""

    def finished(self, task: Task, failed: bool = False) -> None:
        took = time.monotonic() - task.started
        self(f"{task.description}: {'failed after' if failed else 'done in'} {took:.1f} s")

    def close(self) -> None:
        """End the output (a terminal's bars); lines need nothing."""


@dataclass
class Context:
    workdir: Path
    seed: int
    specs: list[TensorSpec]
    dims: dict[str, int]
    calibration: Dataset
    train: Dataset | None = None
    cpu: dict[str, Any] = field(default_factory=dict)
    # What the source says about itself, e.g. {"model_type": "bert", "num_heads": 12, "hidden_size": 384}.
    hints: dict[str, Any] = field(default_factory=dict)
    log: Progress = field(default_factory=Progress)
    # The unmodified source module (torch sources), for fine-tuning by distillation when there are no labels.
    reference_module: Any = None
