"""Model cards: written by publish_version into the version (listed in the manifest, so the sha256 check covers
them), served by Admin GetModelCard on a real server (tests/optimize/test_optimize_card.py: the cards
ortserve-optimize writes)."""

from __future__ import annotations

import grpc
import pytest

from ortserve.client import Client
from ortserve.edge.methods import group_of
from ortserve.repository import (
    MODEL_CARD,
    ManifestError,
    ModelCard,
    publish_version,
    read_manifest,
    read_model_card,
    render_model_card,
)
from tests import onnx_models as m

CARD = ModelCard(
    "addmul",
    "offset 1",
    "The sum and product of a and b, plus one.",
    intended_use="Tests | with a pipe in the text",
    inputs=[("a", "float32", "[batch, 4]"), ("b", "float32", "[batch, 4]")],
    outputs=[("sum", "float32", "[batch, 4]")],
    lineage=[("source", "tests/onnx_models.py")],
    results=[["", "parent", "this version"], ["cosine", "1", "0.99"]],
    gates=[("min_cosine", ">= 0.9", "0.99", "pass")],
    limitations=["Made for tests."],
)


def test_render_names_the_version_and_escapes_tables():
    from dataclasses import replace

    text = render_model_card(replace(CARD, version="3"))
    assert text.startswith("# addmul version 3: offset 1\n")
    assert "## Intended use\n\nTests | with a pipe in the text" in text
    assert "| input | a | float32 | [batch, 4] |" in text and "| cosine | 1 | 0.99 |" in text
    assert "## Data" not in text  # empty sections are left out
    assert render_model_card(replace(CARD, version="3")) == text  # deterministic


def test_publish_writes_the_card_into_the_manifest(tmp_path):
    path = publish_version(tmp_path, "addmul", m.addmul(1).SerializeToString(), {"note": "x"}, card=CARD)
    assert path.name == "1" and CARD.version == ""  # the caller's card is left as it was
    manifest = read_manifest(path)
    assert manifest is not None and sorted(manifest["files"]) == [MODEL_CARD, "model.onnx"]
    assert read_model_card(path, manifest).startswith("# addmul version 1: offset 1")
    (path / MODEL_CARD).write_text("# edited by hand\n")
    with pytest.raises(ManifestError, match=r"MODEL_CARD\.md: sha256"):
        read_model_card(path, manifest)
    with pytest.raises(ValueError, match="given twice"):
        publish_version(tmp_path, "addmul", {"model.onnx": b"x", MODEL_CARD: b"y"}, card=CARD)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("cards")
    publish_version(root, "addmul", m.addmul(0).SerializeToString(), card=CARD)  # version 1, with a card
    m.publish(root, "addmul", 2, m.addmul(1))  # version 2, without
    publish_version(root, "addmul", m.addmul(2).SerializeToString(), version=3, card=CARD)
    return root


def test_get_model_card(server, repo):
    with Client(server.target) as c:
        card = c.model_card("addmul", "1")
        assert card == (repo / "addmul" / "1" / MODEL_CARD).read_text()
        assert card.startswith("# addmul version 1: offset 1")
        assert c.model_card("addmul").startswith("# addmul version 3")  # the default: the highest
        with pytest.raises(grpc.RpcError) as e:
            c.model_card("addmul", "2")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert "version 2 has no MODEL_CARD.md" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            c.model_card("nope")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "'nope' is not loaded" in e.value.details()
        # Edited after the version was loaded: refused, since the manifest no longer vouches for it.
        (repo / "addmul" / "3" / MODEL_CARD).write_text("# not what was published\n")
        with pytest.raises(grpc.RpcError) as e:
            c.model_card("addmul", "3")
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "model card refused" in e.value.details() and "manifest says" in e.value.details()
    assert group_of("/ortserve.v1.Admin/GetModelCard") == "metadata"


def test_a_card_that_differs_from_its_manifest_refuses_the_version(tmp_path, start_server):
    version = publish_version(tmp_path, "addmul", m.addmul(0).SerializeToString(), card=CARD)
    (version / MODEL_CARD).write_text("# tampered\n")
    server = start_server(tmp_path)
    server.wait_log("refused")
    assert "MODEL_CARD.md" in server.wait_log("refused")["message"]
