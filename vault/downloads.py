"""The download views: permission check, safe stored names, recorded decryption, streamed response.

Two routes serve a document: `/documents/<uuid>/download/` and the case study's `/vault/<path>` (the
stored name under the media root). Both check a member with one query (a staff read adds the
permission check and the row), record refusals, and leave the record of a decryption to the
storage's open, which writes it before any plaintext leaves.

Decisions, in the terms of RFC 9110:
- Not a reader, or no such document: 404 either way (existence never leaks), recorded as DENIED.
- A hostile path (absolute, `..` or `.` or empty segments, NUL or other control characters,
  backslashes, any `%`, so no double encoding) is refused with 400 before any database or file
  access; a stored file that resolves outside the media root (a symlink) gets 400 as well. Both are
  recorded as DENIED.
- The Content-Type is the one python-magic sniffed from the first plaintext bytes when the file was
  written (kept in the row); a row without one (never filled from its file) is served as
  application/octet-stream, an attachment. Nothing is sniffed here.
- Sizes and ranges are judged once, against the plaintext size the reader finds in the file, never
  against the row; the access event records the bytes the response sends.
- The file must be the one written for this document (see `vault.storage.bound_check`); any other
  is refused with the error page and recorded as FAILED.
- HEAD opens the file like a download and authenticates its first segment (a tampered file gets
  the same error page as GET), so it is recorded (action download, bytes planned 0). HEAD ignores
  Range, as RFC 9110 says of every method but GET.
- One range: 206 with Content-Range; unsatisfiable: 416 with `Content-Range: bytes */SIZE`, nothing
  decrypted and so nothing recorded; several ranges, a malformed header or any If-Range (we send no
  validator it could match): the whole file, 200.
- No key configured: 503. Recording impossible: 503, nothing served. A file that fails
  authentication, uses an unknown key, is bound to another document, is missing or cannot be read
  (any OSError): 500 with an error page that shows the request id, recorded as FAILED (the fault
  is the server's stored data, not the request, hence not 422). A later segment that
  fails: the stream raises, so the server drops the connection short of Content-Length.

Streaming holds for WSGI servers (gunicorn), the deployment target: under ASGI, Django 5.2 buffers
any synchronous streaming response whole before sending it.
"""

import contextvars
import functools
import logging
import os
import time
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_safe

from .access import (
    Action,
    RecordError,
    access_context,
    refusal_record,
    request_id_get,
)
from .fileformat import DecryptionError
from .http import (
    NO_STORE,
    PlaintextStream,
    RangeNotSatisfiable,
    byte_range_parse,
    content_disposition,
    download_error_response,
    not_satisfiable_response,
    os_error_reason,
    stored_failure_record,
    unavailable_response,
)
from .keys import keyring
from .mime import UNKNOWN
from .models import Document, document_get_for_reader
from .paths import stored_name_printable, stored_name_validate, stored_path_check

logger = logging.getLogger(__name__)

INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"})
# Chrome and Safari refuse to render a PDF under `sandbox`, so PDFs get the no-fetch policy only.
CSP_PDF = "default-src 'none'; object-src 'self'; style-src 'unsafe-inline'"
CSP_IMAGE = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
KEY_MISSING_STAFF = "Encryption key not configured."
TRY_AGAIN = "Please try again later."


# Bytes from which a response decrypts ahead in a thread, and how many segments ahead. On 2 cores
# (bench/RESULTS.md, "Issue 9") the thread made 100 MB downloads faster in 11 of 13 side-by-side
# runs at load 0.3 to 3 (median 12%), but 10 MB ones only while a core was free (4-13% faster at
# load 1.3, up to 11% slower at load 2 and more), and 5 MB ones never: it pays over many segments.
READ_AHEAD_MIN_BYTES = 32 << 20
READ_AHEAD_SEGMENTS = 2
# VAULT_READ_AHEAD "auto" turns the thread on from this many usable cores.
READ_AHEAD_AUTO_CORES = 2


@functools.cache
def usable_cores() -> int:
    """Return how many cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_ahead_enabled() -> bool:
    """Return whether large downloads decrypt ahead in a thread (VAULT_READ_AHEAD: auto, on, off)."""
    mode = getattr(settings, "VAULT_READ_AHEAD", "auto")
    if mode == "auto":
        return usable_cores() >= READ_AHEAD_AUTO_CORES
    return mode == "on"


@require_safe
@login_required
def document_download(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Serve a document by id to one of its readers."""
    return _download(request, {"pk": pk}, started=time.perf_counter())


@require_safe
@login_required
def serve(request: HttpRequest, path: str) -> HttpResponse:
    """Serve a document by its stored name (the case study's route) to one of its readers."""
    started = time.perf_counter()
    try:
        name = stored_name_validate(path)
    except SuspiciousFileOperation:
        _refusal_record(request, "unsafe path", started, stored_name=stored_name_printable(path))
        raise
    return _download(request, {"file": name}, started=started)


class _Plan:
    """What a download sends, judged once against the plaintext size the reader found."""

    def __init__(self, request: HttpRequest) -> None:
        self.head_only = request.method == "HEAD"
        # HEAD ignores Range (RFC 9110); any If-Range cannot match, as we send no validator.
        ignored = self.head_only or "HTTP_IF_RANGE" in request.META
        self.range_header = None if ignored else request.META.get("HTTP_RANGE")
        self.size = 0
        self.byte_range: tuple[int, int] | None = None

    def __call__(self, size: int) -> tuple[str, int]:
        """Return the action and the bytes to send; raise RangeNotSatisfiable."""
        self.size = size
        self.byte_range = byte_range_parse(self.range_header, size)
        if self.head_only:
            return Action.DOWNLOAD, 0
        if self.byte_range is None:
            return Action.DOWNLOAD, size
        first, last = self.byte_range
        return Action.RANGE, last - first + 1


