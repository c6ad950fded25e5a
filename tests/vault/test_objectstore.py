"""The vault on an S3 bucket: a real SeaweedFS server, real boto3, real uploads and downloads.

Bytes fetched are counted with boto3's own event hooks on the storage's client: what the server
sent for each GetObject, not what our code says it asked for.
"""

import io
import os
import sys
import threading

import pytest
from cryptography.fernet import Fernet
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.urls import reverse

from compliance.heads import HEADS_NAME
from compliance.models import AccessEvent
from tests.helpers import response_close
from vault import fileformat
from vault.access import Action, access_context
from vault.documents import document_metadata_refresh
from vault.keys import keyring
from vault.models import Document
from vault.objectstore import (
    HEAD_BYTES,
    UPLOAD_PART_SIZE,
    ObjectChangedError,
    RangedObjectFile,
    object_replace,
)
from vault.storage import EncryptedStorage

pytestmark = [pytest.mark.django_db, pytest.mark.s3]

MARKER = b"CONFIDENTIAL-PLAINTEXT-MARKER"
SEGMENT = 1024
MiB = 1024 * 1024


class Fetches:
    """Record the GetObject and HeadObject calls a storage's boto3 client makes."""

    def __init__(self, storage):
        self.gets: list[int] = []  # bytes in each GetObject response body
        # HeadObject calls, by key: the access log's hourly look at its published heads file
        # (compliance/heads.py) may come on any recorded access, and is not the document's.
        self.head_keys: list[str] = []
        self.parts = 0  # UploadPart calls of multipart uploads
        self._events = storage.connection.meta.client.meta.events
        self._events.register("after-call.s3.GetObject", self._get)
        self._events.register("before-parameter-build.s3.HeadObject", self._head)
        self._events.register("after-call.s3.UploadPart", self._part)

    @property
    def heads(self) -> int:
        """Return how many HeadObject calls asked for anything but the access log's heads file."""
        return sum(1 for key in self.head_keys if not key.endswith(HEADS_NAME))

    def _get(self, parsed, **kwargs):
        self.gets.append(parsed["ContentLength"])

    def _head(self, params, **kwargs):
        self.head_keys.append(params.get("Key", ""))

    def _part(self, **kwargs):
        self.parts += 1

    def clear(self):
        self.gets.clear()
        self.head_keys.clear()
        self.parts = 0

    def stop(self):
        self._events.unregister("after-call.s3.GetObject", self._get)
        self._events.unregister("before-parameter-build.s3.HeadObject", self._head)
        self._events.unregister("after-call.s3.UploadPart", self._part)


@pytest.fixture
def fetches(s3_storage):
    recorder = Fetches(s3_storage)
    yield recorder
    recorder.stop()


def key_of(storage, name):
    return f"{storage.location}/{name}"


def stored_bytes(s3_server, storage, name):
    return (
        s3_server.client()
        .get_object(Bucket=s3_server.bucket, Key=key_of(storage, name))["Body"]
        .read()
    )


def object_exists(s3_server, storage, name):
    listing = s3_server.client().list_objects_v2(
        Bucket=s3_server.bucket, Prefix=key_of(storage, name)
    )
    return listing.get("KeyCount", 0) > 0


def company_of(user):
    return user.memberships.get().company


def body(response):
    try:
        return b"".join(response.streaming_content)
    finally:
        response_close(response)


def flip_object(s3_server, storage, name, offset):
    data = bytearray(stored_bytes(s3_server, storage, name))
    data[offset] ^= 0x01
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key=key_of(storage, name), Body=bytes(data)
    )


# The storage on the bucket -----------------------------------------------------------------------


def test_the_bucket_holds_ciphertext_and_open_decrypts(s3_server, s3_storage):
    data = MARKER * 1000
    name = default_storage.save("documents/2026/11/upload", ContentFile(data))
    stored = stored_bytes(s3_server, s3_storage, name)
    assert MARKER not in stored
    assert fileformat.classify(stored).key_id == keyring().primary.key_id
    with access_context(action=Action.DOWNLOAD), default_storage.open(name) as decrypted:
        assert decrypted.read() == data
    assert AccessEvent.objects.filter(stored_name=name, action="download").count() == 1


def test_seek_and_read_across_segments(s3_storage):
    storage = EncryptedStorage(segment_size=SEGMENT)
    data = os.urandom(10 * SEGMENT + 123)
    name = storage.save("documents/upload", ContentFile(data))
    with storage.open(name) as decrypted:
        for offset, length in [(5000, 3000), (0, 10), (len(data) - 7, 100), (968, 1008)]:
            decrypted.seek(offset)
            assert decrypted.read(length) == data[offset : offset + length]


