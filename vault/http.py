"""HTTP pieces the vault's views share: Range, Content-Disposition, error responses, streaming.

Every response here is private and never stored by a cache: they are about confidential documents.
"""

import contextvars
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .access import (
    Access,
    Outcome,
    RecordError,
    access_context_current,
    access_record,
    request_id_get,
)
from .fileformat import DecryptionError

logger = logging.getLogger(__name__)

NO_STORE = "private, no-store"

_RANGE_SPEC = re.compile(r"[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*", re.ASCII)
_FILENAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")
_QUOTED_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


class RangeNotSatisfiable(Exception):
    """Raised for a Range header that no byte of the representation satisfies."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no byte of {size} satisfies the range")
        self.size = size


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
                raise RangeNotSatisfiable(size)
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
        raise RangeNotSatisfiable(size)
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


def unavailable_response(request: HttpRequest, message: str, *, page: bool = True) -> HttpResponse:
    """Return 503: a dependency (key, access log) is missing, so nothing was done or served.

    `page` False gives the bare message as text, what a download client (a script, a PDF viewer)
    gets instead of a file, as the case study answered.
    """
    if page:
        response = render(request, "vault/unavailable.html", {"message": message}, status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = NO_STORE
    return response


def not_satisfiable_response(size: int) -> HttpResponse:
    """Return 416 for a range beyond the file's `size` bytes."""
    response = HttpResponse(status=416)
    response["Content-Range"] = f"bytes */{size}"
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = NO_STORE
    return response


def download_error_response(request: HttpRequest, document: Any, reference: str) -> HttpResponse:
    """Return the 500 page for a stored file that could not be read: its reference, nothing of it."""
    response = render(
        request,
        "vault/download_error.html",
        {"reference": reference, "document": document},
        status=500,
    )
    response["Cache-Control"] = NO_STORE
    return response


def os_error_reason(exc: OSError) -> str:
    """Return the recorded reason for a stored file that cannot be read."""
    if isinstance(exc, FileNotFoundError):
        return "stored file missing"
    return f"stored file unreadable ({type(exc).__name__})"


def stored_failure_record(name: str, reason: str, sent: int = 0) -> None:
    """Record, in the current access context, a failure the storage never saw."""
    context = replace(access_context_current(), bytes_planned=sent)
    try:
        access_record(Access(Outcome.FAILED, context, stored_name=name, reason=reason))
    except RecordError as exc:
        logger.error("Failure (%s) could not be recorded: %s", reason, exc)


class PlaintextStream:
    """The plaintext of one response: `length` bytes from the segments, then the file is closed."""

    def __init__(
        self,
        file: Any,
        first: bytes | memoryview,
        segments: Iterator[bytes | memoryview],
        length: int,
        context: contextvars.Context,
        document: Any,
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
                    sent = self._length - remaining
                    self._context.run(
                        stored_failure_record, self._file.name, "ended before its size", sent
                    )
                    raise DecryptionError("ended before its size")
            if remaining:
                yield piece[:remaining]
        except OSError as exc:
            # The reader records what fails authentication; a read error is recorded here.
            reason = os_error_reason(exc)
            self._context.run(
                stored_failure_record, self._file.name, reason, self._length - remaining
            )
            self._log(reason)
            raise
        except (DecryptionError, RecordError) as exc:
            # Raising makes the server drop the connection short of Content-Length, so no client
            # mistakes a truncated download for a complete one.
            self._log(getattr(exc, "reason", exc))
            raise

    def _log(self, reason: object) -> None:
        logger.error(
            "Download of document %s aborted mid-stream: %s (stored name %s, reference %s).",
            self._document.pk,
            reason,
            self._file.name,
            request_id_get(self._request),
        )

    def close(self) -> None:
        """Close the segment iterator and the file."""
        try:
            self._segments.close()
        finally:
            self._file.close()
