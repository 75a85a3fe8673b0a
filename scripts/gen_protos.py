"""Generate the Python gRPC stubs for every .proto under protos/ into server/_proto/ (the ``ortserve._proto`` package).

protoc writes absolute imports (``from ortserve.v1 import x_pb2``); they are rewritten
to package-relative ones so the stubs live inside the ``ortserve`` package.

    python scripts/gen_protos.py [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"


POOL_MODULE = '''"""A descriptor pool of ortserve's own: the Open Inference Protocol's ``inference.*`` symbols are
also defined by Triton's and KServe's Python clients, and two definitions in protobuf's default
pool refuse to load in one process. Ours live here, so the server, the client and tritonclient
can share a process. (Written by scripts/gen_protos.py.)"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
'''


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency, only needed here

    sources = sorted(PROTOS.rglob("*.proto"))
    rel = [str(p.relative_to(PROTOS)) for p in sources]
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *rel,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    modules = {p.with_suffix("").as_posix().replace("/", ".") for p in map(Path, rel)}
    written = []
    for path in sorted([*out.rglob("*_pb2*.py"), *out.rglob("*_pb2.pyi")]):
        text = path.read_text()
        depth = len(path.relative_to(out).parts) - 1
        for module in modules:
            package, _, name = module.rpartition(".")
            prefix = "." * (depth + 1) + (package if package else "")
            text = re.sub(
                rf"^from {re.escape(package)} import {name}_pb2" if package else rf"^import {name}_pb2",
                f"from {prefix} import {name}_pb2",
                text,
                flags=re.M,
            )
        if path.name.endswith("_pb2.py"):
            pool = "." * (depth + 1) + "_pool"
            text = text.replace(
                "_descriptor_pool.Default().AddSerializedFile(", "_POOL.AddSerializedFile("
            ).replace(
                "_sym_db = _symbol_database.Default()\n",
                f"_sym_db = _symbol_database.Default()\nfrom {pool} import POOL as _POOL\n",
            )
        path.write_text(text)
        written.append(path)
    (out / "_pool.py").write_text(POOL_MODULE)
    written.append(out / "_pool.py")
    for directory in {p.parent for p in written} | {out}:
        d = directory
        while True:
            (d / "__init__.py").touch()
            if d == out:
                break
            d = d.parent
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "server" / "_proto")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in generate(args.out):
        print(path.relative_to(args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
