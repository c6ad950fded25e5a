"""The download views against the real storage, crypto, database and access log."""

import logging
import os
import socket
import struct
import threading
import zlib
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compliance.models import AccessEvent
from tests.helpers import document_events, document_upload, response_close
from vault import access, fileformat
from vault.documents import document_metadata_refresh
from vault.keys import keyring
from vault.models import Document, Grant
from vault.storage import EncryptedStorage

pytestmark = pytest.mark.django_db

SEGMENT = 1024  # small segments make multi-segment files cheap: 968 bytes in the first, then 1008
FIRST_SEGMENT = SEGMENT - 56
LATER_SEGMENT = SEGMENT - 16
MARKER = b"CONFIDENTIAL-PLAINTEXT-MARKER"
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + MARKER * 200 + b"\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def company_of(user):
    return user.memberships.get().company


def document_make(company, data, filename="report.txt", segment_size=None):
    return document_upload(company, data, filename, segment_size=segment_size)


def download_url(document, **query):
    url = reverse("vault:document_download", kwargs={"pk": document.pk})
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def serve_url(name):
    return "/vault/" + name


def body(response) -> bytes:
    try:
        return b"".join(response.streaming_content)
    finally:
        response_close(response)


def events(**filters):
    """Return the access events of the requests under test (uploads of the setup left out)."""
    return list(document_events().exclude(action="upload").filter(**filters).order_by("seq"))


def document_queries(captured):
    return [query["sql"] for query in captured if '"vault_document"' in query["sql"]]


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def pdf(alice):
    """A PDF of Acme's, uploaded under a .txt name."""
    return document_make(company_of(alice), PDF, "Q3 figures.txt")


@pytest.fixture(params=["direct", "read-ahead"])
def read_ahead(request, monkeypatch, settings):
    """Serve every size directly, or every size through the read-ahead thread (large files' path)."""
    from vault import downloads

    # The default depends on the machine's cores: each test sets it either way explicitly.
    settings.VAULT_READ_AHEAD = "on" if request.param == "read-ahead" else "off"
    monkeypatch.setattr(downloads, "READ_AHEAD_MIN_BYTES", 0)
    return request.param


@pytest.fixture
def big(alice):
    """Five small segments of Acme's, filled exactly (the last full segment is marked last)."""
    data = b"%PDF-1.7\n" + os.urandom(FIRST_SEGMENT + 4 * LATER_SEGMENT - 9)
    document = document_make(company_of(alice), data, "big.pdf", segment_size=SEGMENT)
    return document, data


# Who may read ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["alice", "bob"])
def test_member_downloads_with_exact_headers(client, request, pdf, reader):
    user = request.getfixturevalue(reader)
    client.force_login(user)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(download_url(pdf))
        content = body(response)
    assert response.status_code == 200
    assert content == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Length"] == str(len(PDF))
    assert response["Content-Disposition"] == 'attachment; filename="Q3 figures.txt"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "private, no-store"
    assert response["Accept-Ranges"] == "bytes"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]  # the site's policy
    assert len(document_queries(captured)) == 1
    [event] = events()
    assert (event.action, event.outcome, event.actor, event.document_id) == (
        "download",
        "allowed",
        user,
        pdf.pk,
    )
    assert (event.bytes_served, event.staff_read, event.stored_name) == (
        len(PDF),
        False,
        pdf.file.name,
    )
    assert event.key_id == keyring().primary.key_id_hex


def test_other_company_gets_404_and_a_denied_event(client, charlie, pdf):
    client.force_login(charlie)
    response = client.get(download_url(pdf))
    assert response.status_code == 404
    assert MARKER not in response.content
    [event] = events()
    assert (event.outcome, event.actor, event.document_id, event.reason) == (
        "denied",
        charlie,
        pdf.pk,
        "not a reader",
    )


def test_unknown_document_gets_the_same_404(client, charlie, pdf):
    client.force_login(charlie)
    other = client.get(reverse("vault:document_download", kwargs={"pk": Document().pk}))
    refused = client.get(download_url(pdf))
    assert other.status_code == refused.status_code == 404
    assert other.content == refused.content
    assert [event.reason for event in events()] == ["no such document", "not a reader"]


def test_officer_reads_as_staff(client, officer, pdf):
    client.force_login(officer)
    response = client.get(download_url(pdf))
    assert response.status_code == 200
    assert body(response) == PDF
    [event] = events()
    assert (event.outcome, event.actor, event.staff_read) == ("allowed", officer, True)


