"""Progress bars for ``ortserve-optimize`` on a terminal (rich), plain lines elsewhere, nothing with
``--quiet``; and quieting the libraries the steps call, whose own output ``--quiet`` also silences.

    progress = make_progress(quiet=args.quiet)      # RichProgress on a terminal, Progress otherwise
    ...
    progress.close()
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TextIO

from ortserve.optimize.context import Progress, Task

__all__ = ["RichProgress", "make_progress", "quiet_libraries"]


class RichProgress(Progress):
    """Bars (with a spinner for work of unknown size) drawn by rich on stderr; lines print above them."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(quiet=False)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as Bars,
        )

        self.console = Console(file=stream, stderr=stream is sys.stderr)
        self._bars = Bars(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._ids: dict[int, Any] = {}
        self._live = False

    def __call__(self, msg: str) -> None:
        self.console.print(f"ortserve-optimize: {msg}", highlight=False, markup=False)

    def started(self, task: Task) -> None:
        if not self._live:
            self._bars.start()
            self._live = True
        self._ids[id(task)] = self._bars.add_task(task.description, total=task.total)

    def updated(self, task: Task) -> None:
        ident = self._ids.get(id(task))
        if ident is not None:
            self._bars.update(ident, completed=task.completed)

    def finished(self, task: Task, failed: bool = False) -> None:
        ident = self._ids.pop(id(task))
        total = task.total if task.total is not None else max(task.completed, 1.0)
        self._bars.update(ident, total=total, completed=total if not failed else task.completed)
        self._bars.stop_task(ident)

    def close(self) -> None:
        if self._live:
            self._bars.stop()
            self._live = False


def make_progress(quiet: bool = False, stream: TextIO | None = None) -> Progress:
    """Nothing with ``quiet`` (the libraries quieted until ``close()``); bars when ``stream`` (stderr) is a
    terminal and rich is installed; lines otherwise (a log file, CI, a pipe)."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return _Quiet()
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        try:
            return RichProgress(stream)
        except ImportError:
            pass
    return Progress()


class _Quiet(Progress):
    """``--quiet``: nothing of its own, and the libraries quieted until ``close()`` puts them back, so that a
    caller of ``main([... "--quiet"])`` in its own process (a test, a notebook) keeps its logging."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self._restore: Callable[[], None] | None = quiet_libraries()

    def close(self) -> None:
        super().close()
        if self._restore is not None:
            self._restore()
            self._restore = None


_LOGGERS = ("", "torch", "torch.onnx", "onnxscript", "transformers", "onnxruntime")
_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}
_ORT_WARNING = 2  # ONNX Runtime's default logger severity (it has no getter)


def quiet_libraries() -> Callable[[], None]:
    """Silence what the steps' libraries print on their own: ONNX Runtime's warnings (its default logger,
    used by every session the steps open), transformers' and huggingface_hub's logging and download bars,
    torch's exporter warnings (Python warnings) and the root logger's. Errors still reach stderr as this
    command's one-line message. Returns what puts it all back as it was."""
    environment = {k: os.environ.get(k) for k in _ENVIRONMENT}
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    caught = warnings.catch_warnings()  # its __exit__ puts the warning filters back
    caught.__enter__()
    for key, value in _ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    warnings.simplefilter("ignore")
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - a dependency
        ort = None
    else:
        ort = onnxruntime
        ort.set_default_logger_severity(3)  # errors only
    transformers = sys.modules.get("transformers")  # already imported: its verbosity was read at import
    verbosity = transformers.logging.get_verbosity() if transformers is not None else None
    if transformers is not None:
        transformers.logging.set_verbosity_error()

    def restore() -> None:
        for key, value in environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        caught.__exit__(None, None, None)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if ort is not None:
            ort.set_default_logger_severity(_ORT_WARNING)
        if transformers is not None and verbosity is not None:
            transformers.logging.set_verbosity(verbosity)

    return restore
