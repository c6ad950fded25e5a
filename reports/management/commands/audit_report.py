import datetime

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.build import period_from_dates
from reports.generate import report_generate
from vault.access import RecordError
from vault.management.commands._cli import operator


def _day(value: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date: use YYYY-MM-DD.") from None


class Command(BaseCommand):
    help = (
        "Generate the signed PDF audit report of a period (whole days, TIME_ZONE), store it "
        "encrypted with its SHA-256, record it in the access log and write a copy to FILE."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
        parser.add_argument(
            "--to", dest="last", required=True, metavar="YYYY-MM-DD", help="Inclusive."
        )
        parser.add_argument(
            "-o", "--output", required=True, metavar="FILE.pdf", help="A new file (0600)."
        )

    def handle(self, *args: object, first: str, last: str, output: str, **options: object) -> None:
        try:
            period = period_from_dates(_day(first), _day(last))
            report = report_generate(period, operator=operator(), output=output)
        except (ImproperlyConfigured, ValueError, FileExistsError, RecordError) as exc:
            # SigningUnavailable is an ImproperlyConfigured: no key, no report, said plainly.
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror or exc}.") from None
        self.stdout.write(
            f"Report {report.id} for {first} to {last}: {report.event_count:,} events, "
            f"chain {report.chain_status}, anchor {report.head}.\n"
            f"Written to {output} ({report.size:,} bytes), SHA-256 {report.sha256}.\n"
            f"Signed by {report.signer_subject} (certificate SHA-256 {report.signer_fingerprint})."
        )