def test_anonymous_is_sent_to_login_and_nothing_recorded(client, pdf):
    for url in (download_url(pdf), serve_url(pdf.file.name)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
    assert events() == []


def test_live_grant_gives_access_and_expired_grant_does_not(client, alice, charlie, pdf):
    grant = Grant.objects.create(document=pdf, company=company_of(charlie), granted_by=alice)
    client.force_login(charlie)
    response = client.get(download_url(pdf))
    assert response.status_code == 200
    assert body(response) == PDF
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(download_url(pdf)).status_code == 404
    assert [(event.outcome, event.reason) for event in events()] == [
        ("allowed", ""),
        ("denied", "not a reader"),
    ]


def test_only_get_and_head(client, alice, pdf):
    client.force_login(alice)
    assert client.post(download_url(pdf)).status_code == 405
    assert client.put(serve_url(pdf.file.name)).status_code == 405
    assert events() == []


# The path route ----------------------------------------------------------------------------------


def test_path_route_serves_the_document_with_that_stored_name(client, alice, pdf):
    client.force_login(alice)
    assert pdf.file.url == serve_url(pdf.file.name)
    response = client.get(pdf.file.url)
    assert response.status_code == 200
    assert body(response) == PDF
    assert response["Content-Disposition"] == 'attachment; filename="Q3 figures.txt"'
    [event] = events()
    assert (event.outcome, event.document_id, event.stored_name) == (
        "allowed",
        pdf.pk,
        pdf.file.name,
    )


def test_path_route_refuses_other_companies_and_unknown_names(client, charlie, pdf):
    client.force_login(charlie)
    assert client.get(serve_url(pdf.file.name)).status_code == 404
    assert client.get(serve_url("documents/2026/11/" + "0" * 32)).status_code == 404
    assert [(e.outcome, e.reason, e.stored_name) for e in events()] == [
        ("denied", "not a reader", pdf.file.name),
        ("denied", "no such document", "documents/2026/11/" + "0" * 32),
    ]


def test_a_file_without_a_document_is_never_served(client, alice, media_root):
    name = default_storage.save("documents/2026/11/orphan", ContentFile(PDF))
    client.force_login(alice)
    assert client.get(serve_url(name)).status_code == 404
    [event] = events()
    assert (event.outcome, event.reason) == ("denied", "no such document")


HOSTILE_URLS = [
    "/vault//etc/passwd",
    "/vault/../config/settings.py",
    "/vault/documents/../../etc/passwd",
    "/vault/documents/%2e%2e/%2e%2e/etc/passwd",
    "/vault/documents%2f..%2f..%2fetc%2fpasswd",
    "/vault/%2Fetc%2Fpasswd",
    "/vault/%252e%252e/%252e%252e/etc/passwd",
    "/vault/%c0%ae%c0%ae/etc/passwd",
    "/vault/documents/x%00.pdf",
    "/vault/documents\\..\\..\\etc\\passwd",
    "/vault/documents%5c..%5c..%5cetc%5cpasswd",
    "/vault/./documents/x",
    "/vault/documents//x",
    "/vault/documents/x/",
    "/vault/../media-old/secret",
    "/vault/" + "a/" * 200 + "x",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_paths_are_refused_before_any_lookup_and_recorded(client, alice, pdf, url):
    client.force_login(alice)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 400
    assert MARKER not in response.content
    assert document_queries(captured) == []
    [event] = events()
    assert (event.outcome, event.actor, event.reason, event.document_id) == (
        "denied",
        alice,
        "unsafe path",
        None,
    )
    assert "\x00" not in event.stored_name


def test_newline_in_a_path_matches_no_route(client, alice):
    client.force_login(alice)
    assert client.get("/vault/documents/x%0a").status_code == 404


def test_sibling_folder_of_the_media_root_is_unreachable(client, alice, media_root):
    sibling = media_root.parent / "media-old"
    sibling_storage = EncryptedStorage(inner=FileSystemStorage(location=sibling))
    sibling_storage.save("secret", ContentFile(PDF))
    # A row pointing there cannot come from the storage; it can from a bad migration or import.
    document = Document.objects.create(
        company=company_of(alice),
        title="x",
        original_filename="x",
        file="../media-old/secret",
    )
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 400
    assert MARKER not in response.content
    [event] = events()
    assert (event.outcome, event.reason, event.document_id) == (
        "denied",
        "unsafe stored name",
        document.pk,
    )


def symlinked_document(alice, media_root, tmp_path):
    """A document whose stored name is a symlink to a good encrypted file outside the media root."""
    outside = tmp_path / "outside"
    name = EncryptedStorage(inner=FileSystemStorage(location=outside)).save("f", ContentFile(PDF))
    link = media_root / "documents" / "2026" / "11" / ("a" * 32)
    link.parent.mkdir(parents=True)
    link.symlink_to(outside / name)
    return Document.objects.create(
        company=company_of(alice),
        title="x",
        original_filename="x.pdf",
        file="documents/2026/11/" + "a" * 32,
    )


@pytest.mark.parametrize("route", ["id", "path"])
def test_symlink_leaving_the_media_root_is_refused(client, alice, media_root, tmp_path, route):
    document = symlinked_document(alice, media_root, tmp_path)
    with default_storage.open(document.file.name) as plain:
        assert plain.read() == PDF  # what the check stops
    client.force_login(alice)
    url = download_url(document) if route == "id" else serve_url(document.file.name)
    before = len(events())
    response = client.get(url)
    assert response.status_code == 400
    assert MARKER not in response.content
    event = events()[before]
    assert (event.outcome, event.reason, event.document_id) == (
        "denied",
        "stored name outside the media root",
        document.pk,
    )
    assert len(events()) == before + 1


def test_symlink_check_is_skipped_for_object_stores(client, alice, settings):
    settings.VAULT_INNER_STORAGE = {"BACKEND": "django.core.files.storage.InMemoryStorage"}
    document = document_make(company_of(alice), PDF, "memory.pdf")
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 200
    assert body(response) == PDF


# Headers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime", "csp"),
    [
        (
            PDF,
            "application/pdf",
            "default-src 'none'; object-src 'self'; style-src 'unsafe-inline'",
        ),
        (
            png(),
            "image/png",
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
        ),
    ],
)
def test_inline_for_pdf_and_raster_images_with_a_policy(client, alice, data, mime, csp):
    document = document_make(company_of(alice), data, "scan.bin")
    client.force_login(alice)
    response = client.get(download_url(document, inline=1))
    assert body(response) == data
    assert response["Content-Type"] == mime
    assert response["Content-Disposition"] == 'inline; filename="scan.bin"'
    assert response["Content-Security-Policy"] == csp


@pytest.mark.parametrize(
    ("data", "mime"),
    [(HTML, "text/html"), (SVG, "image/svg+xml"), (b"plain words\n", "text/plain")],
)
def test_active_and_other_content_is_always_an_attachment(client, alice, data, mime):
    document = document_make(company_of(alice), data, "page.png")
    client.force_login(alice)
    response = client.get(download_url(document, inline=1))
    assert body(response) == data
    assert response["Content-Type"] == mime
    assert response["Content-Disposition"] == 'attachment; filename="page.png"'
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]  # the site's policy