def _download(request: HttpRequest, lookup: dict[str, Any], started: float) -> HttpResponse:
    try:
        document, staff_read = document_get_for_reader(request.user, **lookup)
    except Document.DoesNotExist:
        # A second query, on the refusal path only, so the log says which document was wanted.
        wanted = Document.objects.filter(**lookup).first()
        reason = "not a reader" if wanted is not None else "no such document"
        _refusal_record(
            request, reason, started, document=wanted, stored_name=lookup.get("file", "")
        )
        raise Http404 from None

    name = document.file.name
    storage = document.file.storage
    try:
        reason = "unsafe stored name"
        stored_name_validate(name)
        reason = "stored name outside the media root"
        stored_path_check(storage, name)
    except SuspiciousFileOperation:
        logger.error("Refused stored name %r of document %s: %s.", name, document.pk, reason)
        _refusal_record(
            request, reason, started, document=document, stored_name=stored_name_printable(name)
        )
        raise

    try:
        keyring()
    except ImproperlyConfigured:
        logger.error("Download of document %s refused: no encryption key configured.", document.pk)
        message = KEY_MISSING_STAFF if request.user.is_staff else TRY_AGAIN
        return unavailable_response(request, message, page=False)

    plan = _Plan(request)
    with access_context(
        action=Action.DOWNLOAD,
        user=request.user,
        request=request,
        document=document,
        staff_read=staff_read,
        bound_document=document,
        plan=plan,
        extra={"started": started},
    ):
        try:
            file = storage.open(name, "rb")
        except RangeNotSatisfiable as exc:
            return not_satisfiable_response(exc.size)
        except RecordError as exc:
            logger.error("Download of document %s refused: %s", document.pk, exc)
            return unavailable_response(request, TRY_AGAIN, page=False)
        except DecryptionError as exc:
            return _failure_page(request, document, name, exc.reason)
        except OSError as exc:
            # A missing file, a directory at its name, a permission error: the stored data's
            # fault, recorded like a file that fails authentication.
            reason = os_error_reason(exc)
            stored_failure_record(name, reason)
            return _failure_page(request, document, name, reason)
        try:
            return _respond(request, document, file, plan)
        except RecordError as exc:
            file.close()
            logger.error("Download of document %s refused: %s", document.pk, exc)
            return unavailable_response(request, TRY_AGAIN, page=False)
        except DecryptionError as exc:
            file.close()
            return _failure_page(request, document, name, exc.reason)
        except OSError as exc:
            file.close()
            reason = os_error_reason(exc)
            stored_failure_record(name, reason)
            return _failure_page(request, document, name, reason)
        except BaseException:
            file.close()
            raise


def _respond(request: HttpRequest, document: Document, file: Any, plan: _Plan) -> HttpResponse:
    """Decrypt the first segment and build the response; the file is ours to close."""
    size, byte_range = plan.size, plan.byte_range
    # The type the file was sniffed as when written; a row never filled from its file gets none.
    mime = document.mime_type or UNKNOWN
    if plan.head_only:
        # The first segment is authenticated even here: HEAD answers as GET would, so a tampered
        # file gets the error page, not a 200.
        try:
            next(file.segments(), b"")
        finally:
            file.close()
        response = HttpResponse(content_type=mime)
        length = size
    else:
        start = 0 if byte_range is None else byte_range[0]
        if start:
            file.seek(start)
        length = size if byte_range is None else byte_range[1] - start + 1
        # Large responses decrypt the next segments in a thread while the server writes the
        # current one.
        large = length >= READ_AHEAD_MIN_BYTES
        read_ahead = READ_AHEAD_SEGMENTS if large and read_ahead_enabled() else 0
        segments = file.segments(read_ahead=read_ahead)
        first = next(segments, b"")
        stream = PlaintextStream(
            file, first, segments, length, contextvars.copy_context(), document, request
        )
        if byte_range is None:
            response = StreamingHttpResponse(stream, content_type=mime)
        else:
            response = StreamingHttpResponse(stream, content_type=mime, status=206)
            response["Content-Range"] = f"bytes {start}-{byte_range[1]}/{size}"

    # Most requests carry no query string: no QueryDict to parse for them.
    inline = (
        mime in INLINE_TYPES
        and bool(request.META.get("QUERY_STRING"))
        and request.GET.get("inline") == "1"
    )
    response["Content-Length"] = str(length)
    response["Content-Disposition"] = content_disposition(
        "inline" if inline else "attachment", document.original_filename
    )
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = NO_STORE
    response["X-Content-Type-Options"] = "nosniff"
    if inline:
        response["Content-Security-Policy"] = CSP_PDF if mime == "application/pdf" else CSP_IMAGE
    return response


def _refusal_record(
    request: HttpRequest,
    reason: str,
    started: float,
    document: Document | None = None,
    stored_name: str = "",
) -> None:
    """Record a refused download."""
    refusal_record(
        request,
        Action.DOWNLOAD,
        reason,
        document=document,
        stored_name=stored_name,
        started=started,
    )


def _failure_page(request: HttpRequest, document: Document, name: str, reason: str) -> HttpResponse:
    """Log a decryption failure and return the error page; nothing of the file is in it."""
    reference = request_id_get(request)
    logger.error(
        "Download of document %s failed: %s (stored name %s, reference %s).",
        document.pk,
        reason,
        name,
        reference,
    )
    return download_error_response(request, document, reference)
