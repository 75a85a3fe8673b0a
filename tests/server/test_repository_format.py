"""ortserve.repository as a format library, on real files: config.toml written and read back, the
default version pinned in place, versions published atomically, the flags document."""

from __future__ import annotations

import json
import os
import threading

import onnx
import pytest
from onnx import numpy_helper

from ortserve.repository import (
    CONFIG,
    MODEL_FILE,
    BatchingConfig,
    ConfigError,
    ModelConfig,
    RuntimeConfig,
    TensorConfig,
    VersionPolicy,
    canary_flag,
    check_model_name,
    config_text,
    flags_document,
    flags_path,
    flags_text,
    load_model_config,
    publish_version,
    read_flags_text,
    read_manifest,
    scan_repository,
    set_default_version,
    verify_manifest,
    write_flags_text,
    write_model_config,
)
from ortserve.rollout.flags import check_versions, parse_flags
from tests import onnx_models as m

FULL = ModelConfig(
    "digits",
    max_batch_size=64,
    default_version="1",
    max_input_elements=4096,
    inputs=(TensorConfig("input", "float32", (64,)),),
    batching=BatchingConfig(max_queue_delay_us=200, preferred_batch_sizes=(16, 8), max_queue_size=1024),
    runtime=RuntimeConfig(providers=("CUDAExecutionProvider", "CPUExecutionProvider"), instances=2),
    versions=VersionPolicy("latest 2"),
)


def test_a_written_config_reads_back_the_same(tmp_path):
    path = write_model_config(tmp_path / "digits", FULL, "written by a test")
    assert load_model_config(tmp_path / "digits") == FULL
    text = path.read_text()
    assert text == config_text(FULL, "written by a test")  # the same config, the same bytes
    assert text.startswith('# written by a test\nmax_batch_size = 64\ndefault_version = "1"\n')
    assert "[batching]\nmax_queue_delay_us = 200\npreferred_batch_sizes = [8, 16]\n" in text
    assert '[versions]\npolicy = "latest 2"\n' in text and "max_queue_size = 1024" in text
    assert "warmup" not in text  # defaults stay the server's
    assert config_text(ModelConfig("x")) == "\n"


def test_config_text_is_checked_before_it_replaces_a_good_file(tmp_path):
    write_model_config(tmp_path, "max_batch_size = 8\n")
    with pytest.raises(
        ConfigError, match=r"config.toml \[batching\] max_queue_size: expected an integer >= 1"
    ):
        write_model_config(tmp_path, "[batching]\nmax_queue_size = 0\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        write_model_config(tmp_path, "max_batch_size = \n")
    assert (tmp_path / CONFIG).read_text() == "max_batch_size = 8\n"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, '# pinned\ndefault_version = "3"\n'),
        ("", '# pinned\ndefault_version = "3"\n'),
        (
            "# mine\nmax_batch_size = 8  # rows\n\n[batching]\nmax_queue_delay_us = 100\n",
            '# mine\nmax_batch_size = 8  # rows\n\n# pinned\ndefault_version = "3"\n[batching]\nmax_queue_delay_us = 100\n',
        ),
        (
            'max_batch_size = 8\ndefault_version = "1"   # old\n[versions]\npolicy = "all"',
            'max_batch_size = 8\n# pinned\ndefault_version = "3"\n[versions]\npolicy = "all"\n',
        ),
        # a key the line editor does not recognise (quoted): the edit would repeat it, so the file is
        # written again from its values
        (
            '"default_version" = "1"\nmax_batch_size = 8\n',
            '# pinned\nmax_batch_size = 8\ndefault_version = "3"\n',
        ),
    ],
)
def test_set_default_version_keeps_the_rest_of_the_file(tmp_path, before, after):
    if before is not None:
        (tmp_path / CONFIG).write_text(before)
    config = set_default_version(tmp_path, 3, comment="pinned")
    assert config.default_version == "3" and load_model_config(tmp_path) == config
    assert (tmp_path / CONFIG).read_text() == after
    assert set_default_version(tmp_path, "3", comment="again") == config  # already so: file untouched
    assert (tmp_path / CONFIG).read_text() == after


def test_set_default_version_refuses_a_bad_config(tmp_path):
    (tmp_path / CONFIG).write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        set_default_version(tmp_path, 2)
    assert (tmp_path / CONFIG).read_text() == "colour = 1\n"


