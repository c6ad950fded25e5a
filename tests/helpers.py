"""Small helpers shared by test modules."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(
    env: dict[str, str], *args: str, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess:
    """Run `python manage.py ARGS` in a fresh process with `env`, as an operator's shell does."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def response_close(response) -> None:
    """Close a streamed test response (its file) without closing the test's database connection.

    HttpResponse.close() sends request_finished, whose close_old_connections() drops a connection
    inside the test's transaction on PostgreSQL; Django's test client disconnects it the same way.
    """
    from django.core.signals import request_finished
    from django.db import close_old_connections

    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def document_upload(
    company, data: bytes, filename: str = "report.txt", *, uploaded_by=None, segment_size=None
):
    """Return a new document of `company` holding `data`, stored the way the upload view does.

    `segment_size` (small, to make multi-segment files cheap) configures the default storage for
    this one write; the file then reads back under any configuration.
    """
    from contextlib import nullcontext

    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.test import override_settings

    from vault.documents import document_create

    storages = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "vault.storage.EncryptedStorage",
            "OPTIONS": {"segment_size": segment_size},
        },
    }
    with override_settings(STORAGES=storages) if segment_size else nullcontext():
        return document_create(
            company=company, content=ContentFile(data, name=filename), uploaded_by=uploaded_by
        )


# What the cast's fixtures and force_login() record besides the events a test is about.
ACCOUNT_ACTIONS = (
    "login",
    "login-failed",
    "lockout",
    "password-change",
    "membership-add",
    "membership-remove",
    "permission-grant",
    "permission-revoke",
)


def document_events():
    """Return the access events other than account events (logins, memberships, read-any)."""
    from compliance.models import AccessEvent

    return AccessEvent.objects.exclude(action__in=ACCOUNT_ACTIONS)
