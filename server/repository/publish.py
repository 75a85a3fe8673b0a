"""Publishing a version: all of it or nothing, never half.

The files and the manifest are written into a hidden folder beside the versions (``.staging-…``, which
discovery skips), flushed to disk, and the folder is renamed to the version's number: a server polling the
repository sees no version or the whole one. ::

    publish_version(Path("models"), "digits", onnx_bytes, {"parent": "1"})         # the next number
    publish_version(Path("models"), "digits", {"model.onnx": path}, version=1, replace=True)
    publish_version(Path("models"), "digits", path, extra, card=ModelCard("digits", "int8", "..."))

``sign`` (e.g. :meth:`ortserve.repository.signing.Signer.sign`) signs the staged folder after its manifest
is written, so the signature covers the files and the manifest, and the manifest names the signature file.

Publishing adds a version and does nothing else: ``default_version`` (what serves) is the config's
business (:func:`ortserve.repository.set_default_version`), and routing is the flags'.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ortserve.repository.layout import MODEL_CARD, MODEL_FILE, check_model_name, next_version
from ortserve.repository.manifest import write_manifest
from ortserve.repository.modelcard import ModelCard, render_model_card
from ortserve.repository.signing import SIGNATURE

__all__ = ["publish_version"]

Files = bytes | Path | Mapping[str, bytes | Path]
_TAKEN = (errno.EEXIST, errno.ENOTEMPTY)


def publish_version(
    repo: Path,
    model: str,
    files: Files,
    extra: Mapping[str, Any] | None = None,
    version: int | str | None = None,
    *,
    manifest: bool = True,
    replace: bool = False,
    sign: Callable[[Path], object] | None = None,
    card: ModelCard | None = None,
) -> Path:
    """Publish ``files`` as a version of ``model`` in ``repo``; returns the version folder.

    ``files``: the model's bytes, the path of a model file (published as ``model.onnx``), or names in the
    version folder mapped to bytes or source paths (``{"model.onnx": …, "model.onnx.data": …}``).
    ``extra``: fields for ``manifest.json`` beside the files' digests (``model`` and ``version`` are set
    here); ``manifest=False`` writes none. ``version``: None takes the next number, retrying if another
    publisher takes it first; a number that exists is an error (FileExistsError) unless ``replace``.
    ``sign``: called with the staged folder once its files and manifest are in place (a signer writes
    ``model.sig`` there); the manifest then says ``"signature": "model.sig"``.
    ``card``: written as ``MODEL_CARD.md`` with the version's number, and listed in the manifest.
    Raises OSError when the files cannot be written, ValueError for a bad model name or version.
    """
    model_dir = Path(repo) / check_model_name(model)
    if version is not None and not str(version).isdigit():
        raise ValueError(f"bad version {version!r}: versions are numbers such as 2")
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server running as another user
        names = _write_files(staging, files)
        if card is not None:
            if MODEL_CARD in names:
                raise ValueError(f"{MODEL_CARD} given twice: as a file and as card=")
            names = sorted([*names, MODEL_CARD])
        number = str(version) if version is not None else str(next_version(model_dir))
        while True:
            if card is not None:  # (again when the number changed: the card names its version)
                text = render_model_card(dataclasses.replace(card, version=number))
                _write_files(staging, {MODEL_CARD: text.encode()})
            if manifest:
                fields = dict(extra or {}, model=model, version=number)
                if sign is not None:
                    fields["signature"] = SIGNATURE
                write_manifest(staging, fields, names)
            if sign is not None:
                sign(staging)
            _sync(staging)
            target = model_dir / number
            try:
                if replace and target.exists():
                    _swap(staging, target)
                else:
                    os.rename(staging, target)
                break
            except OSError as e:
                if e.errno not in _TAKEN:
                    raise
                if version is not None:
                    raise FileExistsError(e.errno, f"version {number} of {model} exists", str(target)) from e
                number = str(max(int(number) + 1, next_version(model_dir)))  # taken meanwhile: the next
        _sync(model_dir)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_files(folder: Path, files: Files) -> list[str]:
    table = {MODEL_FILE: files} if isinstance(files, (bytes, Path)) else dict(files)
    for name, source in table.items():
        path = folder / name
        if path.parent != folder:
            raise ValueError(f"bad file name {name!r}: a version's files are plain names")
        if isinstance(source, bytes):
            with open(path, "wb") as f:
                f.write(source)
                f.flush()
                os.fsync(f.fileno())
        else:
            shutil.copyfile(source, path)
            _sync(path)
    return sorted(table)


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` in the place of the existing version ``target``; the old one goes aside first."""
    old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=target.parent))
    os.rename(target, old / "version")
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old / "version", target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
