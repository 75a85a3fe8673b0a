"""Small file helpers shared by the server and the optimize toolchain."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["file_stamp", "folder_stamp", "write_atomic"]


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one, never half
    of one: a temporary file in the same folder, flushed to disk, renamed over. An existing file's
    permissions are kept (the temporary file would be 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(mtime in ns, size, inode): changes when the file is rewritten or replaced; None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def folder_stamp(folder: Path, names: tuple[str, ...] = ()) -> tuple:
    """The ``file_stamp`` of every file in ``folder`` and of ``names`` (None for those absent), by
    name: changes when any file in it is added, removed, rewritten or replaced."""
    try:
        found = [e.name for e in os.scandir(folder) if e.is_file()]
    except OSError:
        found = []
    return tuple((name, file_stamp(Path(folder) / name)) for name in sorted({*names, *found}))
