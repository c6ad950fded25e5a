from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.access_log import chain_check_run
from compliance.models import ChainStatus
from vault.management.commands._cli import operator


class Command(BaseCommand):
    help = (
        "Verify the access log with every configured key, then append a seal under the primary "
        "key over every event before it, so that an old key can be retired and its events still "
        "verify. Run it after a key rotation, before removing the old key. Exits 1 when the log "
        "does not verify (nothing is sealed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=2000, help="Rows read per batch.")
        parser.add_argument("--database", default=None, help="Database alias of the log.")

    def handle(self, *args: object, **options: object) -> None:
        try:
            check = chain_check_run(
                via="command",
                operator=operator(),
                seal="always",
                using=options["database"],  # type: ignore[arg-type]
                chunk_size=int(options["chunk_size"]),  # type: ignore[call-overload]
            )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if check.status != ChainStatus.OK:
            raise CommandError(f"Nothing sealed. {check.summary}", returncode=1)
        self.stdout.write(check.summary)
