"""The shape of benchmarks/ (its module map is in benchmarks/__init__.py): scripts import library
modules, never each other; nothing imports ``tests``; no import cycle; nothing edits ``sys.path``;
the locustfile, which locust loads by path, imports no ``benchmarks`` module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
# Run as programs, imported by nothing: ``python -m benchmarks.<name>``, or locust's ``-f``.
SCRIPTS = {
    "benchmarks.bench_ab",
    "benchmarks.bench_compare",
    "benchmarks.chaos.__main__",
    "benchmarks.chaos.probe",
    "benchmarks.bench_flags",
    "benchmarks.bench_monitoring",
    "benchmarks.bench_optimize",
    "benchmarks.bench_security",
    "benchmarks.bench_server",
    "benchmarks.judge_sim",
    "benchmarks.learning_loop",
    "benchmarks.loadgen.__main__",
    "benchmarks.locustfile",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in BENCH.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith(".") for p in parts):  # benchmarks/.venv-mlserver, made by bench_compare
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The benchmarks and tests modules ``path`` imports, at any depth."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
    return {n for n in out if n.split(".")[0] in ("benchmarks", "tests")}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def test_no_script_is_imported_and_nothing_imports_tests():
    edges = graph()
    assert set(edges) >= SCRIPTS, "a script was renamed: update SCRIPTS"
    wrong = {n: sorted(d for d in deps if d in SCRIPTS or d.startswith("tests")) for n, deps in edges.items()}
    assert not {n: d for n, d in wrong.items() if d}
    assert not edges["benchmarks.locustfile"]


def test_no_import_cycle():
    edges = graph()
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for dep in sorted(edges.get(node, ())):
            visit(dep, (*path, node))
        done.add(node)

    for node in sorted(edges):
        visit(node, ())


def test_nothing_edits_sys_path():
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "path":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), path