def test_unicode_and_hostile_filenames(client, alice):
    client.force_login(alice)
    for filename, expected in [
        (
            "Bilanz Müller 2026.pdf",
            'attachment; filename="Bilanz Muller 2026.pdf"; '
            "filename*=UTF-8''Bilanz%20M%C3%BCller%202026.pdf",
        ),
        (
            'evil"\r\nSet-Cookie: a=b.pdf',
            'attachment; filename="evil___Set-Cookie: a=b.pdf"; '
            "filename*=UTF-8''evil%22__Set-Cookie%3A%20a%3Db.pdf",
        ),
    ]:
        document = document_make(company_of(alice), PDF)
        # As an import or an old row may hold it: the upload path would have cleaned it.
        Document.objects.filter(pk=document.pk).update(original_filename=filename)
        response = client.get(download_url(document))
        body(response)
        assert response["Content-Disposition"] == expected
        assert "a" not in response.cookies


def test_empty_file(client, alice):
    document = document_make(company_of(alice), b"", "empty.txt")
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 200
    assert body(response) == b""
    assert (response["Content-Length"], response["Content-Type"]) == (
        "0",
        "application/octet-stream",
    )


def test_legacy_fernet_file_downloads(client, alice, media_root):
    """A file the case study wrote: a raw Fernet token under the derived key."""
    path = media_root / "company_docs" / "nda.pdf"
    path.parent.mkdir()
    path.write_bytes(Fernet(keyring().primary.fernet_key).encrypt(PDF))
    # Adopted as vault_import does: a row naming the file, its metadata read from the file.
    document = Document(
        company=company_of(alice),
        title="NDA",
        original_filename="nda.pdf",
        file="company_docs/nda.pdf",
    )
    document_metadata_refresh(document, save=False)
    document.save()
    assert (document.size, document.mime_type, document.key_id) == (len(PDF), "application/pdf", "")
    client.force_login(alice)
    response = client.get(serve_url("company_docs/nda.pdf"))
    assert (response.status_code, response["Content-Type"]) == (200, "application/pdf")
    assert body(response) == PDF
    response = client.get(download_url(document), HTTP_RANGE="bytes=-7")
    assert (response.status_code, body(response)) == (206, PDF[-7:])


