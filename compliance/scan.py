"""The storage scan: classify every stored file, cross-check the database, certify the result.

`storage_scan()` walks the whole inner storage (every name, not only the documents' files) through
the Django Storage API, so it scans a local folder and an object store alike. For each file it reads
the first bytes and says what it is: Docvault ciphertext and its key ID (configured or not), a legacy
Fernet token and which configured key opens it, or plaintext and what it looks like. A full scan also
authenticates every segment of every Docvault file. It then compares the files with the document
rows: files without a row (orphans), rows without a file (missing), rows whose file ID, key ID or
size disagree with their file, files written for another document.

The run and its findings are stored, with a one-line certification and the SHA-256 digest of the
inventory: one JSON line `[name, size, format, key ID]` per file, sorted by name (code points), the
vault's own files under `_docvault/` left out (`vault_scan --inventory FILE` writes those lines).
"""

import hashlib
import io
import os
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, NamedTuple, TextIO

from cryptography.fernet import Fernet, InvalidToken
from django.core.files.storage import FileSystemStorage, Storage
from django.db import connections, router, transaction
from django.utils import timezone

from vault import fileformat
from vault.access import Access, Action, Outcome, access_context, access_record, actor_identify
from vault.fileformat import DecryptionError, Kind
from vault.keys import KeyRing, keyring
from vault.mime import SNIFF_BYTES, UNKNOWN, mime_sniff
from vault.models import Document
from vault.paths import os_error_describe
from vault.storage import EncryptedStorage, legacy_max_size

from .models import ScanFinding, ScanRun

# The vault's own files (published chain heads, ...): plaintext by design, never documents.
RESERVED_PREFIX = "_docvault/"
# What vault.atomic.atomic_write writes before linking a file into place: an upload in progress,
# or the leftover of a crash.
PARTIAL_NAME = re.compile(r"(?:^|/)\.docvault-[^/]*\.part$")
# The first bytes of every Docvault file (docs/FILE_FORMAT.md); classify() calls one of a version
# it cannot read UNKNOWN, and the scan says which version it is.
DOCVAULT_MAGIC = b"\x89DVLT\r\n\x1a"

FORMAT_V2 = Kind.V2.value
FORMAT_V1 = Kind.V1.value
FORMAT_LEGACY = Kind.LEGACY.value
FORMAT_PLAINTEXT = "plaintext"
FORMAT_UNKNOWN = "unknown"
CIPHERTEXT_FORMATS = frozenset({FORMAT_V2, FORMAT_V1, FORMAT_LEGACY})
# The finding of a symbolic link to a folder in a local media root: the vault writes no links.
FOLDER_LINK = "a symbolic link to a folder: not followed (the vault writes no links)"

Finding = ScanFinding.Kind


@dataclass
class FileEntry:
    """What the scan learnt about one stored file."""

    name: str
    size: int
    format: str
    key_id: str = ""
    plaintext_size: int | None = None
    file_id: str = ""
    # The document a v2 header names (None: not v2, or written for no document).
    bound_to: uuid.UUID | None = None
    problem: str = ""
    detail: str = ""

    def inventory_line(self) -> str:
        """Return the file's line of the inventory, as hashed into the digest."""
        # Exactly json.dumps([name, size, format, key ID]), at a fifth of its cost.
        return f'[{_json_string(self.name)}, {self.size}, "{self.format}", "{self.key_id}"]\n'


class _Row(NamedTuple):
    """What a document row says about its file."""

    pk: str  # the document's UUID as 32 hex digits
    title: str
    file_id: str
    key_id: str
    size: int


Progress = Callable[[FileEntry], None]


# Walking and classifying -------------------------------------------------------------------------


def scan_storage() -> Storage:
    """Return the storage that holds the ciphertext: the inner storage of EncryptedStorage."""
    return EncryptedStorage().inner


