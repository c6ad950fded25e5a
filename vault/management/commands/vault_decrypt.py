import os

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from vault.access import Action, RecordError, access_context
from vault.fileformat import DecryptionError
from vault.keys import keyring
from vault.storage import decrypting_open

from ._cli import destination_write, operator, source_open


class Command(BaseCommand):
    help = (
        "Decrypt SRC (Docvault v2 or v1, or the case study's Fernet) into DST, for disaster recovery "
        "('-' for stdin/stdout). Recorded in the access log like any decryption."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("src", help="Encrypted file, or - for standard input.")
        parser.add_argument("dst", help="Plaintext file to create, or - for standard output.")

    def handle(self, *args: object, src: str, dst: str, **options: object) -> None:
        try:
            keyring()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if dst != "-" and os.path.lexists(dst):
            raise CommandError(f"{dst} exists already: refusing to overwrite it.")
        with (
            access_context(action=Action.CLI_DECRYPT, extra={"operator": operator()}),
            source_open(src) as source,
        ):
            try:
                with decrypting_open(source, os.path.abspath(src) if src != "-" else "-") as plain:
                    written = destination_write(dst, plain.segments(), src)
            except DecryptionError as exc:
                raise CommandError(f"{src}: {exc}.") from None
            except RecordError as exc:
                raise CommandError(str(exc)) from None
        if dst != "-":
            self.stderr.write(f"Decrypted {src} -> {dst} ({written} bytes).")