def test_reading_one_segment_fetches_the_head_and_that_segment_only(s3_storage, fetches):
    storage = EncryptedStorage(inner=s3_storage, segment_size=64 * 1024)
    data = os.urandom(20 * 64 * 1024)
    name = storage.save("documents/upload", ContentFile(data))
    fetches.clear()
    with storage.open(name) as decrypted:
        decrypted.seek(10 * 64 * 1024)
        assert decrypted.read(100) == data[10 * 64 * 1024 : 10 * 64 * 1024 + 100]
    # One small GET for the header, one GET of exactly one 64 KiB ciphertext segment.
    assert fetches.gets == [HEAD_BYTES, 64 * 1024]
    assert fetches.heads == 0


def test_size_and_classify_read_only_the_head(s3_storage, fetches):
    data = os.urandom(3 * MiB)
    name = default_storage.save("documents/upload", ContentFile(data))
    fetches.clear()
    assert default_storage.size(name) == len(data)
    classified = default_storage.classify(name)
    assert (classified.kind, classified.key_id) == (fileformat.Kind.V2, keyring().primary.key_id)
    assert fetches.gets == [HEAD_BYTES, HEAD_BYTES]


def test_a_whole_read_fetches_each_segment_once_and_each_byte_once(s3_storage, fetches):
    data = os.urandom(3 * MiB)
    name = default_storage.save("documents/upload", ContentFile(data))
    fetches.clear()
    with default_storage.open(name) as decrypted:
        assert b"".join(decrypted.chunks()) == data
    ciphertext_size = s3_storage.size(name)
    assert fetches.gets[0] == HEAD_BYTES
    assert len(fetches.gets) == 1 + 4  # 3 MiB of plaintext fill four 1 MiB segments
    # The first segment's GET starts where the head's ended: no byte is fetched twice.
    assert sum(fetches.gets) == ciphertext_size


def test_delete_exists_and_listdir(s3_server, s3_storage):
    first = default_storage.save("documents/2026/one", ContentFile(b"one"))
    second = default_storage.save("documents/2026/two", ContentFile(b"two"))
    assert default_storage.exists(first) and default_storage.exists(second)
    assert default_storage.listdir("") == (["documents"], [])
    folders, files = default_storage.listdir("documents/2026")
    assert folders == [] and sorted(files) == sorted(n.rsplit("/", 1)[1] for n in (first, second))
    default_storage.delete(first)
    assert not default_storage.exists(first)
    assert not object_exists(s3_server, s3_storage, first)
    assert default_storage.listdir("documents/2026")[1] == [second.rsplit("/", 1)[1]]


def test_a_missing_object_is_file_not_found(s3_storage):
    with pytest.raises(FileNotFoundError):
        default_storage.open("documents/none")
    with pytest.raises(FileNotFoundError):
        s3_storage.open("documents/none")


def test_hostile_names_are_refused_before_the_bucket(s3_storage, fetches):
    from django.core.exceptions import SuspiciousFileOperation

    for name in ["../escape", "/absolute", "documents/../../x"]:
        with pytest.raises(SuspiciousFileOperation):
            default_storage.save(name, ContentFile(b"x"))
    assert fetches.gets == [] and fetches.heads == 0


def test_an_object_replaced_while_read_fails_the_next_read(s3_server, s3_storage):
    storage = EncryptedStorage(segment_size=SEGMENT)
    name = storage.save("documents/upload", ContentFile(os.urandom(5 * SEGMENT)))
    other = storage.save("documents/other", ContentFile(os.urandom(5 * SEGMENT)))
    with storage.open(name) as decrypted:
        assert len(decrypted.read(10)) == 10
        s3_server.client().put_object(
            Bucket=s3_server.bucket,
            Key=key_of(s3_storage, name),
            Body=stored_bytes(s3_server, s3_storage, other),
        )
        decrypted.seek(3 * SEGMENT)
        with pytest.raises(ObjectChangedError):
            decrypted.read(10)


def test_ranged_file_over_an_empty_object(s3_server):
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="test-empty/object", Body=b"")
    with RangedObjectFile(client, s3_server.bucket, "test-empty/object") as handle:
        assert (handle.size, handle.read(), handle.seekable()) == (0, b"", True)


def test_ranged_file_reads_like_a_file(s3_server):
    data = os.urandom(10_000)
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="test-plain/object", Body=data)
    with RangedObjectFile(client, s3_server.bucket, "test-plain/object") as handle:
        assert handle.size == len(data)
        assert handle.read(10) == data[:10]
        assert handle.seek(-100, io.SEEK_END) == len(data) - 100
        assert handle.read() == data[-100:]
        assert handle.read(5) == b""
        handle.seek(5000)
        buffer = bytearray(50)
        assert handle.readinto(buffer) == 50 and bytes(buffer) == data[5000:5050]
        handle.seek(5040)  # partly inside the last range
        assert handle.read(100) == data[5040:5140]
        handle.seek(20)
        assert handle.read(30) == data[20:50]
    with pytest.raises(ValueError):
        handle.read(1)


