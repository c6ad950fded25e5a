"""A document's metadata comes from its stored file, on every path that stores one."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from compliance.models import AccessEvent
from vault import fileformat
from vault.access import Action, access_context
from vault.documents import document_file_describe, document_metadata_refresh
from vault.fileformat import DecryptionError
from vault.keys import keyring
from vault.models import Document

pytestmark = pytest.mark.django_db

PNG_HEAD = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00"
)
TEXT = b"Minutes of the board on 3 November.\n" * 40


def test_a_document_created_with_a_file_gets_its_metadata_from_the_file(acme, media_root):
    document = Document.objects.create(
        company=acme, title="Minutes", original_filename="m.txt", file=ContentFile(TEXT, "m.txt")
    )
    document.refresh_from_db()
    assert (document.size, document.mime_type) == (len(TEXT), "text/plain")
    assert document.key_id == keyring().primary.key_id_hex
    found = fileformat.classify((media_root / document.file.name).read_bytes())
    assert (found.file_id.hex(), found.document_id) == (document.file_id, document.pk.bytes)


def test_an_orm_save_records_an_upload_naming_the_document(acme):
    document = Document(company=acme, title="Minutes", original_filename="m.txt")
    document.file.save("m.txt", ContentFile(TEXT))
    event = AccessEvent.objects.get()
    assert (event.action, event.outcome) == ("upload", "allowed")
    assert (event.document_id, event.document_title, event.key_id) == (
        document.pk,
        "Minutes",
        document.key_id,
    )


def test_the_type_is_sniffed_from_the_content_not_the_name(acme):
    document = Document(company=acme, title="Scan", original_filename="scan.pdf")
    document.file.save("scan.pdf", ContentFile(PNG_HEAD))
    assert document.mime_type == "image/png"


def test_refresh_fills_an_adopted_file_and_records_the_read(acme, alice):
    name = default_storage.save("documents/2026/11/adopted", ContentFile(TEXT))
    document = Document.objects.create(
        company=acme, title="Adopted", original_filename="a.txt", file=name
    )
    assert (document.size, document.mime_type, document.key_id) == (0, "", "")
    with access_context(action=Action.IMPORT, user=alice):
        stored = document_metadata_refresh(document)
    document.refresh_from_db()
    assert (document.size, document.mime_type, document.file_id) == (
        len(TEXT),
        "text/plain",
        stored.file_id,
    )
    assert (stored.version, stored.document_id) == (2, None)
    event = AccessEvent.objects.filter(action="import").get()
    assert (event.outcome, event.document_id, event.actor) == ("allowed", document.pk, alice)


def test_refresh_refuses_a_file_written_for_another_document(acme):
    first = Document(company=acme, title="First", original_filename="1.txt")
    first.file.save("1.txt", ContentFile(TEXT))
    second = Document.objects.create(
        company=acme, title="Second", original_filename="2.txt", file=ContentFile(b"x", "2.txt")
    )
    second.file.name = first.file.name
    with pytest.raises(DecryptionError):
        document_metadata_refresh(second)
    second.refresh_from_db()
    assert second.size == 1


def test_describe_and_open_refuse_a_file_of_another_document(acme, media_root):
    first = Document(company=acme, title="First", original_filename="1.txt")
    first.file.save("1.txt", ContentFile(TEXT))
    second = Document(company=acme, title="Second", original_filename="2.txt")
    second.file.save("2.txt", ContentFile(b"second"))
    assert document_file_describe(second).size == len(b"second")
    with second.file.open() as plain:
        assert plain.read() == b"second"

    (media_root / second.file.name).write_bytes((media_root / first.file.name).read_bytes())
    second = Document.objects.get(pk=second.pk)

    with pytest.raises(DecryptionError):
        document_file_describe(second)
    with pytest.raises(DecryptionError):
        second.file.open()
    failed = AccessEvent.objects.filter(outcome="failed")
    assert [event.document_id for event in failed] == [second.pk, second.pk]
