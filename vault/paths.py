"""Stored names: what a name in a URL or a row may look like, where it may lead on disk, and how a
file that cannot be used there is described to an operator.

Stored names are generated (`documents/2026/11/<hex>`): none holds a control character, a
backslash or a percent sign, so refusing them costs nothing and ends every encoding trick.
"""

import os
import re

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, Storage

MAX_NAME_LENGTH = 255

_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\\%]")


def stored_name_validate(name: str) -> str:
    """Return `name` if it is a clean relative stored name; raise SuspiciousFileOperation."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise SuspiciousFileOperation("Stored name is empty or too long.")
    if _NAME_FORBIDDEN.search(name):
        raise SuspiciousFileOperation(f"Stored name {name!r} holds a forbidden character.")
    if name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
        raise SuspiciousFileOperation(f"Stored name {name!r} is absolute or not normalised.")
    return name


def stored_path_check(storage: Storage, name: str) -> None:
    """Raise SuspiciousFileOperation if a filesystem-stored name resolves outside its root."""
    inner = getattr(storage, "inner", storage)
    if not isinstance(inner, FileSystemStorage):
        # Object stores have keys, not paths: nothing there can link out of the bucket.
        return
    root = os.path.realpath(inner.location)
    # inner.path() already refuses lexical escapes; realpath() catches symlinks on the way.
    target = os.path.realpath(inner.path(name))
    if not target.startswith(root + os.sep):
        raise SuspiciousFileOperation(f"Stored name {name!r} resolves outside the media root.")


def stored_name_printable(name: str) -> str:
    """Return a hostile name fit for the log: escaped, quotes dropped, bounded."""
    return ascii(name)[1:-1][:MAX_NAME_LENGTH]


def os_error_describe(exc: OSError) -> str:
    """Return an OS error as an operator reads it: `cannot use /srv/media/a.pdf: Permission denied`.

    Without a file name (a failed read, an object store) it is the system's reason alone.
    """
    reason = exc.strerror or str(exc)
    return f"cannot use {exc.filename}: {reason}" if exc.filename else reason
