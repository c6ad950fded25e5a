"""Who may read a document: members, live grants, and staff holding the read-any permission."""

import datetime

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from vault.documents import document_create
from vault.models import Company, Document, Grant, Membership, document_get_for_reader

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(alice, acme):
    return document_create(company=acme, content=ContentFile(b"x", name="x.txt"), uploaded_by=alice)


def readable(user):
    return list(Document.objects.readable_by(user))


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_members_read_their_company_documents(request, document, member):
    assert readable(request.getfixturevalue(member)) == [document]


def test_other_company_reads_nothing(charlie, document):
    assert readable(charlie) == []


@pytest.mark.parametrize("user", [None, "officer", "admin"])
def test_no_membership_reads_nothing_through_readable_by(request, document, user):
    user = AnonymousUser() if user is None else request.getfixturevalue(user)
    assert readable(user) == []


@pytest.mark.parametrize(
    ("expires_in", "live"),
    [(None, True), (datetime.timedelta(days=1), True), (-datetime.timedelta(seconds=1), False)],
)
def test_grant_reads_until_it_expires(alice, charlie, globex, document, expires_in, live):
    expires_at = None if expires_in is None else timezone.now() + expires_in
    grant = Grant.objects.create(
        document=document, company=globex, granted_by=alice, expires_at=expires_at
    )
    assert grant.is_live is live
    assert readable(charlie) == ([document] if live else [])


def test_a_grant_to_another_company_does_not_help(alice, charlie, document):
    initech = Company.objects.create(name="Initech")
    Grant.objects.create(document=document, company=initech, granted_by=alice)
    assert readable(charlie) == []


def test_member_and_grantee_at_once_reads_each_document_once(alice, globex, document):
    Membership.objects.create(user=alice, company=globex)
    Grant.objects.create(document=document, company=globex, granted_by=alice)
    assert readable(alice) == [document]


@pytest.mark.parametrize("member", ["alice", "bob"])
def test_member_read_is_not_a_staff_read(request, document, member):
    assert document_get_for_reader(request.getfixturevalue(member), pk=document.pk) == (
        document,
        False,
    )


@pytest.mark.parametrize("staff", ["officer", "admin"])
def test_read_any_permission_is_a_staff_read(request, document, staff):
    assert document_get_for_reader(request.getfixturevalue(staff), pk=document.pk) == (
        document,
        True,
    )


def test_staff_without_the_permission_is_refused(django_user_model, document):
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)
    with pytest.raises(Document.DoesNotExist):
        document_get_for_reader(clerk, pk=document.pk)


@pytest.mark.parametrize("user", ["charlie", None])
def test_everyone_else_is_refused(request, document, user):
    user = AnonymousUser() if user is None else request.getfixturevalue(user)
    with pytest.raises(Document.DoesNotExist):
        document_get_for_reader(user, pk=document.pk)


def test_one_grant_per_document_and_company(alice, globex, document):
    Grant.objects.create(document=document, company=globex, granted_by=alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        Grant.objects.create(document=document, company=globex, granted_by=alice)


def test_a_company_with_documents_cannot_be_deleted(acme, document):
    with pytest.raises(ProtectedError):
        acme.delete()


def test_read_any_permission_works_for_staff_only(django_user_model, acme):
    from django.contrib.auth.models import Permission

    document = document_create(
        company=acme, content=ContentFile(b"x", name="x.txt"), uploaded_by=None, title="x"
    )
    outsider = django_user_model.objects.create(username="contractor", is_staff=False)
    outsider.user_permissions.add(Permission.objects.get(codename="read_any_document"))
    with pytest.raises(Document.DoesNotExist):
        document_get_for_reader(outsider, pk=document.pk)
    outsider.is_staff = True
    outsider.save()
    outsider = django_user_model.objects.get(pk=outsider.pk)  # a fresh permission cache
    assert document_get_for_reader(outsider, pk=document.pk) == (document, True)


def test_a_company_with_shares_cannot_be_deleted_unrecorded(acme, globex, alice):
    from vault.documents import grant_save

    document = document_create(
        company=acme, content=ContentFile(b"x", name="x.txt"), uploaded_by=alice, title="x"
    )
    grant_save(document, globex, None, user=alice)
    with pytest.raises(ProtectedError):
        globex.delete()
