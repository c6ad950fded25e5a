import re

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.access_log import chain_check_run
from compliance.heads import HEADS_NAME
from compliance.models import ChainStatus
from vault.management.commands._cli import operator

HEAD_PATTERN = re.compile(r"(\d+):([0-9a-f]{64})")


class Command(BaseCommand):
    help = (
        "Verify the access log's hash chain in seq order against the latest published head, "
        f"report the first broken link, then publish the head reached to {HEADS_NAME}. "
        "Exits 1 when the chain is broken, 2 when some events cannot be verified (key missing)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--head",
            metavar="SEQ:HASH",
            help="A head you kept yourself, checked instead of the latest published one.",
        )
        parser.add_argument(
            "--no-published-head",
            action="store_true",
            help="Do not check against the published heads (a cut tail then goes unnoticed).",
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
            check = chain_check_run(
                via="command",
                operator=operator(),
                expected_head=expected_head,
                published_head=not options["no_published_head"],
                using=options["database"],  # type: ignore[arg-type]
                chunk_size=int(options["chunk_size"]),  # type: ignore[call-overload]
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if check.status == ChainStatus.BROKEN:
            raise CommandError(check.summary, returncode=1)
        if check.status == ChainStatus.UNVERIFIABLE:
            raise CommandError(check.summary, returncode=2)
        self.stdout.write(check.summary)