# Ranges ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=4999-4999", 4999, 4999),
        ("bytes=-1", 4999, 4999),
        ("bytes=900-2100", 900, 2100),  # crosses two segment boundaries (968 and 1976)
        ("bytes=968-1975", 968, 1975),  # exactly the second segment
        ("bytes=-500", 4500, 4999),
        ("bytes=3000-", 3000, 4999),
        ("bytes=10-999999", 10, 4999),
        ("bytes=0-", 0, 4999),
    ],
)
def test_single_ranges(read_ahead, client, alice, big, header, first, last):
    document, data = big
    client.force_login(alice)
    response = client.get(download_url(document), HTTP_RANGE=header)
    assert response.status_code == 206
    assert body(response) == data[first : last + 1]
    assert response["Content-Range"] == f"bytes {first}-{last}/5000"
    assert response["Content-Length"] == str(last - first + 1)
    assert response["Content-Type"] == "application/pdf"  # sniffed from the start, not the range
    [event] = events()
    assert (event.action, event.outcome, event.bytes_served) == (
        "range",
        "allowed",
        last - first + 1,
    )


@pytest.mark.parametrize("header", ["bytes=5000-", "bytes=9999-10000", "bytes=-0"])
def test_unsatisfiable_range_is_416_and_decrypts_nothing(client, alice, big, header):
    document, _ = big
    client.force_login(alice)
    response = client.get(download_url(document), HTTP_RANGE=header)
    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */5000"
    assert response.content == b""
    assert events() == []


@pytest.mark.parametrize(
    "header", ["bytes=abc", "bytes=5-3", "items=0-1", "bytes=0-1,5-6", "bytes=--1", "0-1"]
)
def test_malformed_or_multiple_ranges_get_the_whole_file(client, alice, big, header):
    document, data = big
    client.force_login(alice)
    response = client.get(download_url(document), HTTP_RANGE=header)
    assert response.status_code == 200
    assert body(response) == data
    assert "Content-Range" not in response
    [event] = events()
    assert (event.action, event.bytes_served) == ("download", 5000)


def test_if_range_gets_the_whole_file(client, alice, big):
    document, data = big
    client.force_login(alice)
    response = client.get(
        download_url(document), HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"anything"'
    )
    assert response.status_code == 200
    assert body(response) == data


# Read-ahead --------------------------------------------------------------------------------------


def read_ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "docvault-read-ahead"]


@pytest.mark.parametrize("mode", ["auto", "on", "off"])
@pytest.mark.parametrize("over", [0, 1])
def test_read_ahead_follows_its_setting_from_its_size(
    mode, over, client, alice, big, settings, monkeypatch
):
    from vault import downloads

    document, data = big
    settings.VAULT_READ_AHEAD = mode
    # The big document's length is the threshold (over=0) or one byte short of it (over=1).
    monkeypatch.setattr(downloads, "READ_AHEAD_MIN_BYTES", len(data) + over)
    client.force_login(alice)
    response = client.get(download_url(document))
    pieces = iter(response.streaming_content)
    received = [next(pieces)]
    assert read_ahead_threads() == []  # the first piece never waits for the thread
    received.append(next(pieces))
    started = bool(read_ahead_threads())
    assert b"".join([*received, *pieces]) == data
    response_close(response)
    auto = downloads.usable_cores() >= downloads.READ_AHEAD_AUTO_CORES
    assert started == (not over and (mode == "on" or (mode == "auto" and auto)))
    assert downloads.read_ahead_enabled() == (mode == "on" or (mode == "auto" and auto))
    assert read_ahead_threads() == []


# HEAD --------------------------------------------------------------------------------------------


def test_head_sends_headers_only_and_is_recorded(client, alice, big):
    document, _ = big
    client.force_login(alice)
    response = client.head(download_url(document), HTTP_RANGE="bytes=0-9")
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Length"] == "5000"
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="big.pdf"'
    [event] = events()
    assert (event.action, event.outcome, event.bytes_served) == ("download", "allowed", 0)


