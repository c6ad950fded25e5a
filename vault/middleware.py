"""Request limits, private caching and the site's Content-Security-Policy.

A multipart body is parsed, and every file part in it spooled (encrypted) to disk, as soon as
anything touches `request.POST`: the CSRF check does, on every POST. So, before
CsrfViewMiddleware's process_view runs: the total body is capped (413), and a view that does not
declare it takes files (`@accepts_uploads`, or the admin for staff) gets multipart only up to
DATA_UPLOAD_MAX_MEMORY_SIZE and with every file part refused (415), never spooled.
"""

from collections.abc import Callable
from typing import Any, BinaryIO

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control

from .http import NO_STORE

ACCEPTS_UPLOADS = "vault_accepts_uploads"
# Room for the multipart framing and the form's other fields around the largest file.
DEFAULT_REQUEST_MARGIN = 1024 * 1024
ADMIN_NAMESPACE = "admin"
NO_FILES_MESSAGE = (
    "This page does not take file uploads: send the form without files, or upload files on "
    "the upload page."
)

View = Callable[..., HttpResponse]


def accepts_uploads(view: View) -> View:
    """Mark a view as taking file uploads; any other view gets 415 for a file part."""
    setattr(view, ACCEPTS_UPLOADS, True)
    return view


def request_body_limit() -> int:
    """Return the largest request body accepted: the upload limit plus a margin for the form."""
    margin = getattr(settings, "VAULT_REQUEST_MARGIN", DEFAULT_REQUEST_MARGIN)
    return int(settings.VAULT_MAX_UPLOAD_SIZE) + int(margin)


def _refusal(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


class _CappedStream:
    """A body stream that stops once more than `limit` bytes have come (no Content-Length)."""

    def __init__(self, stream: BinaryIO, limit: int, request: HttpRequest) -> None:
        self._stream = stream
        self._left = limit
        self._request = request

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            # A whole read lands in memory: as with a Content-Length, no more than Django's
            # DATA_UPLOAD_MAX_MEMORY_SIZE.
            whole = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if whole is not None:
                self._left = min(self._left, int(whole))
            size = self._left + 1
        return self._counted(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        limit = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._counted(self._stream.readline(limit))

    def _counted(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            self._request.vault_body_too_large = True  # type: ignore[attr-defined]
            raise RequestDataTooBig("The request body is larger than the limit.")
        return data

    def limit_to(self, limit: int) -> None:
        """Lower the bytes still accepted to at most `limit`."""
        self._left = min(self._left, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class FileRefused(SuspiciousOperation):
    """Raised on a file part sent to a view that takes no files."""


class FileRefusingUploadHandler(FileUploadHandler):
    """Refuse the first file part, before one byte of it is stored anywhere."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        if self.request is not None:
            self.request.vault_file_refused = True
        raise FileRefused("A file part was sent to a view that takes no files.")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        raise FileRefused("A file part was sent to a view that takes no files.")

    def file_complete(self, file_size: int) -> None:
        return None


class RequestLimitMiddleware:
    """Refuse bodies over the limit (413) and file parts to views that take none (415)."""

    def __init__(self, get_response: View) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = request_body_limit()
        too_large = (
            f"The request is larger than {limit:,} bytes, the largest upload this server "
            "accepts plus the form around it."
        )
        length = request.META.get("CONTENT_LENGTH")
        if length:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                return _refusal(400, "The request's Content-Length is not a number of bytes.")
            if declared > limit:
                return _refusal(413, too_large)
        elif hasattr(request, "_stream"):
            # No length given (chunked transfer, some ASGI servers): count as it is read.
            request._stream = _CappedStream(request._stream, limit, request)
        response = self.get_response(request)
        if getattr(request, "vault_body_too_large", False):
            return _refusal(413, too_large)
        if getattr(request, "vault_file_refused", False):
            return _refusal(415, NO_FILES_MESSAGE)
        return response

    def process_view(
        self, request: HttpRequest, view: View, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        """Keep file parts from views that take none; return 415 if the form is too large."""
        if request.content_type != "multipart/form-data" or _takes_files(request, view):
            return None
        # A form without files is as small as an URL-encoded one (browsers send those anyway).
        small = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if small is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > small:
                return _refusal(415, NO_FILES_MESSAGE)
            if isinstance(request._stream, _CappedStream):  # type: ignore[attr-defined]
                request._stream.limit_to(int(small))  # type: ignore[attr-defined]
        request.upload_handlers = [FileRefusingUploadHandler(request)]
        return None


def _takes_files(request: HttpRequest, view: View) -> bool:
    if getattr(view, ACCEPTS_UPLOADS, False):
        return True
    match = request.resolver_match
    if match is not None and ADMIN_NAMESPACE in match.namespaces:
        user = getattr(request, "user", None)
        return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))
    return False


class PrivatePagesMiddleware:
    """Send `Cache-Control: private, no-store` on every response to a logged-in user."""

    def __init__(self, get_response: View) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        # Pages of documents and names: no shared cache, no copy on the user's disk. A download
        # says so already, and is spared the parsing of its header again.
        if response.get("Cache-Control") != NO_STORE and getattr(user, "is_authenticated", False):
            patch_cache_control(response, private=True, no_store=True)
        return response


# What a view's django-csp decorators set on its response: any of them makes the policy its own.
_CSP_RESPONSE_PARTS = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)


class SitePolicyCSPMiddleware(CSPMiddleware):
    """django-csp's middleware, with the site's policy built once instead of on every response.

    Building the header from the settings costs about 50 us a response (a tenth of a small
    download's own work). Unless a view changed its policy (django-csp's decorators) or a template
    asked for a nonce, the header depends on the settings alone: django-csp builds it once per
    settings object (override_settings makes a new one) and every such response reuses the string.
    Any other response goes through django-csp unchanged.
    """

    _built: tuple[object, object, str, str, tuple[str, ...], tuple[str, ...]] | None = None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """Set the site's policy headers from the string built once, or defer to django-csp."""
        if getattr(request, "_csp_nonce", None) is not None or any(
            getattr(response, part, None) is not None for part in _CSP_RESPONSE_PARTS
        ):
            return super().process_response(request, response)
        if response.status_code in (404, 500) and settings.DEBUG:
            return response  # django-csp leaves Django's debug pages alone
        _, _, policy, report_only, excluded, excluded_ro = self._policies()
        path = request.path_info
        _policy_set(response, HEADER, policy, "_csp_exempt", path.startswith(excluded))
        _policy_set(
            response,
            HEADER_REPORT_ONLY,
            report_only,
            "_csp_exempt_ro",
            path.startswith(excluded_ro),
        )
        # As django-csp does: a nonce asked for after the header is written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response

    def _policies(self) -> tuple[object, object, str, str, tuple[str, ...], tuple[str, ...]]:
        enforced = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        reported = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        built = self._built
        if built is None or built[0] is not enforced or built[1] is not reported:
            built = (
                enforced,
                reported,
                build_policy(),
                build_policy(report_only=True),
                tuple((enforced or {}).get("EXCLUDE_URL_PREFIXES") or ()),
                tuple((reported or {}).get("EXCLUDE_URL_PREFIXES") or ()),
            )
            self._built = built
        return built


def _policy_set(
    response: HttpResponse, header: str, value: str, exempt: str, excluded: bool
) -> None:
    """Set a policy header as django-csp would: unless empty, already set, exempt or excluded."""
    if value and header not in response and not getattr(response, exempt, False) and not excluded:
        response[header] = value
