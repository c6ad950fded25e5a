"""Accounts: session timeouts, and the access-log records of logins and of changes to who may read.

- `SessionTimeoutMiddleware` ends a session idle for longer than `SESSION_IDLE_TIMEOUT_STAFF` (staff)
  or `SESSION_IDLE_TIMEOUT` (everyone else), or older than `SESSION_MAX_LIFETIME`, with a message.
- `AccessContextMiddleware` makes the request the context of everything recorded while it runs, so
  the signal receivers below name the acting user, in the admin as on any page.
- Receivers record logins, failed logins and lockouts (durable records), and membership and
  read-any permission changes (recorded in the change's transaction: both commit or neither).
- `PasswordChangeRecorder`, a password validator, records every password change: Django calls its
  `password_changed()` whenever a user is saved after `set_password()` (forms, admin, commands).

Outside a request (commands, scripts, shells) the actor is the operating-system user.
"""

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from .access import (
    Access,
    Action,
    Outcome,
    RecordError,
    access_context,
    access_context_current,
    access_record,
)
from .models import READ_ANY_PERMISSION, Membership

logger = logging.getLogger(__name__)

LOGIN_AT_KEY = "_docvault_login_at"
SEEN_AT_KEY = "_docvault_seen_at"
# Last activity is written at most once a minute: not a session save on every request.
SEEN_RESOLUTION = 60


# Sessions ----------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes % 60 == 0 and minutes >= 60:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def session_idle_timeout(user: Any) -> int:
    """Return the seconds of inactivity after which this user's session ends."""
    if user.is_staff:
        return int(settings.SESSION_IDLE_TIMEOUT_STAFF)
    return int(settings.SESSION_IDLE_TIMEOUT)


def session_expiry_check(session: Any, user: Any, now: float) -> str:
    """Return why this logged-in session has ended (a message for the user), or "" if it has not."""
    login_at, seen_at = session.get(LOGIN_AT_KEY), session.get(SEEN_AT_KEY)
    if not all(isinstance(value, int | float) for value in (login_at, seen_at)):
        # No recorded login: a session this code did not start. End it rather than guess.
        return "Your session has ended. Please log in again."
    lifetime = int(settings.SESSION_MAX_LIFETIME)
    if now - login_at >= lifetime:
        return (
            f"Your session has ended: sessions last at most {_duration(lifetime)}. "
            "Please log in again."
        )
    idle = session_idle_timeout(user)
    if now - seen_at >= idle:
        return (
            f"Your session has ended after {_duration(idle)} without activity. Please log in again."
        )
    return ""


class SessionTimeoutMiddleware:
    """Log out a session past its idle timeout or total lifetime; the login page says why."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            now = time.time()
            ended = session_expiry_check(request.session, user, now)
            if ended:
                # The request goes on as anonymous: every page then sends it to its login page.
                logout(request)
                messages.warning(request, ended)
            elif now - request.session[SEEN_AT_KEY] >= SEEN_RESOLUTION:
                request.session[SEEN_AT_KEY] = now
        return self.get_response(request)


class AccessContextMiddleware:
    """Make the request the access context of everything recorded while it is handled."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Only the request: the recorder reads request.user when it records, so a login or a
        # logout during the request is seen.
        with access_context(request=request):
            return self.get_response(request)


# Recording ---------------------------------------------------------------------------------------


def _operator() -> str:
    from .management.commands._cli import operator

    return operator()


def account_event_record(
    action: str, outcome: str, reason: str, *, user: Any = None, request: Any = None
) -> None:
    """Record one account event; the actor is `user`, else the request's user, else the OS user."""
    current = access_context_current()
    fields: dict[str, Any] = {
        "action": action,
        "document": None,
        "staff_read": False,
        "bytes_planned": None,
        "bound_document": None,
        "plan": None,
    }
    if user is not None:
        fields["user"] = user
    if request is not None:
        fields["request"] = request
    acting = user or current.user or request or current.request
    if acting is None and not current.extra.get("operator"):
        fields["extra"] = {"operator": _operator()}
    with access_context(**fields) as context:
        access_record(Access(outcome, context, reason=reason))


