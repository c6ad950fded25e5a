"""The keys page (/compliance/keys/): the key ring, where a rotation stands, and the runbook.

Documents per key ID come from the rows (the key ID each file was read to have); files per key ID,
and how many files are unbound or legacy, from the latest storage scan, which read the files
themselves. Nothing here shows a secret.
"""

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_safe

from .models import ScanRun, scan_run_latest
from .overview import KeyRow, key_inventory_get
from .permissions import officer_required
from .scan import FORMAT_LEGACY, FORMAT_V1


@dataclass(frozen=True)
class KeyPageRow:
    """One key ID: what the key ring says of it, its documents, and its files at the last scan."""

    key: KeyRow
    files: int | None  # None: no scan has run


@dataclass(frozen=True)
class RotationStatus:
    """How far the storage is from "every file v2 under the primary key, bound to its document"."""

    primary_key_id: str
    documents: int
    on_older_keys: int  # rows on a configured decrypt-only key
    on_unknown_keys: int  # rows on a key ID no longer configured
    legacy_documents: int  # rows with no key ID: legacy Fernet files (or never read)
    scan: ScanRun | None
    unbound_files: int | None  # v1, legacy and unbound v2 files, at the last scan
    old_key_files: int | None  # files under any key but the primary, at the last scan
    v1_files: int | None
    legacy_files: int | None

    @property
    def documents_pending(self) -> int:
        """Return how many documents rotation still has to rewrite, going by their rows."""
        return self.on_older_keys + self.on_unknown_keys + self.legacy_documents

    @property
    def complete(self) -> bool:
        """Return whether the rows and the latest scan show nothing left to rotate."""
        return (
            self.documents_pending == 0
            and self.scan is not None
            and self.scan.certified
            and not self.unbound_files
            and not self.old_key_files
        )


def key_rotation_status() -> tuple[list[KeyPageRow], RotationStatus, str]:
    """Return the key table, the rotation status and the key ring's error ('' if none)."""
    inventory = key_inventory_get()
    scan = scan_run_latest()
    by_key = scan.counts_by_key if scan is not None else {}
    rows = [
        KeyPageRow(row, by_key.get(row.key_id, {}).get("files", 0) if scan else None)
        for row in inventory.rows
    ]
    listed = {row.key_id for row in inventory.rows}
    # Keys the files name but neither the ring nor any row does: shown too, as not configured.
    for key_id, counts in by_key.items():
        if key_id not in listed:
            rows.append(
                KeyPageRow(
                    KeyRow(key_id, "", primary=False, configured=False, documents=0),
                    counts.get("files", 0),
                )
            )
    primary = next((row.key_id for row in inventory.rows if row.primary), "")
    # Documents per key ID ("" for legacy files): the inventory counted them already.
    counts = {row.key_id: row.documents for row in inventory.rows}
    configured = {row.key_id for row in inventory.rows if row.configured}
    formats = scan.counts_by_format if scan is not None else {}
    status = RotationStatus(
        primary_key_id=primary,
        documents=sum(counts.values()),
        on_older_keys=sum(n for k, n in counts.items() if k and k in configured and k != primary),
        on_unknown_keys=sum(n for k, n in counts.items() if k and k not in configured),
        legacy_documents=counts.get("", 0),
        scan=scan,
        unbound_files=scan.unbound_files if scan is not None else None,
        old_key_files=(
            sum(c.get("files", 0) for k, c in by_key.items() if k != primary)
            if scan is not None
            else None
        ),
        v1_files=formats.get(FORMAT_V1, {}).get("files", 0) if scan is not None else None,
        legacy_files=formats.get(FORMAT_LEGACY, {}).get("files", 0) if scan is not None else None,
    )
    return rows, status, inventory.error


@officer_required
@require_safe
def keys_page(request: HttpRequest) -> HttpResponse:
    """Show the key ring with documents and files per key ID, the rotation status, the runbook."""
    rows, status, error = key_rotation_status()
    return render(
        request, "compliance/keys.html", {"rows": rows, "status": status, "keys_error": error}
    )


urlpatterns = [path("", keys_page, name="keys")]
