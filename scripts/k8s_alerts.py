"""The alert rules of deploy/prometheus/ortserve-rules.yml as a Prometheus Operator PrometheusRule, for the
Kubernetes overlays (deploy/k8s/components/prometheus). The rules file stays the one source: promtool checks and
unit-tests it; this writes its groups, unchanged, into the custom resource.

    python scripts/k8s_alerts.py           # write deploy/k8s/components/prometheus/prometheusrule.yaml
    python scripts/k8s_alerts.py --check   # exit 1 if that file is not what the rules file gives
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "ortserve-rules.yml"
OUT = ROOT / "deploy" / "k8s" / "components" / "prometheus" / "prometheusrule.yaml"
HEADER = (
    "# Written by scripts/k8s_alerts.py from deploy/prometheus/ortserve-rules.yml (the source: edit that file,\n"
    "# then run the script; a test fails while they differ). Runbooks: deploy/prometheus/RUNBOOK.md.\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL expressions) as literal blocks, as in the rules file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    rules = yaml.safe_load(RULES.read_text())
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "ortserve"},
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.dump(resource, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is not what {RULES} gives: run python scripts/k8s_alerts.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