def storage_walk(storage: Storage, path: str = "") -> Iterator[str]:
    """Yield every file name under `path`, sorted by code point, through the Storage API only.

    Each folder's entries are sorted with a folder `x` as `x/`, so the names come out in the order
    of a sort of the full names: the inventory digest needs no list of every name in memory.
    """
    folders, files = storage.listdir(path)
    entries = [(name, False) for name in files if name]
    for folder in filter(None, folders):
        # A link to a folder is not followed (a link to an ancestor would never end): it is
        # listed as a file, which cannot be opened, and so becomes a finding.
        link = _local_link(storage, f"{path}/{folder}" if path else folder)
        entries.append((folder, False) if link else (f"{folder}/", True))
    for entry, is_folder in sorted(entries):
        name = f"{path}{entry}" if not path or path.endswith("/") else f"{path}/{entry}"
        if is_folder:
            yield from storage_walk(storage, name)
        else:
            yield name


def _local_link(storage: Storage, name: str) -> bool:
    """Return whether `name` is a symbolic link on a local disk (object stores have none)."""
    return isinstance(storage, FileSystemStorage) and os.path.islink(storage.path(name))


def file_classify(storage: Storage, name: str, ring: KeyRing, *, full: bool = False) -> FileEntry:
    """Return what the stored file `name` is; a full check authenticates every segment.

    Reads only the first bytes, except to open a legacy token (whole, up to the legacy cap) and in
    a full check. Raises OSError (FileNotFoundError when it vanished meanwhile).
    """
    with storage.open(name, "rb") as handle:
        size = _opened_size(handle)
        head = handle.read(fileformat.CLASSIFY_BYTES)
        found = fileformat.classify(head)
        if found.is_docvault:
            return _docvault_check(handle, name, size, found, ring, full=full)
        if found.kind is Kind.LEGACY:
            return _legacy_check(handle, head, name, size, ring)
        if len(head) == fileformat.CLASSIFY_BYTES:
            head += handle.read(SNIFF_BYTES - len(head))
    return _other_describe(name, size, head)


def _opened_size(handle: Any) -> int:
    """Return the size of an opened stored file: fstat() of a local file, else the storage's."""
    # storage.size(name) would resolve and check the name again: a third of a quick scan's time.
    # Only a plain local file: fileno() would make other file objects spool to disk first.
    if isinstance(getattr(handle, "file", None), io.BufferedReader):
        return os.fstat(handle.file.fileno()).st_size
    return handle.size


def _docvault_check(
    handle: Any,
    name: str,
    size: int,
    found: fileformat.Classification,
    ring: KeyRing,
    *,
    full: bool,
) -> FileEntry:
    key_id = found.key_id.hex() if found.key_id else ""
    entry = FileEntry(
        name,
        size,
        found.kind.value,
        key_id=key_id,
        file_id=found.file_id.hex() if found.file_id else "",
    )
    if found.document_id and found.document_id != fileformat.NO_DOCUMENT:
        entry.bound_to = uuid.UUID(bytes=found.document_id)
    try:
        entry.plaintext_size = fileformat.plaintext_size(
            size, found.segment_size, version=found.version
        )
    except (DecryptionError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, DecryptionError) else str(exc)
        entry.problem, entry.detail = Finding.DECRYPTION_FAILED, f"impossible file: {reason}"
        return entry
    if found.key_id not in ring.file_keys:
        entry.problem = Finding.UNKNOWN_KEY
        entry.detail = f"encrypted under key ID {key_id}, which no configured key has"
        return entry
    if full and not PARTIAL_NAME.search(name):
        handle.seek(0)
        try:
            reader = fileformat.DecryptingReader(handle, ring.file_keys)
            for _segment in reader.segments():
                pass
        except DecryptionError as exc:
            entry.problem, entry.detail = Finding.DECRYPTION_FAILED, exc.reason
    return entry


def _legacy_check(handle: Any, head: bytes, name: str, size: int, ring: KeyRing) -> FileEntry:
    entry = FileEntry(name, size, FORMAT_LEGACY)
    cap = legacy_max_size()
    # Read at most one byte over the cap, in case the file grew since its size was read.
    token = head + handle.read(cap + 1 - len(head)) if size <= cap else b""
    if size > cap or len(token) > cap:
        entry.problem = Finding.LEGACY_UNOPENED
        entry.detail = f"legacy Fernet file larger than the {cap}-byte legacy cap: not checked"
        return entry
    for key in ring.keys:
        try:
            plaintext = Fernet(key.fernet_key).decrypt(token)
        except InvalidToken:
            continue
        entry.key_id, entry.plaintext_size = key.key_id_hex, len(plaintext)
        return entry
    entry.problem = Finding.LEGACY_UNOPENED
    entry.detail = "legacy Fernet token that no configured key opens"
    return entry


