"""The download views: permission check, safe stored names, recorded decryption, streamed response.

Two routes serve a document: `/documents/<uuid>/download/` and the case study's `/vault/<path>` (the
stored name under the media root). Both check the reader with one query, record refusals, and leave
the record of a decryption to the storage's open, which writes it before any plaintext leaves.

Decisions, in the terms of RFC 9110:
- Not a reader, or no such document: 404 either way (existence never leaks), recorded as DENIED.
- A hostile path (absolute, `..` or `.` or empty segments, NUL or other control characters,
  backslashes, any `%`, so no double encoding) is refused with 400 before any database or file
  access; a stored file that resolves outside the media root (a symlink) gets 400 as well. Both are
  recorded as DENIED.
- The Content-Type is the one python-magic sniffed from the first plaintext bytes at upload (kept in
  the row); a file stored without one is sniffed from its first decrypted segment here.
- HEAD opens the file like a download and authenticates its first segment (a tampered file gets
  the same error page as GET), so it is recorded (action download, bytes planned 0). HEAD ignores
  Range, as RFC 9110 says of every method but GET.
- One range: 206 with Content-Range; unsatisfiable: 416 with `Content-Range: bytes */SIZE`, nothing
  decrypted and so nothing recorded; several ranges, a malformed header or any If-Range (we send no
  validator it could match): the whole file, 200.
- No key configured: 503. Recording impossible: 503, nothing served. A file that fails
  authentication, uses an unknown key or is missing: 500 with an error page that shows the request
  id (the fault is the server's stored data, not the request, hence not 422). A later segment that
  fails: the stream raises, so the server drops the connection short of Content-Length.

Streaming holds for WSGI servers (gunicorn), the deployment target: under ASGI, Django 5.2 buffers
any synchronous streaming response whole before sending it.
"""

import contextvars
import logging
import os
import re
import time
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, Storage
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from .access import (
    Access,
    Action,
    Outcome,
    RecordError,
    access_context,
    access_context_current,
    access_record,
    refusal_record,
    request_id_get,
)
from .fileformat import DecryptionError
from .keys import keyring
from .mime import SNIFF_BYTES, mime_sniff
from .models import Document, document_get_for_reader

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 255
INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"})
# Chrome and Safari refuse to render a PDF under `sandbox`, so PDFs get the no-fetch policy only.
CSP_PDF = "default-src 'none'; object-src 'self'; style-src 'unsafe-inline'"
CSP_IMAGE = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
KEY_MISSING_STAFF = "Encryption key not configured."
TRY_AGAIN = "Please try again later."

# Stored names are generated (`documents/2026/11/<hex>`): none holds a control character, a
# backslash or a percent sign, so refusing them costs nothing and ends every encoding trick.
_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\\%]")
_RANGE_SPEC = re.compile(r"[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*", re.ASCII)
_FILENAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")
_QUOTED_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


class RangeNotSatisfiable(Exception):
    """Raised for a Range header that no byte of the representation satisfies."""


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


def byte_range_parse(value: str | None, size: int) -> tuple[int, int] | None:
    """Return the (first, last) byte of one satisfiable range, or None to send the whole file.

    Raise RangeNotSatisfiable when no byte satisfies it. Malformed headers, other units and
    several ranges give None: a server may always ignore Range (RFC 9110 section 14.2).
    """
    if not value:
        return None
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE_SPEC.fullmatch(spec)
    if match is None:
        return None
    first_text, last_text = match.groups()
    try:
        if not first_text:
            if not last_text:
                return None
            suffix = int(last_text)
            if suffix == 0:
                raise RangeNotSatisfiable
            if size == 0:
                return None
            return max(0, size - suffix), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:  # more digits than int() accepts
        return None
    if last_text and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable
    return first, min(last, size - 1)


def content_disposition(disposition: str, filename: str) -> str:
    """Return a Content-Disposition value: an ASCII fallback plus the exact UTF-8 name (RFC 6266)."""
    name = _FILENAME_UNSAFE.sub("_", filename).strip() or "document"
    # Accents dropped ("Müller" -> "Muller"), anything else non-ASCII becomes "_".
    decomposed = unicodedata.normalize("NFKD", name)
    fallback = "".join(char for char in decomposed if not unicodedata.combining(char))
    fallback = _QUOTED_UNSAFE.sub("_", fallback)
    if fallback == name:
        return f'{disposition}; filename="{name}"'
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


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
        _refusal_record(request, "unsafe path", started, stored_name=_printable(path))
        raise
    return _download(request, {"file": name}, started=started)


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
        _refusal_record(request, reason, started, document=document, stored_name=_printable(name))
        raise

    try:
        keyring()
    except ImproperlyConfigured:
        logger.error("Download of document %s refused: no encryption key configured.", document.pk)
        return _unavailable(KEY_MISSING_STAFF if request.user.is_staff else TRY_AGAIN)

    head_only = request.method == "HEAD"
    size = document.size
    byte_range = None
    if not head_only and "HTTP_IF_RANGE" not in request.META:
        try:
            byte_range = byte_range_parse(request.META.get("HTTP_RANGE"), size)
        except RangeNotSatisfiable:
            return _not_satisfiable(size)

    if head_only:
        planned = 0
    elif byte_range is None:
        planned = size
    else:
        planned = byte_range[1] - byte_range[0] + 1
    with access_context(
        action=Action.DOWNLOAD if byte_range is None else Action.RANGE,
        user=request.user,
        request=request,
        document=document,
        staff_read=staff_read,
        bytes_planned=planned,
        file_id=document.file_id,
        extra={"started": started},
    ):
        try:
            file = storage.open(name, "rb")
        except RecordError as exc:
            logger.error("Download of document %s refused: %s", document.pk, exc)
            return _unavailable(TRY_AGAIN)
        except DecryptionError as exc:
            return _failure_page(request, document, name, exc.reason)
        except FileNotFoundError:
            _failure_record(name, "stored file missing")
            return _failure_page(request, document, name, "stored file missing")
        try:
            return _respond(request, document, file, size, byte_range, head_only)
        except RecordError as exc:
            file.close()
            logger.error("Download of document %s refused: %s", document.pk, exc)
            return _unavailable(TRY_AGAIN)
        except DecryptionError as exc:
            file.close()
            return _failure_page(request, document, name, exc.reason)
        except BaseException:
            file.close()
            raise