def test_head_is_refused_like_get(client, charlie, pdf):
    client.force_login(charlie)
    assert client.head(download_url(pdf)).status_code == 404
    [event] = events()
    assert event.outcome == "denied"


# Failures ----------------------------------------------------------------------------------------


def test_tampered_file_gets_an_error_page_and_a_failed_event(
    client, alice, big, media_root, caplog
):
    document, data = big
    flip(media_root / document.file.name, fileformat.PREAMBLE_SIZE + 10)
    client.force_login(alice)
    with caplog.at_level(logging.ERROR, logger="vault"):
        response = client.get(download_url(document), HTTP_X_REQUEST_ID="ref-tampered-1")
    assert response.status_code == 500
    assert "vault/download_error.html" in [template.name for template in response.templates]
    assert b"ref-tampered-1" in response.content
    assert data[:64] not in response.content and b"%PDF" not in response.content
    assert response["Cache-Control"] == "private, no-store"
    # The open was allowed and recorded; the first segment then failed, and that is recorded too.
    [allowed, event] = events()
    assert allowed.outcome == "allowed"
    assert (event.outcome, event.reason, event.request_id) == (
        "failed",
        "segment 0 failed authentication",
        "ref-tampered-1",
    )
    assert (event.actor, event.document_id) == (alice, document.pk)
    [record] = [r for r in caplog.records if r.name == "vault.downloads"]
    assert record.levelno == logging.ERROR
    assert "segment 0 failed authentication" in record.getMessage()
    assert document.file.name in record.getMessage()


def test_tampered_segment_of_a_range_fails_before_any_byte(client, alice, big, media_root):
    document, _ = big
    flip(media_root / document.file.name, fileformat.HEADER_SIZE + 3 * SEGMENT + 5)
    client.force_login(alice)
    response = client.get(download_url(document), HTTP_RANGE="bytes=3000-3100")
    assert response.status_code == 500
    assert [(e.action, e.outcome) for e in events()] == [("range", "allowed"), ("range", "failed")]


def test_unknown_key_gets_the_error_page(client, alice, media_root):
    path = media_root / "documents" / "foreign"
    path.parent.mkdir()
    path.write_bytes(b"".join(fileformat.encrypt(PDF, os.urandom(32), b"\x01" * 8)))
    document = Document.objects.create(
        company=company_of(alice),
        title="x",
        original_filename="x.pdf",
        file="documents/foreign",
    )
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 500
    assert MARKER not in response.content
    [event] = events()
    assert (event.outcome, event.reason) == ("failed", "unknown key id 0101010101010101")


def test_missing_file_gets_the_error_page(client, alice, pdf, media_root):
    (media_root / pdf.file.name).unlink()
    client.force_login(alice)
    response = client.get(download_url(pdf))
    assert response.status_code == 500
    [event] = events()
    assert (event.outcome, event.reason) == ("failed", "stored file missing")


@pytest.mark.parametrize(
    ("reader", "message"),
    [("officer", b"Encryption key not configured."), ("alice", b"Please try again later.")],
)
def test_missing_key_is_503_with_the_case_study_messages(
    client, request, settings, pdf, reader, message
):
    # The reader first: granting the officer read-any is recorded, which needs the key.
    client.force_login(request.getfixturevalue(reader))
    settings.VAULT_KEYS = None
    settings.ENCRYPTION_SECRET = None
    response = client.get(download_url(pdf))
    assert (response.status_code, response.content) == (503, message)
    assert response["Cache-Control"] == "private, no-store"


def test_no_recorder_means_nothing_is_served(client, alice, pdf, monkeypatch):
    monkeypatch.setattr(access, "_recorder", None)
    client.force_login(alice)
    response = client.get(download_url(pdf))
    assert (response.status_code, response.content) == (503, b"Please try again later.")
    assert events() == []


def test_failure_mid_stream_raises_and_is_recorded(read_ahead, client, alice, big, media_root):
    document, data = big
    flip(media_root / document.file.name, fileformat.HEADER_SIZE + 2 * SEGMENT + 5)
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 200
    received = []
    with pytest.raises(fileformat.DecryptionError):
        for piece in response.streaming_content:
            received.append(piece)
    response_close(response)
    assert b"".join(received) == data[: FIRST_SEGMENT + LATER_SEGMENT]
    [allowed, failed] = events()
    assert (allowed.outcome, failed.outcome, failed.reason) == (
        "allowed",
        "failed",
        "segment 2 failed authentication",
    )
    # Recorded after the view returned, yet against the right request, user and document.
    assert (failed.actor, failed.document_id, failed.request_id) == (
        alice,
        document.pk,
        allowed.request_id,
    )


