"""The images' lock files: exact versions with hashes, resolved from pyproject.toml by ``uv pip compile``.

    python scripts/lock.py            # (make lock) resolve again on PyPI and rewrite deploy/requirements/*.lock
    python scripts/lock.py --check    # offline: each lock still matches pyproject.toml (CI runs this)

The images install these with ``pip install --require-hashes --no-deps``, so the same commit builds the
same image. Each lock starts with the sha256 of its inputs (the requirements below, derived from
pyproject.toml, and the target Python and platform); ``--check`` recomputes it and also checks that
every pin satisfies the input requirements and carries hashes, so a dependency changed in
pyproject.toml without ``make lock`` fails CI with the file to regenerate.

| lock | inputs | used by |
|---|---|---|
| server.lock | [project] dependencies + the tracing and signing extras (`--tracing`, `--trusted-key`) | Dockerfile.cpu runtime |
| server-gpu.lock | the same, onnxruntime replaced by GPU_ONNXRUNTIME below | Dockerfile.gpu runtime |
| demo.lock | [project] dependencies + the demo extra | the images' optional ``demo`` target |
| build.lock | [build-system] requires | the builder stage that makes the wheel |
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "deploy" / "requirements"
PYTHON = "3.11"  # the images' Python: python:3.11-slim, or Debian bookworm's python3
PLATFORM = "x86_64-manylinux_2_28"
# CUDA 12 + cuDNN 9 from NVIDIA's pip packages (onnxruntime-gpu's own extras pick the coherent set).
# 1.26 is the last onnxruntime-gpu on PyPI built for CUDA 12 (from 1.27 on: CUDA 13, which needs an
# NVIDIA driver >= 580); CUDA 12 runs on drivers >= 525 through CUDA's minor version compatibility.
GPU_ONNXRUNTIME = "onnxruntime-gpu[cuda,cudnn]>=1.26,<1.27"
IMAGE_EXTRAS = ("tracing", "signing")
DIGEST = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.M)


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def inputs(pyproject: Path) -> dict[str, list[str]]:
    """Each lock's input requirements, from pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())
    deps = list(project["project"]["dependencies"])
    extras = project["project"]["optional-dependencies"]
    # The images run everything the server can do: --tracing and --trusted-key need their extras.
    server = deps + [r for extra in IMAGE_EXTRAS for r in extras.get(extra, [])]
    gpu = [GPU_ONNXRUNTIME if _name(d) == "onnxruntime" else d for d in server]
    if gpu == server:
        raise SystemExit(f"{pyproject}: no onnxruntime dependency to replace with {GPU_ONNXRUNTIME}")
    return {
        "server.lock": server,
        "server-gpu.lock": gpu,
        "demo.lock": deps + list(extras["demo"]),
        "build.lock": list(project["build-system"]["requires"]),
    }


def digest(requirements: list[str]) -> str:
    text = "\n".join([f"python {PYTHON}", f"platform {PLATFORM}", *sorted(requirements)])
    return hashlib.sha256(text.encode()).hexdigest()


def compile_lock(name: str, requirements: list[str], out: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not installed: make install-dev installs it (the dev extra)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / name.replace(".lock", ".in")
        src.write_text("\n".join(requirements) + "\n")
        cmd = [uv, "pip", "compile", str(src), "--generate-hashes", "--no-header", "--quiet"]
        cmd += [
            "--python-version",
            PYTHON,
            "--python-platform",
            PLATFORM,
            "--index-url",
            "https://pypi.org/simple",
        ]
        body = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    header = (
        f"# {name}: exact versions with hashes for CPython {PYTHON} on {PLATFORM}, from pyproject.toml.\n"
        "# Written by `make lock` (scripts/lock.py, uv pip compile); checked by `python scripts/lock.py --check`.\n"
        f"# inputs-sha256: {digest(requirements)}\n"
    )
    out.write_text(header + body.replace(str(src), name.replace(".lock", ".in")))


def pins(text: str) -> dict[str, tuple[str, str, int]]:
    """name -> (version, marker, number of hashes) for each requirement line of a lock."""
    out: dict[str, tuple[str, str, int]] = {}
    for block in re.split(r"\n(?=\S)", text):
        first = block.split("\n", 1)[0].rstrip(" \\")
        if not first or first.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;]+)\s*(?:;\s*(.*))?$", first)
        if match is None:
            raise ValueError(f"not a pinned requirement: {first!r}")
        name, version, marker = match.groups()
        out[_name(name)] = (version, marker or "", block.count("--hash=sha256:"))
    return out


def check(pyproject: Path, locks: Path) -> list[str]:
    """What is wrong with the locks in ``locks`` for ``pyproject`` ([] when they match)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    problems = []
    for name, requirements in inputs(pyproject).items():
        path = locks / name
        if not path.exists():
            problems.append(f"{path} is missing: run make lock")
            continue
        text = path.read_text()
        found = DIGEST.search(text)
        if found is None or found.group(1) != digest(requirements):
            problems.append(f"{path} was not made from pyproject.toml as it is now: run make lock")
        try:
            pinned = pins(text)
        except ValueError as e:
            problems.append(f"{path}: {e}")
            continue
        for pin, (version, _marker, hashes) in sorted(pinned.items()):
            if hashes == 0:
                problems.append(f"{path}: {pin}=={version} has no hash")
        env = {"python_version": PYTHON, "python_full_version": f"{PYTHON}.0", "sys_platform": "linux"}
        env |= {"platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}
        for requirement in map(Requirement, requirements):
            if requirement.marker is not None and not requirement.marker.evaluate(env):
                continue
            key = _name(requirement.name)
            if key not in pinned:
                problems.append(f"{path}: {requirement} is not pinned")
            elif not requirement.specifier.contains(Version(pinned[key][0]), prereleases=True):
                problems.append(f"{path}: {key}=={pinned[key][0]} does not satisfy {requirement}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="check the locks offline instead of writing them"
    )
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--locks", type=Path, default=LOCKS, help="folder of the lock files")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.pyproject, args.locks)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    args.locks.mkdir(parents=True, exist_ok=True)
    for name, requirements in inputs(args.pyproject).items():
        compile_lock(name, requirements, args.locks / name)
        print(f"wrote {args.locks / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
