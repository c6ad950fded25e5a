"""Fixtures shared by the dashboard's test modules (imported by them, by name)."""

import pytest
from django.core.files.base import ContentFile
from django.test import RequestFactory

from vault.access import Access, AccessContext, Action, Outcome


@pytest.fixture
def compliance_officer(db):
    """A staff user in the "Compliance officers" group: the dashboard, and nothing else."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user("carol", "carol@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance officers"))
    return user


@pytest.fixture
def uploaded(acme, globex, alice, charlie):
    """Three documents uploaded through the vault's real path: two of Acme, one of Globex."""
    from vault.uploads import document_create

    def upload(company, user, title, data):
        return document_create(
            company=company,
            content=ContentFile(data, name=f"{title}.txt"),
            uploaded_by=user,
            title=title,
        )

    return {
        "valuation": upload(acme, alice, "Acme valuation", b"valuation 12.5m\n"),
        "nda": upload(acme, alice, "Acme NDA", b"mutual NDA\n"),
        "checklist": upload(globex, charlie, "Globex checklist", b"[ ] accounts\n"),
    }


def access_add(
    user=None,
    *,
    action=Action.DOWNLOAD,
    outcome=Outcome.ALLOWED,
    document=None,
    ip="192.0.2.10",
    staff_read=False,
    reason="",
    key_id="",
):
    """Record one access through the real recorder, as a request from `ip` would."""
    from compliance.access_log import access_event_record

    request = RequestFactory().get("/", REMOTE_ADDR=ip, HTTP_USER_AGENT="pytest")
    request.user = user
    context = AccessContext(
        action=action, user=user, request=request, document=document, staff_read=staff_read
    )
    key = key_id or (document.key_id if document is not None else "")
    return access_event_record(Access(outcome, context, reason=reason, key_id=key))
