"""The MkDocs hook (mkdocs.yml ``hooks:``): generated parts of the pages, made at build time.

- ``on_page_markdown``: each ``<!-- ortserve:generate NAME ARGS -->`` marker becomes what the generator NAME
  (:mod:`docsgen.reference`) returns; a generator that fails fails the build, naming the page.
- ``on_config``: a source tree named ``ortserve`` for mkdocstrings (the package's folder is ``server/``).
- ``on_files``: the benchmark plots (benchmarks/plots/*.png) join the site as ``assets/benchmarks/``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # mkdocs loads this file by path; the generators import docsgen.* from the root
    sys.path.insert(0, str(ROOT))

from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.plugins import event_priority  # noqa: E402
from mkdocs.structure.files import File, Files  # noqa: E402

from docsgen.reference import MARKER, generate  # noqa: E402

SOURCES = ROOT / "build" / "docs-src"


@event_priority(100)  # before mkdocstrings' own on_config, which looks for the paths
def on_config(config):  # type: ignore[no-untyped-def]
    """mkdocstrings reads the package's source by its import name, ``ortserve``, but its folder is ``server/``
    (setup.py maps them): give it a tree of that name to read (mkdocs.yml's ``paths: [build/docs-src]``)."""
    SOURCES.mkdir(parents=True, exist_ok=True)
    link = SOURCES / "ortserve"
    if not link.is_symlink() or link.resolve() != (ROOT / "server").resolve():
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(ROOT / "server", target_is_directory=True)
    return config


def on_files(files: Files, config) -> Files:  # type: ignore[no-untyped-def]
    for png in sorted((ROOT / "benchmarks" / "plots").glob("*.png")):
        files.append(File.generated(config, f"assets/benchmarks/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:  # type: ignore[no-untyped-def]
    prefix = "../" * page.file.src_uri.count("/")

    def replace(m: re.Match[str]) -> str:
        try:
            text = generate(m.group(1), m.group(2) or "")
        except Exception as e:
            raise PluginError(
                f"{page.file.src_uri}: generating {m.group(0)!r}: {type(e).__name__}: {e}"
            ) from e
        return text.replace("@root/", prefix)

    return MARKER.sub(replace, markdown)
