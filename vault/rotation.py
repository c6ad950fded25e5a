"""Key rotation: rewrite every stored file to format v2 under the primary key, bound to its document.

A file needs rotating when it is not v2 under the primary key bound to its own document: a v1 file
(no binding), a legacy Fernet token, a v2 file under an older key. Each one is decrypted through the
storage's open (recorded: one ROTATE event naming the old and the new key) and re-encrypted,
streaming, into a replacement written under the same stored name, so links keep working:

- local disk: a temporary file beside it, fsynced, renamed over it (`atomic_write(replace=True)`);
- object store: `object_replace()`, a PUT or completed multipart upload that swaps the object whole.

Readers see the old file or the new one, never part of one. The row follows its file: its key ID and
file ID are set from the file as written, after the swap. A download between the two still works: a
v2 file is checked by the document ID in its authenticated header, which the rewrite keeps, not by
the row's key ID or file ID. A rotation killed at any moment leaves at worst a temporary file (the
next run removes it) or a row behind its file (the next run brings it up to date, recorded): run it
again until it reports nothing left to do. Files without a row are reported, never touched.
"""

import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage

from . import fileformat
from .access import Action, access_context
from .atomic import TEMP_SUFFIX, atomic_write
from .documents import document_metadata_refresh
from .fileformat import DecryptionError, Kind
from .keys import keyring
from .models import Document, document_metadata_set
from .objectstore import ObjectChangedError, object_replace
from .paths import os_error_describe
from .storage import EncryptedStorage, StoredFile, _header_fields, _Tally, stored_file_describe

ROTATE_TEMP_PREFIX = ".docvault-rotate-"
# The vault's own files in the storage (the access log's published chain heads): never documents.
RESERVED_PREFIX = "_docvault/"
DERIVED_FIELDS = ["size", "mime_type", "key_id", "file_id"]


class Status(StrEnum):
    """What rotation did, or would do, with one stored file."""

    CURRENT = "current"  # v2, primary key, bound to its row, and the row agrees: nothing to do
    REWRITTEN = "rewritten"  # re-encrypted to v2 under the primary key, bound to its row
    REFRESHED = "refreshed"  # already rewritten (by a run that was stopped): the row caught up
    FAILED = "failed"  # cannot be rotated (unreadable, unknown key, another document's file)
    MISSING = "missing"  # a row whose file is not in storage
    ORPHAN = "orphan"  # a file no row names: reported, not touched (see vault_import)


@dataclass(frozen=True)
class Rotation:
    """One file's rotation: its name, document, status, and what it was and became."""

    name: str
    document_id: uuid.UUID | None
    status: Status
    before: str = ""
    after: str = ""
    reason: str = ""
    size: int = 0


