"""Make, store and open reports: the one pipeline the command and the dashboard share.

period -> CSV of its events (compressed as it streams) -> content (SQL aggregates) -> HTML ->
WeasyPrint PDF -> CSV attached, PAdES signature -> stored encrypted, recorded, as a Report row.
"""

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from vault.access import Action, access_context, actor_identify
from vault.atomic import atomic_write
from vault.storage import DecryptedFile

from .build import (
    CsvStats,
    Period,
    events_csv_chunks,
    integrity_check_started,
    report_content_build,
)
from .models import Report
from .render import report_html, report_pdf_write
from .signing import attachment_compress, pdf_sign, signer_load


def report_generate(
    period: Period,
    *,
    user: Any = None,
    operator: str = "",
    output: str | Path | None = None,
) -> Report:
    """Build, sign and store the report of `period`; record it; return its row.

    Raise SigningUnavailable before any work when no signing key is configured. `output`, if
    given, also receives a copy of the signed PDF (it must not exist). Nothing is stored unless
    the signed PDF was made in full.
    """
    report_signer = signer_load()
    _output_check(output)
    report_id = uuid.uuid4()
    generated_at = timezone.now()
    requester, generated_by = actor_identify(user, operator)
    with tempfile.TemporaryDirectory(prefix="docvault-report-") as folder:
        work = Path(folder)
        csv_name = (
            f"access-events-{period.first_day:%Y%m%d}-{period.last_day:%Y%m%d}-"
            f"{str(report_id)[:8]}.csv"
        )
        stats = CsvStats()
        # Started before the CSV's compressing thread: a second process is forked only from a
        # single-threaded one.
        with integrity_check_started(period) as integrity:
            attachment = attachment_compress(
                events_csv_chunks(period, stats),
                work / "events.csv.z",
                name=csv_name,
                description=f"Every access event of the period, report {report_id}",
                mime_type="text/csv",
            )
            content = report_content_build(
                period,
                report_id=report_id,
                generated_at=generated_at,
                generated_by=generated_by,
                signer_subject=report_signer.subject,
                signer_issuer=report_signer.issuer,
                signer_fingerprint=report_signer.fingerprint,
                signer_not_after=report_signer.not_after,
                integrity=integrity,
            )
        content.csv_name = csv_name
        content.csv_rows = stats.rows
        content.csv_size = stats.size
        content.csv_sha256 = stats.sha256.hexdigest()
        unsigned = work / "unsigned.pdf"
        with open(unsigned, "wb") as handle:
            report_pdf_write(report_html(content), handle)
        signed = work / "signed.pdf"
        with open(unsigned, "rb") as source, open(signed, "w+b") as target:
            pdf_sign(
                source,
                target,
                report_signer,
                attachments=(attachment,),
                reason=f"Audit report {report_id}",
            )
        digest = hashlib.sha256()
        with open(signed, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        # Checked before storing, copied after: a report that is stored is never lost.
        _output_check(output)
        report = _report_store(
            signed,
            Report(
                id=report_id,
                period_start=period.start,
                period_end=period.end,
                generated_at=generated_at,
                generated_by=requester,
                generated_by_name=generated_by,
                size=signed.stat().st_size,
                sha256=digest.hexdigest(),
                signer_subject=report_signer.subject[:500],
                signer_fingerprint=report_signer.fingerprint,
                head_seq=period.head_seq,
                head_hash=period.head_hash,
                event_count=content.csv_rows,
                chain_status=content.integrity.chain.status.value if content.integrity else "",
            ),
            user=user,
            operator=operator,
        )
        if output is not None:
            _copy_new(signed, Path(output))
    return report


def _output_check(output: str | Path | None) -> None:
    if output is not None and os.path.lexists(output):
        raise FileExistsError(f"{output} exists already: refusing to overwrite it.")


def _report_store(signed: Path, report: Report, *, user: Any, operator: str) -> Report:
    """Store the signed PDF encrypted and save its row; the storage records REPORT_GENERATED."""
    name = f"report-{report.id}.pdf"
    with transaction.atomic():
        with (
            access_context(action=Action.REPORT_GENERATED, user=user, extra={"operator": operator}),
            open(signed, "rb") as handle,
        ):
            report.file.save(name, File(handle, name), save=False)
        try:
            report.save(force_insert=True)
        except BaseException:
            # The transaction takes the event back; the stored file must go with it.
            report.file.storage.delete(report.file.name)
            raise
    return report


def _copy_new(source: Path, target: Path) -> None:
    """Copy `source` to a new file `target` (0600): whole or not at all."""
    with open(source, "rb") as handle, atomic_write(target, 0o600) as out:
        shutil.copyfileobj(handle, out, 1 << 20)


def report_open(
    report: Report, *, user: Any = None, request: Any = None, operator: str = ""
) -> DecryptedFile:
    """Return the stored signed PDF, decrypting; the storage records REPORT_DOWNLOADED first."""
    with access_context(
        action=Action.REPORT_DOWNLOADED, user=user, request=request, extra={"operator": operator}
    ):
        return report.file.storage.open(report.file.name)