def _respond(
    request: HttpRequest,
    document: Document,
    file: Any,
    size: int,
    byte_range: tuple[int, int] | None,
    head_only: bool,
) -> HttpResponse:
    """Decrypt the first segment, take the sniffed type, build the response; the file is ours."""
    actual = _plaintext_size(file)
    if actual != size:
        logger.warning(
            "Document %s: recorded size %d, file holds %d bytes.", document.pk, size, actual
        )
        size = actual
        if byte_range is not None:
            try:
                byte_range = byte_range_parse(request.META.get("HTTP_RANGE"), size)
            except RangeNotSatisfiable:
                byte_range = None

    if head_only:
        # The first segment is authenticated even here: HEAD answers as GET would, so a tampered
        # file gets the error page, not a 200.
        try:
            first = next(file.segments(), b"")
        finally:
            file.close()
        mime = document.mime_type or mime_sniff(bytes(first[:SNIFF_BYTES]))
        response = HttpResponse(content_type=mime)
        length = size
    else:
        start = 0 if byte_range is None else byte_range[0]
        # The type sniffed from the first plaintext bytes at upload is in the row; libmagic runs
        # here only for files stored without one (it costs up to 1.4 ms on text).
        mime = document.mime_type
        if start == 0:
            segments = file.segments()
            first = next(segments, b"")
            mime = mime or mime_sniff(bytes(first[:SNIFF_BYTES]))
        else:
            if not mime:
                # The reader keeps the segment it decrypted last: a start inside the first
                # segment costs no second decryption.
                mime = mime_sniff(file.read(SNIFF_BYTES))
            file.seek(start)
            segments = file.segments()
            first = next(segments, b"")
        length = size if byte_range is None else byte_range[1] - start + 1
        stream = _PlaintextStream(
            file, first, segments, length, contextvars.copy_context(), document, request
        )
        if byte_range is None:
            response = StreamingHttpResponse(stream, content_type=mime)
        else:
            response = StreamingHttpResponse(stream, content_type=mime, status=206)
            response["Content-Range"] = f"bytes {start}-{byte_range[1]}/{size}"

    inline = request.GET.get("inline") == "1" and mime in INLINE_TYPES
    response["Content-Length"] = str(length)
    response["Content-Disposition"] = content_disposition(
        "inline" if inline else "attachment", document.original_filename
    )
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    if inline:
        response["Content-Security-Policy"] = CSP_PDF if mime == "application/pdf" else CSP_IMAGE
    return response


class _PlaintextStream:
    """The plaintext of one response: `length` bytes from the segments, then the file is closed."""

    def __init__(
        self,
        file: Any,
        first: bytes | memoryview,
        segments: Iterator[bytes | memoryview],
        length: int,
        context: contextvars.Context,
        document: Document,
        request: HttpRequest,
    ) -> None:
        self._file = file
        self._first = first
        self._segments = segments
        self._length = length
        # The server iterates after the view has left its access context; a failure it meets
        # must still be recorded against this request, user and document.
        self._context = context
        self._document = document
        self._request = request

    def __iter__(self) -> Iterator[bytes | memoryview]:
        remaining = self._length
        piece, self._first = self._first, b""
        try:
            while len(piece) < remaining:
                if piece:
                    yield piece
                    remaining -= len(piece)
                piece = self._context.run(next, self._segments, None)
                if piece is None:
                    self._context.run(_failure_record, self._file.name, "ended before its size")
                    raise DecryptionError("ended before its size")
            if remaining:
                yield piece[:remaining]
        except (DecryptionError, RecordError) as exc:
            # Raising makes the server drop the connection short of Content-Length, so no client
            # mistakes a truncated download for a complete one.
            logger.error(
                "Download of document %s aborted mid-stream: %s (stored name %s, reference %s).",
                self._document.pk,
                getattr(exc, "reason", exc),
                self._file.name,
                request_id_get(self._request),
            )
            raise

    def close(self) -> None:
        """Close the segment iterator and the file."""
        try:
            self._segments.close()
        finally:
            self._file.close()


def _printable(name: str) -> str:
    """Return a hostile name fit for the log: escaped, quotes dropped, bounded."""
    return ascii(name)[1:-1][:MAX_NAME_LENGTH]


def _plaintext_size(file: Any) -> int:
    try:
        return file.size
    except AttributeError:
        # A legacy file is decrypted whole into memory: its end is its size.
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        return size


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


def _failure_record(name: str, reason: str) -> None:
    """Record, in the current access context, a failure the storage never saw."""
    try:
        access_record(
            Access(Outcome.FAILED, access_context_current(), stored_name=name, reason=reason)
        )
    except RecordError as exc:
        logger.error("Failure (%s) could not be recorded: %s", reason, exc)


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
    response = render(
        request,
        "vault/download_error.html",
        {"reference": reference, "document": document},
        status=500,
    )
    response["Cache-Control"] = "private, no-store"
    return response


def _unavailable(message: str) -> HttpResponse:
    response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    return response


def _not_satisfiable(size: int) -> HttpResponse:
    response = HttpResponse(status=416)
    response["Content-Range"] = f"bytes */{size}"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, no-store"
    return response