@dataclass
class RotationReport:
    """What a rotation run did (or, dry, would do): every file that is not current, and counts."""

    dry_run: bool
    primary: str
    counts: Counter[str] = field(default_factory=Counter)
    changes: list[Rotation] = field(default_factory=list)
    temporaries_removed: list[str] = field(default_factory=list)
    plaintext_bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Return whether every file with a row is (or would be) current, and none is missing."""
        return not (self.counts[Status.FAILED] or self.counts[Status.MISSING])

    def summary(self) -> str:
        """Return the run in one line."""
        verb = "would rewrite" if self.dry_run else "rewrote"
        refreshed = "would refresh" if self.dry_run else "refreshed"
        c = self.counts
        return (
            f"{'Dry run: ' if self.dry_run else ''}{verb} {c[Status.REWRITTEN]} files, "
            f"{refreshed} {c[Status.REFRESHED]} rows, {c[Status.CURRENT]} already current, "
            f"{c[Status.FAILED]} failed, {c[Status.MISSING]} missing, "
            f"{c[Status.ORPHAN]} orphans (not touched); primary key {self.primary}."
        )


Progress = Callable[[Iterable[Any], int], Iterable[Any]]


def document_rotate(
    document: Document, *, dry_run: bool = False, user: Any = None, operator: str = ""
) -> Rotation:
    """Rotate the document's file to v2 under the primary key, bound to it; return what was done.

    A dry run reads headers only: nothing is decrypted, written or recorded. Failures come back as
    a FAILED rotation with the reason (and are recorded when a decryption met them).
    """
    storage = document.file.storage
    name = document.file.name
    ring = keyring()
    primary = ring.primary.key_id
    try:
        found = storage.classify(name)
    except FileNotFoundError:
        return Rotation(name, document.pk, Status.MISSING, reason="no such file in storage")
    except OSError as exc:
        return Rotation(name, document.pk, Status.FAILED, reason=os_error_describe(exc))
    before = file_state_describe(found)
    after = f"v2 key {primary.hex()}"
    refusal = _binding_refusal(found, document)
    if refusal:
        return Rotation(name, document.pk, Status.FAILED, before, reason=refusal)
    bound_here = file_bound_to(found, document)
    extra = {"operator": operator} if operator else {}
    if bound_here and found.key_id == primary:
        if document.key_id == primary.hex() and document.file_id == (found.file_id or b"").hex():
            return Rotation(name, document.pk, Status.CURRENT, before, before)
        if dry_run:
            return Rotation(name, document.pk, Status.REFRESHED, before, before)
        reason = f"row brought up to date with its file ({before})"
        try:
            with access_context(
                action=Action.ROTATE, user=user, document=document, reason=reason, extra=extra
            ):
                stored = document_metadata_refresh(document)
        except (DecryptionError, OSError) as exc:
            return Rotation(name, document.pk, Status.FAILED, before, reason=_reason(exc))
        return Rotation(name, document.pk, Status.REFRESHED, before, before, size=stored.size)
    if dry_run:
        return Rotation(name, document.pk, Status.REWRITTEN, before, after)
    reason = f"re-encrypted: {before} -> {after}, bound"
    try:
        with (
            access_context(
                action=Action.ROTATE,
                user=user,
                document=document,
                bound_document=document,
                reason=reason,
                extra=extra,
            ),
            storage.open(name) as plaintext,
        ):
            stored = stored_file_replace(
                storage, name, plaintext.chunks(), document.pk, temp_prefix=ROTATE_TEMP_PREFIX
            )
    except (DecryptionError, OSError) as exc:
        return Rotation(name, document.pk, Status.FAILED, before, reason=_reason(exc))
    # After the swap: until this commits, the row lags its file, which still serves (bound_check
    # reads the document ID of a v2 file), and a rerun finds it and brings it up to date.
    document_metadata_set(document, stored)
    fields = {field: getattr(document, field) for field in DERIVED_FIELDS}
    if not Document.objects.filter(pk=document.pk).update(**fields):
        # Deleted meanwhile: if its file was removed before the swap, the swap put it back, an
        # orphan the scan reports.
        return Rotation(
            name, document.pk, Status.FAILED, before, reason="the document was deleted meanwhile"
        )
    return Rotation(name, document.pk, Status.REWRITTEN, before, after, size=stored.size)


def storage_rotate(
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    user: Any = None,
    operator: str = "",
    workers: int = 1,
) -> RotationReport:
    """Rotate every document's file to the primary key; report orphans, failures, leftovers.

    `progress(rotations, total)` wraps the iteration over the finished rotations (a tqdm bar, a
    logger). `workers` > 1 rotates that many files at once, each thread on its own database
    connection: a file's write waits mostly on fsync, so they overlap well.
    """
    # The documents' storage: every document's file lives there (DocumentFileField's default).
    storage = default_storage
    if not isinstance(storage, EncryptedStorage):
        raise TypeError("storage_rotate() needs the vault's EncryptedStorage as default storage.")
    started = time.monotonic()
    report = RotationReport(dry_run=dry_run, primary=keyring().primary.key_id_hex)
    # Listed before the rows are read: a document created meanwhile is then never an orphan.
    names, temporaries = _stored_names(storage.inner, ROTATE_TEMP_PREFIX)
    if not dry_run:
        # Left by a run that was killed mid-write; one rotation runs at a time.
        for temporary in temporaries:
            storage.inner.delete(temporary)
        report.temporaries_removed = temporaries
    documents = Document.objects.order_by("file")
    total = documents.count()
    owned: set[str] = set()

    def each(document: Document) -> Rotation:
        return document_rotate(document, dry_run=dry_run, user=user, operator=operator)

    def listed() -> Iterator[Document]:
        for document in documents.iterator(chunk_size=500):
            owned.add(document.file.name)
            yield document

    rotations = _in_order(each, listed(), workers)
    if progress is not None:
        rotations = progress(rotations, total)
    for rotation in rotations:
        _tally(report, rotation)
    for name in sorted(set(names) - owned):
        _tally(report, Rotation(name, None, Status.ORPHAN, reason="no document names this file"))
    report.seconds = time.monotonic() - started
    return report


def stored_file_replace(
    storage: EncryptedStorage,
    name: str,
    chunks: Iterable[bytes],
    document_id: uuid.UUID,
    *,
    temp_prefix: str,
) -> StoredFile:
    """Encrypt `chunks` to v2 bound to `document_id` in place of the file `name`; return it.

    The replacement is whole or nothing: a temporary file renamed over the old one on disk, one
    object swapped for another in a bucket.
    """
    ring = keyring()
    key = ring.primary
    options: dict[str, Any] = {"document_id": document_id.bytes}
    if storage.segment_size:
        options["segment_size"] = storage.segment_size
    plaintext = _Tally(chunks)
    inner = storage.inner
    if isinstance(inner, FileSystemStorage):
        ciphertext = fileformat.encrypt(
            plaintext, ring.file_keys[key.key_id], key.key_id, **options
        )
        with atomic_write(
            inner.path(name),
            inner.file_permissions_mode,
            inner.directory_permissions_mode,
            replace=True,
            prefix=temp_prefix,
        ) as target:
            for piece in ciphertext:
                target.write(piece)
    else:
        with fileformat.EncryptingReader(
            plaintext, ring.file_keys[key.key_id], key.key_id, **options
        ) as reader:
            object_replace(inner, name, File(reader, name))
    # The header as stored, not as meant: the file is the source of its own metadata.
    return stored_file_describe(
        name, plaintext.head, plaintext.size, **_header_fields(storage.classify(name))
    )


def file_state_describe(found: fileformat.Classification) -> str:
    """Return what a stored file is in a few words: `v1 key 0123abcd...`, `legacy Fernet`."""
    if found.kind is Kind.LEGACY:
        return "legacy Fernet"
    if not found.is_docvault:
        return "not a Docvault or Fernet file"
    text = f"{found.kind.value} key {(found.key_id or b'').hex()}"
    if found.kind is Kind.V2 and not any(found.document_id or b""):
        text += " unbound"
    return text


def file_bound_to(found: fileformat.Classification, document: Document) -> bool:
    """Return whether the file's header names this document (v2 only).

    Read from the header alone, to decide what to do; opening the file checks the binding again,
    authenticated (`vault.storage.bound_check`).
    """
    return found.kind is Kind.V2 and found.document_id == document.pk.bytes


def _binding_refusal(found: fileformat.Classification, document: Document) -> str:
    """Return why this file must not become the document's file, or ''."""
    if found.kind is Kind.UNKNOWN:
        return "not a Docvault or Fernet file"
    if found.kind is Kind.V2 and not file_bound_to(found, document):
        if found.document_id == fileformat.NO_DOCUMENT:
            # As a download refuses it: written outside any document (vault_encrypt), nobody vouched.
            return "the stored file names no document (adopt it with vault_import)"
        return "the stored file was written for another document"
    if found.kind is Kind.V1 and (
        not document.file_id or (found.file_id or b"").hex() != document.file_id
    ):
        return "the stored file is not the one recorded for this document"
    return ""


