"""The access log behind the real vault: storage, crypto, download views, database."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.urls import reverse

from compliance.access_log import chain_verify
from compliance.models import AccessEvent
from tests.helpers import document_events
from vault.access import Action, RecordError, access_context
from vault.keys import keyring
from vault.models import Document
from vault.storage import DecryptionError

pytestmark = pytest.mark.django_db

PLAINTEXT = b"Valuation: 12,500,000 EUR. Confidential.\n" * 50


@pytest.fixture
def stored(acme, alice):
    """A real encrypted document of Acme, uploaded by alice through the storage."""
    document = Document(
        company=acme, title="Valuation", original_filename="v.txt", uploaded_by=alice
    )
    with access_context(action=Action.UPLOAD, user=alice, document=document):
        document.file.save("upload", ContentFile(PLAINTEXT))
    return document


def test_an_upload_is_recorded_with_the_primary_key(stored):
    event = document_events().get()

    assert (event.action, event.outcome) == ("upload", "allowed")
    assert (event.actor_username, event.document_id) == ("alice", stored.pk)
    assert event.stored_name == stored.file.name
    assert event.key_id == keyring().primary.key_id_hex


def test_a_decryption_is_recorded_before_the_plaintext_is_read(stored, bob):
    with access_context(action=Action.DOWNLOAD, user=bob, document=stored, bytes_planned=1):
        handle = default_storage.open(stored.file.name)
        recorded = list(document_events().order_by("seq").values_list("action", "actor_username"))
        with handle:
            data = handle.read()

    assert data == PLAINTEXT
    assert recorded == [("upload", "alice"), ("download", "bob")]
    assert chain_verify().ok


def test_a_tampered_file_is_recorded_as_a_failure(stored, media_root, bob):
    path = media_root / stored.file.name
    ciphertext = bytearray(path.read_bytes())
    ciphertext[-20] ^= 0x01
    path.write_bytes(bytes(ciphertext))

    with (
        access_context(action=Action.DOWNLOAD, user=bob, document=stored),
        pytest.raises(DecryptionError),
        default_storage.open(stored.file.name) as handle,
    ):
        handle.read()

    failure = AccessEvent.objects.order_by("-seq").first()
    assert (failure.outcome, failure.actor_username) == ("failed", "bob")
    assert failure.reason
    assert chain_verify().ok


def test_nothing_is_decrypted_when_the_record_cannot_be_made_durable(stored, bob):
    # Inside a transaction the record could still roll back: the recorder refuses, and so the
    # storage refuses to decrypt.
    with (
        pytest.raises(RecordError),
        transaction.atomic(),
        access_context(action=Action.DOWNLOAD, user=bob, document=stored),
    ):
        default_storage.open(stored.file.name)

    assert list(document_events().values_list("action", flat=True)) == ["upload"]


def test_a_download_through_the_view_is_recorded_with_its_request(client, stored, bob):
    client.force_login(bob)

    response = client.get(
        reverse("vault:document_download", kwargs={"pk": stored.pk}),
        HTTP_X_REQUEST_ID="req-0001-e2e",
        HTTP_USER_AGENT="e2e-agent/1.0",
    )
    # Consuming the stream closes the response (the test client's wrapper); closing it again would
    # also close the test's database connection on PostgreSQL.
    body = b"".join(response.streaming_content)

    event = AccessEvent.objects.order_by("-seq").first()
    assert response.status_code == 200 and body == PLAINTEXT
    assert (event.action, event.outcome, event.actor_username) == ("download", "allowed", "bob")
    assert (event.document_id, event.document_title) == (stored.pk, "Valuation")
    assert (event.client_ip, event.user_agent, event.request_id) == (
        "127.0.0.1",
        "e2e-agent/1.0",
        "req-0001-e2e",
    )
    assert event.bytes_served == len(PLAINTEXT)
    assert event.duration_ms is not None and event.duration_ms >= 0
    assert chain_verify().ok


def test_a_refused_download_through_the_view_is_recorded(client, stored, charlie):
    client.force_login(charlie)

    response = client.get(reverse("vault:document_download", kwargs={"pk": stored.pk}))

    event = AccessEvent.objects.order_by("-seq").first()
    assert response.status_code == 404
    assert PLAINTEXT[:20] not in response.content
    assert (event.outcome, event.actor_username) == ("denied", "charlie")
    assert chain_verify().ok
