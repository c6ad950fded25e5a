import csv
import io
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    SystemCheckError,
)

from compliance.models import ScanRun
from compliance.scan import FileEntry, scan_orphans, scan_run_summary, storage_scan
from vault.access import RecordError
from vault.atomic import atomic_write
from vault.management.commands._cli import operator, progress_bar
from vault.paths import os_error_describe

ORPHANS_CSV_HEADER = ["path", "company", "title", "uploaded_by", "uploaded_at"]
# Not a TTY: one progress line at most this often, on stderr.
SUMMARY_SECONDS = 10.0
FINDINGS_SHOWN = 20
EXIT_NOT_CERTIFIED = 1
EXIT_CANNOT_SCAN = 2


class Command(BaseCommand):
    # The system checks run in handle(): a configuration error is "cannot scan" (exit 2), never
    # "not certified" (exit 1), so that a monitor can tell them apart.
    requires_system_checks: list[str] = []
    help = (
        "Scan every file of the vault's storage, cross-check the documents, store and certify the "
        "result. Exits 0 only when every file is ciphertext that a configured key opens and no "
        "document is missing its file; 1 otherwise; 2 when the scan cannot run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--full", action="store_true", help="Also authenticate every segment of every file."
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument(
            "--orphans-csv",
            metavar="FILE",
            help="Write a vault_import manifest template of the files without a document.",
        )
        parser.add_argument(
            "--inventory",
            metavar="FILE",
            help="Write the inventory whose SHA-256 is the run's digest (one JSON line per file).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options.get("skip_checks"):
            try:
                self.check()
            except SystemCheckError as exc:
                exc.returncode = EXIT_CANNOT_SCAN
                raise
        for option in ("orphans_csv", "inventory"):
            path = options[option]
            if path and os.path.lexists(path):
                flag = "--" + option.replace("_", "-")
                raise CommandError(f"{flag}: {path} exists already: refusing to overwrite it.")
        progress = _Progress(self.stderr._out, quiet=options["json"])  # type: ignore[attr-defined]
        try:
            with _text_write(options["inventory"]) as inventory:
                run = storage_scan(
                    full=options["full"],
                    progress=progress.update,
                    operator=operator(),
                    inventory=inventory,
                )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=EXIT_CANNOT_SCAN) from None
        except RecordError as exc:
            raise CommandError(
                f"The scan could not be recorded in the access log, so it was not stored: {exc}",
                returncode=EXIT_CANNOT_SCAN,
            ) from None
        except OSError as exc:
            raise CommandError(
                f"Cannot scan: {os_error_describe(exc)}.", returncode=EXIT_CANNOT_SCAN
            ) from None
        finally:
            progress.close()
        if options["orphans_csv"]:
            try:
                orphans = orphans_csv_write(options["orphans_csv"], run)
            except OSError as exc:
                raise CommandError(
                    f"Scan #{run.pk} is stored, but the manifest is not: {os_error_describe(exc)}.",
                    returncode=EXIT_CANNOT_SCAN,
                ) from None
            if not options["json"]:
                self.stderr.write(f"{orphans} orphan(s) written to {options['orphans_csv']}.")
        if options["json"]:
            self.stdout.write(json.dumps(scan_run_summary(run), indent=2))
        else:
            self._summary_write(run)
        if not run.certified:
            raise CommandError(f"Scan #{run.pk}: not certified.", returncode=EXIT_NOT_CERTIFIED)

    def _summary_write(self, run: ScanRun) -> None:
        formats = ", ".join(
            f"{fmt} {c['files']:,} ({c['bytes']:,} B)" for fmt, c in run.counts_by_format.items()
        )
        keys = ", ".join(
            f"{key_id} {c['label'] or c['status']} {c['files']:,}"
            for key_id, c in run.counts_by_key.items()
        )
        self.stdout.write(run.certification)
        self.stdout.write(f"Formats: {formats or 'none'}. Key IDs: {keys or 'none'}.")
        self.stdout.write(
            f"Unbound files: {run.unbound_files:,}. Vault's own files (_docvault/, not "
            f"documents): {run.reserved_files:,}. Inventory SHA-256: {run.inventory_digest}. "
            f"Scan #{run.pk}."
        )
        findings = list(run.findings.order_by("path", "kind")[: FINDINGS_SHOWN + 1])
        for finding in findings[:FINDINGS_SHOWN]:
            self.stdout.write(f"{finding.kind}: {finding.path}: {finding.detail}")
        total = sum(run.finding_counts.values())
        if total > FINDINGS_SHOWN:
            self.stdout.write(
                f"... and {total - FINDINGS_SHOWN:,} more findings (--json, or the dashboard)."
            )


def orphans_csv_write(path: str, run: ScanRun) -> int:
    """Write the manifest template of the run's orphans (path filled); return how many."""
    count = 0
    with _text_write(path) as text:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(ORPHANS_CSV_HEADER)
        for name in scan_orphans(run):
            writer.writerow([name, "", "", "", ""])
            count += 1
    return count


@contextmanager
def _text_write(path: str | None) -> Iterator[TextIO | None]:
    """Yield FILE opened for UTF-8 text, linked into place only if the block completes."""
    if not path:
        yield None
        return
    with atomic_write(path, 0o600) as target:
        text = io.TextIOWrapper(target, encoding="utf-8", newline="")
        try:
            yield text
            text.flush()
        finally:
            text.detach()


class _Progress:
    """A tqdm bar on a terminal; otherwise a line every SUMMARY_SECONDS, on stderr."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self._stream = stream
        self._files = 0
        self._bytes = 0
        self._bar: Any = None
        self._last = time.monotonic()
        self._quiet = quiet
        if stream.isatty():
            self._bar = progress_bar(
                file=stream, unit=" files", desc="vault_scan", dynamic_ncols=True
            )

    def update(self, entry: FileEntry) -> None:
        self._files += 1
        self._bytes += entry.size
        if self._bar is not None:
            self._bar.update(1)
            if self._files % 256 == 0:
                self._bar.set_postfix_str(f"{self._bytes / 1e6:,.0f} MB", refresh=False)
            return
        now = time.monotonic()
        if not self._quiet and now - self._last >= SUMMARY_SECONDS:
            self._last = now
            self._stream.write(f"vault_scan: {self._files:,} files, {self._bytes:,} bytes so far\n")
            self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
