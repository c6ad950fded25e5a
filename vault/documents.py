"""Documents and grants: storing, describing, sharing and removing them, each change recorded.

The portal's views, the admin, the operator commands and the dashboard call these functions; none
of them writes a document's file or grant another way. A document's derived columns (size, type,
key ID, file ID) come from its stored file only (`document_metadata_set`), never from a caller.
"""

from datetime import datetime
from functools import partial
from typing import Any

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from .access import Access, AccessContext, Action, Outcome, access_context, access_record
from .models import Company, Document, Grant, document_metadata_set
from .storage import StoredFile
from .uploads import STORED_NAME_HINT, UploadRejected, filename_sanitise, upload_error

TITLE_MAX_LENGTH = 200


# Files -------------------------------------------------------------------------------------------


def document_file_store(document: Document, content: File) -> None:
    """Encrypt `content` into the document's file and fill in its metadata from the file.

    Call it inside `access_context(action=Action.UPLOAD, ...)`, and save the document afterwards.
    The user's filename becomes metadata only: the storage picks a random stored name.
    """
    error = upload_error(content)
    if error:
        raise UploadRejected(error)
    document.original_filename = filename_sanitise(content.name or "")
    if not document.title:
        # Before the file is stored, so that the upload event carries the title.
        document.title = document.original_filename[:TITLE_MAX_LENGTH]
    document.file.save(STORED_NAME_HINT, content, save=False)


def document_store(document: Document, content: File, *, user: Any, request: Any = None) -> None:
    """Store `content` encrypted as the document's file and save the document, recorded as an upload.

    All or nothing: if the row cannot be saved, the encrypted file is deleted again.
    """
    stored = ""
    with access_context(action=Action.UPLOAD, user=user, request=request, document=document):
        try:
            with transaction.atomic():
                document_file_store(document, content)
                stored = document.file.name
                document.save()
        except BaseException:
            if stored:
                document.file.storage.delete(stored)
            raise


def document_create(
    *, company: Company, content: File, uploaded_by: Any, title: str = "", request: Any = None
) -> Document:
    """Return a new document of `company` holding `content` encrypted, recorded as an upload."""
    document = Document(company=company, title=title, uploaded_by=uploaded_by)
    document_store(document, content, user=uploaded_by, request=request)
    return document


def document_file_describe(document: Document) -> StoredFile:
    """Return what the document's stored file is, read from it (a recorded decryption).

    Refuses, recorded, a file written for another document (DecryptionError).
    """
    storage = document.file.storage
    with access_context(document=document, bound_document=document):
        return storage.describe(document.file.name)


def document_metadata_refresh(document: Document, *, save: bool = True) -> StoredFile:
    """Refill the document's derived columns from its stored file; return what the file is.

    For every path that replaces or adopts a file under an existing row (rotation, import): call
    it inside the access context of that action, after the file is in place. A v1 file's file ID
    is taken from the file, so call it only for a file the caller itself wrote or vouches for.
    """
    storage = document.file.storage
    with access_context(document=document):
        stored = storage.describe(document.file.name)
    document_metadata_set(document, stored)
    if save:
        document.save(update_fields=["size", "mime_type", "key_id", "file_id"])
    return stored


def document_remove(document: Document, *, user: Any, request: Any = None) -> None:
    """Delete the document, recorded; its encrypted file goes once the deletion is committed."""
    storage, name = document.file.storage, document.file.name
    with (
        access_context(
            action=Action.DELETE, user=user, request=request, document=document
        ) as context,
        transaction.atomic(),
    ):
        _record(Outcome.ALLOWED, context, document)
        document.delete()
        # After the commit: a rolled-back deletion must keep its file, and a failed file deletion
        # leaves an orphan for the storage scan to report rather than a row without its file.
        if name:
            transaction.on_commit(partial(storage.delete, name), robust=True)


# Grants ------------------------------------------------------------------------------------------


def grant_save(
    document: Document,
    company: Company,
    expires_at: datetime | None,
    *,
    user: Any,
    request: Any = None,
) -> Grant:
    """Share the document with a company until `expires_at` (None: no end); record the share."""
    extra = {"company": company.name, "expires_at": expires_at.isoformat() if expires_at else None}
    # The access log keeps `reason`, not `extra`: the reason says with whom and until when.
    reason = f"shared with {company.name}"
    if expires_at is not None:
        reason += f" until {timezone.localtime(expires_at):%Y-%m-%d %H:%M %Z}"
    with (
        access_context(
            action=Action.SHARE, user=user, request=request, document=document, extra=extra
        ) as context,
        transaction.atomic(),
    ):
        grant, _ = Grant.objects.update_or_create(
            document=document,
            company=company,
            defaults={"expires_at": expires_at, "granted_by": user},
        )
        _record(Outcome.ALLOWED, context, document, reason)
    return grant


def grant_remove(grant: Grant, *, user: Any, request: Any = None) -> None:
    """Stop sharing a document with a company; record the revocation."""
    document = grant.document
    with (
        access_context(
            action=Action.UNSHARE,
            user=user,
            request=request,
            document=document,
            extra={"company": grant.company.name},
        ) as context,
        transaction.atomic(),
    ):
        _record(Outcome.ALLOWED, context, document, f"no longer shared with {grant.company.name}")
        grant.delete()


def _record(outcome: str, context: AccessContext, document: Document, reason: str = "") -> None:
    access_record(
        Access(
            outcome,
            context,
            stored_name=document.file.name or "",
            key_id=document.key_id,
            reason=reason,
        )
    )
