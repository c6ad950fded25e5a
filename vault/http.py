"""HTTP pieces the vault's views share: Range, Content-Disposition and the error responses.

Every response here is private and never stored by a cache: they are about confidential documents.
"""

import re
import unicodedata
from typing import Any
from urllib.parse import quote

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

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
