from django.core.management.base import BaseCommand, CommandError, CommandParser

from vault.imports import ImportFailed, ManifestError, manifest_import

from ._cli import operator, resumable_run


class Command(BaseCommand):
    help = (
        "Adopt stored files that have no document: MANIFEST is a CSV file with a header row and "
        "the columns path, company, title (optionally uploaded_by, uploaded_at). Each file gets "
        "its document and is encrypted in place, bound to it. Resumable: run it again after any stop."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "manifest", help="The CSV manifest (vault_scan --orphans-csv writes one)."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Validate and list what would change; change nothing.",
        )

    def handle(self, *args: object, manifest: str, dry_run: bool, **options: object) -> None:
        try:
            with resumable_run(), open(manifest, newline="", encoding="utf-8-sig") as source:
                report = manifest_import(source, dry_run=dry_run, operator=operator())
        except OSError as exc:
            raise CommandError(f"Cannot read {manifest}: {exc.strerror or exc}.") from None
        except UnicodeDecodeError:
            raise CommandError(f"{manifest} is not UTF-8 text.") from None
        except ManifestError as exc:
            raise CommandError(
                f"{manifest}: nothing imported, {len(exc.errors)} bad line(s):\n" + str(exc)
            ) from None
        except ImportFailed as exc:
            raise CommandError(str(exc)) from None
        for result in report.results:
            verb = {"imported": "would import", "resumed": "would finish"}.get(
                result.status, result.status
            )
            verb = verb if report.dry_run else result.status.value
            self.stdout.write(f"line {result.line}: {verb} {result.path} ({result.before})")
        self.stdout.write(report.summary())
