"""The document portal: every role against every page, sharing and its expiry, deletion."""

import datetime

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from compliance.models import AccessEvent
from vault.documents import document_create
from vault.models import Document, Grant

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n% Acme Q3 figures\n" + b"x" * 1000


@pytest.fixture
def document(alice, acme):
    """Acme's Q3 figures, uploaded by alice through the real storage."""
    return document_create(
        company=acme, content=ContentFile(PDF, name="q3.pdf"), uploaded_by=alice, title="Q3 figures"
    )


@pytest.fixture
def globex_document(charlie, globex):
    """A document of Globex's."""
    return document_create(
        company=globex, content=ContentFile(b"globex\n", name="g.txt"), uploaded_by=charlie
    )


def url(name, document, *args):
    return reverse(f"vault:{name}", args=[document.pk, *args])


def events(action, outcome=None):
    found = AccessEvent.objects.filter(action=action).order_by("seq")
    return list(found.filter(outcome=outcome) if outcome else found)


def share(client, document, company, expires_on=""):
    return client.post(
        url("document_share", document), {"company": company.pk, "expires_on": expires_on}
    )


def page(client, name, document=None):
    if document is None:
        return client.get(reverse(f"vault:{name}"))
    return client.get(url(name, document))


# Anonymous ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get", "document_list"),
        ("get", "document_upload"),
        ("post", "document_upload"),
        ("get", "document_detail"),
        ("post", "document_share"),
        ("get", "document_delete"),
        ("post", "document_delete"),
    ],
)
def test_anonymous_is_sent_to_log_in(client, document, method, name):
    target = reverse(
        f"vault:{name}", args=[] if name in ("document_list", "document_upload") else [document.pk]
    )
    response = getattr(client, method)(target)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={target}"
    assert Document.objects.filter(pk=document.pk).exists()


def test_anonymous_revoke_is_sent_to_log_in(client, document, globex, alice):
    grant = Grant.objects.create(document=document, company=globex, granted_by=alice)
    response = client.post(url("grant_revoke", document, grant.pk))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert Grant.objects.filter(pk=grant.pk).exists()


def test_login_page_renders_and_logs_in(client, alice):
    alice.set_password("cast-password-not-secret")
    alice.save()
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content
    response = client.post(
        reverse("login"), {"username": "alice", "password": "cast-password-not-secret"}
    )
    assert response.status_code == 302
    assert client.get(reverse("vault:document_list")).status_code == 200


# My documents ------------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_members_see_their_company_documents(client, request, document, globex_document, member):
    client.force_login(request.getfixturevalue(member))
    response = page(client, "document_list")
    assert response.status_code == 200
    assert list(response.context["documents"]) == [document]
    assert b"Q3 figures" in response.content
    assert b"my company" in response.content
    assert b"shared with me" not in response.content


def test_other_company_does_not_see_the_document(client, charlie, document, globex_document):
    client.force_login(charlie)
    response = page(client, "document_list")
    assert list(response.context["documents"]) == [globex_document]
    assert b"Q3 figures" not in response.content


def test_shared_document_is_listed_as_shared(client, charlie, globex, alice, document):
    Grant.objects.create(document=document, company=globex, granted_by=alice)
    client.force_login(charlie)
    response = page(client, "document_list")
    assert list(response.context["documents"]) == [document]
    assert b"shared with me" in response.content


def test_expired_grant_is_not_listed(client, charlie, globex, alice, document):
    Grant.objects.create(
        document=document,
        company=globex,
        granted_by=alice,
        expires_at=timezone.now() - datetime.timedelta(seconds=1),
    )
    client.force_login(charlie)
    assert list(page(client, "document_list").context["documents"]) == []
    assert page(client, "document_detail", document).status_code == 404


@pytest.mark.parametrize("staff", ["officer", "admin"])
def test_staff_without_a_company_list_nothing(client, request, document, staff):
    client.force_login(request.getfixturevalue(staff))
    response = page(client, "document_list")
    assert response.status_code == 200
    assert list(response.context["documents"]) == []


