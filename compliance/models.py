"""The access log: one append-only, hash-chained row per decryption, refusal and upload."""

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone

from vault.access import Action, Outcome, actor_identify

GENESIS_HASH = "0" * 64


class ChainStatus(models.TextChoices):
    """The verdict of a walk of the chain."""

    OK = "ok", "OK"
    BROKEN = "broken", "Broken"
    UNVERIFIABLE = "cannot verify", "Cannot verify"


class AppendOnlyError(Exception):
    """Raised on any attempt to change, delete or bypass the chain of access events."""


class AccessEventQuerySet(models.QuerySet):
    """Read-only in bulk: events are never updated, deleted or created outside the recorder."""

    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Access events are never updated.")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("Access events are never deleted.")

    def bulk_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Access events are appended by access_event_record() only.")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        # Refused before Django opens its transaction, which the error would leave broken.
        raise AppendOnlyError("Access events are never updated.")


class AccessEvent(models.Model):
    """One access to a document: who, what, when, from where, with which key, and the outcome.

    Rows are inserted by `compliance.access_log.access_event_record()` only, never changed.
    The foreign keys have no database constraint and never cascade: deleting a user or a document
    leaves its events untouched (an UPDATE would break the chain), and the snapshot columns keep
    what the row said at the time. `document_id` itself is the snapshot of the document's ID.
    """

    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    when = models.DateTimeField(editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="access_events",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    document = models.ForeignKey(
        "vault.Document",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="access_events",
    )
    document_title = models.CharField(max_length=200, blank=True)
    stored_name = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    reason = models.CharField(max_length=500, blank=True)
    staff_read = models.BooleanField(default=False)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    key_id = models.CharField(max_length=16, blank=True, help_text="Key ID of the file (hex).")
    bytes_served = models.PositiveBigIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    chain_key_id = models.CharField(max_length=16, help_text="Key ID of the chain's HMAC key.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AccessEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        # Related lookups and internal updates use the base manager: it refuses changes too.
        base_manager_name = "objects"
        # The dashboard filters by period, person, document, outcome, action, IP, key and staff
        # reads, and sorts by time, actor, action or outcome: each filter and each sort is one
        # index range scan (ties on `when` are broken by the id, the last column of every SQLite
        # index), so a page never sorts or scans the whole log.
        indexes = [
            models.Index(fields=["when"], name="compliance_ae_when"),
            models.Index(fields=["actor", "when"], name="compliance_ae_actor_when"),
            models.Index(fields=["document", "when"], name="compliance_ae_document_when"),
            models.Index(fields=["outcome", "when"], name="compliance_ae_outcome_when"),
            models.Index(fields=["actor_username", "when"], name="compliance_ae_username_when"),
            models.Index(fields=["action", "when"], name="compliance_ae_action_when"),
            models.Index(fields=["client_ip", "when"], name="compliance_ae_ip_when"),
            models.Index(fields=["key_id", "when"], name="compliance_ae_key_when"),
            models.Index(
                fields=["when"],
                condition=models.Q(staff_read=True),
                name="compliance_ae_staff_when",
            ),
        ]
        permissions = [("view_dashboard", "Can use the compliance dashboard")]

    def __str__(self) -> str:
        return (
            f"#{self.seq} {self.when:%Y-%m-%d %H:%M:%S} {self.actor_username or '-'} {self.action}"
        )

    def save(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Raise AppendOnlyError: events are appended by access_event_record(), never changed."""
        if self._state.adding:
            raise AppendOnlyError("Access events are appended by access_event_record() only.")
        raise AppendOnlyError("Access events are never updated.")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Raise AppendOnlyError: access events are never deleted."""
        raise AppendOnlyError("Access events are never deleted.")


def access_event_latest(*, using: str | None = None) -> AccessEvent | None:
    """Return the log's last event (seq, hash and when loaded), or None if the log is empty."""
    # The unique index on seq, read backwards: one row, whatever the size of the log.
    return AccessEvent.objects.using(using).order_by("-seq").only("seq", "hash", "when").first()


class RequestedBy(models.Model):
    """Who asked for a chain operation (a user, or the OS user of a command) and through what."""

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    requested_by_username = models.CharField(max_length=150, blank=True)
    via = models.CharField(max_length=16, help_text="command, dashboard, ...")

    class Meta:
        abstract = True

    @staticmethod
    def requested_by_fields(user: Any, operator: str, via: str) -> dict[str, Any]:
        """Return the three fields for a request by `user` (or `operator`) through `via`."""
        requester, username = actor_identify(user, operator)
        return {"requested_by": requester, "requested_by_username": username, "via": via[:16]}


class ChainCheck(RequestedBy):
    """One verification of the access log's chain: when, by whom, how, and what it found.

    Written by `compliance.access_log.chain_check_run()` (the `audit_verify` command, the
    dashboard). The verdict proper is the chain itself; this row is its history.
    """

    when = models.DateTimeField(editable=False)
    status = models.CharField(max_length=16, choices=ChainStatus.choices)
    count = models.PositiveBigIntegerField(help_text="Events verified before any broken link.")
    head_seq = models.PositiveBigIntegerField(help_text="The last intact event reached.")
    head_hash = models.CharField(max_length=64)
    broken_seq = models.PositiveBigIntegerField(null=True, blank=True)
    expected_head_seq = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The published (or given) head checked against."
    )
    expected_head_hash = models.CharField(max_length=64, blank=True)
    published = models.BooleanField(
        default=False, help_text="Whether the head reached was published to the heads file."
    )
    summary = models.TextField()

    class Meta:
        ordering = ["-when", "-id"]
        get_latest_by = ["when", "id"]

    def __str__(self) -> str:
        return f"{self.when:%Y-%m-%d %H:%M:%S} {self.status} at seq {self.head_seq}"


# The storage scan ---------------------------------------------------------------------------------


class ScanRun(models.Model):
    """One walk of the inner storage: what it held, what the database says, and the verdict.

    Written once, at the end of the scan, together with its findings (`compliance.scan`).
    """

    class Kind(models.TextChoices):
        QUICK = "quick", "Quick"  # the headers of every file
        FULL = "full", "Full"  # every segment of every file authenticated

    class Verdict(models.TextChoices):
        CERTIFIED = "certified", "Certified"
        NOT_CERTIFIED = "not-certified", "Not certified"

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_username = models.CharField(
        max_length=150, blank=True, help_text="The user, or the OS user who ran the command."
    )
    storage = models.CharField(max_length=255, blank=True, help_text="The inner storage scanned.")
    files = models.PositiveBigIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    reserved_files = models.PositiveBigIntegerField(
        default=0, help_text="The vault's own files under the reserved _docvault/ prefix."
    )
    unbound_files = models.PositiveBigIntegerField(
        default=0, help_text="Ciphertext files whose header names no document, or another one."
    )
    counts_by_format = models.JSONField(default=dict)
    counts_by_key = models.JSONField(default=dict)
    finding_counts = models.JSONField(default=dict)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    certification = models.TextField()
    inventory_digest = models.CharField(
        max_length=64, help_text="SHA-256 of the sorted inventory (name, size, format, key ID)."
    )

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} scan of {self.started_at:%Y-%m-%d %H:%M} UTC"

    @property
    def age_days(self) -> int:
        """Return how many whole days ago the scan finished."""
        return (timezone.now() - self.finished_at).days

    @property
    def certified(self) -> bool:
        """Return whether every file is ciphertext a configured key opens and nothing is missing."""
        return self.verdict == self.Verdict.CERTIFIED

    @property
    def finding_summary(self) -> list[tuple[str, str, int, bool]]:
        """Return (kind, label, count, is a notice) per kind of finding, worst first."""
        kinds = [kind for kind in ScanFinding.Kind if kind in self.finding_counts]
        return [
            (kind.value, kind.label, self.finding_counts[kind], kind in ScanFinding.NOTICES)
            for kind in kinds
        ]


def scan_run_latest() -> ScanRun | None:
    """Return the scan that finished last, or None if none has run: what storage is known to hold."""
    return ScanRun.objects.order_by("-finished_at", "-id").first()


class ScanFinding(models.Model):
    """One thing a scan found wrong, or worth an operator's look, about a stored file or a document."""

    class Kind(models.TextChoices):
        PLAINTEXT = "plaintext", "Plaintext"
        UNKNOWN_FORMAT = "unknown-format", "Unknown format"
        UNKNOWN_KEY = "unknown-key", "Unknown key ID"
        LEGACY_UNOPENED = "legacy-unopened", "Legacy file no configured key opens"
        DECRYPTION_FAILED = "decryption-failed", "Failed authentication"
        UNREADABLE = "unreadable", "Unreadable file"
        MISSING = "missing", "Document without a file"
        MISMATCH = "mismatch", "File disagrees with its document"
        BOUND_ELSEWHERE = "bound-elsewhere", "File not written for its document"
        ORPHAN = "orphan", "File without a document"
        PARTIAL = "partial", "Partial write"

    # Worth a look, but no reason to withhold the certification: ciphertext that opens, no row.
    NOTICES = frozenset({Kind.ORPHAN, Kind.PARTIAL})

    run = models.ForeignKey(ScanRun, on_delete=models.CASCADE, related_name="findings")
    path = models.CharField(max_length=1024)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    detail = models.CharField(max_length=500, blank=True)
    file_format = models.CharField(max_length=16, blank=True)
    key_id = models.CharField(max_length=16, blank=True)
    document = models.ForeignKey(
        "vault.Document",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["run", "path", "kind"]
        indexes = [models.Index(fields=["run", "kind"], name="compliance_sf_run_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.path}"

    @property
    def is_notice(self) -> bool:
        """Return whether the finding leaves the certification standing (an orphan, a partial write)."""
        return self.kind in self.NOTICES


class ChainCheckpoint(RequestedBy):
    """Where the access log was cut by `audit_prune`: the events removed and the chain at the cut.

    Written by `compliance.retention.audit_prune()` in the transaction that removes the events,
    after the prune event that states the same figures (`event_seq`) is appended: verification
    starts from the latest checkpoint and demands that event, authenticated, to vouch for it.
    """

    when = models.DateTimeField(editable=False)
    first_seq = models.PositiveBigIntegerField(help_text="First event removed.")
    last_seq = models.PositiveBigIntegerField(help_text="Last event removed: the cut.")
    count = models.PositiveBigIntegerField(help_text="Events removed.")
    chain_hash = models.CharField(max_length=64, help_text="The hash of event last_seq.")
    link_digest = models.CharField(
        max_length=64, help_text="The unkeyed SHA-256 link digest through event last_seq."
    )
    cutoff = models.DateTimeField(help_text="Events older than this were removed.")
    retention_days = models.PositiveIntegerField()
    event_seq = models.PositiveBigIntegerField(help_text="The prune event that vouches for it.")

    class Meta:
        ordering = ["-last_seq", "-id"]
        get_latest_by = ["last_seq", "id"]

    def __str__(self) -> str:
        return f"events {self.first_seq}-{self.last_seq} pruned {self.when:%Y-%m-%d}"


class LegalHold(models.Model):
    """One change of the legal hold switch: on or off, who, when and why. The latest row is current.

    Written by `compliance.retention.legal_hold_set()` only, with its access event; while the
    current row is on, `audit_prune` removes nothing.
    """

    when = models.DateTimeField(editable=False)
    on = models.BooleanField()
    reason = models.CharField(max_length=400)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    set_by_username = models.CharField(max_length=150, blank=True)
    event_seq = models.PositiveBigIntegerField(help_text="The access event that records it.")

    class Meta:
        ordering = ["-when", "-id"]
        get_latest_by = ["when", "id"]

    def __str__(self) -> str:
        state = "on" if self.on else "off"
        return f"legal hold {state} since {self.when:%Y-%m-%d %H:%M} by {self.set_by_username}"
