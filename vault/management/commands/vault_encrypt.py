import os

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from vault import fileformat
from vault.access import Access, Action, Outcome, RecordError, access_context, access_record
from vault.keys import keyring

from ._cli import destination_write, operator, source_open


class Command(BaseCommand):
    help = "Encrypt SRC into DST with the primary vault key ('-' for stdin/stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("src", help="Plaintext file, or - for standard input.")
        parser.add_argument("dst", help="Encrypted file to create, or - for standard output.")

    def handle(self, *args: object, src: str, dst: str, **options: object) -> None:
        try:
            ring = keyring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        key = ring.primary
        source_name = os.path.abspath(src) if src != "-" else "-"
        with (
            access_context(action=Action.CLI_ENCRYPT, extra={"operator": operator()}) as context,
            source_open(src) as source,
        ):
            ciphertext = fileformat.encrypt(source, ring.file_keys[key.key_id], key.key_id)
            destination_write(dst, ciphertext, src)
            try:
                access_record(
                    Access(Outcome.ALLOWED, context, stored_name=source_name, key_id=key.key_id_hex)
                )
            except RecordError as exc:
                # Nothing unrecorded stays behind.
                if dst != "-":
                    os.unlink(dst)
                raise CommandError(str(exc)) from None
        if dst != "-":
            self.stderr.write(f"Encrypted {src} -> {dst} with key {key.label} ({key.key_id_hex}).")
