"""The GPU keys of ``[runtime]``: their checks, the provider options built from them (for CUDA and
TensorRT without creating those sessions, which needs a GPU), and where TensorRT's caches go."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import onnxruntime as ort
import pytest

import ortserve.repository.config as config_module
from ortserve.core.providers import (
    default_cache_dir,
    provider_options,
    resolve_providers,
    trt_cache_dir,
)
from ortserve.repository import ConfigError, RuntimeConfig, config_text, parse_model_config
from ortserve.repository.signing import SIGNATURE
from tests import onnx_models as m

CUDA, TRT, CPU = "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"
GPUS = (TRT, CUDA, CPU)
README = Path(__file__).resolve().parents[2] / "README.md"


def parse(text: str):
    return parse_model_config("digits", tomllib.loads(text), "models/digits/config.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[runtime]\nio_binding = 1\n", "[runtime] io_binding: expected true or false, got 1"),
        (
            "[runtime]\nio_binding = true\ncuda_graph_batch_sizes = [0, 8]\n",
            "[runtime] cuda_graph_batch_sizes: expected a list of integers from 1 to 65536, got [0, 8]",
        ),
        (
            "[runtime]\nio_binding = true\ncuda_graph_batch_sizes = 8\n",
            "[runtime] cuda_graph_batch_sizes: expected a list of integers from 1 to 65536, got 8",
        ),
        (
            "[runtime]\ncuda_graph_batch_sizes = [8]\n",
            "models/digits/config.toml [runtime]: cuda_graph_batch_sizes needs io_binding = true",
        ),
        (
            "[runtime]\nio_binding = true\ncuda_graph_batch_sizes = ["
            + ", ".join(map(str, range(1, 18)))
            + "]\n",
            "[runtime]: cuda_graph_batch_sizes: expected at most 16 sizes, got 17",
        ),
        (
            "max_batch_size = 16\n[runtime]\nio_binding = true\ncuda_graph_batch_sizes = [8, 32]\n",
            "models/digits/config.toml: [runtime] cuda_graph_batch_sizes: expected sizes <= max_batch_size "
            "(16), got 32",
        ),
        (
            "max_batch_size = 0\n[runtime]\nio_binding = true\ncuda_graph_batch_sizes = [1]\n",
            "expected sizes <= max_batch_size (0), got 1",
        ),
        (
            f"[runtime]\nproviders = [{CUDA!r}]\n[runtime.provider_options.{TRT}]\ntrt_fp16_enable = true\n",
            f"[runtime]: provider_options: '{TRT}' is not one of the providers ({CUDA})",
        ),
        (
            f"[runtime]\n[runtime.provider_options.{CPU}]\nuse_arena = [1]\n",
            "[runtime] provider_options: expected a table of tables of strings or integers or numbers or "
            "true or false values, got",
        ),
        ("[runtime]\nio_bindings = true\n", "unknown key 'io_bindings'; did you mean 'io_binding'?"),
    ],
)
def test_bad_gpu_keys_are_refused_with_one_clear_line(text, message):
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_the_gpu_keys_are_read_sorted_and_written_back():
    text = f"""