@pytest.mark.django_db(transaction=True)
def test_server_drops_the_connection_short_of_content_length(
    read_ahead, client, alice, live_server, media_root
):
    data = os.urandom(FIRST_SEGMENT + 4 * LATER_SEGMENT)
    document = document_make(company_of(alice), data, "big.bin", segment_size=SEGMENT)
    flip(media_root / document.file.name, fileformat.HEADER_SIZE + 2 * SEGMENT + 5)
    client.force_login(alice)
    cookie = client.cookies["sessionid"].value
    host, port = live_server.thread.host, live_server.thread.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"GET {download_url(document)} HTTP/1.1\r\nHost: {host}\r\n"
            f"Cookie: sessionid={cookie}\r\nConnection: close\r\n\r\n".encode()
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, received = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"Content-Length: {len(data)}".encode() in head
    assert received == data[: FIRST_SEGMENT + LATER_SEGMENT]
    assert AccessEvent.objects.filter(outcome="failed", actor=alice).count() == 1


def test_type_sniffed_when_written_is_served_without_sniffing_again(client, alice):
    document = document_make(company_of(alice), b"a,b\n1,2\n", "t.bin")
    assert document.mime_type in {"text/csv", "text/plain"}
    # A type libmagic would never find in these bytes: served as is, so nothing sniffed again.
    Document.objects.filter(pk=document.pk).update(mime_type="application/x-recorded")
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response["Content-Type"] == "application/x-recorded"
    assert body(response) == b"a,b\n1,2\n"
    head = client.head(download_url(document))
    assert head["Content-Type"] == "application/x-recorded"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=100-109", 100, 109),
        ("bytes=2097152-2097161", 2097152, 2097161),
        ("bytes=-5", None, None),
    ],
)
def test_ranges_of_an_uploaded_document_with_its_type_stored(client, alice, header, first, last):
    from vault.documents import document_create

    data = b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024)
    document = document_create(
        company=company_of(alice), content=ContentFile(data, name="big.pdf"), uploaded_by=alice
    )
    assert document.mime_type == "application/pdf"
    first = len(data) - 5 if first is None else first
    last = len(data) - 1 if last is None else last
    client.force_login(alice)
    response = client.get(download_url(document), HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert body(response) == data[first : last + 1]


def test_head_of_a_tampered_file_is_the_same_error_as_get(client, alice, pdf, media_root):
    flip(media_root / pdf.file.name, fileformat.PREAMBLE_SIZE + 3)
    client.force_login(alice)
    assert client.head(download_url(pdf)).status_code == 500
    assert events()[-1].outcome == "failed"


def test_a_whole_file_swapped_in_from_another_document_is_refused(client, alice, media_root):
    """Both files are valid ciphertext under our key: only the recorded file ID tells them apart."""
    from vault.documents import document_create

    acme = company_of(alice)
    secret = b"%PDF-1.7\n" + b"OTHER-DOCUMENT-SECRET" * 100
    shared = document_create(
        company=acme, content=ContentFile(PDF, name="shared.pdf"), uploaded_by=alice
    )
    other = document_create(
        company=acme, content=ContentFile(secret, name="other.pdf"), uploaded_by=alice
    )
    assert shared.file_id and shared.file_id != other.file_id
    (media_root / shared.file.name).write_bytes((media_root / other.file.name).read_bytes())
    client.force_login(alice)

    response = client.get(download_url(shared))
    head = client.head(download_url(shared))

    assert (response.status_code, head.status_code) == (500, 500)
    assert b"OTHER-DOCUMENT-SECRET" not in response.content
    event = AccessEvent.objects.latest("seq")
    assert (event.outcome, event.document_id) == ("failed", shared.pk)
    assert event.reason == "the stored file is not the one recorded for this document"


# One source of truth: what the file holds, not what a row says ----------------------------------


def test_orm_saved_document_serves_ranges_and_records_the_bytes_sent(client, alice):
    """The issue's reproduction: a file saved through the ORM, not the upload view."""
    data = b"%PDF-1.7\n" + bytes(range(256)) * 40
    document = Document(company=company_of(alice), title="Q3", original_filename="q3.pdf")
    document.file.save("q3.pdf", ContentFile(data))
    document.refresh_from_db()
    assert (document.size, document.mime_type) == (len(data), "application/pdf")
    assert document.key_id == keyring().primary.key_id_hex and document.file_id
    client.force_login(alice)

    first = client.get(download_url(document), HTTP_RANGE="bytes=0-9")
    suffix = client.get(download_url(document), HTTP_RANGE="bytes=-5")

    assert (first.status_code, body(first)) == (206, data[:10])
    assert first["Content-Range"] == f"bytes 0-9/{len(data)}"
    assert first["Content-Type"] == "application/pdf"
    assert (suffix.status_code, body(suffix)) == (206, data[-5:])
    assert suffix["Content-Range"] == f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}"
    assert [(e.action, e.outcome, e.bytes_served) for e in events()] == [
        ("range", "allowed", 10),
        ("range", "allowed", 5),
    ]


