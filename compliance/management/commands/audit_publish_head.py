from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.heads import HEADS_NAME, chain_head_publish_current


class Command(BaseCommand):
    help = (
        f"Append the access log's current head (seq, hash) to {HEADS_NAME} in the storage, so "
        "that a later audit_verify notices events cut from the end. Run it daily from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=None, help="Database alias of the log.")

    def handle(self, *args: object, **options: object) -> None:
        try:
            head = chain_head_publish_current(using=options["database"])  # type: ignore[arg-type]
        except (ImproperlyConfigured, OSError) as exc:
            raise CommandError(f"The chain head could not be published: {exc}") from None
        if head is None:
            self.stdout.write("The access log is empty: no head to publish.")
            return
        self.stdout.write(f"Published chain head seq {head.seq} hash {head.hash} to {HEADS_NAME}.")
