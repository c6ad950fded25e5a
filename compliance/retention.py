"""Retention of the access log: pruning events older than the retention, and the legal hold.

Pruning is the only way events ever leave the log. It verifies the whole chain first, then in one
transaction appends a prune event stating the cut (range, chain hash, link digest), stores the same
figures as a ChainCheckpoint and deletes the events up to the cut with one DELETE, the only one
the application ever sends to the log. Verification then starts from the checkpoint, and demands
the prune event, authenticated, to vouch for it. A legal hold blocks pruning.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from vault.access import Access, AccessContext, Action, Outcome, actor_identify

from . import heads
from .access_log import (
    access_event_record,
    chain_checkpoint_latest,
    chain_head_expected,
    chain_verify,
    prune_reason,
)
from .models import AccessEvent, ChainCheckpoint, LegalHold

RETENTION_SETTING = "ACCESS_LOG_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 730


class PruneRefused(Exception):
    """Raised when the log cannot be pruned: a legal hold, or a chain that does not verify."""


@dataclass(frozen=True)
class PruneResult:
    """What a prune removed, or (dry run) would remove."""

    dry_run: bool
    retention_days: int
    cutoff: datetime
    first_seq: int
    last_seq: int
    count: int
    checkpoint: ChainCheckpoint | None = None
    hold: LegalHold | None = None
    note: str = ""

    def summary(self) -> str:
        """Return the one-line outcome the command prints."""
        older = f"older than {self.retention_days} days (before {self.cutoff:%Y-%m-%d %H:%M} UTC)"
        if not self.count:
            return f"Nothing to prune: no access event is {older}."
        events = f"events {self.first_seq}-{self.last_seq} ({self.count} events) {older}"
        if self.dry_run:
            line = f"Dry run: would prune {events}."
            if self.hold is not None:
                line += f" Refused now: {legal_hold_describe(self.hold)}."
            return line
        assert self.checkpoint is not None
        return (
            f"Pruned {events} under checkpoint #{self.checkpoint.pk}; the prune event is seq "
            f"{self.checkpoint.event_seq}. {self.note}"
        ).strip()


def retention_days() -> int:
    """Return ACCESS_LOG_RETENTION_DAYS (default 730); raise ValueError unless it is 1 or more."""
    value = getattr(settings, RETENTION_SETTING, DEFAULT_RETENTION_DAYS)
    days = int(value if value not in (None, "") else DEFAULT_RETENTION_DAYS)
    if days < 1:
        raise ValueError(f"{RETENTION_SETTING} must be a whole number of days, 1 or more.")
    return days


def legal_hold_current(*, using: str | None = None) -> LegalHold | None:
    """Return the legal hold's latest change (None: never set, pruning allowed)."""
    alias = using or router.db_for_read(LegalHold)
    return LegalHold.objects.using(alias).order_by("-when", "-id").first()


def legal_hold_describe(hold: LegalHold) -> str:
    """Return who set the hold, when and why, in words."""
    state = "on" if hold.on else "off"
    who = hold.set_by_username or "an unnamed operator"
    return f"legal hold {state}, set by {who} on {hold.when:%Y-%m-%d %H:%M} UTC: {hold.reason}"


def legal_hold_set(
    on: bool,
    *,
    user: Any,
    reason: str,
    request: HttpRequest | None = None,
    operator: str = "",
) -> LegalHold:
    """Switch the legal hold on or off, recorded with who and why; return the new state."""
    reason = " ".join(str(reason or "").split())[:400]
    if not reason:
        raise ValueError("Say why the legal hold changes: the reason is required.")
    set_by, set_by_username = actor_identify(user, operator)
    context = AccessContext(
        action=Action.LEGAL_HOLD, user=user, request=request, extra={"operator": operator}
    )
    state = "on" if on else "off"
    with transaction.atomic(using=router.db_for_write(LegalHold)):
        # The event first: it takes the chain's lock, which a prune holds while it checks the hold.
        event = access_event_record(Access(Outcome.ALLOWED, context, reason=f"{state}: {reason}"))
        return LegalHold.objects.create(
            when=event.when,
            on=on,
            reason=reason,
            set_by=set_by,
            set_by_username=set_by_username,
            event_seq=event.seq,
        )


