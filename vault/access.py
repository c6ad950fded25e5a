"""Who decrypts what: the context a view or command sets, and the hook that records every access.

The vault imports nothing from the compliance app. Instead the compliance app registers one recorder
when it starts; the storage calls it on every decryption and failure, and the views call it on every
refusal. With no recorder registered nothing is decrypted: the vault fails closed.
"""

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import models


class Action(models.TextChoices):
    OPEN = "open", "Decrypt (other)"
    VIEW = "view", "View details"
    DOWNLOAD = "download", "Download"
    RANGE = "range", "Range read"
    UPLOAD = "upload", "Upload"
    DELETE = "delete", "Delete"
    SHARE = "share", "Share"
    UNSHARE = "unshare", "Unshare"
    CLI_DECRYPT = "cli-decrypt", "CLI decrypt"
    CLI_ENCRYPT = "cli-encrypt", "CLI encrypt"
    ROTATE = "rotate", "Key rotation"
    REPORT_GENERATED = "report-generated", "Report generated"
    REPORT_DOWNLOADED = "report-downloaded", "Report downloaded"
    REPORT_VERIFIED = "report-verified", "Report verified"
    # Accounts: who signed in, who failed, what changed who may read.
    LOGIN = "login", "Login"
    LOGIN_FAILED = "login-failed", "Failed login"
    LOCKOUT = "lockout", "Login locked out"
    PASSWORD_CHANGE = "password-change", "Password change"
    MEMBERSHIP_ADD = "membership-add", "Membership added"
    MEMBERSHIP_REMOVE = "membership-remove", "Membership removed"
    PERMISSION_GRANT = "permission-grant", "Read-any granted"
    PERMISSION_REVOKE = "permission-revoke", "Read-any revoked"
    # The compliance dashboard's own processing of personal data and storage.
    COMPLIANCE_VIEW = "compliance-view", "Compliance page"
    LOG_EXPORT = "log-export", "Access log export"
    CHAIN_VERIFY = "chain-verify", "Chain verification"
    SCAN = "scan", "Storage scan"
    IMPORT = "import", "Import"
    PRUNE = "prune", "Log prune"
    LEGAL_HOLD = "legal-hold", "Legal hold change"
    # The access log's own seal over the events before it (key rotation, key retirement).
    CHAIN_SEAL = "chain-seal", "Chain seal"


logger = logging.getLogger(__name__)


class Outcome(models.TextChoices):
    ALLOWED = "allowed", "Allowed"
    DENIED = "denied", "Denied"
    FAILED = "failed", "Failed"


@dataclass(frozen=True)
class AccessContext:
    """What the caller knows about an access: who, why, from where, about which document."""

    action: str = Action.OPEN
    user: Any = None
    request: Any = None
    document: Any = None
    staff_read: bool = False
    # The plaintext bytes this access sends: what a download will send once its open is allowed,
    # what a stream had sent when it failed.
    bytes_planned: int | None = None
    # The document whose file is being opened: the storage's open refuses (and records) any other
    # file, so a file swapped in from another document is never served as this one.
    bound_document: Any = None
    # Called by the storage's open with the file's real plaintext size, before anything is recorded:
    # returns the action and the bytes the caller will send (a download judges Range here, once).
    # Whatever it raises ends the open, unrecorded.
    plan: Callable[[int], tuple[str, int]] | None = None
    # Why, for the record of an allowed decryption (a rotation names the old and the new key).
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Access:
    """One recorded access: a decryption, a refusal, an upload, a failure."""

    outcome: str
    context: AccessContext
    stored_name: str = ""
    key_id: str = ""
    reason: str = ""


class RecordError(Exception):
    """Raised when an access cannot be recorded; nothing is served then."""


Recorder = Callable[[Access], None]

_recorder: Recorder | None = None
_context: contextvars.ContextVar[AccessContext | None] = contextvars.ContextVar(
    "vault_access_context", default=None
)


def recorder_register(recorder: Recorder | None) -> None:
    """Register the function that records every access (the compliance app does, at start)."""
    global _recorder
    _recorder = recorder


def access_context_current() -> AccessContext:
    """Return the context set by the innermost `access_context()`, or an anonymous default."""
    return _context.get() or AccessContext()


@contextmanager
def access_context(**fields: Any) -> Iterator[AccessContext]:
    """Set who is accessing and why, for every storage access inside the block."""
    current = _context.get()
    if current is None:
        context = AccessContext(**fields)
    else:
        if "extra" in fields:
            fields["extra"] = {**current.extra, **fields["extra"]}
        context = replace(current, **fields)
    token = _context.set(context)
    try:
        yield context
    finally:
        _context.reset(token)


def access_record(access: Access) -> None:
    """Record one access; raise RecordError if there is no recorder or it fails."""
    if _recorder is None:
        raise RecordError("No access recorder is registered: the vault refuses to decrypt.")
    try:
        _recorder(access)
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(f"The access could not be recorded: {type(exc).__name__}: {exc}") from exc


def actor_identify(user: Any, operator: str = "") -> tuple[Any, str]:
    """Return the user to link (None unless logged in) and the name to keep, at most 150 characters.

    The name is the username, or for a command the operating-system user who ran it: it outlives
    the account, which may be deleted.
    """
    if getattr(user, "is_authenticated", False):
        return user, user.get_username()[:150]
    return None, (operator or "")[:150]


REQUEST_ID_ATTRIBUTE = "access_log_request_id"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,63}")


def request_id_get(request: Any) -> str:
    """Return the request's ID (a sane X-Request-ID, else a new one), the same for all its events."""
    request_id = getattr(request, REQUEST_ID_ATTRIBUTE, None)
    if request_id is None:
        header = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = header if REQUEST_ID_PATTERN.fullmatch(header) else uuid.uuid4().hex
        setattr(request, REQUEST_ID_ATTRIBUTE, request_id)
    return request_id


def refusal_record(
    request: Any,
    action: str,
    reason: str,
    *,
    document: Any = None,
    stored_name: str = "",
    **extra: Any,
) -> None:
    """Record a refusal; one that cannot be recorded is still a refusal, and is logged."""
    with access_context(
        action=action, user=request.user, request=request, document=document, extra=extra
    ) as context:
        try:
            access_record(Access(Outcome.DENIED, context, stored_name=stored_name, reason=reason))
        except RecordError:
            logger.exception("A refusal (%s, %s) could not be recorded.", action, reason)
