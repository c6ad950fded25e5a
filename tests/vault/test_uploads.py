"""The encrypting upload handler: real uploads through the portal and the admin, real files on disk."""

import io
import os
import sys
import tempfile

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadhandler import StopFutureHandlers
from django.urls import reverse

from compliance.models import AccessEvent
from vault import fileformat
from vault.access import Action, access_context
from vault.documents import document_create
from vault.keys import keyring
from vault.models import Document
from vault.uploads import (
    EncryptedUploadedFile,
    EncryptingUploadHandler,
    RejectedUploadedFile,
    UploadRejected,
    filename_sanitise,
    upload_too_large_message,
)

pytestmark = pytest.mark.django_db

MARKER = b"PLAINTEXT-MARKER-7f3a9c"
MiB = 1 << 20
# Above Django's FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): its default handlers would spool it to disk.
LARGE = 3 * MiB + 12345


def plaintext(size: int) -> bytes:
    """Return `size` bytes of a PDF whose every kilobyte carries the marker."""
    head = b"%PDF-1.4\n"
    line = MARKER + b" confidential figures " + b"." * 1000 + b"\n"
    data = head + line * (size // len(line) + 1)
    return data[:size]


class DiskWatch:
    """Every file this process writes while active: each is read just before it is deleted.

    A Python audit hook sees every open() (builtin and os.open) and every unlink, so no temporary
    file can come and go unseen between two looks at a folder.
    """

    def __init__(self) -> None:
        self.active = False
        self.written: set[str] = set()
        self.contents: dict[str, bytes] = {}
        self._inside = False

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active or self._inside:
            return
        if event == "open":
            path, _mode, flags = args
            writes = isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writes and isinstance(path, str | bytes | os.PathLike):
                self.written.add(os.path.abspath(os.fsdecode(path)))
        elif event in ("os.remove", "os.rename", "os.replace"):
            self._read(os.path.abspath(os.fsdecode(args[0])))

    def _read(self, path: str) -> None:
        self._inside = True
        try:
            with open(path, "rb") as handle:
                self.contents[path] = self.contents.get(path, b"") + handle.read()
        except OSError:
            pass  # a folder, or already gone
        finally:
            self._inside = False

    def start(self) -> None:
        self.written.clear()
        self.contents.clear()
        self.active = True

    def stop(self) -> None:
        """Stop watching; read every written file that still exists."""
        self.active = False
        for path in self.written:
            if os.path.isfile(path):
                self._read(path)

    def holding(self, needle: bytes) -> list[str]:
        """Return the written files that held `needle` at some point."""
        return sorted(path for path, data in self.contents.items() if needle in data)


WATCH = DiskWatch()
sys.addaudithook(WATCH)  # an audit hook cannot be removed: it stays, inactive, for the session


@pytest.fixture
def temp_dir(settings, tmp_path, monkeypatch):
    """Point Django's and Python's temporary folders at an empty folder of the test's own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def watch():
    WATCH.start()
    yield WATCH
    WATCH.stop()


def all_files(*folders) -> list[str]:
    return sorted(
        os.path.join(root, name)
        for folder in folders
        for root, _, names in os.walk(folder)
        for name in names
    )


def upload(client, data: bytes, name: str = "report.pdf", **fields):
    payload = {"title": "", **fields, "file": ContentFile(data, name=name)}
    return client.post(reverse("vault:document_upload"), payload)


# Through the portal ------------------------------------------------------------------------------


def test_upload_round_trip_through_the_real_storage(client, alice, acme, media_root):
    data = plaintext(50_000)
    client.force_login(alice)
    response = upload(client, data, "Q3 figures.pdf", title="Q3 figures", company=acme.pk)
    document = Document.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("vault:document_detail", args=[document.pk])
    assert (document.title, document.original_filename) == ("Q3 figures", "Q3 figures.pdf")
    assert (document.company, document.uploaded_by) == (acme, alice)
    assert (document.size, document.mime_type) == (len(data), "application/pdf")
    assert document.key_id == keyring().primary.key_id_hex
    on_disk = (media_root / document.file.name).read_bytes()
    assert MARKER not in on_disk
    assert fileformat.classify(on_disk).key_id == keyring().primary.key_id
    with (
        access_context(action=Action.DOWNLOAD, user=alice),
        document.file.storage.open(document.file.name) as decrypted,
    ):
        assert decrypted.read() == data
    event = AccessEvent.objects.get(action="upload")
    assert (event.outcome, event.actor, event.document_id) == ("allowed", alice, document.pk)
    assert (event.stored_name, event.key_id) == (document.file.name, document.key_id)


def test_stored_name_is_random_and_never_the_filename(client, alice, acme):
    client.force_login(alice)
    upload(client, b"hello", "Acme valuation.txt", company=acme.pk)
    document = Document.objects.get()
    assert "valuation" not in document.file.name.lower()
    assert document.file.name.startswith("documents/")
    assert document.title == "Acme valuation.txt"


def test_mime_type_is_sniffed_from_the_content_not_the_name(client, alice, acme):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00"
    client.force_login(alice)
    upload(client, png + b"\x00" * 100, "report.pdf", company=acme.pk)
    assert Document.objects.get().mime_type == "image/png"


def test_large_upload_never_writes_plaintext_to_disk(
    client, alice, acme, media_root, temp_dir, watch
):
    data = plaintext(LARGE)
    client.force_login(alice)
    response = upload(client, data, company=acme.pk)
    watch.stop()
    assert response.status_code == 302
    document = Document.objects.get()
    assert document.size == LARGE
    # The upload did go through a temporary file (so the scan had something to see) ...
    spooled = [path for path in watch.contents if path.startswith(str(temp_dir))]
    assert spooled, "expected the encrypted spool in the temporary folder"
    assert all(len(watch.contents[path]) > LARGE for path in spooled)
    # ... and no file written during the upload ever held plaintext, and none is left behind.
    assert watch.holding(MARKER) == []
    assert all_files(temp_dir) == []
    assert all_files(media_root) == [str(media_root / document.file.name)]
    with (
        access_context(action=Action.DOWNLOAD, user=alice),
        document.file.storage.open(document.file.name) as decrypted,
    ):
        assert b"".join(decrypted.chunks()) == data


def test_the_disk_watch_does_catch_django_default_handlers(
    client, admin, acme, settings, temp_dir, watch
):
    """The twin of the test above: Django's own handlers spool plaintext, and the scan sees it."""
    settings.FILE_UPLOAD_HANDLERS = [
        "django.core.files.uploadhandler.MemoryFileUploadHandler",
        "django.core.files.uploadhandler.TemporaryFileUploadHandler",
    ]
    client.force_login(admin)
    payload = {"company": acme.pk, "title": "x", "file": ContentFile(plaintext(LARGE), "a.pdf")}
    client.post(reverse("admin:vault_document_add"), payload)
    watch.stop()
    assert watch.holding(MARKER) != []


def test_admin_upload_never_writes_plaintext_to_disk(
    client, admin, acme, media_root, temp_dir, watch
):
    client.force_login(admin)
    payload = {
        "company": acme.pk,
        "title": "Board pack",
        "file": ContentFile(plaintext(LARGE), "b.pdf"),
    }
    response = client.post(reverse("admin:vault_document_add"), payload)
    watch.stop()
    assert response.status_code == 302
    document = Document.objects.get()
    assert (document.size, document.mime_type, document.uploaded_by) == (
        LARGE,
        "application/pdf",
        admin,
    )
    assert watch.holding(MARKER) == []
    assert all_files(temp_dir) == []


def test_too_large_upload_is_refused_with_nothing_left_behind(
    client, alice, acme, settings, media_root, temp_dir, watch
):
    settings.VAULT_MAX_UPLOAD_SIZE = MiB
    client.force_login(alice)
    response = upload(client, plaintext(MiB + 1), company=acme.pk, title="Too big")
    watch.stop()
    assert response.status_code == 200
    assert response.context["form"].errors["file"] == ["File too large: the limit is 1 MiB."]
    assert b"File too large: the limit is 1 MiB." in response.content
    # The other fields survive, so the user only has to pick a smaller file.
    assert response.context["form"]["title"].value() == "Too big"
    assert not Document.objects.exists()
    assert not AccessEvent.objects.filter(action="upload").exists()
    assert all_files(temp_dir, media_root) == []
    assert watch.holding(MARKER) == []


def test_upload_of_exactly_the_limit_is_accepted(client, alice, acme, settings):
    settings.VAULT_MAX_UPLOAD_SIZE = MiB
    client.force_login(alice)
    assert upload(client, plaintext(MiB), company=acme.pk).status_code == 302
    assert Document.objects.get().size == MiB


def test_default_limit_is_100_mib(settings):
    del settings.VAULT_MAX_UPLOAD_SIZE
    assert upload_too_large_message() == "File too large: the limit is 100 MiB."
    assert EncryptingUploadHandler().max_size == 100 * MiB


def test_admin_refuses_a_too_large_upload_with_the_same_message(
    client, admin, acme, settings, media_root, temp_dir
):
    settings.VAULT_MAX_UPLOAD_SIZE = 1000
    client.force_login(admin)
    payload = {"company": acme.pk, "title": "x", "file": ContentFile(b"y" * 1001, "a.txt")}
    response = client.post(reverse("admin:vault_document_add"), payload)
    assert response.status_code == 200
    assert b"File too large: the limit is 1000 bytes." in response.content
    assert not Document.objects.exists()
    assert all_files(temp_dir, media_root) == []


def test_upload_without_a_file_says_so(client, alice, acme):
    client.force_login(alice)
    response = client.post(reverse("vault:document_upload"), {"company": acme.pk})
    assert response.context["form"].errors["file"] == ["Choose a file to upload."]


def test_upload_into_another_company_is_refused(client, alice, globex):
    client.force_login(alice)
    response = upload(client, b"hello", company=globex.pk)
    assert response.status_code == 200
    assert "company" in response.context["form"].errors
    assert not Document.objects.exists()


# Filenames ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\alice\\Q3 figures.xlsx", "Q3 figures.xlsx"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # a right-to-left override hides ".exe"
        ("a\x00b\x07c\r\n.txt", "abc .txt"),
        ("  many   spaces\there .pdf  ", "many spaces here .pdf"),
        ("trailing dots...", "trailing dots"),
        ("..", "document"),
        ("", "document"),
        ("e\u0301te\u0301.txt", "\u00e9t\u00e9.txt"),  # normalised to NFC
    ],
)
def test_filename_sanitise(name, expected):
    assert filename_sanitise(name) == expected