def test_nav_shows_admin_to_staff_only(client, alice, officer):
    client.force_login(alice)
    assert reverse("admin:index").encode() not in page(client, "document_list").content
    client.force_login(officer)
    assert reverse("admin:index").encode() in page(client, "document_list").content


# Detail ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_members_see_the_detail_with_grants_and_actions(client, request, document, globex, member):
    Grant.objects.create(
        document=document, company=globex, granted_by=request.getfixturevalue("alice")
    )
    client.force_login(request.getfixturevalue(member))
    response = page(client, "document_detail", document)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Q3 figures" in content and "q3.pdf" in content and document.key_id in content
    assert url("document_download", document) in content
    assert "Globex" in content
    assert url("document_share", document) in content
    assert url("document_delete", document) in content
    assert response.context["staff_read"] is False


def test_other_company_gets_404_on_detail(client, charlie, document):
    client.force_login(charlie)
    response = page(client, "document_detail", document)
    assert response.status_code == 404
    assert b"Q3 figures" not in response.content
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome, event.reason) == ("view", "denied", "not a reader")
    assert (event.document_id, event.actor_username) == (document.pk, "charlie")


def test_unknown_document_is_the_same_404(client, charlie, document):
    client.force_login(charlie)
    missing = reverse("vault:document_detail", args=["00000000-0000-0000-0000-000000000000"])
    assert client.get(missing).status_code == 404
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome, event.reason) == ("view", "denied", "no such document")
    assert page(client, "document_detail", document).content == client.get(missing).content


def test_shared_company_reads_but_does_not_learn_other_recipients(
    client, charlie, globex, alice, document
):
    from vault.models import Company

    initech = Company.objects.create(name="Initech")
    Grant.objects.create(document=document, company=globex, granted_by=alice)
    Grant.objects.create(document=document, company=initech, granted_by=alice)
    client.force_login(charlie)
    response = page(client, "document_detail", document)
    assert response.status_code == 200
    content = response.content.decode()
    assert url("document_download", document) in content
    assert "Initech" not in content
    assert url("document_share", document) not in content
    assert url("document_delete", document) not in content


def test_officer_reads_the_detail_as_staff(client, officer, document):
    client.force_login(officer)
    response = page(client, "document_detail", document)
    assert response.status_code == 200
    assert response.context["staff_read"] is True
    assert b"staff read" in response.content
    assert url("document_share", document).encode() not in response.content


def test_staff_without_the_permission_gets_404(client, django_user_model, document):
    staff = django_user_model.objects.create_user("clerk", is_staff=True)
    client.force_login(staff)
    assert page(client, "document_detail", document).status_code == 404


# Share and unshare -------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_members_share_and_the_share_is_recorded(client, request, document, globex, member):
    user = request.getfixturevalue(member)
    client.force_login(user)
    response = share(client, document, globex)
    assert response.status_code == 302
    assert response["Location"] == url("document_detail", document)
    grant = Grant.objects.get(document=document)
    assert (grant.company, grant.granted_by, grant.expires_at) == (globex, user, None)
    [event] = events("share")
    assert (event.outcome, event.actor, event.document_id) == ("allowed", user, document.pk)
    assert (event.stored_name, event.reason) == (document.file.name, "shared with Globex")


def test_share_with_an_expiry_date_lasts_through_that_day(client, alice, charlie, globex, document):
    tomorrow = timezone.localdate() + datetime.timedelta(days=1)
    client.force_login(alice)
    share(client, document, globex, tomorrow.isoformat())
    grant = Grant.objects.get()
    assert timezone.localtime(grant.expires_at).date() == tomorrow
    assert timezone.localtime(grant.expires_at).time() == datetime.time.max
    assert grant.is_live
    assert events("share")[0].reason == f"shared with Globex until {tomorrow:%Y-%m-%d} 23:59 UTC"
    client.force_login(charlie)
    assert page(client, "document_detail", document).status_code == 200
    # The day after, the grant has expired: charlie is refused like any stranger.
    Grant.objects.update(expires_at=timezone.now() - datetime.timedelta(microseconds=1))
    assert page(client, "document_detail", document).status_code == 404