def test_a_row_claiming_more_bytes_than_its_file_is_judged_by_the_file(client, alice, big):
    document, data = big
    Document.objects.filter(pk=document.pk).update(size=10**9)
    client.force_login(alice)

    ranged = client.get(download_url(document), HTTP_RANGE="bytes=4990-")
    beyond = client.get(download_url(document), HTTP_RANGE="bytes=6000-7000")
    whole = client.get(download_url(document))

    assert (ranged.status_code, body(ranged)) == (206, data[4990:])
    assert ranged["Content-Range"] == "bytes 4990-4999/5000"
    assert (beyond.status_code, beyond["Content-Range"]) == (416, "bytes */5000")
    assert (whole["Content-Length"], body(whole)) == ("5000", data)
    assert [(e.action, e.bytes_served) for e in events()] == [("range", 10), ("download", 5000)]


def test_a_row_claiming_fewer_bytes_still_gets_the_whole_file(client, alice, big):
    document, data = big
    Document.objects.filter(pk=document.pk).update(size=0)
    client.force_login(alice)
    response = client.get(download_url(document), HTTP_RANGE="bytes=0-9")
    assert (response.status_code, body(response)) == (206, data[:10])
    assert response["Content-Range"] == "bytes 0-9/5000"


def test_a_failure_mid_stream_records_the_bytes_actually_sent(
    read_ahead, client, alice, big, media_root
):
    document, _ = big
    flip(media_root / document.file.name, fileformat.HEADER_SIZE + 2 * SEGMENT + 5)
    client.force_login(alice)
    response = client.get(download_url(document))
    with pytest.raises(fileformat.DecryptionError):
        b"".join(response.streaming_content)
    response_close(response)
    [allowed, failed] = events()
    assert (allowed.outcome, allowed.bytes_served) == ("allowed", 5000)
    assert (failed.outcome, failed.bytes_served) == ("failed", FIRST_SEGMENT + LATER_SEGMENT)


def test_the_upload_event_names_the_document_and_its_title(alice):
    document = document_make(company_of(alice), PDF, "Board minutes.pdf")
    event = AccessEvent.objects.get(action="upload")
    assert (event.document_id, event.document_title) == (document.pk, "Board minutes.pdf")
    assert event.key_id == document.key_id


# Unreadable stored files -------------------------------------------------------------------------


def test_a_directory_at_the_stored_name_is_a_recorded_failure(client, alice, pdf, media_root):
    path = media_root / pdf.file.name
    path.unlink()
    path.mkdir()
    client.force_login(alice)
    response = client.get(download_url(pdf), HTTP_X_REQUEST_ID="ref-dir-1")
    assert response.status_code == 500
    assert "vault/download_error.html" in [template.name for template in response.templates]
    assert b"ref-dir-1" in response.content
    [event] = events()
    assert (event.outcome, event.reason, event.document_id) == (
        "failed",
        "stored file unreadable (IsADirectoryError)",
        pdf.pk,
    )
    assert client.head(download_url(pdf)).status_code == 500


def test_a_symlink_loop_at_the_stored_name_is_a_recorded_failure(client, alice, pdf, media_root):
    path = media_root / pdf.file.name
    path.unlink()
    path.symlink_to(path.name)
    client.force_login(alice)
    response = client.get(download_url(pdf))
    assert response.status_code == 500
    [event] = events()
    assert (event.outcome, event.reason) == ("failed", "stored file unreadable (OSError)")


# Binding: a file is served only as the document it was written for ------------------------------


def v1_document(alice, media_root):
    """A document whose file was written in format v1, as uploads were before v2."""
    document = document_make(company_of(alice), PDF, "v1.pdf")
    key = keyring().primary
    ciphertext = b"".join(
        fileformat.encrypt(PDF, keyring().file_keys[key.key_id], key.key_id, _version=1)
    )
    (media_root / document.file.name).write_bytes(ciphertext)
    # The file ID the upload recorded for that file (then kept by hand, now read from the file).
    file_id = fileformat.classify(ciphertext).file_id.hex()
    Document.objects.filter(pk=document.pk).update(file_id=file_id)
    return Document.objects.get(pk=document.pk)