def test_filename_sanitise_limits_the_length_and_keeps_the_extension():
    name = filename_sanitise("x" * 300 + ".pdf")
    assert len(name) == 200
    assert name.endswith("x.pdf")
    assert len(filename_sanitise("y" * 300)) == 200


def test_hostile_filename_is_sanitised_end_to_end(client, alice, acme):
    boundary = "BoUnDaRy"
    body = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="company"\r\n\r\n{acme.pk}\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="..\\..\\secret/\u202eQ3\tplan.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
        "%PDF-1.4 hello\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    client.force_login(alice)
    response = client.post(
        reverse("vault:document_upload"),
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code == 302
    document = Document.objects.get()
    assert document.original_filename == "Q3plan.pdf"
    assert "plan" not in document.file.name


# The handler itself ------------------------------------------------------------------------------


def handler_feed(data: bytes, name: str = "a.pdf", chunk: int = 64 * 1024):
    handler = EncryptingUploadHandler()
    with pytest.raises(StopFutureHandlers):
        handler.new_file("file", name, "application/pdf", None)
    for start in range(0, len(data), chunk):
        assert handler.receive_data_chunk(data[start : start + chunk], start) is None
    return handler, handler.file_complete(len(data))


def test_handler_spools_ciphertext_and_reads_back_plaintext(temp_dir):
    data = plaintext(2 * MiB + 777)
    _, uploaded = handler_feed(data)
    assert isinstance(uploaded, EncryptedUploadedFile)
    [spool] = all_files(temp_dir)
    with open(spool, "rb") as handle:
        assert MARKER not in handle.read()
    assert uploaded.size == len(data)
    assert b"".join(uploaded.chunks()) == data
    uploaded.seek(MiB - 3)
    assert uploaded.read(10) == data[MiB - 3 : MiB + 7]
    assert uploaded.read() == data[MiB + 7 :]
    uploaded.close()
    assert all_files(temp_dir) == []


def test_handler_spool_detects_tampering(temp_dir):
    _, uploaded = handler_feed(plaintext(MiB + 10))
    [spool] = all_files(temp_dir)
    with open(spool, "r+b") as handle:
        # In the second segment: the reader has already buffered the start of the file.
        handle.seek(MiB + 100)
        byte = handle.read(1)
        handle.seek(MiB + 100)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(fileformat.DecryptionError):
        b"".join(uploaded.chunks())
    uploaded.close()


def test_interrupted_upload_deletes_its_spool(temp_dir):
    handler = EncryptingUploadHandler()
    with pytest.raises(StopFutureHandlers):
        handler.new_file("file", "a.pdf", "application/pdf", None)
    handler.receive_data_chunk(plaintext(100_000), 0)
    assert len(all_files(temp_dir)) == 1
    handler.upload_interrupted()
    assert all_files(temp_dir) == []


def test_handler_refuses_an_announced_size_over_the_limit_without_spooling(settings, temp_dir):
    settings.VAULT_MAX_UPLOAD_SIZE = 10
    handler = EncryptingUploadHandler()
    with pytest.raises(StopFutureHandlers):
        handler.new_file("file", "a.pdf", "application/pdf", 11)
    assert all_files(temp_dir) == []
    handler.receive_data_chunk(b"x" * 11, 0)
    rejected = handler.file_complete(11)
    assert isinstance(rejected, RejectedUploadedFile)
    with pytest.raises(UploadRejected):
        b"".join(rejected.chunks())


def test_a_rejected_upload_can_never_be_stored(alice, acme, media_root):
    rejected = RejectedUploadedFile("a.pdf", 5, "File too large: the limit is 4 bytes.")
    with pytest.raises(UploadRejected):
        document_create(company=acme, content=rejected, uploaded_by=alice)
    assert not Document.objects.exists()
    assert all_files(media_root) == []


def test_document_create_takes_any_file(alice, acme, media_root):
    document = document_create(
        company=acme, content=ContentFile(b"a,b\n1,2\n", name="t.csv"), uploaded_by=alice
    )
    assert (document.title, document.size, document.original_filename) == ("t.csv", 8, "t.csv")
    assert document.mime_type in {"text/csv", "text/plain"}
    assert io.BytesIO((media_root / document.file.name).read_bytes()).read(9) != b"a,b\n1,2\n"
