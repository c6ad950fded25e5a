"""System checks for report signing: warnings, so that the rest of the site still starts."""

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .signing import SigningUnavailable, signer_load, trust_roots_load

HINT_DEV_CERT = "`python manage.py report_signing_cert` makes a development certificate and CA."


@register(Tags.security)
def report_signing_check(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """Return the problems of the report signing and trust settings."""
    messages: list[CheckMessage] = []
    try:
        signer_load()
    except SigningUnavailable as exc:
        configured = any(
            getattr(settings, name, None)
            for name in ("REPORT_SIGNING_P12", "REPORT_SIGNING_CERT", "REPORT_SIGNING_KEY")
        )
        messages.append(
            Warning(
                str(exc)
                if configured
                else "No report signing key is configured: audit reports will be refused.",
                hint=HINT_DEV_CERT,
                id="reports.W002" if configured else "reports.W001",
            )
        )
    try:
        roots = trust_roots_load()
    except ImproperlyConfigured as exc:
        messages.append(Warning(str(exc), id="reports.W003"))
    else:
        if not roots:
            messages.append(
                Warning(
                    "REPORT_TRUST_ROOTS is empty: audit_report_verify cannot call any signature "
                    "trusted.",
                    hint="Set it to the PEM file of the CA that issued the signing certificate.",
                    id="reports.W003",
                )
            )
    return messages
