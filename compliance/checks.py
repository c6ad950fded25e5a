"""System checks for what the access log's chain needs from the database and the settings."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import router

from .access_log import PROXY_COUNT_SETTING
from .models import AccessEvent


@register(Tags.compatibility)
def access_log_check(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """Return the problems of the access log's database and proxy settings."""
    alias = router.db_for_write(AccessEvent)
    messages = database_settings_check(alias, settings.DATABASES.get(alias, {}))
    proxies = getattr(settings, PROXY_COUNT_SETTING, 0)
    if isinstance(proxies, bool) or not isinstance(proxies, int) or proxies < 0:
        messages.append(
            Error(
                f"{PROXY_COUNT_SETTING} must be the number of trusted reverse proxies (0 or more), "
                f"not {proxies!r}.",
                id="compliance.E002",
            )
        )
    return messages


def database_settings_check(alias: str, database: dict[str, Any]) -> list[CheckMessage]:
    """Return the problems of one DATABASES entry for appending to the chain."""
    engine = database.get("ENGINE", "")
    if engine == "django.db.backends.sqlite3":
        mode = (database.get("OPTIONS", {}).get("transaction_mode") or "").upper()
        if mode != "IMMEDIATE":
            return [
                Warning(
                    "The access log appends under concurrent requests need SQLite's IMMEDIATE "
                    "transactions; without them appends fail with 'database is locked'.",
                    hint=f"Set DATABASES[{alias!r}]['OPTIONS']['transaction_mode'] = 'IMMEDIATE'.",
                    id="compliance.W001",
                )
            ]
    elif not engine.startswith("django.db.backends.postgresql"):
        return [
            Error(
                f"The access log chain supports SQLite and PostgreSQL, not {engine or 'nothing'}.",
                id="compliance.E001",
            )
        ]
    return []
