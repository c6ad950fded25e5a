"""System checks for the vault's key settings (`manage.py check`, and at every server start)."""

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from . import keys

HINT_KEYGEN = "Run `python manage.py vault_keygen` for a fresh secret and the line to add."


@register(Tags.security)
def vault_keys_check(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """Return the problems of the key configuration; never shows a secret."""
    messages: list[CheckMessage] = []
    try:
        entries = keys.keys_parse(
            getattr(settings, "VAULT_KEYS", None), getattr(settings, "ENCRYPTION_SECRET", None)
        )
    except ValueError as exc:
        return [
            Error(
                str(exc), hint="Format: VAULT_KEYS='label:secret,label2:secret2'.", id="vault.E002"
            )
        ]
    if not entries:
        messages.append(Error(keys.NO_KEY_MESSAGE, hint=HINT_KEYGEN, id="vault.E001"))
    for first, second in keys.duplicate_secrets(entries):
        messages.append(
            Error(
                keys.duplicate_secret_message(first, second),
                hint="Give each label its own secret; " + HINT_KEYGEN,
                id="vault.E005",
            )
        )
    for entry in entries:
        if len(entry.secret) < keys.MIN_SECRET_LENGTH:
            # The key ID is public, so anyone can test guesses against a short secret offline.
            weak = (
                f"The secret of key {entry.label!r} is shorter than "
                f"{keys.MIN_SECRET_LENGTH} characters: its public key ID lets anyone test guesses."
            )
            if settings.DEBUG:
                messages.append(Warning(weak, hint=HINT_KEYGEN, id="vault.W001"))
            else:
                messages.append(Error(weak, hint=HINT_KEYGEN, id="vault.E006"))
    if not getattr(settings, "VAULT_KDF_SALT", None):
        messages.append(
            Error(
                "VAULT_KDF_SALT is not set: the key derivation needs a salt.",
                hint="Set VAULT_KDF_SALT; keep the old value to keep reading existing files.",
                id="vault.E003",
            )
        )
    try:
        iterations = keys.iterations_parse(
            getattr(settings, "VAULT_KDF_ITERATIONS", keys.DEFAULT_ITERATIONS)
        )
    except ValueError as exc:
        messages.append(Error(str(exc), id="vault.E004"))
    else:
        if iterations < keys.MIN_ITERATIONS:
            messages.append(
                Warning(
                    f"VAULT_KDF_ITERATIONS is {iterations}, below {keys.MIN_ITERATIONS:,}.",
                    hint="OWASP recommends 600,000 for PBKDF2-HMAC-SHA256.",
                    id="vault.W002",
                )
            )
    return messages
