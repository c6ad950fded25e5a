from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.retention import RETENTION_SETTING, PruneRefused, access_log_prune
from vault.management.commands._cli import operator


class Command(BaseCommand):
    help = (
        f"Remove access events older than {RETENTION_SETTING} days (default 730) behind a "
        "checkpoint that audit_verify continues from. Refused under a legal hold or when the "
        "log does not verify. Exits 1 when refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be removed; change nothing."
        )
        parser.add_argument(
            "--database", default=None, help="Database alias (a role that may DELETE)."
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            result = access_log_prune(
                dry_run=bool(options["dry_run"]),
                operator=operator(),
                via="command",
                using=options["database"],  # type: ignore[arg-type]
            )
        except (PruneRefused, ValueError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc), returncode=1) from None
        self.stdout.write(result.summary())
