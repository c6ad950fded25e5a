"""What the dashboard's overview shows (the keys page reuses the key inventory), as plain functions.

Nothing here returns a secret: keys appear as label and key ID, the KDF as algorithm, iterations
and salt length.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise

from django.conf import settings
from django.core.checks import CheckMessage
from django.core.checks.registry import registry
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.db.models import Count
from django.utils import timezone

from vault.access import Outcome
from vault.keys import keyring
from vault.models import Document

from .models import AccessEvent

KDF_ALGORITHM = "PBKDF2-HMAC-SHA256"


@dataclass(frozen=True)
class KeyRow:
    """One key ID the vault knows of: configured (primary or decrypt-only) or only in documents."""

    key_id: str
    label: str
    primary: bool
    configured: bool
    documents: int

    @property
    def role(self) -> str:
        """Return "primary", "decrypt-only" or "not configured"."""
        if not self.configured:
            return "not configured"
        return "primary" if self.primary else "decrypt-only"


@dataclass(frozen=True)
class KeyInventory:
    """The key ring as the dashboard shows it, or why it cannot be built."""

    rows: list[KeyRow]
    kdf_algorithm: str
    kdf_iterations: int | None
    kdf_salt_length: int
    error: str = ""


def key_inventory_get() -> KeyInventory:
    """Return the configured keys, documents per key ID and the KDF facts; never a secret."""
    counts = dict(
        Document.objects.order_by()
        .values_list("key_id")
        .annotate(documents=Count("pk"))
        .values_list("key_id", "documents")
    )
    salt = getattr(settings, "VAULT_KDF_SALT", None) or ""
    try:
        ring = keyring()
    except ImproperlyConfigured as exc:
        # The message names settings, never their values.
        ring, error = None, str(exc)
    else:
        error = ""
    rows = []
    if ring is not None:
        for key in ring.keys:
            rows.append(
                KeyRow(
                    key_id=key.key_id_hex,
                    label=key.label,
                    primary=key is ring.primary,
                    configured=True,
                    documents=counts.pop(key.key_id_hex, 0),
                )
            )
    for key_id, documents in sorted(counts.items()):
        rows.append(KeyRow(key_id, "", primary=False, configured=False, documents=documents))
    return KeyInventory(
        rows=rows,
        kdf_algorithm=KDF_ALGORITHM,
        kdf_iterations=ring.iterations if ring is not None else None,
        kdf_salt_length=len(salt.encode()),
        error=error,
    )


def vault_checks_run() -> list[CheckMessage]:
    """Return the vault's system-check messages (vault.*), as `manage.py check` shows them."""
    # Only the vault's own check functions: running every app's checks costs tens of ms a page.
    messages: list[CheckMessage] = []
    for check in registry.get_checks(include_deployment_checks=False):
        if getattr(check, "__module__", "").startswith("vault."):
            messages.extend(check(app_configs=None, databases=None))
    return [message for message in messages if (message.id or "").startswith("vault.")]


@dataclass(frozen=True)
class DayActivity:
    """Events on one day, by outcome."""

    day: date
    allowed: int = 0
    denied: int = 0
    failed: int = 0


def day_start(day: date) -> datetime:
    """Return the first instant of a day in the current time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


def activity_by_day(start: date, end: date) -> list[DayActivity]:
    """Return allowed, denied and failed events per day from `start` to `end`, both included.

    One count per day and outcome, each a range of the (outcome, when) index alone. (Grouping by a
    truncated date converts every event's time in Python on SQLite, and conditional counts test
    every event against every day: both take a large fraction of a second on a busy month.)
    """
    if end < start:
        raise ValueError("The period ends before it starts.")
    days = [start + timedelta(offset) for offset in range((end - start).days + 1)]
    alias = router.db_for_read(AccessEvent)
    connection = connections[alias]
    quote = connection.ops.quote_name
    meta = AccessEvent._meta
    sql = (
        f"SELECT COUNT(*) FROM {quote(meta.db_table)} "  # noqa: S608 (names from the model)
        f"WHERE {quote(meta.get_field('outcome').column)} = %s "
        f"AND {quote(meta.get_field('when').column)} >= %s "
        f"AND {quote(meta.get_field('when').column)} < %s"
    )
    bounds = [
        connection.ops.adapt_datetimefield_value(day_start(start + timedelta(offset)))
        for offset in range(len(days) + 1)
    ]
    counts: dict[str, list[int]] = {}
    with connection.cursor() as cursor:
        for outcome in Outcome:
            counts[outcome] = []
            for low, high in pairwise(bounds):
                cursor.execute(sql, [outcome.value, low, high])
                counts[outcome].append(cursor.fetchone()[0])
    return [
        DayActivity(
            day,
            allowed=counts[Outcome.ALLOWED][n],
            denied=counts[Outcome.DENIED][n],
            failed=counts[Outcome.FAILED][n],
        )
        for n, day in enumerate(days)
    ]