def _other_describe(name: str, size: int, head: bytes) -> FileEntry:
    if head.startswith(DOCVAULT_MAGIC) and len(head) > len(DOCVAULT_MAGIC):
        return FileEntry(
            name,
            size,
            FORMAT_UNKNOWN,
            problem=Finding.UNKNOWN_FORMAT,
            detail=f"Docvault file of unsupported format version {head[len(DOCVAULT_MAGIC)]}",
        )
    mime = mime_sniff(head) if head else UNKNOWN
    if mime == UNKNOWN:
        detail = "empty file" if not head else "neither Docvault nor Fernet; no known file type"
        return FileEntry(name, size, FORMAT_UNKNOWN, problem=Finding.UNKNOWN_FORMAT, detail=detail)
    return FileEntry(
        name,
        size,
        FORMAT_PLAINTEXT,
        problem=Finding.PLAINTEXT,
        detail=f"not encrypted: looks like {mime}",
    )


# The scan ----------------------------------------------------------------------------------------


class _Tally:
    """Counts, findings and the inventory digest, accumulated file by file."""

    def __init__(
        self, ring: KeyRing, rows: dict[str, _Row], inventory: TextIO | None = None
    ) -> None:
        self.inventory = inventory
        self.ring = ring
        self.rows = rows
        self.seen: set[str] = set()
        self.files = 0
        self.bytes = 0
        self.reserved = 0
        self.unbound = 0
        self.by_format: dict[str, dict[str, int]] = {}
        self.by_key: dict[str, dict[str, Any]] = {}
        self.findings: list[ScanFinding] = []
        self.orphans: list[FileEntry] = []
        self.digest = hashlib.sha256()

    def finding(
        self,
        path: str,
        kind: str,
        detail: str,
        entry: FileEntry | None = None,
        document: uuid.UUID | str | None = None,
    ) -> None:
        self.findings.append(
            ScanFinding(
                path=_printable(path)[:1024],
                kind=kind,
                detail=detail[:500],
                file_format=entry.format if entry else "",
                key_id=entry.key_id if entry else "",
                document_id=document,
            )
        )

    def add(self, entry: FileEntry) -> None:
        self.files += 1
        self.bytes += entry.size
        line = entry.inventory_line()
        self.digest.update(line.encode())
        if self.inventory is not None:
            self.inventory.write(line)
        counts = self.by_format.setdefault(entry.format, {"files": 0, "bytes": 0})
        counts["files"] += 1
        counts["bytes"] += entry.size
        if entry.key_id:
            self._key_count(entry)
        row = self.rows.get(entry.name)
        if entry.problem:
            self.finding(entry.name, entry.problem, entry.detail, entry, row.pk if row else None)
        if entry.format in CIPHERTEXT_FORMATS and entry.bound_to is None:
            self.unbound += 1
        if PARTIAL_NAME.search(entry.name):
            self.finding(
                entry.name,
                Finding.PARTIAL,
                "a file being written (an upload in progress) or left by a crash",
                entry,
            )
            return
        if row is None:
            self.orphans.append(entry)
            return
        self.seen.add(entry.name)
        if entry.format in CIPHERTEXT_FORMATS:
            self.row_compare(entry, row)

    def _key_count(self, entry: FileEntry) -> None:
        counts = self.by_key.get(entry.key_id)
        if counts is None:
            key = self.ring.get(bytes.fromhex(entry.key_id))
            status = "unknown"
            if key is not None:
                status = "primary" if key is self.ring.primary else "decrypt-only"
            counts = {
                "label": key.label if key else "",
                "status": status,
                "files": 0,
                "bytes": 0,
                "formats": {},
            }
            self.by_key[entry.key_id] = counts
        counts["files"] += 1
        counts["bytes"] += entry.size
        counts["formats"][entry.format] = counts["formats"].get(entry.format, 0) + 1

    def row_compare(self, entry: FileEntry, row: _Row) -> None:
        if entry.bound_to is not None and entry.bound_to.hex != row.pk:
            owner = Document.objects.filter(pk=entry.bound_to).values_list("title", flat=True)
            title = next(iter(owner), None)
            named = f"document {entry.bound_to}" + (f" ({title})" if title else " (no such row)")
            self.finding(
                entry.name,
                Finding.BOUND_ELSEWHERE,
                f"the file was written for {named}, not for this document",
                entry,
                row.pk,
            )
            self.unbound += 1
        elif entry.bound_to is None and entry.format == FORMAT_V2:
            # Downloads refuse a v2 file that names no document as any document's file.
            self.finding(
                entry.name,
                Finding.BOUND_ELSEWHERE,
                "the file was written for no document, so it is not this document's",
                entry,
                row.pk,
            )
        differences = []
        if entry.file_id != row.file_id:
            differences.append(
                f"file ID: row {row.file_id[:16] or 'none'}, file {entry.file_id[:16] or 'none'}"
            )
        if (
            entry.key_id
            and entry.key_id != row.key_id
            and (row.key_id or entry.format != FORMAT_LEGACY)
        ):
            differences.append(f"key ID: row {row.key_id or 'none'}, file {entry.key_id}")
        if entry.plaintext_size is not None and entry.plaintext_size != row.size:
            differences.append(f"size: row {row.size}, file {entry.plaintext_size}")
        if differences:
            self.finding(entry.name, Finding.MISMATCH, "; ".join(differences), entry, row.pk)


