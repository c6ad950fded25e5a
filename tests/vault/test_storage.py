import os
import re

import pytest
from cryptography.fernet import Fernet
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, default_storage
from django.urls import reverse

from compliance.models import AccessEvent
from vault import access, fileformat
from vault.access import Action, Outcome, RecordError, access_context
from vault.keys import keyring
from vault.storage import EncryptedStorage

pytestmark = pytest.mark.django_db

MARKER = b"CONFIDENTIAL-PLAINTEXT-MARKER"


def stored_files(root):
    return [os.path.join(folder, name) for folder, _dirs, names in os.walk(root) for name in names]


def test_default_storage_encrypts_on_disk_and_decrypts_on_open(media_root):
    data = MARKER * 1000
    name = default_storage.save("documents/report.pdf", ContentFile(data))
    on_disk = (media_root / name).read_bytes()
    assert MARKER not in on_disk
    assert fileformat.classify(on_disk[:64]).kind is fileformat.Kind.V2
    assert fileformat.classify(on_disk[:64]).key_id == keyring().primary.key_id
    with default_storage.open(name) as plain:
        assert plain.read() == data


def test_stored_name_is_random_and_keeps_only_the_folder():
    name = default_storage.save("documents/2026/Valuation Acme Corp.xlsx", ContentFile(b"x"))
    assert re.fullmatch(r"documents/2026/[0-9a-f]{32}", name)
    other = default_storage.save("documents/2026/Valuation Acme Corp.xlsx", ContentFile(b"x"))
    assert other != name


def test_hostile_names_are_refused():
    from django.core.exceptions import SuspiciousFileOperation

    for name in ("../escape.txt", "/etc/passwd"):
        with pytest.raises(SuspiciousFileOperation):
            default_storage.save(name, ContentFile(b"x"))


def test_size_is_the_plaintext_size_without_decrypting(media_root):
    name = default_storage.save("d/x", ContentFile(b"a" * 3_000_000))
    events_before = AccessEvent.objects.count()
    assert default_storage.size(name) == 3_000_000
    assert AccessEvent.objects.count() == events_before
    assert os.path.getsize(media_root / name) > 3_000_000


def test_many_segments_round_trip_with_random_access(media_root):
    storage = EncryptedStorage(segment_size=1024)
    data = os.urandom(10_000)
    name = storage.save("d/many", ContentFile(data))
    with storage.open(name) as plain:
        assert plain.size == len(data)
        plain.seek(5_000)
        assert plain.read(3_000) == data[5_000:8_000]
        assert b"".join(plain.chunks()) == data


def test_open_records_an_event_before_returning(media_root):
    name = default_storage.save("d/x", ContentFile(b"hello"))
    with access_context(action=Action.DOWNLOAD), default_storage.open(name) as plain:
        event = AccessEvent.objects.latest("seq")
        assert (event.action, event.outcome, event.stored_name) == ("download", "allowed", name)
        assert event.key_id == keyring().primary.key_id_hex
        assert plain.read() == b"hello"


def test_save_records_an_upload_event():
    name = default_storage.save("d/x", ContentFile(b"hello"))
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome, event.stored_name) == ("upload", "allowed", name)


def test_without_a_recorder_nothing_is_decrypted(media_root):
    name = default_storage.save("d/x", ContentFile(b"hello"))
    from compliance.access_log import access_event_record

    access.recorder_register(None)
    try:
        with pytest.raises(RecordError):
            default_storage.open(name)
    finally:
        access.recorder_register(access_event_record)


def test_case_study_fernet_file_is_read_transparently(settings, media_root):
    ring = keyring()
    token = Fernet(ring.primary.fernet_key).encrypt(MARKER)
    (media_root / "legacy").mkdir()
    (media_root / "legacy" / "nda.pdf").write_bytes(token)
    with default_storage.open("legacy/nda.pdf") as plain:
        assert plain.read() == MARKER
    assert default_storage.classify("legacy/nda.pdf").kind is fileformat.Kind.LEGACY