class PausingReader(io.RawIOBase):
    """A non-seekable source of `size` bytes that stops after `pause_at` until released."""

    def __init__(self, data, pause_at):
        self._data = memoryview(data)
        self._pos = 0
        self.pause_at = pause_at
        self.paused = threading.Event()
        self.release = threading.Event()

    def readable(self):
        return True

    def readinto(self, buffer):
        # Full reads until the end, as boto3 expects of a non-seekable source: pause mid-read.
        out = memoryview(buffer).cast("B")
        done = 0
        while done < len(out) and self._pos < len(self._data):
            if self._pos == self.pause_at and not self.release.is_set():
                self.paused.set()
                self.release.wait(30)
            limit = self.pause_at if self._pos < self.pause_at else len(self._data)
            end = min(self._pos + len(out) - done, limit)
            out[done : done + end - self._pos] = self._data[self._pos : end]
            done += end - self._pos
            self._pos = end
        return done


def test_a_reader_never_sees_half_an_object(s3_server, s3_storage):
    """A multipart upload replacing an object: readers get the old object whole until it completes."""
    client = s3_server.client()
    old, new = os.urandom(3 * MiB), os.urandom(12 * MiB)
    name = s3_storage.save("objects/replaced", ContentFile(old))
    key = key_of(s3_storage, name)
    source = PausingReader(new, pause_at=10 * MiB)
    upload = threading.Thread(target=object_replace, args=(s3_storage, name, File(source, name)))
    upload.start()
    try:
        assert source.paused.wait(30)
        # The first 8 MiB part is on its way or stored; the object is still the old one, whole.
        assert client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == old
        with s3_storage.open(name) as handle:
            assert handle.read() == old
    finally:
        source.release.set()
        upload.join(60)
    assert client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == new


def test_without_a_runnable_weed_the_s3_tests_say_why(monkeypatch, tmp_path):
    from tests.seaweed import SeaweedUnavailable, weed_path

    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SeaweedUnavailable, match="No SeaweedFS `weed` binary"):
        weed_path()
    broken = tmp_path / "weed"
    broken.write_bytes(b"\x7fELF not really")
    broken.chmod(0o755)
    with pytest.raises(SeaweedUnavailable, match="cannot run here"):
        weed_path()


def test_object_replace_needs_an_object_store(media_root):
    with pytest.raises(TypeError, match="needs an S3 storage"):
        object_replace(FileSystemStorage(), "x", ContentFile(b"x"))


def test_the_ranged_storage_can_be_named_and_pickled(s3_storage):
    import pickle

    import vault.objectstore

    assert vault.objectstore.RangedS3Storage is type(s3_storage)
    name = s3_storage.save("objects/pickled", ContentFile(b"ciphertext stand-in"))
    copy = pickle.loads(pickle.dumps(s3_storage))  # noqa: S301 (bytes we just made)
    with copy.open(name) as handle:
        assert handle.read() == b"ciphertext stand-in"


def test_the_inner_storage_fixture_runs_on_both(inner_storage):
    name = default_storage.save("documents/upload", ContentFile(MARKER))
    with inner_storage.open(name) as handle:
        assert MARKER not in handle.read()
    with default_storage.open(name) as decrypted:
        assert decrypted.read() == MARKER
    if not isinstance(inner_storage, FileSystemStorage):
        assert type(inner_storage).__name__ == "RangedS3Storage"
    # Rewriting ciphertext the same way on either storage, as tampering tests do.
    with inner_storage.open(name) as handle:
        tampered = bytearray(handle.read())
    tampered[fileformat.PREAMBLE_SIZE] ^= 0x01
    inner_storage.delete(name)
    assert inner_storage.save(name, ContentFile(bytes(tampered))) == name
    with pytest.raises(fileformat.DecryptionError), default_storage.open(name) as decrypted:
        decrypted.read()


# Downloads from the bucket -----------------------------------------------------------------------


def upload(client, company, data, name="report.pdf"):
    payload = {"title": "", "company": company.pk, "file": ContentFile(data, name=name)}
    return client.post(reverse("vault:document_upload"), payload)


def download_url(document):
    return reverse("vault:document_download", kwargs={"pk": document.pk})


