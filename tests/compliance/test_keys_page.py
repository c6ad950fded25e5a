"""The keys page: key ring, documents and files per key ID, rotation status, runbook; officers only."""

import pytest
from cryptography.fernet import Fernet
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from compliance.models import AccessEvent
from compliance.scan import storage_scan
from tests.compliance import dashboard
from tests.helpers import document_upload
from vault.documents import document_metadata_refresh
from vault.keys import keyring
from vault.models import Document
from vault.rotation import storage_rotate

pytestmark = pytest.mark.django_db

compliance_officer = dashboard.compliance_officer

CURRENT = "current:test-secret-current-0123456789abcdef0123456789"
PREVIOUS = "previous:test-secret-previous-0123456789abcdef012345678"
URL = "/compliance/keys/"


@pytest.fixture
def mixed(acme, settings):
    """One document under the older key, one under the primary, one legacy Fernet file adopted."""
    settings.VAULT_KEYS = f"{PREVIOUS},{CURRENT}"
    old = document_upload(acme, b"%PDF-1.4 old\n", "old.pdf")
    settings.VAULT_KEYS = f"{CURRENT},{PREVIOUS}"
    new = document_upload(acme, b"%PDF-1.4 new\n", "new.pdf")
    name = default_storage.inner.save(
        "company_docs/nda.pdf",
        ContentFile(Fernet(keyring().primary.fernet_key).encrypt(b"%PDF-1.4 nda\n")),
    )
    legacy = Document(company=acme, title="NDA", original_filename="nda.pdf", file=name)
    document_metadata_refresh(legacy, save=False)
    legacy.save()
    return {"old": old, "new": new, "legacy": legacy}


def key_ids():
    return {key.label: key.key_id_hex for key in keyring().keys}


def row_of(html, key_id):
    start = html.index(f'<td class="font-monospace">{key_id}</td>')
    return html[start : html.index("</tr>", start)]


def test_the_page_shows_each_key_its_documents_and_what_is_left_to_rotate(
    client, compliance_officer, mixed
):
    client.force_login(compliance_officer)
    response = client.get(URL)

    html = response.content.decode()
    ids = key_ids()
    assert response.status_code == 200
    assert reverse("compliance:keys") == URL
    assert "primary" in row_of(html, ids["current"])
    assert "decrypt-only" in row_of(html, ids["previous"])
    assert '<td class="text-end">1</td>' in row_of(html, ids["previous"])
    assert "No storage scan has run" in html
    status = response.context["status"]
    assert (status.documents, status.on_older_keys, status.legacy_documents) == (3, 1, 1)
    assert (status.unbound_files, status.complete) == (None, False)
    assert "vault_rotate" in html and "vault_keygen" in html
    for secret in (CURRENT, PREVIOUS):
        assert secret.partition(":")[2] not in html


def test_after_rotation_and_a_scan_the_page_says_the_old_key_can_go(
    client, compliance_officer, mixed
):
    storage_scan(operator="test")
    client.force_login(compliance_officer)
    before = client.get(URL).context["status"]

    storage_rotate()
    storage_scan(operator="test")
    response = client.get(URL)

    assert (before.unbound_files, before.legacy_files, before.old_key_files) == (1, 1, 1)
    after = response.context["status"]
    assert (after.documents_pending, after.unbound_files, after.old_key_files) == (0, 0, 0)
    assert after.complete
    assert "Rotation complete." in response.content.decode()
    files = {row.key.key_id: row.files for row in response.context["rows"]}
    assert files[key_ids()["current"]] == 3
    assert files[key_ids()["previous"]] == 0


def test_a_member_is_refused_and_recorded(client, alice):
    client.force_login(alice)
    response = client.get(URL)
    assert response.status_code == 403
    event = AccessEvent.objects.get(action="compliance-view")
    assert (event.outcome, event.actor) == ("denied", alice)


def test_staff_without_the_permission_is_refused(client, officer):
    """The cast's officer is staff with read-any, not in the compliance group."""
    client.force_login(officer)
    assert client.get(URL).status_code == 403


def test_an_anonymous_visitor_goes_to_the_login_page(client, db):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
