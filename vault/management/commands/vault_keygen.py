import secrets

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from vault.keys import LABEL_PATTERN


class Command(BaseCommand):
    help = "Print a fresh random vault secret (256 bits) and the VAULT_KEYS entry to add."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--label",
            default=None,
            help="Label of the new key version (default: k<YYYYMMDD>).",
        )

    def handle(self, *args: object, label: str | None, **options: object) -> None:
        label = label or timezone.now().strftime("k%Y%m%d")
        if not LABEL_PATTERN.match(label):
            self.stderr.write("Invalid label: use 1-32 letters, digits, '.', '_' or '-'.")
            raise SystemExit(2)
        secret = secrets.token_urlsafe(32)
        self.stdout.write(f"{label}:{secret}")
        # The secret goes to stdout only: stderr tends to end up in logs.
        self.stderr.write(
            "Put this entry FIRST in VAULT_KEYS to make it the primary key, and keep the older "
            "entries after it so existing files still decrypt:\n"
            "  VAULT_KEYS=<the line above>,<the current entries>\n"
            "Store it in your secret manager; it is shown only this once."
        )
