"""The admin pages: every page renders, uploads are encrypted, no media path leaks, all is recorded."""

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from compliance.models import AccessEvent
from vault import fileformat
from vault.documents import document_create
from vault.keys import keyring
from vault.models import Company, Document, Grant, Membership

pytestmark = pytest.mark.django_db

MARKER = b"ADMIN-PLAINTEXT-MARKER"
PDF = b"%PDF-1.4\n" + MARKER * 500


@pytest.fixture
def document(alice, acme):
    return document_create(
        company=acme, content=ContentFile(PDF, name="board.pdf"), uploaded_by=alice, title="Board"
    )


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


def admin_url(model, action, *args):
    return reverse(f"admin:vault_{model}_{action}", args=args)


@pytest.mark.parametrize("model", ["company", "membership", "document", "grant"])
def test_changelist_and_add_pages_render(admin_client, document, globex, alice, model):
    Grant.objects.create(document=document, company=globex, granted_by=alice)
    assert admin_client.get(admin_url(model, "changelist")).status_code == 200
    assert admin_client.get(admin_url(model, "add")).status_code == 200


def test_change_pages_render(admin_client, document, globex, alice):
    grant = Grant.objects.create(document=document, company=globex, granted_by=alice)
    membership = Membership.objects.get(user=alice)
    for model, pk in [
        ("company", document.company.pk),
        ("membership", membership.pk),
        ("document", document.pk),
        ("grant", grant.pk),
    ]:
        assert admin_client.get(admin_url(model, "change", pk)).status_code == 200


@pytest.mark.parametrize("who", ["alice", "charlie"])
def test_non_staff_are_sent_to_the_admin_login(client, request, who):
    client.force_login(request.getfixturevalue(who))
    response = client.get(admin_url("document", "changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_model_permissions_are_refused(client, officer, document):
    client.force_login(officer)
    assert client.get(admin_url("document", "changelist")).status_code == 403


def test_admin_upload_is_encrypted_on_disk(admin_client, admin, acme, media_root):
    payload = {"company": acme.pk, "title": "", "file": ContentFile(PDF, name="Board pack.pdf")}
    response = admin_client.post(admin_url("document", "add"), payload)
    assert response.status_code == 302
    document = Document.objects.get()
    assert (document.title, document.original_filename) == ("Board pack.pdf", "Board pack.pdf")
    assert (document.size, document.mime_type) == (len(PDF), "application/pdf")
    assert (document.uploaded_by, document.key_id) == (admin, keyring().primary.key_id_hex)
    assert "Board" not in document.file.name
    on_disk = (media_root / document.file.name).read_bytes()
    assert MARKER not in on_disk
    assert fileformat.classify(on_disk).kind is fileformat.Kind.V2
    event = AccessEvent.objects.get(action="upload")
    assert (event.outcome, event.actor, event.document_id) == ("allowed", admin, document.pk)


def test_change_page_never_shows_the_media_path(admin_client, document):
    response = admin_client.get(admin_url("document", "change", document.pk))
    content = response.content.decode()
    assert document.file.name not in content
    assert "/vault/documents/" not in content
    assert "View on site" not in content
    assert reverse("vault:document_download", args=[document.pk]) in content
    assert 'type="file"' not in content


def test_changing_the_title_keeps_the_file(admin_client, document, media_root):
    before = document.file.name
    response = admin_client.post(
        admin_url("document", "change", document.pk),
        {
            "title": "Board pack (final)",
            "grants-TOTAL_FORMS": "0",
            "grants-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    document.refresh_from_db()
    assert (document.title, document.file.name) == ("Board pack (final)", before)
    assert (media_root / before).exists()


def test_admin_delete_removes_the_file_after_commit_and_records_it(
    admin_client, admin, document, media_root, django_capture_on_commit_callbacks
):
    path = media_root / document.file.name
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(admin_url("document", "delete", document.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Document.objects.exists()
    assert not path.exists()
    event = AccessEvent.objects.get(action="delete")
    assert (event.outcome, event.actor, event.document_id) == ("allowed", admin, document.pk)


def test_admin_bulk_delete_removes_every_file(
    admin_client, alice, acme, document, media_root, django_capture_on_commit_callbacks
):
    other = document_create(
        company=acme, content=ContentFile(b"x", name="x.txt"), uploaded_by=alice
    )
    paths = [media_root / document.file.name, media_root / other.file.name]
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            admin_url("document", "changelist"),
            {
                "action": "delete_selected",
                "_selected_action": [document.pk, other.pk],
                "post": "yes",
            },
        )
    assert not Document.objects.exists()
    assert not any(path.exists() for path in paths)
    assert AccessEvent.objects.filter(action="delete").count() == 2


def test_grant_added_in_admin_is_recorded(admin_client, admin, document, globex):
    response = admin_client.post(
        admin_url("grant", "add"),
        {"document": document.pk, "company": globex.pk, "expires_at_0": "", "expires_at_1": ""},
    )
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert (grant.company, grant.granted_by) == (globex, admin)
    event = AccessEvent.objects.get(action="share")
    assert (event.outcome, event.actor, event.document_id) == ("allowed", admin, document.pk)


def test_grant_inline_share_and_revoke_are_recorded(admin_client, document, globex):
    change = admin_url("document", "change", document.pk)
    response = admin_client.post(
        change,
        {
            "title": document.title,
            "grants-TOTAL_FORMS": "1",
            "grants-INITIAL_FORMS": "0",
            "grants-0-company": globex.pk,
            "grants-0-expires_at_0": "",
            "grants-0-expires_at_1": "",
            "grants-0-document": document.pk,
        },
    )
    assert response.status_code == 302
    grant = Grant.objects.get()
    response = admin_client.post(
        change,
        {
            "title": document.title,
            "grants-TOTAL_FORMS": "1",
            "grants-INITIAL_FORMS": "1",
            "grants-0-id": grant.pk,
            "grants-0-company": globex.pk,
            "grants-0-document": document.pk,
            "grants-0-DELETE": "on",
        },
    )
    assert response.status_code == 302
    assert not Grant.objects.exists()
    actions = list(AccessEvent.objects.order_by("seq").values_list("action", flat=True))
    assert actions[-2:] == ["share", "unshare"]


def test_grant_deleted_in_admin_is_recorded(admin_client, alice, document, globex):
    grant = Grant.objects.create(document=document, company=globex, granted_by=alice)
    admin_client.post(admin_url("grant", "delete", grant.pk), {"post": "yes"})
    assert not Grant.objects.exists()
    assert AccessEvent.objects.get(action="unshare").outcome == "allowed"


def test_company_with_documents_cannot_be_deleted(admin_client, document):
    company = document.company
    response = admin_client.post(admin_url("company", "delete", company.pk), {"post": "yes"})
    assert response.status_code == 200
    assert Company.objects.filter(pk=company.pk).exists()


def test_derived_columns_cannot_be_edited_in_the_admin(admin_client, document):
    before = (document.size, document.mime_type, document.key_id, document.file_id)
    page = admin_client.get(admin_url("document", "change", document.pk)).content.decode()
    for name in ("size", "mime_type", "key_id", "file_id"):
        assert f'name="{name}"' not in page
    response = admin_client.post(
        admin_url("document", "change", document.pk),
        {
            "title": "Board",
            "size": "1",
            "mime_type": "text/html",
            "key_id": "0" * 16,
            "file_id": "0" * 64,
            "grants-TOTAL_FORMS": "0",
            "grants-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    document.refresh_from_db()
    assert (document.size, document.mime_type, document.key_id, document.file_id) == before
