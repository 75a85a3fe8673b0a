"""Publishing accepted variants as new immutable versions of a model in the repository.

Each version is assembled in a hidden temporary folder beside the model's versions and renamed into place, so a
reader never sees a half-written version. ``config.toml`` is created when missing (with ``default_version`` set to
the model's first version, so that publishing never rolls a variant out); an existing one without
``default_version`` gets the version that served until then pinned, and is otherwise left alone."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from server.manifest import write_manifest

from .errors import OptimizeError

__all__ = ["existing_versions", "publish_versions"]

CONFIG = "config.toml"


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _config_text(default_version: int, max_batch_size: int) -> str:
    return (
        "# Written by optimize. Publishing adds versions; it never changes default_version.\n"
        f"max_batch_size = {max_batch_size}\n"
        f'default_version = "{default_version}"\n'
        "\n[versions]\n"
        'policy = "all"\n'
    )


def publish_versions(
    repo: Path, name: str, variants: list[tuple[Path, dict[str, Any]]], max_batch_size: int = 32
) -> list[int]:
    """Publish each ``(model.onnx path, manifest extra)`` as the next version; returns the version numbers."""
    if not name or "/" in name or name.startswith("."):
        raise OptimizeError(f"bad model name {name!r}: use a plain folder name such as 'digits'")
    model_dir = Path(repo) / name
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OptimizeError(f"cannot create {model_dir}: {e.strerror}") from e
    versions = existing_versions(model_dir)
    published: list[int] = []
    for path, extra in variants:
        number = (max(versions + published) if versions or published else 0) + 1
        tmp = model_dir / f".tmp-{uuid.uuid4().hex}"
        try:
            tmp.mkdir()
            shutil.copyfile(path, tmp / "model.onnx")
            data = Path(str(path) + ".data")
            if data.exists():
                shutil.copyfile(data, tmp / data.name)
            write_manifest(tmp, extra=dict(extra, version=str(number)))
            os.rename(tmp, model_dir / str(number))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        published.append(number)
    config = model_dir / CONFIG
    if published and not config.exists():
        _write_atomic(config, _config_text(min(versions + published), max_batch_size))
    elif published and versions:
        _pin_default_version(config, max(versions))
    return published


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pin_default_version(config: Path, serving: int) -> None:
    """A config without ``default_version`` serves the highest version, so a new version would be
    rolled out by being published. Pin the version that served until now (a top-level key, so it
    goes before the first table)."""
    import tomllib

    text = config.read_text()
    if "default_version" in tomllib.loads(text):
        return
    _write_atomic(
        config,
        "# Pinned by optimize when it published a higher version: publishing is not rolling out.\n"
        f'default_version = "{serving}"\n' + text,
    )
