import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from vault.rotation import RotationReport, Status, storage_rotate

from ._cli import operator, progress_bar, resumable_run

# Without a terminal: one progress line per this many files or seconds, whichever comes first.
PROGRESS_EVERY_FILES = 1000
PROGRESS_EVERY_SECONDS = 10.0
# A file's rotation waits mostly on fsync: a few at once overlap those waits.
DEFAULT_WORKERS = 4


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored file not on the primary key, or not bound to its document, to "
        "format v2 under the primary key, in place. Resumable: run it again after any stop."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would change; change nothing."
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=DEFAULT_WORKERS,
            help=f"Files rotated at once (default {DEFAULT_WORKERS}).",
        )

    def handle(self, *args: object, dry_run: bool, workers: int, **options: object) -> None:
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        with resumable_run():
            report = storage_rotate(
                dry_run=dry_run, progress=self._progress, operator=operator(), workers=workers
            )
        self._report(report)
        if not report.ok:
            raise CommandError("Some files could not be rotated: see above.")

    def _progress(self, items: Iterable[Any], total: int) -> Iterable[Any]:
        if self.stderr.isatty():
            return progress_bar(
                iterable=items, total=total, unit="file", file=sys.stderr, desc="Rotating"
            )
        return self._lines(items, total)

    def _lines(self, items: Iterable[Any], total: int) -> Iterator[Any]:
        last_time, last_count = time.monotonic(), 0
        for count, item in enumerate(items, start=1):
            yield item
            now = time.monotonic()
            if (
                count - last_count >= PROGRESS_EVERY_FILES
                or now - last_time >= PROGRESS_EVERY_SECONDS
            ):
                self.stderr.write(f"Rotation: {count}/{total} documents checked.")
                last_time, last_count = now, count

    def _report(self, report: RotationReport) -> None:
        for temporary in report.temporaries_removed:
            self.stdout.write(f"removed {temporary} (left by an interrupted rotation)")
        for rotation in report.changes:
            if rotation.status in (Status.REWRITTEN, Status.REFRESHED):
                if report.dry_run:
                    verb = (
                        "would rewrite" if rotation.status is Status.REWRITTEN else "would refresh"
                    )
                else:
                    verb = rotation.status.value
                self.stdout.write(f"{verb} {rotation.name}: {rotation.before} -> {rotation.after}")
            else:
                detail = f" ({rotation.before})" if rotation.before else ""
                self.stdout.write(
                    f"{rotation.status.value} {rotation.name}{detail}: {rotation.reason}"
                )
        self.stdout.write(report.summary() + f" {report.seconds:.1f} s.")