def access_log_prune(
    *,
    dry_run: bool = False,
    user: Any = None,
    operator: str = "",
    via: str = "command",
    now: datetime | None = None,
    using: str | None = None,
) -> PruneResult:
    """Remove the events older than the retention, behind a checkpoint; raise PruneRefused.

    Refused under a legal hold, or when the chain does not verify OK against the published head
    (pruning must never destroy the evidence of a broken log). Refusals are recorded too.
    """
    days = retention_days()
    cutoff = (now or timezone.now()) - timedelta(days=days)
    alias = using or router.db_for_write(AccessEvent)
    start = chain_checkpoint_latest(alias)
    first = start.last_seq + 1 if start is not None else 1
    last = (
        AccessEvent.objects.using(alias)
        .filter(when__lt=cutoff, seq__gte=first)
        .aggregate(last=Max("seq"))["last"]
    )
    count = 0 if last is None else last - first + 1
    hold = legal_hold_current(using=alias)
    hold = hold if hold is not None and hold.on else None
    result = PruneResult(dry_run, days, cutoff, first, last or 0, count, hold=hold)
    if dry_run:
        return result

    def refuse(message: str, outcome: Outcome) -> PruneRefused:
        context = AccessContext(action=Action.PRUNE, user=user, extra={"operator": operator})
        access_event_record(Access(outcome, context, reason=message))
        return PruneRefused(message)

    if hold is not None:
        raise refuse(f"Pruning refused: {legal_hold_describe(hold)}.", Outcome.DENIED)
    if not count:
        return result
    expected_head, problems = chain_head_expected()
    report = chain_verify(using=alias, expected_head=expected_head, capture_seq=last)
    if problems or not report.ok or report.captured is None:
        raise refuse(
            f"Pruning refused: the access log must verify OK first. {report.summary()} "
            + " ".join(problems),
            Outcome.FAILED,
        )
    _, chain_hash, digest = report.captured
    context = AccessContext(action=Action.PRUNE, user=user, extra={"operator": operator})
    try:
        with transaction.atomic(using=alias):
            event = access_event_record(
                Access(
                    Outcome.ALLOWED,
                    context,
                    reason=prune_reason(first, last, cutoff, chain_hash, digest),
                )
            )
            # Checked again under the chain's lock: a hold set meanwhile wins.
            late_hold = legal_hold_current(using=alias)
            if late_hold is not None and late_hold.on:
                raise PruneRefused(f"Pruning refused: {legal_hold_describe(late_hold)}.")
            checkpoint = ChainCheckpoint.objects.using(alias).create(
                when=event.when,
                first_seq=first,
                last_seq=last,
                count=count,
                chain_hash=chain_hash,
                link_digest=digest,
                cutoff=cutoff,
                retention_days=days,
                event_seq=event.seq,
                **ChainCheckpoint.requested_by_fields(user, operator, via),
            )
            deleted = _events_delete(alias, first, last)
            if deleted != count:
                raise PruneRefused(
                    f"Pruning refused: {deleted} events matched seq {first}-{last}, not {count}; "
                    "nothing was removed."
                )
    except PruneRefused as exc:
        raise refuse(str(exc), Outcome.DENIED) from None
    note = ""
    try:
        # The published head moves past the cut, so the next check never needs a pruned event.
        heads.chain_head_publish(event.seq, event.hash)
    except OSError as exc:
        note = f"The head could not be published to {heads.HEADS_NAME} ({exc})."
    return PruneResult(False, days, cutoff, first, last, count, checkpoint=checkpoint, note=note)


def _events_delete(alias: str, first_seq: int, last_seq: int) -> int:
    """Delete the events first_seq..last_seq: the one narrow path around the append-only guards."""
    connection = connections[alias]
    table = connection.ops.quote_name(AccessEvent._meta.db_table)
    seq = connection.ops.quote_name("seq")
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE {seq} >= %s AND {seq} <= %s",  # noqa: S608
            [first_seq, last_seq],
        )
        return cursor.rowcount


def retention_overview(*, checkpoints: int = 10) -> dict[str, Any]:
    """Return what the retention page shows: the setting, the hold, the last checkpoints."""
    days = retention_days()
    cutoff = timezone.now() - timedelta(days=days)
    oldest = AccessEvent.objects.order_by("seq").values_list("seq", "when").first()
    return {
        "retention_days": days,
        "cutoff": cutoff,
        "oldest": oldest,
        "due": AccessEvent.objects.filter(when__lt=cutoff).count(),
        "hold": legal_hold_current(),
        "holds": list(LegalHold.objects.order_by("-when", "-id")[:checkpoints]),
        "checkpoints": list(ChainCheckpoint.objects.order_by("-last_seq", "-id")[:checkpoints]),
    }