def test_tampered_file_raises_and_records_a_failure(media_root):
    name = default_storage.save("d/x", ContentFile(MARKER * 10))
    path = media_root / name
    ciphertext = bytearray(path.read_bytes())
    ciphertext[-5] ^= 1
    path.write_bytes(bytes(ciphertext))
    with pytest.raises(fileformat.DecryptionError), default_storage.open(name) as plain:
        plain.read()
    event = AccessEvent.objects.latest("seq")
    assert (event.outcome, event.stored_name) == ("failed", name)
    assert "authentication" in event.reason


def test_plaintext_in_storage_is_refused_and_recorded(media_root):
    (media_root / "plain.txt").write_bytes(MARKER)
    with pytest.raises(fileformat.DecryptionError):
        default_storage.open("plain.txt")
    assert AccessEvent.objects.latest("seq").outcome == Outcome.FAILED


def test_interrupted_save_leaves_nothing(media_root):
    def chunks():
        yield MARKER * 100_000
        raise KeyboardInterrupt

    class Broken(File):
        def chunks(self, chunk_size=None):
            return chunks()

    with pytest.raises(KeyboardInterrupt):
        default_storage.save("d/broken", Broken(None, "broken"))
    assert stored_files(media_root) == []


def test_files_open_read_only():
    name = default_storage.save("d/x", ContentFile(b"x"))
    with pytest.raises(ValueError, match="read-only"):
        default_storage.open(name, "wb")


def test_url_points_to_the_vault_route():
    assert default_storage.url("documents/ab") == reverse("vault:serve", args=["documents/ab"])
    assert default_storage.url("documents/ab") == "/vault/documents/ab"


def test_deconstructs_for_migrations():
    storage = EncryptedStorage(inner=FileSystemStorage(location="/tmp/x"), segment_size=4096)
    path, _args, kwargs = storage.deconstruct()
    assert path == "vault.storage.EncryptedStorage"
    assert kwargs["segment_size"] == 4096


def test_inner_storage_follows_settings(settings, tmp_path):
    settings.VAULT_INNER_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "elsewhere")},
    }
    name = default_storage.save("d/x", ContentFile(MARKER))
    assert (tmp_path / "elsewhere" / name).exists()
    assert MARKER not in (tmp_path / "elsewhere" / name).read_bytes()


def test_non_filesystem_inner_storage_gets_ciphertext(settings):
    settings.VAULT_INNER_STORAGE = {
        "BACKEND": "django.core.files.storage.InMemoryStorage",
        "OPTIONS": {},
    }
    storage = EncryptedStorage()
    name = storage.save("d/x", ContentFile(MARKER * 3))
    with storage.inner.open(name) as raw:
        assert MARKER not in raw.read()
    with storage.open(name) as plain:
        assert plain.read() == MARKER * 3


@pytest.mark.parametrize("method", ["read", "readline", "readinto", "readlines", "chunks"])
def test_a_failure_met_by_any_read_method_is_recorded_once(media_root, method):
    storage = EncryptedStorage(segment_size=1024)
    name = storage.save("d/x", ContentFile(MARKER * 200))
    path = media_root / name
    ciphertext = bytearray(path.read_bytes())
    ciphertext[-100] ^= 1
    path.write_bytes(bytes(ciphertext))
    with storage.open(name) as plain:
        reads = {
            "read": plain.read,
            "readline": plain.readline,
            "readinto": lambda: plain.readinto(bytearray(len(MARKER) * 200)),
            "readlines": plain.readlines,
            "chunks": lambda: b"".join(plain.chunks()),
        }
        with pytest.raises(fileformat.DecryptionError):
            reads[method]()
        with pytest.raises(fileformat.DecryptionError):
            plain.read()  # the reader stays failed
    events = AccessEvent.objects.filter(stored_name=name).order_by("seq")
    outcomes = list(events.values_list("outcome", "key_id"))
    key_id = keyring().primary.key_id_hex
    assert outcomes[-2:] == [("allowed", key_id), ("failed", key_id)]
