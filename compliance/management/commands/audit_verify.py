import re

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.access_log import ChainStatus, chain_verify

HEAD_PATTERN = re.compile(r"(\d+):([0-9a-f]{64})")


class Command(BaseCommand):
    help = (
        "Verify the access log's hash chain in seq order and report the first broken link. "
        "Exits 1 when the chain is broken, 2 when some events cannot be verified (key missing)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--head",
            metavar="SEQ:HASH",
            help="A previously published chain head: also detects events removed from the end.",
        )
        parser.add_argument("--chunk-size", type=int, default=2000, help="Rows read per batch.")
        parser.add_argument("--database", default=None, help="Database alias to verify.")

    def handle(self, *args: object, **options: object) -> None:
        expected_head = None
        if options["head"]:
            match = HEAD_PATTERN.fullmatch(str(options["head"]).strip().lower())
            if match is None:
                raise CommandError("--head takes SEQ:HASH, the hash as 64 hex characters.")
            expected_head = (int(match[1]), match[2])
        try:
            report = chain_verify(
                using=options["database"],  # type: ignore[arg-type]
                chunk_size=int(options["chunk_size"]),  # type: ignore[call-overload]
                expected_head=expected_head,
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if report.status is ChainStatus.BROKEN:
            raise CommandError(report.summary(), returncode=1)
        if report.status is ChainStatus.UNVERIFIABLE:
            raise CommandError(report.summary(), returncode=2)
        self.stdout.write(report.summary())
