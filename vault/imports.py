"""Adopting files that have no document: a manifest names each one's company and title.

The case study kept its files in MEDIA_ROOT with no rows, and some deployments stored plaintext.
`manifest_import()` reads a CSV manifest (a header row, then `path`, `company`, `title` and
optionally `uploaded_by`, `uploaded_at`), validates every line before doing anything, then for each
file creates its document (in one transaction with its IMPORT event) and rewrites the file in
place, under the same stored name, as v2 under the primary key bound to the new document: old links
keep working, for the readers of that document only.

Crash-safe and resumable: a line whose document exists (same path, company and title) but whose
file is not yet bound to it is finished by the next run; one already bound is skipped. Until the
rewrite, the new row's file is refused (plaintext) or served unbound (a legacy token), as before.
"""

import csv
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from typing import Any, TextIO

from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from . import fileformat
from .access import Access, Action, Outcome, access_context, access_record
from .atomic import TEMP_SUFFIX
from .documents import TITLE_MAX_LENGTH, document_metadata_refresh
from .fileformat import DecryptionError, Kind
from .models import Company, Document, document_metadata_set
from .paths import os_error_describe, stored_name_validate, stored_path_check
from .rotation import DERIVED_FIELDS, file_bound_to, file_state_describe, stored_file_replace
from .storage import EncryptedStorage, legacy_read_enabled

IMPORT_TEMP_PREFIX = ".docvault-import-"
REQUIRED_COLUMNS = ("path", "company", "title")
OPTIONAL_COLUMNS = ("uploaded_by", "uploaded_at")
READ_SIZE = fileformat.SEGMENT_SIZE