def _refusal_record(action: str, reason: str, request: Any) -> None:
    # A refused login that cannot be recorded is still refused: log it, do not fail the page.
    try:
        account_event_record(action, Outcome.DENIED, reason, request=request)
    except RecordError:
        logger.exception("A %s (%s) could not be recorded.", action, reason)


@receiver(user_logged_in, dispatch_uid="vault.accounts.login")
def _login_recorded(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    now = time.time()
    session = getattr(request, "session", None)
    if session is not None:
        session[LOGIN_AT_KEY] = now
        session[SEEN_AT_KEY] = now
    path = getattr(request, "path", "")
    try:
        account_event_record(
            Action.LOGIN,
            Outcome.ALLOWED,
            f"{user.get_username()} logged in" + (f" at {path}" if path else ""),
            user=user,
            request=request,
        )
    except RecordError:
        # The login stands: with no key or no log, staff must still reach the pages that say
        # so, and nothing is decrypted unrecorded anyway. The error log keeps the trace.
        logger.exception("The login of %s could not be recorded.", user.get_username())


@receiver(user_login_failed, dispatch_uid="vault.accounts.login_failed")
def _login_failure_recorded(
    sender: Any, credentials: dict, request: Any = None, **kwargs: Any
) -> None:
    if request is None or getattr(request, "_docvault_lockout_recorded", False):
        # A locked-out attempt was recorded once, as the lockout.
        return
    # Django masks the password in `credentials`; only the username is kept.
    username = credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username")
    _refusal_record(Action.LOGIN_FAILED, f"failed login as {username or '(no username)'}", request)


def _lockout_recorded(
    sender: Any, request: Any, username: Any, ip_address: Any, **kwargs: Any
) -> None:
    if request is None:
        return
    request._docvault_lockout_recorded = True
    limit = settings.AXES_FAILURE_LIMIT
    cool_off = settings.AXES_COOLOFF_TIME
    cool_off = f"for {_duration(cool_off.total_seconds())}" if cool_off else "until reset"
    _refusal_record(
        Action.LOCKOUT,
        f"login as {username or '(no username)'} refused: locked out after {limit} failed "
        f"logins for this account or from {ip_address or 'this address'}, {cool_off}",
        request,
    )


user_locked_out.connect(_lockout_recorded, dispatch_uid="vault.accounts.lockout")


class PasswordChangeRecorder:
    """A password 'validator' that validates nothing and records every password change."""

    def validate(self, password: str, user: Any = None) -> None:
        """Accept every password: the other validators judge it."""

    def password_changed(self, password: str, user: Any = None) -> None:
        """Record that the user's password changed (never the password)."""
        if user is None:
            return
        verb = "set (new account)" if getattr(user, "_docvault_created", False) else "changed"
        account_event_record(
            Action.PASSWORD_CHANGE, Outcome.ALLOWED, f"password of {user.get_username()} {verb}"
        )

    def get_help_text(self) -> str:
        """Return the notice shown beside password forms."""
        return "Password changes are recorded in the access log."


# Memberships -------------------------------------------------------------------------------------


def _membership_reason(user_id: int, company_id: int, verb: str) -> str:
    from .models import Company

    user = get_user_model().objects.filter(pk=user_id).first()
    company = Company.objects.filter(pk=company_id).first()
    username = user.get_username() if user is not None else f"user #{user_id}"
    name = company.name if company is not None else f"company #{company_id}"
    return f"membership of {username} in {name} {verb}"


@receiver(pre_save, sender=Membership, dispatch_uid="vault.accounts.membership_before")
def _membership_before_save(sender: Any, instance: Membership, **kwargs: Any) -> None:
    previous = None
    if instance.pk is not None and not instance._state.adding:
        previous = (
            Membership.objects.filter(pk=instance.pk).values_list("user_id", "company_id").first()
        )
    instance._docvault_previous = previous


@receiver(post_save, sender=Membership, dispatch_uid="vault.accounts.membership_saved")
def _membership_saved(sender: Any, instance: Membership, created: bool, **kwargs: Any) -> None:
    previous = getattr(instance, "_docvault_previous", None)
    current = (instance.user_id, instance.company_id)
    if not created and previous == current:
        return  # a role change: who may read is the same
    if previous is not None and previous != current:
        account_event_record(
            Action.MEMBERSHIP_REMOVE, Outcome.ALLOWED, _membership_reason(*previous, "removed")
        )
    account_event_record(
        Action.MEMBERSHIP_ADD, Outcome.ALLOWED, _membership_reason(*current, "added")
    )


@receiver(post_delete, sender=Membership, dispatch_uid="vault.accounts.membership_deleted")
def _membership_deleted(sender: Any, instance: Membership, **kwargs: Any) -> None:
    account_event_record(
        Action.MEMBERSHIP_REMOVE,
        Outcome.ALLOWED,
        _membership_reason(instance.user_id, instance.company_id, "removed"),
    )


# The read-any permission, directly or through a group ---------------------------------------------

_PENDING = "_docvault_read_any_pending"


def _read_any_id() -> int | None:
    app_label, codename = READ_ANY_PERMISSION.split(".")
    return (
        Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        .values_list("pk", flat=True)
        .first()
    )


def _through_fields(through: Any) -> tuple[str, str] | None:
    """Return the (source, target) columns of one of the three auth m2m tables, else None."""
    user_model = get_user_model()
    if through is user_model.user_permissions.through:
        return "user_id", "permission_id"
    if through is user_model.groups.through:
        return "user_id", "group_id"
    if through is Group.permissions.through:
        return "group_id", "permission_id"
    return None


def _pairs(
    through: Any, columns: tuple[str, str], instance: Any, reverse: bool, verb: str, pk_set: Any
) -> list[tuple[int, int]]:
    """Return the (source, target) rows this add, remove or clear really changes, in key order.

    In key order, so that one change to several accounts is recorded in the same order on every
    database (a set of keys, or rows read without ORDER BY, come in any order).
    """
    source, target = columns
    mine, theirs = (target, source) if reverse else (source, target)
    if verb == "add":
        others = sorted(pk_set or ())
        return [(other, instance.pk) if reverse else (instance.pk, other) for other in others]
    rows = through.objects.filter(**{mine: instance.pk})
    if pk_set is not None:
        rows = rows.filter(**{f"{theirs}__in": pk_set})
    return list(rows.order_by(source, target).values_list(source, target))


def _read_any_changes(
    through: Any, columns: tuple[str, str], pairs: Iterable[tuple[int, int]], read_any: int
) -> list[tuple[int | None, int | None]]:
    """Return (user id, group id or None) for every user whose read-any these rows carry."""
    user_model = get_user_model()
    group_permissions = Group.permissions.through
    if columns == ("user_id", "permission_id"):
        return [(user, None) for user, permission in pairs if permission == read_any]
    if columns == ("user_id", "group_id"):
        pairs = list(pairs)
        holding = set(
            group_permissions.objects.filter(
                group_id__in={group for _, group in pairs}, permission_id=read_any
            ).values_list("group_id", flat=True)
        )
        return [(user, group) for user, group in pairs if group in holding]
    changes: list[tuple[int | None, int | None]] = []
    for group, permission in pairs:
        if permission != read_any:
            continue
        members = list(
            user_model.groups.through.objects.filter(group_id=group).values_list(
                "user_id", flat=True
            )
        )
        changes.extend((user, group) for user in members or [None])
    return changes


def _read_any_reasons(changes: list[tuple[int | None, int | None]], granted: bool) -> list[str]:
    users = get_user_model().objects.in_bulk({user for user, _ in changes if user is not None})
    groups = Group.objects.in_bulk({group for _, group in changes if group is not None})
    verb = "granted to" if granted else "revoked from"
    reasons = []
    for user_id, group_id in changes:
        user = users.get(user_id)
        username = user.get_username() if user is not None else f"user #{user_id}"
        group = groups.get(group_id)
        group_name = group.name if group is not None else f"group #{group_id}"
        if user_id is None:
            reasons.append(f"read-any {verb} group {group_name} (no members)")
        elif group_id is None:
            reasons.append(f"read-any {verb} {username} directly")
        else:
            reasons.append(f"read-any {verb} {username} via group {group_name}")
    return reasons


@receiver(m2m_changed, dispatch_uid="vault.accounts.read_any")
def _read_any_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    phase, _, verb = action.partition("_")
    if verb not in {"add", "remove", "clear"}:
        return
    columns = _through_fields(sender)
    if columns is None:
        return
    pending = instance.__dict__.setdefault(_PENDING, {})
    if phase == "pre":
        # Before the rows change: what a remove or a clear takes away can only be read now.
        read_any = _read_any_id()
        reasons: list[str] = []
        if read_any is not None:
            pairs = _pairs(sender, columns, instance, reverse, verb, pk_set)
            changes = _read_any_changes(sender, columns, pairs, read_any)
            reasons = _read_any_reasons(changes, granted=verb == "add")
        pending[sender] = reasons
        return
    action_name = Action.PERMISSION_GRANT if verb == "add" else Action.PERMISSION_REVOKE
    for reason in pending.pop(sender, []):
        account_event_record(action_name, Outcome.ALLOWED, reason)


# Whether a holder may use read-any: active, staff, and holding it (superusers hold every permission).
_READ_ANY_FLAGS = ("is_active", "is_staff", "is_superuser")


def _holds_read_any(user: Any, read_any: int, is_superuser: bool) -> bool:
    if is_superuser:
        return True
    return (
        user.user_permissions.filter(pk=read_any).exists()
        or Group.permissions.through.objects.filter(
            group__user=user, permission_id=read_any
        ).exists()
    )


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="vault.accounts.user_before")
def _user_before_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    previous = None
    if update_fields is not None and not set(update_fields) & set(_READ_ANY_FLAGS):
        previous = False  # a save of other fields (last_login, password): no flag changes
    elif instance.pk is not None and not instance._state.adding:
        previous = type(instance).objects.filter(pk=instance.pk).values(*_READ_ANY_FLAGS).first()
    instance._docvault_flags_before = previous


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="vault.accounts.user_saved")
def _user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    # Django calls password_changed() after post_save: this tells a new account from a change.
    instance._docvault_created = created
    before = getattr(instance, "_docvault_flags_before", None)
    if before is False:
        return
    before = before or dict.fromkeys(_READ_ANY_FLAGS, False)
    after = {flag: bool(getattr(instance, flag)) for flag in _READ_ANY_FLAGS}
    if before == after:
        return
    read_any = _read_any_id()
    if read_any is None:
        return
    usable_before = before["is_active"] and before["is_staff"]
    usable_after = after["is_active"] and after["is_staff"]
    had = usable_before and _holds_read_any(instance, read_any, before["is_superuser"])
    has = usable_after and _holds_read_any(instance, read_any, after["is_superuser"])
    if had == has:
        return
    changed = ", ".join(
        f"{flag} {'set' if after[flag] else 'cleared'}"
        for flag in _READ_ANY_FLAGS
        if before[flag] != after[flag]
    )
    verb = "granted to" if has else "revoked from"
    account_event_record(
        Action.PERMISSION_GRANT if has else Action.PERMISSION_REVOKE,
        Outcome.ALLOWED,
        f"read-any {verb} {instance.get_username()}: {'new account, ' if created else ''}{changed}",
    )


@receiver(pre_delete, sender=Group, dispatch_uid="vault.accounts.group_deleted")
def _read_any_group_deleted(sender: Any, instance: Group, **kwargs: Any) -> None:
    # Deleting a group removes its rows without m2m_changed: its members lose read-any here.
    read_any = _read_any_id()
    if read_any is None or not instance.permissions.filter(pk=read_any).exists():
        return
    changes = [(user, instance.pk) for user in instance.user_set.values_list("pk", flat=True)]
    for reason in _read_any_reasons(changes, granted=False):
        account_event_record(Action.PERMISSION_REVOKE, Outcome.ALLOWED, reason + " (group deleted)")
