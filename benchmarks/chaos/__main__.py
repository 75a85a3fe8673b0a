"""``python -m benchmarks.chaos``: run the chaos scenarios (see ``benchmarks.chaos``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from benchmarks.chaos import report, scenarios
from benchmarks.chaos.scenarios import Config

SCENARIOS = ("sigterm", "kill", "versions", "flags", "hostile")


async def run(names: list[str], cfg: Config) -> list[scenarios.Outcome]:
    out = []
    for name in names:
        print(f"chaos: {name} ...", file=sys.stderr, flush=True)
        if name == "sigterm":
            for health_check in (True, False):
                out.append(await scenarios.sigterm(cfg, workers=1, health_check=health_check))
                out.append(await scenarios.sigterm(cfg, workers=2, health_check=health_check))
        elif name == "kill":
            out.append(await scenarios.kill_workers(cfg))
        elif name == "versions":
            out.append(await scenarios.version_churn(cfg))
        elif name == "flags":
            out.append(await scenarios.flags_churn(cfg))
        else:
            out.append(await scenarios.hostile(cfg))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="each scenario briefly (a smoke test, not figures)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), help="scenarios to run"
    )
    parser.add_argument("--json", type=Path, help="write the outcomes as JSON to this file")
    parser.add_argument(
        "--write-results", action="store_true", help="write the section of benchmarks/RESULTS.md"
    )
    args = parser.parse_args(argv)
    cfg = Config.smoke() if args.smoke else Config()
    start = time.monotonic()
    results = asyncio.run(run(args.only, cfg))
    seconds = time.monotonic() - start
    print(report.table(results))
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2))
    if args.write_results:
        report.write(results, sys.argv[1:] if argv is None else argv, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