class ManifestError(ValueError):
    """The manifest cannot be imported; `errors` names every bad line. Nothing was done."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class ImportFailed(Exception):
    """Adopting one file failed; the lines before it are done, and a rerun finishes the rest."""

    def __init__(self, line: int, path: str, reason: str) -> None:
        super().__init__(
            f"line {line}: {path}: {reason}. The lines before it are imported; fix the cause and "
            "run the import again to finish."
        )
        self.line = line
        self.reason = reason


class Status(StrEnum):
    IMPORTED = "imported"  # a new document, its file bound to it (dry run: would be)
    RESUMED = "resumed"  # the document existed from a stopped run; its file is now bound
    DONE = "done"  # imported by an earlier run: nothing to do


@dataclass(frozen=True)
class ManifestLine:
    """One validated line of the manifest."""

    line: int
    path: str
    company: Company
    title: str
    uploaded_by: Any
    uploaded_at: datetime | None
    found: fileformat.Classification
    document: Document | None  # an earlier run's document for this line, if any


@dataclass(frozen=True)
class Imported:
    line: int
    path: str
    status: Status
    before: str
    document_id: Any = None


@dataclass
class ImportReport:
    dry_run: bool
    results: list[Imported] = field(default_factory=list)

    def summary(self) -> str:
        """Return the run in one line."""
        counts = {status: 0 for status in Status}
        for result in self.results:
            counts[result.status] += 1
        if self.dry_run:
            return (
                f"Dry run: would import {counts[Status.IMPORTED]} files, finish "
                f"{counts[Status.RESUMED]}, {counts[Status.DONE]} already imported."
            )
        return (
            f"Imported {counts[Status.IMPORTED]} files, finished {counts[Status.RESUMED]}, "
            f"{counts[Status.DONE]} already imported."
        )


def manifest_import(
    manifest: TextIO,
    *,
    dry_run: bool = False,
    user: Any = None,
    operator: str = "",
    storage: Storage | None = None,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> ImportReport:
    """Validate the whole manifest, then adopt each file; raise ManifestError, doing nothing.

    `progress(lines, total)` wraps the iteration over the validated lines (a bar, a logger).
    """
    storage = storage or default_storage
    if not isinstance(storage, EncryptedStorage):
        raise TypeError("manifest_import() needs the vault's EncryptedStorage.")
    lines = manifest_validate(manifest, storage)
    report = ImportReport(dry_run=dry_run)
    if not dry_run:
        _temporaries_remove(storage, lines)
    for line in progress(lines, len(lines)) if progress is not None else lines:
        try:
            report.results.append(_line_import(line, storage, dry_run, user, operator))
        except DecryptionError as exc:
            raise ImportFailed(line.line, line.path, exc.reason) from exc
        except OSError as exc:
            raise ImportFailed(line.line, line.path, os_error_describe(exc)) from exc
    return report


def manifest_validate(manifest: TextIO, storage: EncryptedStorage) -> list[ManifestLine]:
    """Return every line of the manifest checked; raise ManifestError naming every bad one."""
    reader = csv.DictReader(manifest)
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    unknown = [name for name in columns if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        raise ManifestError([f"line 1 (header): {'; '.join(problems)}."])
    reader.fieldnames = columns
    companies = {company.name: company for company in Company.objects.all()}
    users = get_user_model()
    errors: list[str] = []
    lines: list[ManifestLine] = []
    seen: dict[str, int] = {}
    for row in reader:
        number = reader.line_num
        if None in row:
            errors.append(f"line {number}: more fields than columns.")
            continue
        values = {name: (value or "").strip() for name, value in row.items()}
        if not any(values.values()):
            continue
        problems: list[str] = []
        path, title = values["path"], values["title"]
        company = companies.get(values["company"])
        if company is None:
            problems.append(f"unknown company {values['company']!r}")
        if not title:
            problems.append("empty title")
        elif len(title) > TITLE_MAX_LENGTH:
            problems.append(f"title longer than {TITLE_MAX_LENGTH} characters")
        uploaded_by = None
        if values.get("uploaded_by"):
            uploaded_by = users.objects.filter(
                **{users.USERNAME_FIELD: values["uploaded_by"]}
            ).first()
            if uploaded_by is None:
                problems.append(f"unknown user {values['uploaded_by']!r}")
        uploaded_at = None
        if values.get("uploaded_at"):
            uploaded_at = _moment_parse(values["uploaded_at"])
            if uploaded_at is None:
                problems.append(
                    f"bad date {values['uploaded_at']!r} (use YYYY-MM-DD or ISO 8601 date and time)"
                )
        found = None
        document = None
        path_problem = _path_problem(path, storage)
        if path_problem:
            problems.append(path_problem)
        elif path in seen:
            problems.append(f"path {path!r} repeats line {seen[path]}")
        else:
            seen[path] = number
            document = Document.objects.filter(file=path).first()
            if document is not None and (
                document.company_id != getattr(company, "pk", None) or document.title != title
            ):
                problems.append(f"path {path!r} already belongs to document {document.pk}")
            try:
                found = storage.classify(path)
            except OSError as exc:
                problems.append(os_error_describe(exc))
            else:
                problems.extend(_file_problems(found, document))
        if problems:
            errors.append(f"line {number}: {'; '.join(problems)}.")
            continue
        assert company is not None and found is not None
        lines.append(
            ManifestLine(number, path, company, title, uploaded_by, uploaded_at, found, document)
        )
    if errors:
        raise ManifestError(errors)
    return lines


def _path_problem(path: str, storage: EncryptedStorage) -> str:
    if not path:
        return "empty path"
    try:
        stored_name_validate(path)
        stored_path_check(storage, path)
    except SuspiciousFileOperation as exc:
        return f"unsafe path: {exc}"
    base = posixpath.basename(path)
    if base.startswith(".docvault-") and base.endswith(".part"):
        return f"{path!r} is a temporary file"
    if not storage.exists(path):
        return f"no file {path!r} in storage"
    return ""


def _file_problems(found: fileformat.Classification, document: Document | None) -> list[str]:
    own = document is not None and file_bound_to(found, document)
    if found.kind is Kind.V2 and any(found.document_id or b"") and not own:
        return ["the file was written for another document"]
    if found.kind is Kind.LEGACY and not legacy_read_enabled():
        return ["a legacy Fernet file, and VAULT_LEGACY_READ is off"]
    return []


def _moment_parse(text: str) -> datetime | None:
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            moment = datetime.combine(day, time()) if day else None
    except ValueError:
        return None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _line_import(
    line: ManifestLine, storage: EncryptedStorage, dry_run: bool, user: Any, operator: str
) -> Imported:
    before = (
        "plaintext or unknown"
        if line.found.kind is Kind.UNKNOWN
        else file_state_describe(line.found)
    )
    document = line.document
    bound = document is not None and file_bound_to(line.found, document)
    extra = {"operator": operator} if operator else {}
    if bound:
        agrees = (document.key_id, document.file_id) == (
            (line.found.key_id or b"").hex(),
            (line.found.file_id or b"").hex(),
        )
        if agrees:
            return Imported(line.line, line.path, Status.DONE, before, document.pk)
        if not dry_run:
            # Stopped after the file was bound, before its row was filled in: fill it in now.
            reason = f"row filled in from its bound file, manifest line {line.line}"
            with access_context(
                action=Action.IMPORT, user=user, document=document, reason=reason, extra=extra
            ):
                document_metadata_refresh(document)
        return Imported(line.line, line.path, Status.RESUMED, before, document.pk)
    status = Status.IMPORTED if document is None else Status.RESUMED
    if dry_run:
        return Imported(line.line, line.path, status, before, getattr(document, "pk", None))
    if document is None:
        document = Document(
            company=line.company,
            title=line.title,
            original_filename=posixpath.basename(line.path),
            uploaded_by=line.uploaded_by,
            file=line.path,
        )
        if line.uploaded_at is not None:
            document.uploaded_at = line.uploaded_at
        reason = f"adopted from manifest line {line.line} ({before})"
        # The row and its record commit together; the file is bound after, so a crash leaves a
        # row whose file the next run binds, never a bound file without its row.
        with (
            access_context(action=Action.IMPORT, user=user, document=document, extra=extra) as ctx,
            transaction.atomic(),
        ):
            document.save()
            access_record(Access(Outcome.ALLOWED, ctx, stored_name=line.path, reason=reason))
    _file_bind(document, line, storage, user, extra, before)
    return Imported(line.line, line.path, status, before, document.pk)


def _file_bind(
    document: Document,
    line: ManifestLine,
    storage: EncryptedStorage,
    user: Any,
    extra: dict[str, Any],
    before: str,
) -> None:
    """Rewrite the document's file in place as v2 bound to it; fill its columns from the file."""
    name = document.file.name
    if storage.classify(name).kind is Kind.UNKNOWN:
        # Plaintext: nothing to decrypt, so nothing more to record than the import itself.
        with storage.inner.open(name, "rb") as source:
            stored = stored_file_replace(
                storage, name, _pieces(source), document.pk, temp_prefix=IMPORT_TEMP_PREFIX
            )
    else:
        reason = f"bound to its document: {before} -> v2, manifest line {line.line}"
        with (
            access_context(
                action=Action.IMPORT, user=user, document=document, reason=reason, extra=extra
            ),
            storage.open(name) as plaintext,
        ):
            stored = stored_file_replace(
                storage, name, plaintext.chunks(), document.pk, temp_prefix=IMPORT_TEMP_PREFIX
            )
    document_metadata_set(document, stored)
    document.save(update_fields=DERIVED_FIELDS)


def _temporaries_remove(storage: EncryptedStorage, lines: list[ManifestLine]) -> None:
    """Remove what an import killed mid-write left beside the manifest's files (local disk only)."""
    inner = storage.inner
    if not isinstance(inner, FileSystemStorage):
        return  # an object store publishes an object whole or not at all: nothing is left
    for folder in sorted({posixpath.dirname(line.path) for line in lines}):
        path = inner.path(folder) if folder else os.fspath(inner.location)
        for entry in os.scandir(path):
            if entry.name.startswith(IMPORT_TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                os.unlink(entry.path)


def _pieces(source: Any) -> Iterator[bytes]:
    while piece := source.read(READ_SIZE):
        yield piece