def _rows_load() -> dict[str, _Row]:
    """Return what every document row says about its file, by stored name."""
    # Plain SQL: on a big table the ORM's per-row conversions cost four times the query itself.
    # Identifiers come from the model.
    connection = connections[router.db_for_read(Document)]
    quote = connection.ops.quote_name
    fields = ("file", "id", "title", "file_id", "key_id", "size")
    columns = ", ".join(quote(Document._meta.get_field(field).column) for field in fields)
    sql = f"SELECT {columns} FROM {quote(Document._meta.db_table)}"  # noqa: S608
    rows = {}
    with connection.cursor() as cursor:
        cursor.execute(sql)
        while batch := cursor.fetchmany(5000):
            for name, pk, title, file_id, key_id, size in batch:
                # SQLite returns the 32 hex digits it stores, PostgreSQL a UUID.
                pk = pk.hex if isinstance(pk, uuid.UUID) else pk
                rows[name] = _Row(pk, title, file_id, key_id, size)
    return rows


def storage_scan(
    full: bool = False,
    progress: Progress | None = None,
    *,
    user: Any = None,
    operator: str = "",
    request: Any = None,
    storage: Storage | None = None,
    inventory: TextIO | None = None,
) -> ScanRun:
    """Scan every stored file, store the run and its findings, record one access event; return it.

    `user` (the dashboard) or `operator` (the OS user of a command) is who ran it. `progress` is
    called after each file; `inventory`, if given, receives the lines the digest covers. Raises
    ImproperlyConfigured with no key, RecordError if the scan cannot be recorded (then nothing is
    stored), OSError if the storage cannot be listed.
    """
    ring = keyring()
    storage = storage or scan_storage()
    started_at = timezone.now()
    rows = _rows_load()
    tally = _Tally(ring, rows, inventory)
    for name in storage_walk(storage):
        if name.startswith(RESERVED_PREFIX):
            tally.reserved += 1
            continue
        try:
            entry = file_classify(storage, name, ring, full=full)
        except FileNotFoundError:
            continue  # deleted since it was listed: no longer part of the storage
        except OSError as exc:
            # Only a link to a folder reaches here as a folder (real folders are walked).
            detail = FOLDER_LINK if isinstance(exc, IsADirectoryError) else os_error_describe(exc)
            entry = FileEntry(name, 0, FORMAT_UNKNOWN, problem=Finding.UNREADABLE, detail=detail)
        tally.add(entry)
        if progress is not None:
            progress(entry)
    _recheck_and_close(tally, storage)
    finished_at = timezone.now()
    run = _run_build(tally, full, started_at, finished_at, storage, user, operator)
    _run_record(run, user=user, operator=operator, request=request)
    with transaction.atomic():
        run.save()
        for finding in tally.findings:
            finding.run = run
        ScanFinding.objects.bulk_create(tally.findings, batch_size=1000)
    return run