max_batch_size = 64
[runtime]
providers = ["{TRT}", "{CUDA}", "{CPU}"]
io_binding = true
cuda_graph_batch_sizes = [32, 8, 8, 64]
[runtime.provider_options.{TRT}]
trt_fp16_enable = true
trt_max_workspace_size = 2147483648
[runtime.provider_options.{CUDA}]
device_id = 1
"""
    config = parse(text)
    rt = config.runtime
    assert rt.io_binding and rt.cuda_graph_batch_sizes == (8, 32, 64)
    assert rt.provider_options == {
        TRT: {"trt_fp16_enable": True, "trt_max_workspace_size": 2147483648},
        CUDA: {"device_id": 1},
    }
    assert parse(config_text(config)) == config
    assert RuntimeConfig().io_binding is False and RuntimeConfig().cuda_graph_batch_sizes == ()


@pytest.mark.parametrize("source", ["module docstring", "README"])
def test_the_documented_config_toml_is_a_valid_config(source):
    if source == "README":
        text = README.read_text()
        block = re.search(r"`config.toml` \(every key optional.*?```toml\n(.*?)```", text, re.S)
        assert block is not None
        body = block.group(1)
    else:
        doc = config_module.__doc__ or ""
        body = textwrap.dedent(doc.split("Every key is optional::")[1].split("A bad file")[0])
    config = parse(body)
    assert config.runtime.providers == (CUDA, CPU)
    assert "io_binding" in body and "cuda_graph_batch_sizes" in body and "provider_options" in body


# -- provider options ---------------------------------------------------------------------------
def options(text: str, available=GPUS, cache: Path = Path("/cache/trt")) -> dict:
    return provider_options(parse(text).runtime, lambda: cache, available)


def test_cuda_captures_graphs_when_batches_have_fixed_sizes():
    cuda = f'[runtime]\nproviders = ["{CUDA}", "{CPU}"]\nio_binding = true\n'
    assert options(cuda) == {CUDA: {}, CPU: {}}
    assert options(cuda + "cuda_graph_batch_sizes = [8]\n")[CUDA] == {"enable_cuda_graph": "1"}
    # The model's own options win, as strings ONNX Runtime reads (true/false: 1/0).
    mine = f"[runtime.provider_options.{CUDA}]\nenable_cuda_graph = false\ndevice_id = 1\n"
    got = options(cuda + "cuda_graph_batch_sizes = [8]\n" + mine)[CUDA]
    assert got == {"enable_cuda_graph": "0", "device_id": "1"}


def test_tensorrt_gets_engine_and_timing_caches_and_no_cuda_graph():
    text = f'[runtime]\nproviders = ["{TRT}", "{CUDA}", "{CPU}"]\nio_binding = true\ncuda_graph_batch_sizes = [8]\n'
    got = options(text)
    assert got[TRT] == {
        "trt_engine_cache_enable": "1",
        "trt_timing_cache_enable": "1",
        "trt_engine_cache_path": "/cache/trt",
        "trt_timing_cache_path": "/cache/trt",
    }
    assert got[CUDA] == {}  # TensorRT takes nodes: the CUDA provider could not capture the whole graph
    fp16 = text + f"[runtime.provider_options.{TRT}]\ntrt_fp16_enable = true\n"
    assert options(fp16)[TRT]["trt_fp16_enable"] == "1"


def test_tensorrt_cache_folder_is_made_only_when_needed():
    def never() -> Path:
        raise AssertionError("the cache folder was asked for")

    paths = "trt_engine_cache_path = '/engines'\ntrt_timing_cache_path = '/timing'\n"
    text = f'[runtime]\nproviders = ["{TRT}", "{CPU}"]\n[runtime.provider_options.{TRT}]\n{paths}'
    got = provider_options(parse(text).runtime, never, GPUS)[TRT]
    assert got["trt_engine_cache_path"] == "/engines" and got["trt_timing_cache_path"] == "/timing"
    # Not in this build: no options, no folder.
    assert provider_options(parse(f'[runtime]\nproviders = ["{TRT}"]\n').runtime, never, [CPU]) == {}


def test_resolve_providers_pairs_each_provider_with_its_options():
    given = {CPU: {"use_arena": "0"}, CUDA: {"device_id": "0"}}
    pairs = resolve_providers((CUDA, CPU), given)
    expected = [(CPU, {"use_arena": "0"})]
    if CUDA in ort.get_available_providers():  # pragma: no cover - a GPU build
        expected.insert(0, (CUDA, {"device_id": "0"}))
    assert pairs == expected
    assert resolve_providers(()) == [(CPU, {})]
    session = ort.InferenceSession(m.addmul().SerializeToString(), providers=pairs)
    assert CPU in session.get_provider_options()


# -- where TensorRT caches ------------------------------------------------------------------------
def version_folder(repo: Path) -> Path:
    return m.publish(repo, "digits", 3, m.addmul())


def test_the_cache_goes_in_a_writable_unsigned_version_folder(tmp_path):
    folder = version_folder(tmp_path / "repo")
    assert trt_cache_dir(folder, tmp_path / "cache") == folder / "trt-cache"
    assert (folder / "trt-cache").is_dir() and not (tmp_path / "cache").exists()


def test_a_signed_version_caches_under_the_cache_dir(tmp_path):
    folder = version_folder(tmp_path / "repo")
    (folder / SIGNATURE).write_text("{}")  # a signature covers every file of the folder
    got = trt_cache_dir(folder, tmp_path / "cache")
    assert got == tmp_path / "cache" / "digits" / "3" / "trt-cache" and got.is_dir()
    assert not (folder / "trt-cache").exists()


def test_a_version_folder_that_cannot_hold_the_cache_falls_back(tmp_path, monkeypatch):
    folder = version_folder(tmp_path / "repo")
    (folder / "trt-cache").write_text("")  # the folder cannot be made there
    assert trt_cache_dir(folder, tmp_path / "cache") == tmp_path / "cache" / "digits" / "3" / "trt-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ortserve"
    assert trt_cache_dir(folder) == tmp_path / "xdg" / "ortserve" / "digits" / "3" / "trt-cache"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "ortserve"


def test_the_cache_dir_setting_reaches_the_sessions(tmp_path):
    from ortserve.ops.settings import load_settings

    s = load_settings(["--cache-dir", str(tmp_path / "c")], environ={})
    assert s.cache_dir == tmp_path / "c"
    assert load_settings([], environ={"ORTSERVE_CACHE_DIR": "/var/cache/x"}).cache_dir == Path("/var/cache/x")
    assert load_settings([], environ={}).cache_dir is None
