"""The admin shows the access log, filtered and searched, and never changes it."""

import pytest
from django.urls import reverse

from compliance.models import AccessEvent
from tests.helpers import document_events
from vault.access import Access, AccessContext, Action, Outcome

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(alice, charlie, document):
    from compliance.access_log import access_event_record

    access_event_record(
        Access(
            Outcome.ALLOWED, AccessContext(action=Action.DOWNLOAD, user=alice, document=document)
        )
    )
    return access_event_record(
        Access(
            Outcome.DENIED,
            AccessContext(action=Action.DOWNLOAD, user=charlie, document=document),
            reason="not a reader",
        )
    )


@pytest.fixture
def admin_client_logged(client, admin):
    client.force_login(admin)
    return client


def test_changelist_lists_filters_and_searches(admin_client_logged, events):
    url = reverse("admin:compliance_accessevent_changelist")

    everything = admin_client_logged.get(url)
    denied = admin_client_logged.get(url, {"outcome__exact": "denied"})
    searched = admin_client_logged.get(url, {"q": "alice", "action__exact": "download"})

    assert everything.status_code == 200
    assert b"alice" in everything.content and b"charlie" in everything.content
    assert list(denied.context["cl"].result_list) == [events]
    assert [event.actor_username for event in searched.context["cl"].result_list] == ["alice"]
    assert b"delete_selected" not in everything.content
    assert reverse("admin:compliance_accessevent_add").encode() not in everything.content


def test_event_page_is_read_only(admin_client_logged, events):
    url = reverse("admin:compliance_accessevent_change", args=[events.pk])

    page = admin_client_logged.get(url)
    posted = admin_client_logged.post(url, {"reason": "edited"})

    assert page.status_code == 200
    assert b"not a reader" in page.content
    assert b'name="_save"' not in page.content
    assert posted.status_code == 403
    assert AccessEvent.objects.get(pk=events.pk).reason == "not a reader"


def test_event_page_survives_a_deleted_document(admin_client_logged, events, document):
    document.delete()

    page = admin_client_logged.get(reverse("admin:compliance_accessevent_change", args=[events.pk]))

    assert page.status_code == 200
    assert b"Acme valuation 2026" in page.content


def test_add_and_delete_are_refused(admin_client_logged, events):
    add = admin_client_logged.get(reverse("admin:compliance_accessevent_add"))
    delete = admin_client_logged.post(
        reverse("admin:compliance_accessevent_delete", args=[events.pk]), {"post": "yes"}
    )
    bulk_delete = admin_client_logged.post(
        reverse("admin:compliance_accessevent_changelist"),
        {"action": "delete_selected", "_selected_action": [events.pk], "post": "yes"},
    )

    assert add.status_code == 403
    assert delete.status_code == 403
    assert bulk_delete.status_code in (200, 302)
    assert document_events().count() == 2


def test_staff_without_the_view_permission_sees_nothing(client, officer, events):
    client.force_login(officer)

    response = client.get(reverse("admin:compliance_accessevent_changelist"))

    assert response.status_code == 403