def _recheck_and_close(tally: _Tally, storage: Storage) -> None:
    """Turn unmatched files into orphans and unseen rows into missing, rechecked against now."""
    # Uploads and deletes go on while a scan runs: a row created after the rows were read, or a
    # file deleted after its folder was listed, is not a finding.
    # A name that is not UTF-8 cannot be in the database.
    orphan_names = [entry.name for entry in tally.orphans if _printable(entry.name) == entry.name]
    late_rows: dict[str, _Row] = {}
    for start in range(0, len(orphan_names), 500):
        chunk = orphan_names[start : start + 500]
        for name, pk, title, file_id, key_id, size in Document.objects.filter(
            file__in=chunk
        ).values_list("file", "pk", "title", "file_id", "key_id", "size"):
            late_rows[name] = _Row(pk.hex, title, file_id, key_id, size)
    for entry in tally.orphans:
        row = late_rows.get(entry.name)
        if row is not None:
            if entry.format in CIPHERTEXT_FORMATS:
                tally.row_compare(entry, row)
            continue
        detail = "no document row has this stored name"
        if entry.bound_to is not None:
            detail += f"; its header names document {entry.bound_to}"
            tally.unbound += 1
        tally.finding(entry.name, Finding.ORPHAN, detail, entry)
    unseen = [(name, row) for name, row in tally.rows.items() if name not in tally.seen]
    still: set[str] = set()
    for start in range(0, len(unseen), 500):
        pks = [row.pk for _, row in unseen[start : start + 500]]
        still.update(
            pk.hex for pk in Document.objects.filter(pk__in=pks).values_list("pk", flat=True)
        )
    for name, row in unseen:
        if row.pk not in still or (name and storage.exists(name)):
            continue
        tally.finding(
            name or "(empty)",
            Finding.MISSING,
            f"document {uuid.UUID(row.pk)} ({row.title}) has no file in storage",
            document=row.pk,
        )


def _printable(name: str) -> str:
    """Return a stored name as text any database takes: bytes that are not UTF-8 as \\x escapes."""
    # A local file name that is not UTF-8 reaches Python as lone surrogates, which no database
    # column and no UTF-8 file accepts.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _run_build(
    tally: _Tally,
    full: bool,
    started_at: datetime,
    finished_at: datetime,
    storage: Storage,
    user: Any,
    operator: str,
) -> ScanRun:
    counts = Counter(finding.kind for finding in tally.findings)
    blocking = {kind: n for kind, n in counts.items() if kind not in ScanFinding.NOTICES}
    actor, actor_username = actor_identify(user, operator)
    run = ScanRun(
        started_at=started_at,
        finished_at=finished_at,
        kind=ScanRun.Kind.FULL if full else ScanRun.Kind.QUICK,
        actor=actor,
        actor_username=actor_username,
        storage=_storage_describe(storage),
        files=tally.files,
        bytes=tally.bytes,
        reserved_files=tally.reserved,
        unbound_files=tally.unbound,
        counts_by_format=dict(sorted(tally.by_format.items())),
        counts_by_key=dict(sorted(tally.by_key.items())),
        finding_counts=dict(sorted(counts.items())),
        verdict=ScanRun.Verdict.NOT_CERTIFIED if blocking else ScanRun.Verdict.CERTIFIED,
        inventory_digest=tally.digest.hexdigest(),
    )
    run.certification = certification_line(run)
    return run


def _storage_describe(storage: Storage) -> str:
    kind = type(storage).__name__
    where = getattr(storage, "location", None) or getattr(storage, "bucket_name", None) or ""
    return f"{kind} {where}".strip()[:255]


