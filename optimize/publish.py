"""Publishing accepted variants as new immutable versions of a model in the repository.

Each version is assembled in a hidden temporary folder beside the model's versions and renamed into place, so a
reader never sees a half-written version. ``config.toml`` is settled before any version lands: created when missing (with ``default_version``
set to the version serving now, or the first one published), and an existing one without
``default_version`` gets the version that served until then pinned; otherwise it is left alone.
Publishing never rolls a variant out."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from ortserve.optimize.errors import OptimizeError
from ortserve.repository.files import write_atomic
from ortserve.repository.manifest import write_manifest

__all__ = ["check_name", "existing_versions", "publish_versions"]

CONFIG = "config.toml"


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _config_text(default_version: int, max_batch_size: int | None) -> str:
    batch = f"max_batch_size = {max_batch_size}\n" if max_batch_size is not None else ""
    return (
        "# Written by optimize. Publishing adds versions; it never changes default_version.\n"
        f"{batch}"
        f'default_version = "{default_version}"\n'
        "\n[versions]\n"
        'policy = "all"\n'
    )


def check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise OptimizeError(f"bad model name {name!r}: use a plain folder name such as 'digits'")


def publish_versions(
    repo: Path, name: str, variants: list[tuple[Path, dict[str, Any]]], max_batch_size: int | None = None
) -> list[int]:
    """Publish each ``(model.onnx path, manifest extra)`` as the next version; returns the version numbers.

    ``config.toml`` is settled first, so that a server polling the repository never takes a new
    version for the default, even if publishing stops half-way. ``max_batch_size`` goes into a new
    config only when given (absent, the server decides from the ONNX signature)."""
    check_name(name)
    model_dir = Path(repo) / name
    published: list[int] = []
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        versions = existing_versions(model_dir)
        config = model_dir / CONFIG
        if not config.exists():
            # the version that serves now (the highest), or the first one published here
            write_atomic(config, _config_text(max(versions) if versions else 1, max_batch_size))
        elif versions:
            _pin_default_version(config, max(versions))
        for path, extra in variants:
            number = max(versions + published, default=0) + 1
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
    except OSError as e:
        done = f" (published before the error: {', '.join(map(str, published))})" if published else ""
        raise OptimizeError(f"cannot publish into {model_dir}: {e.strerror or e}{done}") from e
    return published


def _pin_default_version(config: Path, serving: int) -> None:
    """A config without ``default_version`` serves the highest version, so a new version would be
    rolled out by being published. Pin the version that served until now (a top-level key, so it
    goes before the first table)."""
    import tomllib

    text = config.read_text()
    try:
        if "default_version" in tomllib.loads(text):
            return
    except tomllib.TOMLDecodeError as e:
        raise OptimizeError(f"{config}: invalid TOML ({e}); fix it before publishing") from e
    write_atomic(
        config,
        "# Pinned by optimize when it published a higher version: publishing is not rolling out.\n"
        f'default_version = "{serving}"\n' + text,
    )
