"""The package's shape: one top-level import package, layers that import downwards only, no
import cycles, and modules small enough to read (README "Architecture")."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"ortserve": ROOT / "server", "ortserve.optimize": ROOT / "optimize"}

# Layer of each part of ortserve, top to bottom: a module may import its own layer and lower ones.
LAYERS = {
    "ortserve.ops": 6,
    "ortserve.edge": 5,
    "ortserve.monitor": 4,  # drift, feedback join, payload log, tracing: over core, never rollout
    "ortserve.rollout": 3,
    "ortserve.core": 2,
    "ortserve.repository": 1,
    "ortserve.errors": 0,
    "ortserve.metrics": 0,
    "ortserve.dtypes": 0,
    "ortserve.tensors": 0,
    "ortserve.series": 0,
    "ortserve.schema": 0,
    "ortserve.stats": 0,  # PSI, KS, chi-square, Wilson intervals: drift (monitor) and the judge (rollout)
    "ortserve._proto": 0,
}
# Outside the layers: entry points and helpers for users, and the offline toolchain.
ALLOWED = {
    "ortserve.__main__": {"ortserve.ops", "ortserve", "ortserve.rollout_cli"},
    "ortserve.channels": set(),  # how the clients connect (TLS, credentials, channel options)
    "ortserve.client": {
        "ortserve._proto",
        "ortserve.channels",
        "ortserve.edge.codec",
        "ortserve.dtypes",
        "ortserve.errors",
    },
    "ortserve.admin_client": {"ortserve._proto", "ortserve.channels"},
    # ortserve rollout ...: a client of the Admin service (and its report as text and PNG)
    "ortserve.rollout_cli": {"ortserve.admin_client", "ortserve.rollout_report"},
    "ortserve.rollout_report": set(),
    "ortserve.testing": set(),
    "ortserve.optimize": {
        "ortserve.optimize",
        "ortserve.repository",
        "ortserve.dtypes",
        "ortserve.schema",
        "ortserve.errors",
        "ortserve.admin_client",  # retrain --canary starts a rollout through a server's Admin service
    },
}
MAX_LINES = 350


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            if "_proto" in path.parts:
                continue
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if name.startswith("ortserve.optimize") and package == "ortserve":
                continue
            found[name] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every ortserve module this one imports, at any depth (functions and TYPE_CHECKING too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ortserve")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("ortserve"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}
    return out


def resolve(target: str, known: dict[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        edges[name] = {r for t in imports(name, path) if (r := resolve(t, known)) and r != name}
    return edges


def layer_of(name: str) -> tuple[str, int] | None:
    for prefix, level in LAYERS.items():
        if name == prefix or name.startswith(prefix + "."):
            return prefix, level
    return None


def test_layers_import_downwards_only():
    bad = []
    for name, targets in graph().items():
        if name == "ortserve":
            continue
        allowed = next((a for p, a in ALLOWED.items() if name == p or name.startswith(p + ".")), None)
        for t in targets:
            if t == "ortserve":
                continue
            if allowed is not None:
                if not any(t == a or t.startswith(a + ".") for a in allowed):
                    bad.append(f"{name} -> {t}")
                continue
            mine, theirs = layer_of(name), layer_of(t)
            if (
                mine is None
                or theirs is None
                or theirs[1] > mine[1]
                or (theirs[1] == mine[1] > 0 and theirs[0] != mine[0])
            ):
                bad.append(f"{name} -> {t}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    edges = graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w == "ortserve" or w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in list(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_modules_are_small():
    paths = [*modules().values(), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    paths = [p for p in paths if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    long = {str(p.relative_to(ROOT)): n for p in paths if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_layer_says_what_it_owns():
    for package in ("edge", "monitor", "core", "rollout", "repository", "ops"):
        doc = ast.get_docstring(ast.parse((ROOT / "server" / package / "__init__.py").read_text()))
        assert doc and "May import" in doc, (
            f"ortserve.{package} docstring must say what it owns and may import"
        )


def test_help_imports_nothing_heavy():
    code = (
        "import sys\nfrom ortserve.ops.settings import build_parser\nbuild_parser().format_help()\n"
        "print(sorted(m for m in ('grpc', 'onnxruntime', 'numpy', 'prometheus_client') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_wheel_installs_one_top_level_package(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(proc.stderr[-2000:])
    (wheel,) = tmp_path.glob("ortserve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"ortserve"}
    assert "ortserve/optimize/pipeline.py" in names and "ortserve/edge/v2.py" in names
    assert any(n.startswith("ortserve/_proto/") and n.endswith(".pyi") for n in names)


def test_monitor_never_imports_rollout():
    """monitor sits above rollout in the layer order only to come below edge: the two are siblings."""
    bad = [
        f"{name} -> {t}"
        for name, targets in graph().items()
        if name.startswith("ortserve.monitor")
        for t in targets
        if t.startswith("ortserve.rollout")
    ]
    assert not bad, bad