def test_a_v1_file_is_served_with_its_recorded_file_id(client, alice, media_root):
    document = v1_document(alice, media_root)
    client.force_login(alice)
    response = client.get(download_url(document))
    assert (response.status_code, body(response)) == (200, PDF)


def test_an_empty_file_id_no_longer_skips_the_check(client, alice, media_root):
    document = v1_document(alice, media_root)
    Document.objects.filter(pk=document.pk).update(file_id="")
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 500
    assert MARKER not in response.content
    [event] = events()
    assert (event.outcome, event.reason) == (
        "failed",
        "the stored file is not the one recorded for this document",
    )


def test_swapped_rows_in_the_database_serve_nothing(client, alice, charlie):
    """Database access alone: point Globex's row at Acme's file, with its file ID."""
    revenue = document_make(company_of(alice), b"customer,revenue\nInitech,4200000\n", "rev.csv")
    notes = document_make(company_of(charlie), b"Globex meeting notes\n", "notes.txt")
    table = connection.ops.quote_name(Document._meta.db_table)
    swap = f"UPDATE {table} SET file = %s, file_id = %s WHERE id = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(swap, ["swapping", "", revenue.pk.hex])
        cursor.execute(swap, [revenue.file.name, revenue.file_id, notes.pk.hex])
        cursor.execute(swap, [notes.file.name, notes.file_id, revenue.pk.hex])
    client.force_login(charlie)

    response = client.get(download_url(notes))
    by_path = client.get(serve_url(revenue.file.name))

    assert response.status_code == 500
    assert b"Initech" not in response.content
    assert by_path.status_code == 500
    failed = [e for e in events() if e.outcome == "failed"]
    assert [(e.actor, e.document_id) for e in failed] == [(charlie, notes.pk)] * 2
    assert not [e for e in events() if e.outcome == "allowed"]


# Legacy files ------------------------------------------------------------------------------------


def legacy_document(alice, media_root, data=PDF):
    path = media_root / "company_docs" / "nda.pdf"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(Fernet(keyring().primary.fernet_key).encrypt(data))
    return Document.objects.create(
        company=company_of(alice),
        title="NDA",
        original_filename="nda.pdf",
        file="company_docs/nda.pdf",
    )


def test_legacy_reading_can_be_turned_off(client, alice, media_root, settings):
    settings.VAULT_LEGACY_READ = False
    document = legacy_document(alice, media_root)
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 500
    assert MARKER not in response.content
    [event] = events()
    assert (event.outcome, event.reason) == (
        "failed",
        "legacy Fernet file refused: VAULT_LEGACY_READ is off",
    )


def test_legacy_files_above_the_cap_are_refused(client, alice, media_root, settings):
    settings.VAULT_LEGACY_MAX_SIZE = 1000
    document = legacy_document(alice, media_root)
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 500
    assert MARKER not in response.content
    [event] = events()
    assert (event.outcome, event.reason) == (
        "failed",
        "legacy file larger than the cap of 1000 bytes",
    )


def test_legacy_files_within_the_cap_are_served(client, alice, media_root, settings):
    settings.VAULT_LEGACY_MAX_SIZE = 100_000
    document = legacy_document(alice, media_root)
    client.force_login(alice)
    response = client.get(download_url(document))
    assert (response.status_code, body(response)) == (200, PDF)


def test_new_files_are_v2_and_name_their_document(alice, media_root):
    document = document_make(company_of(alice), PDF)
    found = fileformat.classify((media_root / document.file.name).read_bytes())
    assert (found.kind, found.version, found.document_id) == (
        fileformat.Kind.V2,
        2,
        document.pk.bytes,
    )
    assert found.file_id.hex() == document.file_id


def test_an_unbound_file_is_not_served_as_a_document(client, alice, media_root):
    """vault_encrypt's output names no document: copied under a row, it is refused."""
    document = document_make(company_of(alice), PDF)
    unbound = default_storage.save("documents/2026/11/unbound", ContentFile(b"UNBOUND" * 50))
    (media_root / document.file.name).write_bytes((media_root / unbound).read_bytes())
    client.force_login(alice)
    response = client.get(download_url(document))
    assert response.status_code == 500
    assert b"UNBOUND" not in response.content
    assert events()[-1].outcome == "failed"
