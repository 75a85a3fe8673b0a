"""``include``: a file of the repository (or one section of it) in a page, with its links made to work there.

Links to the files the site has a page for go to that page; images under benchmarks/plots/ go to the copies
the hook adds to the site (``assets/benchmarks/``); links to other files of the repository become their path
in code (the site has no page for them). ``@root/`` is the site's root, which the hook turns into the page's
relative path to it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "README.md": "index.md",
    "optimize/README.md": "guides/optimizing.md",
    "benchmarks/RESULTS.md": "benchmarks.md",
}
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")

__all__ = ["include", "section"]


def section(text: str, heading: str | None) -> str:
    """The lines under ``heading`` (to the next heading of its level or higher), or the whole text without its
    top ``# title``; KeyError naming the headings there are when it is not found."""
    lines = text.splitlines()
    if heading is None:
        if lines and lines[0].startswith("# "):
            lines = lines[1:]
        return "\n".join(lines).strip() + "\n"
    out: list[str] = []
    level = 0
    fenced = False  # inside a ``` code block, where "# comment" is no heading
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        m = None if fenced else HEADING.match(line)
        if level and m and len(m.group(1)) <= level:
            break
        if level:
            out.append(line)
        elif m and m.group(2) == heading:
            level = len(m.group(1))
    if not level:
        found = [m.group(2) for line in lines if (m := HEADING.match(line))]
        raise KeyError(f"no heading {heading!r}; headings: {found}")
    return "\n".join(out).strip() + "\n"


def _fix_links(text: str, source: str) -> str:
    base = (ROOT / source).parent

    def repl(m: re.Match[str]) -> str:
        bang, label, target = m.groups()
        if re.match(r"^[a-z]+:|^#", target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        rel = (base / path).resolve().relative_to(ROOT).as_posix()
        if rel.startswith("benchmarks/plots/"):
            return f"{bang}[{label}](@root/assets/benchmarks/{Path(rel).name})"
        if rel in PAGES:
            return f"[{label}](@root/{PAGES[rel]}{'#' + anchor if anchor else ''})"
        return f"{label} (`{rel}` in the repository)" if label != rel else f"`{rel}`"

    return LINK.sub(repl, text)


def include(path: str, heading: str | None = None) -> str:
    text = (ROOT / path).read_text()
    return _fix_links(section(text, heading), path)
