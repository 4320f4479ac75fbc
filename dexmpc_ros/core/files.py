"""
Crash-safe file writing: replace a file atomically, persist what was written.

A file that readers open while a process rewrites it (a bag's metadata.yaml, a checkpoint
store's history.json) is written to a temporary sibling, flushed, optionally fsynced, and
renamed over the target: a reader sees the old or the new content, never half of it, and
a crash leaves at most a hidden ``.<name>.*.tmp`` behind. The file gets the mode an
ordinary ``open`` would give it (``0o666`` less the umask), not ``mkstemp``'s private
``0o600``, so that other users can read a bag or a checkpoint store as usual.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Persist a file's data, or a directory's entries (new files, a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def umask() -> int:
    """The process's file-creation mask, read without changing it."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Without /proc (not Linux, or a kernel before 4.7): set and restore, with a strict
    # mask meanwhile, so a file another thread creates in between is private, never open.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open`` (``0o666``) or ``mkdir`` (``0o777``) gives under the umask."""
    return (0o777 if directory else 0o666) & ~umask()


def write_text_atomic(path: str | os.PathLike[str], write: Callable[[IO[str]], object],
                      fsync: bool = True) -> None:
    """
    Replace ``path`` with what ``write(file)`` writes, atomically, mode ``0o666 & ~umask``.

    Args:
        path: the file to replace (its directory must exist).
        write: writes the new content into the open temporary file (text, UTF-8).
        fsync: persist the data before the rename (off: atomic but not power-loss safe).

    Raises:
        whatever ``write`` or the file system raise; the target is then unchanged and the
        temporary file removed.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name}.', suffix='.tmp', dir=target.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            os.fchmod(f.fileno(), default_mode())
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