def test_publish_version_numbers_files_manifest_and_no_leftovers(tmp_path):
    model = m.addmul().SerializeToString()
    first = publish_version(tmp_path, "addmul", model, {"parent": None, "note": "first"})
    assert first == tmp_path / "addmul" / "1" and (first / MODEL_FILE).read_bytes() == model
    manifest = read_manifest(first)
    assert manifest is not None and manifest["model"] == "addmul" and manifest["version"] == "1"
    assert manifest["note"] == "first" and set(manifest["files"]) == {MODEL_FILE}
    verify_manifest(first, manifest)
    source = tmp_path / "src.onnx"
    source.write_bytes(model)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    second = publish_version(
        tmp_path, "addmul", {MODEL_FILE: source, "weights.bin": tmp_path / "weights.bin"}
    )
    assert second.name == "2" and sorted(read_manifest(second)["files"]) == [MODEL_FILE, "weights.bin"]
    assert publish_version(tmp_path, "addmul", source, version=7, manifest=False).name == "7"
    assert read_manifest(tmp_path / "addmul" / "7") is None
    assert publish_version(tmp_path, "addmul", model).name == "8"
    with pytest.raises(FileExistsError, match="version 7 of addmul exists"):
        publish_version(tmp_path, "addmul", model, version=7)
    replaced = publish_version(
        tmp_path, "addmul", m.addmul(offset=5).SerializeToString(), version=7, replace=True
    )
    offset = onnx.load(str(replaced / MODEL_FILE)).graph.initializer[0]
    assert numpy_helper.to_array(offset) == 5.0
    assert sorted(scan_repository(tmp_path)["addmul"].versions) == ["1", "2", "7", "8"]
    assert not [p for p in (tmp_path / "addmul").iterdir() if p.name.startswith(".")]
    assert oct((tmp_path / "addmul" / "1").stat().st_mode & 0o777) == "0o755"


def test_a_failed_publish_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        publish_version(tmp_path, "m", {MODEL_FILE: tmp_path / "missing.onnx"})
    assert os.listdir(tmp_path / "m") == []
    for bad in ("", ".hidden", "a/b", "../up"):
        with pytest.raises(ValueError, match="bad model name"):
            publish_version(tmp_path, bad, b"x")
    with pytest.raises(ValueError, match="bad file name"):
        publish_version(tmp_path, "m", {"../escape": b"x"})
    with pytest.raises(ValueError, match="bad version"):
        publish_version(tmp_path, "m", b"x", version="v2")
    assert check_model_name("digits") == "digits"


def test_concurrent_publishers_each_get_their_own_version(tmp_path):
    model = m.addmul().SerializeToString()
    done: list[str] = []
    threads = [
        threading.Thread(target=lambda: done.append(publish_version(tmp_path, "m", model).name))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done, key=int) == [str(v) for v in range(1, 9)]
    for v in done:
        manifest = read_manifest(tmp_path / "m" / v)
        assert manifest is not None and manifest["version"] == v


def test_canary_flags_document_is_valid_flagd_for_the_router(tmp_path):
    doc = flags_document({"digits": canary_flag("1", "3", 10, candidate_variant="int8")})
    path = flags_path(tmp_path)
    assert read_flags_text(path) is None
    write_flags_text(path, flags_text(doc))
    text = read_flags_text(path)
    assert text is not None and json.loads(text) == doc and path.name == "flags.json"
    flags = parse_flags(text)
    check_versions(flags, {"digits": {"1", "3"}})
    spec = doc["flags"]["digits"]
    assert spec["defaultVariant"] == "current" and spec["variants"] == {"current": "1", "int8": "3"}
    assert spec["targeting"]["fractional"] == [["current", 90], ["int8", 10]]
    same_name = canary_flag("1", "2", 5, candidate_variant="current")
    assert same_name["variants"] == {"current": "1", "current-2": "2"}
    for bad in (-1, 101, True, 2.5):
        with pytest.raises(ValueError, match="canary percent"):
            canary_flag("1", "2", bad)
    for text in ("{", '{"flag": {}}', "[]"):
        with pytest.raises(ValueError):
            write_flags_text(path, text)
    assert json.loads(path.read_text()) == doc
