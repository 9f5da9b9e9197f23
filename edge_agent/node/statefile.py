"""Crash-safe writes of small state files (credentials, last good config, broker password and ACL files).

A reader must see either the old file or the new one, never a torn mix: a half-written credentials file locks
a node out of the broker, a half-written config would be refused at the next start and a half-written
Mosquitto password file locks out every node. So the bytes go to a temporary file in the same folder, are
fsynced, renamed over the target (atomic on POSIX) and the folder is fsynced so the rename survives power loss.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_temp(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to a fsynced temporary file beside ``path`` (created with ``mode``); return its path.

    Split from ``commit`` so a caller can do work between "bytes are safe on disk" and "they replace the old
    file" (the remote config applies a new config there and drops the temp file if that fails).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def commit(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` over ``path`` and make the rename durable."""
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file gets ``mode`` (0600: owner only)."""
    commit(write_temp(path, data, mode), path)