def test_share_refuses_a_past_date_and_the_own_company(client, alice, acme, globex, document):
    client.force_login(alice)
    yesterday = (timezone.localdate() - datetime.timedelta(days=1)).isoformat()
    response = share(client, document, globex, yesterday)
    assert response.status_code == 400
    assert response.context["share_form"].errors["expires_on"] == ["The date is in the past."]
    response = share(client, document, acme)
    assert response.status_code == 400
    assert "company" in response.context["share_form"].errors
    assert not Grant.objects.exists()
    assert events("share") == []


def test_sharing_again_updates_the_expiry(client, alice, globex, document):
    client.force_login(alice)
    share(client, document, globex, (timezone.localdate() + datetime.timedelta(days=3)).isoformat())
    share(client, document, globex)
    assert Grant.objects.get().expires_at is None
    assert len(events("share", "allowed")) == 2


@pytest.mark.parametrize("outsider", ["charlie", "officer", "admin"])
def test_non_members_cannot_share_and_are_recorded(client, request, document, globex, outsider):
    user = request.getfixturevalue(outsider)
    client.force_login(user)
    response = share(client, document, globex)
    assert response.status_code == 404
    assert not Grant.objects.exists()
    [event] = events("share")
    assert (event.outcome, event.actor, event.document_id) == ("denied", user, document.pk)
    assert event.reason == "not a member of the owning company"


def test_shared_company_cannot_reshare(client, charlie, alice, globex, document):
    from vault.models import Company

    Grant.objects.create(document=document, company=globex, granted_by=alice)
    initech = Company.objects.create(name="Initech")
    client.force_login(charlie)
    assert share(client, document, initech).status_code == 404
    assert list(Grant.objects.values_list("company__name", flat=True)) == ["Globex"]
    assert [event.outcome for event in events("share")] == ["denied"]


def test_share_needs_post(client, alice, document):
    client.force_login(alice)
    assert page(client, "document_share", document).status_code == 405


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_members_unshare_and_the_revocation_is_recorded(
    client, request, alice, charlie, globex, document, member
):
    grant = Grant.objects.create(document=document, company=globex, granted_by=alice)
    user = request.getfixturevalue(member)
    client.force_login(user)
    response = client.post(url("grant_revoke", document, grant.pk))
    assert response.status_code == 302
    assert not Grant.objects.exists()
    [event] = events("unshare")
    assert (event.outcome, event.actor, event.document_id) == ("allowed", user, document.pk)
    assert event.reason == "no longer shared with Globex"
    client.force_login(charlie)
    assert page(client, "document_detail", document).status_code == 404


@pytest.mark.parametrize("outsider", ["charlie", "officer"])
def test_non_members_cannot_unshare_and_are_recorded(
    client, request, alice, globex, document, outsider
):
    grant = Grant.objects.create(document=document, company=globex, granted_by=alice)
    client.force_login(request.getfixturevalue(outsider))
    assert client.post(url("grant_revoke", document, grant.pk)).status_code == 404
    assert Grant.objects.filter(pk=grant.pk).exists()
    assert [event.outcome for event in events("unshare")] == ["denied"]


def test_revoking_a_grant_of_another_document_is_404(
    client, alice, acme, globex, document, globex_document, charlie
):
    other = Grant.objects.create(document=globex_document, company=acme, granted_by=charlie)
    client.force_login(alice)
    assert client.post(url("grant_revoke", document, other.pk)).status_code == 404
    assert Grant.objects.filter(pk=other.pk).exists()