_PROBLEM_WORDS = {
    Finding.PLAINTEXT: "plaintext",
    Finding.UNKNOWN_FORMAT: "of unknown format",
    Finding.UNKNOWN_KEY: "under an unknown key",
    Finding.LEGACY_UNOPENED: "legacy that no configured key opens",
    Finding.DECRYPTION_FAILED: "failing authentication",
    Finding.UNREADABLE: "unreadable",
}


def certification_line(run: ScanRun) -> str:
    """Return the run's certification: the one line reports cite, with time, files and bytes."""
    when = run.finished_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = f"At {when}, {run.files:,} files, {run.bytes:,} bytes"
    counts = run.finding_counts
    if run.verdict == ScanRun.Verdict.CERTIFIED:
        checked = (
            "every segment authenticated"
            if run.kind == ScanRun.Kind.FULL
            else "quick scan: headers checked, segments not authenticated"
        )
        line = (
            f"{head}: all ciphertext that configured keys open ({checked}); "
            "every document has its file"
        )
        notices = [
            f"{counts[kind]:,} {label}"
            for kind, label in (
                (Finding.ORPHAN, "without a document"),
                (Finding.PARTIAL, "partial"),
            )
            if counts.get(kind)
        ]
        return line + (f"; {', '.join(notices)}." if notices else ".")
    problems = [
        f"{counts[kind]:,} {words}" for kind, words in _PROBLEM_WORDS.items() if counts.get(kind)
    ]
    rows = [
        f"{counts[kind]:,} {words}"
        for kind, words in (
            (Finding.MISSING, "documents without a file"),
            (Finding.MISMATCH, "files disagreeing with their document"),
            (Finding.BOUND_ELSEWHERE, "files not written for their document"),
        )
        if counts.get(kind)
    ]
    parts = []
    if problems:
        parts.append("NOT all ciphertext that configured keys open: " + ", ".join(problems))
    else:
        parts.append("all ciphertext that configured keys open")
    parts.extend(rows)
    return f"{head}: " + "; ".join(parts) + ". Not certified."


def _run_record(run: ScanRun, *, user: Any, operator: str, request: Any) -> None:
    """Record the scan in the access log, one event for the whole run: who, what kind, the counts."""
    formats = ", ".join(f"{fmt} {c['files']}" for fmt, c in run.counts_by_format.items())
    findings = ", ".join(f"{kind} {n}" for kind, n in run.finding_counts.items()) or "none"
    reason = (
        f"{run.kind} scan: {run.files} files, {run.bytes} bytes ({formats or 'none'}); "
        f"findings: {findings}; {run.verdict}; inventory {run.inventory_digest[:16]}"
    )
    extra = {"operator": operator} if operator else {}
    with access_context(action=Action.SCAN, user=user, request=request, extra=extra) as context:
        access_record(Access(Outcome.ALLOWED, context, reason=reason))


# What the command and the views show -------------------------------------------------------------


def scan_run_summary(run: ScanRun, *, findings: bool = True) -> dict[str, Any]:
    """Return the run as plain data (the command's --json)."""
    data: dict[str, Any] = {
        "id": run.pk,
        "kind": run.kind,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "actor": run.actor_username,
        "storage": run.storage,
        "files": run.files,
        "bytes": run.bytes,
        "reserved_files": run.reserved_files,
        "unbound_files": run.unbound_files,
        "counts_by_format": run.counts_by_format,
        "counts_by_key": run.counts_by_key,
        "finding_counts": run.finding_counts,
        "verdict": run.verdict,
        "certified": run.certified,
        "certification": run.certification,
        "inventory_digest": run.inventory_digest,
    }
    if findings:
        data["findings"] = [
            {
                "path": finding.path,
                "kind": finding.kind,
                "detail": finding.detail,
                "format": finding.file_format,
                "key_id": finding.key_id,
                "document": str(finding.document_id) if finding.document_id else None,
            }
            for finding in run.findings.order_by("path", "kind").iterator()
        ]
    return data


def scan_orphans(run: ScanRun) -> Iterator[str]:
    """Yield the stored names of the run's orphans (files without a document), sorted."""
    yield from (
        run.findings.filter(kind=Finding.ORPHAN)
        .order_by("path")
        .values_list("path", flat=True)
        .iterator()
    )
