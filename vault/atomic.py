"""All-or-nothing file writes: a temporary file beside the target, fsync, then link into place."""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

# A write killed before its rename leaves `<prefix>XXXXXXXX.part` beside its target.
TEMP_PREFIX = ".docvault-"
TEMP_SUFFIX = ".part"


@contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: int | None = None,
    folder_mode: int | None = None,
    *,
    replace: bool = False,
    prefix: str = TEMP_PREFIX,
) -> Iterator[BinaryIO]:
    """Yield a file that appears at `path` only if the block completes.

    An existing file is never replaced, unless `replace` is true (rotation, import): then it is
    swapped whole by a rename, so a reader sees the old file or the new one, never part of one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if folder_mode is None:
        os.makedirs(folder, exist_ok=True)
    elif not os.path.isdir(folder):
        # As FileSystemStorage does: the mode exactly, not masked by the umask.
        old_umask = os.umask(0o000)
        try:
            os.makedirs(folder, folder_mode, exist_ok=True)
        finally:
            os.umask(old_umask)
    fd, temp_path = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as temp:
            yield temp
            temp.flush()
            os.fsync(temp.fileno())
        if mode is not None:
            os.chmod(temp_path, mode)
        if replace:
            os.replace(temp_path, path)
        else:
            # link() refuses to replace an existing file, unlike rename(): a name is never reused.
            os.link(temp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):  # renamed into place
            os.unlink(temp_path)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