# Delete ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_members_get_a_confirmation_page(client, request, document, member):
    client.force_login(request.getfixturevalue(member))
    response = page(client, "document_delete", document)
    assert response.status_code == 200
    assert b"Delete" in response.content and b"Q3 figures" in response.content
    assert Document.objects.filter(pk=document.pk).exists()


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_members_delete_the_row_and_the_encrypted_file(
    client, request, document, media_root, django_capture_on_commit_callbacks, member
):
    user = request.getfixturevalue(member)
    path = media_root / document.file.name
    assert path.exists()
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(url("document_delete", document))
    assert response.status_code == 302
    assert response["Location"] == reverse("vault:document_list")
    assert len(callbacks) == 1
    assert not Document.objects.filter(pk=document.pk).exists()
    assert not path.exists()
    [event] = events("delete")
    assert (event.outcome, event.actor, event.document_id) == ("allowed", user, document.pk)
    assert (event.document_title, event.stored_name) == ("Q3 figures", document.file.name)


def test_file_is_deleted_only_after_the_commit(client, alice, document, media_root):
    path = media_root / document.file.name
    client.force_login(alice)
    # Inside the test's transaction nothing commits: the row is gone, the file must stay for now.
    client.post(url("document_delete", document))
    assert not Document.objects.filter(pk=document.pk).exists()
    assert path.exists()


@pytest.mark.parametrize("outsider", ["charlie", "officer", "admin"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_non_members_cannot_delete_and_are_recorded(
    client, request, document, media_root, outsider, method
):
    user = request.getfixturevalue(outsider)
    client.force_login(user)
    response = getattr(client, method)(url("document_delete", document))
    assert response.status_code == 404
    assert Document.objects.filter(pk=document.pk).exists()
    assert (media_root / document.file.name).exists()
    [event] = events("delete")
    assert (event.outcome, event.actor) == ("denied", user)


def test_shared_company_cannot_delete(client, charlie, alice, globex, document):
    Grant.objects.create(document=document, company=globex, granted_by=alice)
    client.force_login(charlie)
    assert client.post(url("document_delete", document)).status_code == 404
    assert Document.objects.filter(pk=document.pk).exists()


def test_unknown_document_delete_is_404_without_an_event(client, alice):
    client.force_login(alice)
    missing = reverse("vault:document_delete", args=["00000000-0000-0000-0000-000000000000"])
    assert client.post(missing).status_code == 404
    assert events("delete") == []


# Upload page -------------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_members_get_the_upload_form(client, request, acme, member):
    client.force_login(request.getfixturevalue(member))
    response = page(client, "document_upload")
    assert response.status_code == 200
    assert b'enctype="multipart/form-data"' in response.content
    assert list(response.context["form"].fields["company"].queryset) == [acme]


def test_charlie_uploads_into_his_own_company_only(client, charlie, globex):
    client.force_login(charlie)
    response = page(client, "document_upload")
    assert list(response.context["form"].fields["company"].queryset) == [globex]


@pytest.mark.parametrize("staff", ["officer", "admin"])
def test_users_without_a_company_cannot_upload(client, request, acme, staff):
    client.force_login(request.getfixturevalue(staff))
    response = page(client, "document_upload")
    assert response.status_code == 200
    assert b"not a member of any company" in response.content
    response = client.post(
        reverse("vault:document_upload"),
        {"company": acme.pk, "file": ContentFile(b"x", name="x.txt")},
    )
    assert response.status_code == 200
    assert not Document.objects.exists()


def test_upload_checks_the_csrf_token(alice, acme):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(
        reverse("vault:document_upload"),
        {"company": acme.pk, "file": ContentFile(b"hello", name="x.txt")},
    )
    assert response.status_code == 403
    assert not Document.objects.exists()


def test_upload_with_the_csrf_token_works(alice, acme):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    form = client.get(reverse("vault:document_upload"))
    token = form.cookies["csrftoken"].value
    response = client.post(
        reverse("vault:document_upload"),
        {
            "company": acme.pk,
            "file": ContentFile(b"hello", name="x.txt"),
            "csrfmiddlewaretoken": token,
        },
    )
    assert response.status_code == 302
    assert Document.objects.get().original_filename == "x.txt"
