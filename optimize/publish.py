"""Publishing accepted variants as new immutable versions of a model in the repository, through
:mod:`ortserve.repository` (which owns the format and renames each version into place whole).

``config.toml`` is settled before any version lands: created when missing (with ``default_version`` set to
the version serving now, or the first one published), and an existing one without ``default_version`` gets
the version that served until then pinned; otherwise it is left alone. Publishing never rolls a variant out.
With a signer (``--sign-key``) each version is signed in its staging folder before it lands, so a server with
``--trusted-key`` never sees it unsigned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ortserve.optimize.errors import OptimizeError
from ortserve.repository import (
    CONFIG,
    MODEL_FILE,
    REFERENCE,
    ConfigError,
    ModelCard,
    ModelConfig,
    check_model_name,
    load_model_config,
    publish_version,
    set_default_version,
    version_dirs,
    write_model_config,
)
from ortserve.repository.signing import SignatureError, Signer

__all__ = ["check_name", "make_signer", "publish_versions"]

WRITTEN = "Written by ortserve-optimize. Publishing adds versions; it never changes default_version."
PINNED = "Pinned by ortserve-optimize when it published a higher version: publishing is not rolling out."


def check_name(name: str) -> None:
    try:
        check_model_name(name)
    except ValueError as e:
        raise OptimizeError(str(e)) from None


def make_signer(key: str | None) -> Signer | None:
    """The signer for ``--sign-key`` (None without one); OptimizeError when the key or model-signing
    is not usable, before any work is done."""
    if not key:
        return None
    try:
        return Signer(Path(key), os.environ.get("ORTSERVE_SIGN_KEY_PASSWORD") or None)
    except SignatureError as e:
        raise OptimizeError(f"--sign-key: {e}") from None


def publish_versions(
    repo: Path,
    name: str,
    variants: list[tuple[Path, dict[str, Any]]],
    max_batch_size: int | None = None,
    references: Sequence[bytes | None] = (),
    signer: Signer | None = None,
    cards: Sequence[ModelCard | None] = (),
) -> list[int]:
    """Publish each ``(model.onnx path, manifest extra)`` as the next version; returns the version numbers.
    ``cards``: each variant's model card (``MODEL_CARD.md``, listed in its manifest), or None.
    ``references``: each variant's reference profile (``reference.json``, listed in its manifest), or None.

    ``config.toml`` is settled first, so that a server polling the repository never takes a new
    version for the default, even if publishing stops half-way. ``max_batch_size`` goes into a new
    config only when given (absent, the server decides from the ONNX signature)."""
    check_name(name)
    model_dir = Path(repo) / name
    published: list[int] = []
    try:
        versions = sorted(int(v) for v in version_dirs(model_dir))
        if not (model_dir / CONFIG).exists():
            # the version that serves now (the highest), or the first one published here
            serving = str(max(versions) if versions else 1)
            config = ModelConfig(name, max_batch_size=max_batch_size, default_version=serving)
            write_model_config(model_dir, config, WRITTEN)
        elif versions and load_model_config(model_dir).default_version is None:
            set_default_version(model_dir, max(versions), PINNED)
        for i, (path, extra) in enumerate(variants):
            files: dict[str, bytes | Path] = {MODEL_FILE: Path(path)}
            data = Path(f"{path}.data")  # ONNX external data, saved beside the model by the steps
            if data.exists():
                files[data.name] = data
            reference = references[i] if i < len(references) else None
            if reference is not None:
                files[REFERENCE] = reference
            sign = signer.sign if signer is not None else None
            card = cards[i] if i < len(cards) else None
            published.append(int(publish_version(Path(repo), name, files, extra, sign=sign, card=card).name))
    except ConfigError as e:
        raise OptimizeError(f"{e}; fix it before publishing") from e
    except SignatureError as e:
        done = f" (published before the error: {', '.join(map(str, published))})" if published else ""
        raise OptimizeError(f"cannot sign a version of {name}: {e}{done}") from e
    except OSError as e:
        done = f" (published before the error: {', '.join(map(str, published))})" if published else ""
        raise OptimizeError(f"cannot publish into {model_dir}: {e.strerror or e}{done}") from e
    return published
