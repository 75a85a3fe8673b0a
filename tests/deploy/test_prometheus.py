"""deploy/prometheus/: the alert rules pass promtool's check and their unit tests; every PromQL expression
of the rules and the Grafana dashboard parses and names only metrics a real server exports."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ortserve.admin_client import AdminClient
from ortserve.client import AsyncClient
from ortserve.testing import ServerProcess
from tests.server.monitor.conftest import copy_version, train_split

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
RULES = DEPLOY / "ortserve-rules.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
# Grafana's variables, given values so that the expressions parse as Prometheus would get them
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
}


def promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / "build/prometheus/usr/bin/promtool")
    if Path(found).is_file():
        return found
    if shutil.which("apt-get") is None:
        pytest.skip(
            "promtool is not on PATH and this machine has no apt-get to fetch Debian's (make promtool)"
        )
    pytest.fail(
        "promtool is missing: `make promtool` takes it out of Debian's prometheus package (make test does)"
    )


def test_rules_pass_promtool_check_and_their_unit_tests():
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [tool, "test", "rules", "ortserve-rules.test.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_every_alert_has_severity_summary_description_and_runbook():
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 11
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert f"## {anchor}\n" in (DEPLOY / "RUNBOOK.md").read_text(), rule["alert"]


def metric_names(node) -> set[str]:
    kind = type(node).__name__
    if kind == "VectorSelector":
        return {node.name}
    names: set[str] = set()
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, (str, int, float)):
            names |= metric_names(child)
    for arg in getattr(node, "args", None) or ():
        names |= metric_names(arg)
    return names


def expressions() -> dict[str, str]:
    out = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            out[f"rule {rule['alert']}"] = rule["expr"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            out[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(metric, label): Grafana's, the metric is ours
            out[f"variable {variable['name']}"] = variable["definition"].split("(")[1].split(",")[0]
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_version) -> set[str]:
    """The names a real server exports after predictions, feedback and payload logging."""
    repo = tmp_path_factory.mktemp("repo")
    copy_version(demo_version, repo, "1", 'default_version = "1"\nmax_batch_size = 64\n')
    copy_version(demo_version, repo, "2")  # a candidate, so that a rollout runs and exports its metrics
    args = ("--drift-sample-rate", "1", "--drift-interval", "0.2", "--drift-min-rows", "100")
    s = ServerProcess(repo, *args, "--payload-log", str(repo.parent / "payloads"), "--payload-log-rate", "1")
    x, y = train_split()

    async def traffic() -> None:
        async with AsyncClient(s.target) as c:
            for i in range(0, 400, 4):
                r = await c.predict("digits", {"input": x[i : i + 4]})
                await c.feedback(r.request_id, labels=y[i : i + 4], reward=1.0)

    try:
        with AdminClient(s.target) as admin:
            admin.start_rollout("digits", "2", spec="steps = [50]\nstep_requests = 1000000")
        asyncio.run(traffic())
        text = ""
        for _ in range(100):
            text = urllib.request.urlopen(s.metrics_url, timeout=5).read().decode()
            if "ortserve_feature_drift_psi{" in text and "ortserve_rollout_state{" in text:
                break
            asyncio.run(asyncio.sleep(0.1))
    finally:
        assert s.stop() == 0
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    assert "ortserve_feature_drift_psi" in names and "ortserve_feedback_total" in names
    return names


def test_every_expression_parses_and_names_only_exported_metrics(exported):
    found = expressions()
    assert len(found) > 20
    used = set()
    for where, expr in found.items():
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        try:
            tree = promql_parser.parse(expr)
        except Exception as e:  # the parser's own error type
            pytest.fail(f"{where}: {expr!r} does not parse: {e}")
        names = metric_names(tree)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} not exported by the server"
        used |= names
    # the dashboard and the rules cover drift, feedback, shadow and payload logging
    for needed in (
        "ortserve_feature_drift_ks",
        "ortserve_prediction_drift_chi2",
        "ortserve_feedback_total",
        "ortserve_shadow_rows_total",
        "ortserve_payload_records_total",
        "ortserve_reference_accuracy",
        "ortserve_rollout_state",
        "ortserve_rollout_transitions_total",
    ):
        assert needed in used, needed
