from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.verify import report_verify


class Command(BaseCommand):
    help = (
        "Verify a report PDF: its signature (intact, valid, trusted against REPORT_TRUST_ROOTS, "
        "covering the whole file) and whether this system issued it. Exits 0 when all hold, 1 "
        "when the signature does not, 2 when it does but no stored report has the file's SHA-256."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE.pdf")

    def handle(self, *args: object, file: str, **options: object) -> None:
        try:
            with open(file, "rb") as handle:
                verdict = report_verify(handle)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}.") from None
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        text = "\n".join(verdict.lines())
        if verdict.ok:
            self.stdout.write(text)
            return
        self.stdout.write(text)
        raise CommandError(
            "The signature does not hold." if not verdict.signature_ok else "Not issued here.",
            returncode=2 if verdict.signature_ok else 1,
        )
