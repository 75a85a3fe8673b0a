"""The code blocks of a documentation page, for the tests that run them.

A block is a fenced ``python`` or ``sh`` block; an ``Output`` block (```` ```text title="Output" ````) right after it
is what it must print, where ``...`` stands for any text. An HTML comment on the line before a block marks it:
``<!-- test: setup -->`` (the commands that set everything up: run by the slow test only) or
``<!-- test: needs TOOL -->`` (skipped, saying so, where TOOL is not installed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)(.*)$")
MARK = re.compile(r"^<!--\s*test:\s*(.*?)\s*-->$")

__all__ = ["Block", "blocks", "matches"]


@dataclass
class Block:
    lang: str
    code: str
    line: int  # where the block starts in the page (1-based), for messages
    output: str | None = None  # what it must print
    mark: str = ""  # "setup", "needs grpcurl"...

    @property
    def needs(self) -> str:
        return self.mark.removeprefix("needs ").strip() if self.mark.startswith("needs ") else ""


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    last_code: Block | None = None
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                last_code = None if not MARK.match(lines[i].strip()) else last_code
            i += 1
            continue
        lang, attrs = m.group(1), m.group(2)
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(lines[i + 1 : end]) + "\n"
        before = next((x.strip() for x in reversed(lines[:i]) if x.strip()), "")
        mark = MARK.match(before)
        if lang == "text" and 'title="Output"' in attrs:
            if last_code is None:
                raise ValueError(f"{page}:{i + 1}: an Output block that follows no code block")
            last_code.output = code
        elif lang in ("python", "sh"):
            last_code = Block(lang, code, i + 1, mark=mark.group(1) if mark else "")
            found.append(last_code)
        i = end + 1
    return found


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected`` with each ``...`` standing for any text (lines compared without trailing
    blanks)."""
    norm = ["\n".join(x.rstrip() for x in s.strip().splitlines()) for s in (expected, actual)]
    pattern = ".*?".join(re.escape(part) for part in norm[0].split("..."))
    return re.fullmatch(pattern, norm[1], re.DOTALL) is not None
