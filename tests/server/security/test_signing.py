"""Signed model versions: ``ortserve-optimize --sign-key`` signs what it publishes (OpenSSF model
signing, a local EC key, offline); the server with ``--trusted-key`` loads signed versions and
refuses unsigned, tampered and foreign-signed ones while the others keep serving."""

from __future__ import annotations

import json
import shutil

import grpc
import numpy as np
import onnx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ortserve.client import AsyncClient
from ortserve.optimize.__main__ import main as optimize
from ortserve.repository import publish_version, read_manifest
from ortserve.repository.signing import SIGNATURE, SignatureError, Signer, Verifier
from tests import onnx_models as m
from tests.optimize.common import mlp_model
from tests.server.security.certs import key_pem, public_pem
from tests.server.security.harness import run_app

A = np.ones((1, 4), np.float32)


@pytest.fixture
def keys(tmp_path):
    out = {}
    for name in ("ours", "next", "theirs"):
        key = ec.generate_private_key(ec.SECP256R1())
        (tmp_path / f"{name}.pem").write_bytes(key_pem(key))
        (tmp_path / f"{name}.pub.pem").write_bytes(public_pem(key))
        out[name] = tmp_path / f"{name}.pem"
    return out


def test_optimize_signs_what_it_publishes_and_the_server_verifies_it(tmp_path, keys):
    model, _ = mlp_model()
    onnx.save(model, tmp_path / "mlp.onnx")
    repo = tmp_path / "models"
    args = [
        str(tmp_path / "mlp.onnx"),
        "--graph-optimize",
        "--fp32",
        "--repo",
        str(repo),
        "--name",
        "mlp",
        "--out",
        str(tmp_path / "report"),
        "--batch-sizes",
        "1",
        "--bench-seconds",
        "0.01",
        "--quiet",
    ]
    assert optimize([*args, "--sign-key", str(keys["ours"])]) == 0
    versions = sorted(p.name for p in (repo / "mlp").iterdir() if p.name.isdigit())
    assert versions == ["1", "2"]
    for v in versions:
        folder = repo / "mlp" / v
        assert (folder / SIGNATURE).is_file() and read_manifest(folder)["signature"] == SIGNATURE
        assert Verifier(tmp_path / "ours.pub.pem").verify(folder).endswith("ours.pub.pem")
    # the bundle covers the model and its manifest
    bundle = json.loads((repo / "mlp" / "1" / SIGNATURE).read_text())
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle")

    async def body(app, target):
        assert app.core.is_ready("mlp", "1") and app.core.is_ready("mlp", "2")

    run_app(repo, body, trusted_key=tmp_path / "ours.pub.pem", require_signature=True)


def test_bad_sign_key_is_refused_before_any_work(tmp_path, capsys):
    model, _ = mlp_model()
    onnx.save(model, tmp_path / "mlp.onnx")
    (tmp_path / "bad.pem").write_text("not a key")
    code = optimize(
        [
            str(tmp_path / "mlp.onnx"),
            "--graph-optimize",
            "--repo",
            str(tmp_path / "models"),
            "--name",
            "mlp",
            "--sign-key",
            str(tmp_path / "bad.pem"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "--sign-key: signing key" in capsys.readouterr().err and not (tmp_path / "models" / "mlp").exists()


def test_unsigned_tampered_and_foreign_versions_are_refused_the_rest_serve(tmp_path, keys):
    repo = tmp_path / "models"
    ours, theirs = Signer(keys["ours"]), Signer(keys["theirs"])
    for version, signer in (
        (1, ours),
        (2, ours),
        (3, None),
        (4, theirs),
        (5, ours),
        (6, Signer(keys["next"])),
    ):
        sign = signer.sign if signer is not None else None
        publish_version(
            repo, "addmul", m.addmul(offset=float(version)).SerializeToString(), {}, version, sign=sign
        )
    (repo / "addmul" / "config.toml").write_text('default_version = "1"\n')
    tampered = repo / "addmul" / "2" / "model.onnx"
    tampered.write_bytes(m.addmul(offset=1000.0).SerializeToString())
    extra = repo / "addmul" / "5" / "notes.txt"  # an added file is not covered by the signature
    extra.write_text("hello")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    for name in ("ours", "next"):  # a folder of keys: signing keys can be rotated
        shutil.copy(tmp_path / f"{name}.pub.pem", trusted / f"{name}.pem")

    with pytest.raises(SignatureError) as e:
        Verifier(trusted).verify(repo / "addmul" / "2")
    assert e.value.reason == "tampered" and str(e.value).endswith(
        "signature does not verify: model.onnx changed"
    )
    with pytest.raises(SignatureError) as e:
        Verifier(trusted).verify(repo / "addmul" / "5")
    assert str(e.value).endswith("signature does not verify: not signed: notes.txt")
    with pytest.raises(SignatureError) as e:
        Verifier(trusted).verify(repo / "addmul" / "4")
    assert e.value.reason == "untrusted" and "signed by a key that is not trusted" in str(e.value)

    async def body(app, target):
        assert [mv.version for mv in app.core.versions("addmul")] == ["1", "6"]
        async with AsyncClient(target) as c:
            assert (await c.predict("addmul", {"a": A, "b": A}))["sum"][0, 0] == 3.0  # version 1 serves
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await c.predict("addmul", {"a": A, "b": A}, version="2")
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
        reg = app.metrics.registry
        reasons = {
            v: reg.get_sample_value(
                "ortserve_model_signature_failures_total", {"model": "addmul", "version": v, "reason": r}
            )
            for v, r in (("2", "tampered"), ("3", "unsigned"), ("4", "untrusted"), ("5", "tampered"))
        }
        assert reasons == {"2": 1.0, "3": 1.0, "4": 1.0, "5": 1.0}
        index = {(name, v): reason for name, v, state, reason in app.core.index() if state != "READY"}
        assert set(index) == {("addmul", "2"), ("addmul", "3"), ("addmul", "4"), ("addmul", "5")}

    run_app(repo, body, trusted_key=trusted)


def test_require_signature_without_a_trusted_key_refuses_to_start(tmp_path):
    from ortserve.ops.guard import check_settings
    from ortserve.ops.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="--require-signature is set but --trusted-key is not"):
        check_settings(Settings(model_repository=tmp_path, require_signature=True))
