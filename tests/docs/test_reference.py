"""The documentation's generated reference covers everything the code defines (so a new setting, metric, step,
error or RPC is documented the moment it exists, and one without a description fails here), and every marker
in the pages generates. The strict site build itself is ``make docs`` (CI runs it); the slow test below runs it
too where mkdocs is installed."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from docsgen.files import include, section
from docsgen.reference import MARKER, error_tree, generate, split_doc

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_every_setting_is_documented():
    from ortserve.ops.settings import Settings

    page = generate("settings")
    for f in dataclasses.fields(Settings):
        assert f"### {f.name}\n" in page and f"`ORTSERVE_{f.name.upper()}`" in page, f.name
        assert f.metadata.get("help"), f"setting {f.name} has no help text"
    assert "&lt;model&gt;/&lt;version&gt;/model.onnx" in page  # help texts are escaped, not swallowed as tags


def test_every_metric_is_documented():
    from ortserve.metrics import Metrics, catalogue

    page = generate("metrics")
    names = {m.name for m in catalogue()}
    text = Metrics().registry.collect()
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in text}
    assert names == exported  # the catalogue is every metric the registry has
    for m in catalogue():
        assert f"| `{m.name}` | {m.kind} |" in page and m.help, m.name
    supervisor = generate("supervisor-metrics")  # the --workers supervisor's own collector
    assert "| `ortserve_worker_restarts_total` | counter | `worker` |" in supervisor
    assert "| `ortserve_workers` | gauge | `state` |" in supervisor


def test_every_step_is_documented():
    from ortserve.optimize.steps import REGISTRY, _load_all

    _load_all()
    page = generate("steps")
    for name, step in REGISTRY.items():
        assert f"### {name}\n" in page and step.config.__doc__, name
        for f in dataclasses.fields(step.config):
            assert f"| `{f.name}` |" in page, f"{name}.{f.name}"


def test_every_error_says_what_it_means_and_what_to_do():
    page = generate("errors")
    for depth, cls in error_tree():
        meaning, advice = split_doc(cls)
        if depth:
            assert meaning and advice, f"{cls.__name__}: its docstring needs a meaning and 'What to do:'"
            assert f"### {cls.__name__}\n" in page and f"outcome `{cls.outcome}`" in page
    assert "**gRPC status `NOT_FOUND`**" in page and "**gRPC status `RESOURCE_EXHAUSTED`**" in page
    other = generate("other-errors")
    for name in ("SettingsError", "ConfigError", "ManifestError", "OptimizeError"):
        assert f"### {name}\n" in other and "**What to do:** " in other


def test_every_rpc_is_documented():
    from ortserve.edge.methods import GROUPS

    page = generate("protos")
    for method in GROUPS:
        service, name = method.strip("/").split("/")
        assert f"### service `{service}`" in page and f"| `{name}` |" in page, method
    assert "The model card of a loaded version" in page  # the .proto comments come along
    assert "| `markdown` | 3 | `string` |" in page


def test_cli_help():
    assert "--status-interval" in generate("cli", "ortserve")
    assert "--intended-use" in generate("cli", "ortserve-optimize")
    assert "--payload-log PAYLOAD_LOG" in generate("cli", "ortserve-optimize retrain")
    assert "--candidate CANDIDATE" in generate("cli", "ortserve rollout start")
    with pytest.raises(ValueError, match="unknown program"):
        generate("cli", "tritonserver")


def test_every_subcommand_has_its_help_in_the_cli_reference():
    """Subcommands are read from each command's own usage line ({start,status,...}), so a new one without
    its section in docs/reference/cli.md fails here."""
    page = (DOCS / "reference" / "cli.md").read_text()
    for command in ("ortserve rollout", "ortserve auth", "ortserve audit"):
        assert f"<!-- ortserve:generate cli {command} -->" in page, command
        usage = generate("cli", command).splitlines()[1]
        subcommands = re.search(r"\{([\w,-]+)\}", usage).group(1).split(",")
        for sub in subcommands:
            assert f"<!-- ortserve:generate cli {command} {sub} -->" in page, f"{command} {sub}"
    assert "<!-- ortserve:generate cli ortserve-optimize retrain -->" in page


def test_includes_rewrite_links_for_the_site():
    results = include("benchmarks/RESULTS.md")
    assert "](@root/assets/benchmarks/latency_throughput_digits.png)" in results
    readme = include("README.md", "Optimizing models: `ortserve-optimize`")
    assert "(@root/guides/optimizing.md)" in readme
    with pytest.raises(KeyError, match="no heading 'Nope'"):
        section("# T\n## A\ntext\n", "Nope")
    assert section("# T\n## A\none\n### B\ntwo\n## C\nthree\n", "A") == "one\n### B\ntwo\n"
    # a shell comment in a code block is no heading: the section goes on past it
    assert section("## A\n```sh\n# run it\nx\n```\nafter\n## B\n", "A") == "```sh\n# run it\nx\n```\nafter\n"


def test_every_marker_in_the_pages_generates():
    pages = sorted(DOCS.rglob("*.md"))
    found = 0
    for page in pages:
        for m in MARKER.finditer(page.read_text()):
            text = generate(m.group(1), m.group(2) or "")
            assert text, f"{page}: {m.group(0)}"
            fences = sum(1 for line in text.splitlines() if line.lstrip().startswith("```"))
            assert fences % 2 == 0, f"{page}: {m.group(0)} leaves a code block open"
            found += 1
    assert found >= 15


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        assert f" {page.relative_to(DOCS).as_posix()}\n" in nav, page


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: `make docs` installs it")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (tmp_path / "site" / "reference" / "settings.html").read_text()
    assert re.search(r'id="status_interval"', html)
