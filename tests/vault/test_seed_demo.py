"""`manage.py seed_demo`: real demo data through the real storage, idempotent, development only."""

import io

import magic
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from compliance.models import AccessEvent
from vault import fileformat
from vault.access import Action, access_context
from vault.management.commands import seed_demo
from vault.models import READ_ANY_PERMISSION, Company, Document, Grant

pytestmark = pytest.mark.django_db


def run(**options) -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def test_refuses_to_run_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        run()
    assert not get_user_model().objects.exists()


def test_creates_the_demo_and_prints_the_logins(settings, media_root):
    settings.DEBUG = True
    output = run()
    for username in ("alice", "bob", "charlie", "officer", "admin"):
        assert username in output
    assert seed_demo.DEMO_PASSWORD in output
    users = {user.username: user for user in get_user_model().objects.all()}
    assert set(users) == {"alice", "bob", "charlie", "officer", "admin"}
    assert all(user.check_password(seed_demo.DEMO_PASSWORD) for user in users.values())
    assert users["officer"].is_staff and users["officer"].has_perm(READ_ANY_PERMISSION)
    assert not users["officer"].is_superuser
    assert users["admin"].is_superuser
    assert not users["alice"].is_staff
    acme, globex = Company.objects.get(name="Acme Corp"), Company.objects.get(name="Globex")
    assert {m.company for m in users["alice"].memberships.all()} == {acme}
    assert {m.company for m in users["bob"].memberships.all()} == {acme}
    assert {m.company for m in users["charlie"].memberships.all()} == {globex}
    [grant] = Grant.objects.all()
    assert (grant.document.company, grant.company, grant.is_live) == (acme, globex, True)
    assert list(Document.objects.readable_by(users["charlie"]).order_by("title")) == [
        Document.objects.get(title="Due diligence checklist"),
        grant.document,
    ]


def test_documents_are_real_files_of_each_kind_encrypted_on_disk(settings, media_root):
    settings.DEBUG = True
    run()
    documents = Document.objects.all()
    assert {document.mime_type for document in documents} >= {
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "image/png",
        "text/plain",
    }
    assert documents.filter(original_filename__endswith=".csv").exists()
    for document in documents:
        on_disk = (media_root / document.file.name).read_bytes()
        assert fileformat.classify(on_disk).kind is fileformat.Kind.V2
        with (
            access_context(action=Action.OPEN),
            document.file.storage.open(document.file.name) as plaintext,
        ):
            data = plaintext.read()
        assert len(data) == document.size
        assert magic.from_buffer(data, mime=True) == document.mime_type
        assert data not in on_disk


def test_access_history_is_real_events(settings):
    settings.DEBUG = True
    run()
    events = AccessEvent.objects.all()
    assert events.filter(action="upload", outcome="allowed").count() == len(seed_demo.SAMPLES)
    assert events.filter(action="share", outcome="allowed").count() == 1
    downloads = events.filter(action="download", outcome="allowed")
    assert {event.actor_username for event in downloads} == {"alice", "bob", "charlie", "officer"}
    assert downloads.get(actor_username="officer").staff_read is True
    assert events.filter(action="download", outcome="denied", actor_username="charlie").exists()


def test_running_twice_changes_nothing(settings):
    settings.DEBUG = True
    run()
    counts = (Document.objects.count(), Grant.objects.count(), AccessEvent.objects.count())
    users = get_user_model().objects.count()
    output = run()
    assert (Document.objects.count(), Grant.objects.count(), AccessEvent.objects.count()) == counts
    assert get_user_model().objects.count() == users
    assert "0 new documents" in output


def test_force_runs_without_debug(settings):
    settings.DEBUG = False
    run(force=True)
    assert Document.objects.count() == len(seed_demo.SAMPLES)


def test_sample_builders_make_valid_files():
    assert magic.from_buffer(seed_demo.pdf_build("T", ["a (b)"]), mime=True) == "application/pdf"
    assert magic.from_buffer(seed_demo.png_build(), mime=True) == "image/png"
    docx = seed_demo.docx_build(["hello"])
    assert magic.from_buffer(docx, mime=True) == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    pdf = seed_demo.pdf_build("Title", ["line"])
    # The cross-reference table points at each object: a strict reader finds them.
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert pdf[startxref:].startswith(b"xref\n")
    for number, line in enumerate(pdf[startxref:].split(b"\n")[3:8], start=1):
        offset = int(line.split()[0])
        assert pdf[offset:].startswith(b"%d 0 obj" % number)
