"""The signed audit reports this system issued, each stored encrypted in the vault storage."""

import uuid
from datetime import date, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class Report(models.Model):
    """One signed PDF audit report: its period, who made it, and what identifies the signed file.

    The PDF itself is stored encrypted by the default storage. `sha256` is the digest of the signed
    file, so a PDF handed back by anyone can be recognised as one this system issued. The head is
    the access log's chain head at the period end, the report's anchor.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    period_start = models.DateTimeField(help_text="First instant of the period (inclusive).")
    period_end = models.DateTimeField(help_text="End of the period (exclusive).")
    generated_at = models.DateTimeField(db_index=True)
    generated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    generated_by_name = models.CharField(
        max_length=150, blank=True, help_text="Username, or the OS user for commands."
    )
    file = models.FileField(upload_to="reports/%Y/", max_length=255, unique=True)
    size = models.PositiveBigIntegerField(help_text="Size of the signed PDF in bytes.")
    sha256 = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the signed PDF.")
    signer_subject = models.CharField(max_length=500)
    signer_fingerprint = models.CharField(
        max_length=64, help_text="SHA-256 of the signer certificate (DER)."
    )
    head_seq = models.PositiveBigIntegerField(help_text="Chain head at the period end: seq.")
    head_hash = models.CharField(max_length=64, help_text="Chain head at the period end: hash.")
    event_count = models.PositiveBigIntegerField(help_text="Access events in the period.")
    chain_status = models.CharField(
        max_length=16, help_text="The access log's chain verification at generation."
    )

    class Meta:
        ordering = ["-generated_at"]

    def __str__(self) -> str:
        return f"Report {self.id} ({self.period_start:%Y-%m-%d %H:%M} up to {self.period_end:%Y-%m-%d %H:%M})"

    @property
    def head(self) -> str:
        """Return the anchor as `SEQ:HASH`, the form `audit_verify --head` takes."""
        return f"{self.head_seq}:{self.head_hash}"

    @property
    def period_first_day(self) -> date:
        """Return the first day the period covers, local time."""
        return timezone.localtime(self.period_start).date()

    @property
    def period_last_day(self) -> date:
        """Return the last day the period covers, local time (its end is exclusive)."""
        return timezone.localtime(self.period_end - timedelta(microseconds=1)).date()
