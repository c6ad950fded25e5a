from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.devcert import DevSigningFiles, signing_cert_create

DEFAULT_DIR = "var/report-signing"


def instructions(files: DevSigningFiles) -> str:
    """Return how to trust the development CA and the settings that sign with its certificate."""
    ca, name = files.ca, files.ca_name
    env = "\n".join(f"  {line}" for line in files.env_lines())
    return f"""\
Development signing certificate for audit reports, NOT FOR PRODUCTION:
  CA certificate:      {ca}   ({name}; its private key was not kept)
  signing certificate: {files.cert}
  PKCS#12 (key + cert): {files.p12}   (0600; passphrase in {files.passphrase}, 0600)

Settings (put them in .env or the environment):
{env}

Trust the CA in poppler's pdfsig (an NSS database in DIR):
  certutil -N -d sql:DIR --empty-password
  certutil -A -d sql:DIR -n "{name}" -t "C,C,C" -i {ca}
  pdfsig -nssdir sql:DIR report.pdf

Trust the CA in Adobe Acrobat or Reader:
  Preferences > Signatures > Identities & Trusted Certificates > More... > Trusted Certificates >
  Import {ca}, then Edit Trust > "Use this certificate as a trusted root".
"""


class Command(BaseCommand):
    help = (
        "For development and demos: create a local CA and a report-signing certificate it issued, "
        "print the settings that use them and how to trust the CA (pdfsig, Acrobat)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dir", default=None, help=f"Where to write the files (default: {DEFAULT_DIR})."
        )
        parser.add_argument(
            "--organisation",
            default=None,
            help="Organisation name in the certificates (default: REPORT_ORGANISATION).",
        )

    def handle(
        self, *args: object, dir: str | None, organisation: str | None, **options: object
    ) -> None:
        folder = Path(dir) if dir else Path(settings.BASE_DIR) / DEFAULT_DIR
        organisation = (
            organisation or getattr(settings, "REPORT_ORGANISATION", None) or "Docvault development"
        )
        try:
            files = signing_cert_create(folder, organisation)
        except (FileExistsError, OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(instructions(files))
