"""What the vault's file commands share: opening SRC, writing DST all-or-nothing."""

import getpass
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from vault.access import RecordError
from vault.atomic import atomic_write


@contextmanager
def source_open(src: str) -> Iterator[BinaryIO]:
    """Yield SRC opened for binary reading ('-' is standard input)."""
    if src == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(src, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise CommandError(f"Cannot read {src}: {exc.strerror}.") from None
    with handle:
        yield handle


def destination_write(dst: str, pieces: Iterable[bytes], src: str) -> int:
    """Write the pieces (made from SRC) to DST ('-' is standard output); on failure no DST is left."""
    pieces = _read_errors_named(pieces, src)
    written = 0
    if dst == "-":
        out = sys.stdout.buffer
        for piece in pieces:
            out.write(piece)
            written += len(piece)
        out.flush()
        return written
    if os.path.lexists(dst):
        raise CommandError(f"{dst} exists already: refusing to overwrite it.")
    try:
        with atomic_write(dst, 0o600) as target:
            for piece in pieces:
                target.write(piece)
                written += len(piece)
    except OSError as exc:
        raise CommandError(f"Cannot write {dst}: {exc.strerror or exc}.") from None
    return written


def _read_errors_named(pieces: Iterable[bytes], src: str) -> Iterator[bytes]:
    """Yield the pieces; a failure to read SRC becomes a CommandError that names SRC."""
    iterator = iter(pieces)
    while True:
        try:
            piece = next(iterator)
        except StopIteration:
            return
        except OSError as exc:
            raise CommandError(f"Cannot read {src}: {exc.strerror or exc}.") from None
        yield piece


@contextmanager
def resumable_run() -> Iterator[None]:
    """Turn a missing key, or an access log that cannot be written, into a CommandError."""
    try:
        yield
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from None
    except RecordError as exc:
        # Nothing is decrypted unrecorded: the run stopped at the file it could not record.
        raise CommandError(
            f"{exc} Run the command again once the access log is writable."
        ) from None


def operator() -> str:
    """Return the operating-system user running the command, for the access log."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def progress_bar(**options: Any) -> Any:
    """Return a tqdm progress bar with these options, without tqdm's monitor thread.

    The monitor would outlive the bar: a process with a second thread no longer forks the
    report's chain walk (compliance/forked.py).
    """
    from tqdm import tqdm

    tqdm.monitor_interval = 0
    return tqdm(**options)
