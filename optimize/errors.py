"""The one error the CLI turns into a one-line message and exit status 2."""

from __future__ import annotations

__all__ = ["OptimizeError"]


class OptimizeError(Exception):
    """Bad input the user can fix: a missing file, a bad factory path, data that does not match the inputs,
    an unknown step or parameter. The message is one line that says what to fix; ``ortserve-optimize``
    exits with status 2 and writes nothing to the repository.

    What to do: fix what the line names (``ortserve-optimize --list-steps`` lists steps and parameters;
    ``--write-recipe`` shows the run the flags describe)."""