def test_upload_and_download_through_the_views(client, alice, s3_server, s3_storage):
    data = b"%PDF-1.7\n" + MARKER * 3000
    client.force_login(alice)
    assert upload(client, company_of(alice), data).status_code == 302
    document = Document.objects.get()
    assert (document.size, document.mime_type) == (len(data), "application/pdf")
    stored = stored_bytes(s3_server, s3_storage, document.file.name)
    assert MARKER not in stored
    assert fileformat.classify(stored).file_id.hex() == document.file_id

    response = client.get(download_url(document))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert body(response) == data
    path_response = client.get("/vault/" + document.file.name)
    assert (path_response.status_code, body(path_response)) == (200, data)


def test_a_range_download_fetches_only_its_segment(client, alice, s3_storage, fetches):
    from vault.documents import document_create

    data = b"%PDF-1.7\n" + os.urandom(5 * MiB)
    document = document_create(
        company=company_of(alice), content=ContentFile(data, name="big.pdf"), uploaded_by=alice
    )
    fetches.clear()
    client.force_login(alice)
    response = client.get(download_url(document), HTTP_RANGE="bytes=3145728-3145827")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 3145728-3145827/{len(data)}"
    assert body(response) == data[3145728:3145828]
    # The header, then the one 1 MiB segment holding those bytes: not the 5 MiB object.
    assert fetches.gets == [HEAD_BYTES, fileformat.SEGMENT_SIZE]
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome, event.bytes_served) == ("range", "allowed", 100)


def test_charlie_is_refused_a_document_in_the_bucket(client, alice, charlie, s3_storage, fetches):
    from vault.documents import document_create

    document = document_create(
        company=company_of(alice), content=ContentFile(MARKER, name="a.txt"), uploaded_by=alice
    )
    fetches.clear()
    client.force_login(charlie)
    assert client.get(download_url(document)).status_code == 404
    assert client.get("/vault/" + document.file.name).status_code == 404
    assert fetches.gets == []


def test_a_tampered_object_is_refused(client, alice, s3_server, s3_storage):
    from vault.documents import document_create

    document = document_create(
        company=company_of(alice),
        content=ContentFile(b"%PDF-1.7\n" + MARKER * 100, name="a.pdf"),
        uploaded_by=alice,
    )
    flip_object(s3_server, s3_storage, document.file.name, fileformat.PREAMBLE_SIZE + 10)
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 500
    assert MARKER not in response.content
    event = AccessEvent.objects.latest("seq")
    assert (event.outcome, event.reason) == ("failed", "segment 0 failed authentication")


def test_hostile_paths_are_refused_on_the_bucket(client, alice, s3_storage, fetches):
    client.force_login(alice)
    for path in ["/vault/documents/../x", "/vault/documents/%2e%2e/x", "/vault/./x"]:
        assert client.get(path).status_code == 400
    assert fetches.gets == [] and fetches.heads == 0


def test_the_delete_view_removes_the_object(
    client, alice, s3_server, s3_storage, django_capture_on_commit_callbacks
):
    from vault.documents import document_create

    document = document_create(
        company=company_of(alice), content=ContentFile(MARKER, name="a.txt"), uploaded_by=alice
    )
    assert object_exists(s3_server, s3_storage, document.file.name)
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("vault:document_delete", kwargs={"pk": document.pk}))
    assert response.status_code == 302
    assert not object_exists(s3_server, s3_storage, document.file.name)


def test_a_large_upload_goes_up_in_parts_and_comes_back_whole(
    client, alice, s3_server, s3_storage, fetches
):
    data = b"%PDF-1.7\n" + os.urandom(2 * UPLOAD_PART_SIZE + 12345)
    client.force_login(alice)
    assert upload(client, company_of(alice), data, "big.pdf").status_code == 302
    assert fetches.parts == 3  # a multipart upload of three parts, never one whole body
    document = Document.objects.get()
    assert document.size == len(data)
    response = client.get(download_url(document))
    assert body(response) == data


def test_a_case_study_fernet_object_downloads(client, alice, s3_server, s3_storage):
    pdf = b"%PDF-1.4\n" + MARKER * 50
    s3_server.client().put_object(
        Bucket=s3_server.bucket,
        Key=key_of(s3_storage, "company_docs/nda.pdf"),
        Body=Fernet(keyring().primary.fernet_key).encrypt(pdf),
    )
    document = Document.objects.create(
        company=company_of(alice),
        title="NDA",
        original_filename="nda.pdf",
        file="company_docs/nda.pdf",
    )
    document_metadata_refresh(document, save=False)
    document.save()
    client.force_login(alice)
    response = client.get("/vault/company_docs/nda.pdf")
    assert (response.status_code, response["Content-Type"]) == (200, "application/pdf")
    assert body(response) == pdf