def _stored_names(inner: Storage, temp_prefix: str) -> tuple[list[str], list[str]]:
    """Return the stored names in the inner storage, and the leftover temporaries of this prefix.

    Every writer's temporary files (`.docvault-*.part`) and the vault's own files are left out.
    """
    names: list[str] = []
    temporaries: list[str] = []
    for name in _walk(inner):
        if name.startswith(RESERVED_PREFIX):
            continue
        base = name.rpartition("/")[2]
        if base.startswith(".docvault-") and base.endswith(TEMP_SUFFIX):
            if base.startswith(temp_prefix):
                temporaries.append(name)
            continue
        names.append(name)
    return names, temporaries


def _walk(inner: Storage) -> Iterator[str]:
    if isinstance(inner, FileSystemStorage):
        root = os.fspath(inner.location)
        for folder, folders, files in os.walk(root):
            folders.sort()
            relative = os.path.relpath(folder, root).replace(os.sep, "/")
            for file in sorted(files):
                yield file if relative == "." else f"{relative}/{file}"
        return
    pending = [""]
    while pending:
        folder = pending.pop()
        folders, files = inner.listdir(folder)
        prefix = f"{folder}/" if folder else ""
        pending.extend(f"{prefix}{sub}" for sub in sorted(folders, reverse=True))
        yield from (f"{prefix}{file}" for file in sorted(files))


def _in_order(
    function: Callable[[Document], Rotation], documents: Iterator[Document], workers: int
) -> Iterator[Rotation]:
    """Yield function(document) for each document, in order, with `workers` threads at most."""
    if workers <= 1:
        yield from map(function, documents)
        return

    # A bounded window of documents in flight: a storage of millions is never listed in memory.
    # Each thread has its own database connection, closed when the pool's threads end.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vault-rotate") as pool:
        pending: deque[Future[Rotation]] = deque()
        for document in documents:
            pending.append(pool.submit(function, document))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _tally(report: RotationReport, rotation: Rotation) -> None:
    report.counts[rotation.status] += 1
    if rotation.status is not Status.CURRENT:
        report.changes.append(rotation)
    report.plaintext_bytes += rotation.size


def _reason(exc: DecryptionError | OSError) -> str:
    if isinstance(exc, DecryptionError):
        return exc.reason
    if isinstance(exc, ObjectChangedError):
        return str(exc)
    return os_error_describe(exc)
