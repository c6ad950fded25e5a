"""The storage scan and its command, over real files written through the real paths."""

import hashlib
import io
import json
import os
import random
import secrets
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from compliance.models import AccessEvent, ScanFinding, ScanRun
from compliance.scan import FOLDER_LINK, scan_storage, storage_scan, storage_walk
from tests import helpers
from vault import fileformat
from vault.keys import keyring
from vault.models import Document
from vault.storage import EncryptedStorage

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vault" / "vectors"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" + b"x" * 3000
Kind = ScanFinding.Kind


@pytest.fixture(autouse=True)
def storage_backend(inner_storage):
    """Every scan test runs on the local media folder and on the bucket (SeaweedFS)."""
    return inner_storage


def upload(client, user, company, title, data=PDF):
    """Upload a document through the portal's upload view; return its row."""
    client.force_login(user)
    response = client.post(
        reverse("vault:document_upload"),
        {"title": title, "company": company.pk, "file": SimpleUploadedFile("q3.pdf", data)},
    )
    assert response.status_code == 302, response.content[:500]
    return Document.objects.get(title=title)


def plant(name, data):
    """Write raw bytes into the inner storage, as someone with access to it would."""
    stored = scan_storage().save(name, ContentFile(data))
    assert stored == name
    return name


def stored_bytes(name):
    with scan_storage().open(name, "rb") as handle:
        return handle.read()


def replace_bytes(name, data):
    inner = scan_storage()
    inner.delete(name)
    plant(name, data)


def scan(*args):
    """Run vault_scan; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("vault_scan", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def findings(run):
    return sorted((f.kind, f.path) for f in run.findings.all())


# Verdicts ----------------------------------------------------------------------------------------


def test_documents_uploaded_through_the_portal_are_certified(client, alice, acme):
    one = upload(client, alice, acme, "Q3 statement")
    two = upload(client, alice, acme, "Valuation", data=b"v" * 2_500_000)
    events = AccessEvent.objects.count()

    code, out, _ = scan()

    assert code == 0
    run = ScanRun.objects.get()
    assert run.verdict == ScanRun.Verdict.CERTIFIED and run.kind == ScanRun.Kind.QUICK
    assert run.files == 2
    inner = scan_storage()
    assert run.bytes == inner.size(one.file.name) + inner.size(two.file.name)
    primary = keyring().primary
    assert run.counts_by_format == {"v2": {"files": 2, "bytes": run.bytes}}
    assert run.counts_by_key[primary.key_id_hex]["label"] == primary.label
    assert run.counts_by_key[primary.key_id_hex]["status"] == "primary"
    assert run.counts_by_key[primary.key_id_hex]["files"] == 2
    assert list(run.findings.all()) == []
    assert run.certification.startswith("At ")
    assert f"2 files, {run.bytes:,} bytes: all ciphertext that configured keys open" in (
        run.certification
    )
    assert run.certification in out
    assert run.actor is None and run.actor_username
    # One access event for the whole run, with the counts, by the OS user.
    assert AccessEvent.objects.count() == events + 1
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome) == ("scan", "allowed")
    assert event.actor_username == run.actor_username
    assert "quick scan: 2 files" in event.reason and "certified" in event.reason


def test_an_empty_storage_is_certified():
    code, out, _ = scan()
    assert code == 0
    assert "0 files, 0 bytes: all ciphertext" in out


def test_every_kind_of_stray_file_is_classified_and_fails_the_certification(client, alice, acme):
    upload(client, alice, acme, "Kept")
    plant("media-old/contract.pdf", PDF)
    plant("media-old/notes.txt", b"Board minutes: confidential.\n" * 20)
    plant("media-old/noise.bin", random.Random(7).randbytes(5000))  # libmagic: no type
    plant("media-old/empty", b"")
    foreign_key, foreign_id = secrets.token_bytes(32), secrets.token_bytes(8)
    plant("documents/foreign", b"".join(fileformat.encrypt(PDF, foreign_key, foreign_id)))
    plant("documents/legacy-foreign", Fernet(Fernet.generate_key()).encrypt(PDF))
    future = bytearray(b"".join(fileformat.encrypt(PDF, secrets.token_bytes(32), foreign_id)))
    future[8] = 9
    plant("documents/future", bytes(future))

    code, _, err = scan()

    assert code == 1
    assert "not certified" in err
    run = ScanRun.objects.get()
    assert run.verdict == ScanRun.Verdict.NOT_CERTIFIED
    by_path = {f.path: f for f in run.findings.exclude(kind=Kind.ORPHAN)}
    assert by_path["media-old/contract.pdf"].kind == Kind.PLAINTEXT
    assert "application/pdf" in by_path["media-old/contract.pdf"].detail
    assert by_path["media-old/notes.txt"].kind == Kind.PLAINTEXT
    assert "text/plain" in by_path["media-old/notes.txt"].detail
    assert by_path["media-old/noise.bin"].kind == Kind.UNKNOWN_FORMAT
    assert by_path["media-old/empty"].detail == "empty file"
    assert by_path["documents/foreign"].kind == Kind.UNKNOWN_KEY
    assert by_path["documents/foreign"].key_id == foreign_id.hex()
    assert by_path["documents/legacy-foreign"].kind == Kind.LEGACY_UNOPENED
    assert by_path["documents/future"].kind == Kind.UNKNOWN_FORMAT
    assert "version 9" in by_path["documents/future"].detail
    assert len(by_path) == 7
    assert run.counts_by_format["plaintext"]["files"] == 2
    assert run.counts_by_format["unknown"]["files"] == 3
    assert run.counts_by_key[foreign_id.hex()]["status"] == "unknown"
    assert "NOT all ciphertext that configured keys open" in run.certification
    assert "2 plaintext" in run.certification and "1 under an unknown key" in run.certification
    # Every planted file is also a file without a document.
    orphans = set(run.findings.filter(kind=Kind.ORPHAN).values_list("path", flat=True))
    assert orphans == set(by_path)


CASE_STUDY_KEYS = (
    "current:test-secret-current-0123456789abcdef0123456789,"
    "casestudy:case-study-encryption-secret-for-vectors-only"
)


def test_legacy_files_name_the_configured_key_that_opens_them(settings):
    settings.VAULT_KEYS = CASE_STUDY_KEYS
    settings.VAULT_KDF_SALT = "stable-salt-from-settings"
    case = json.loads((VECTORS / "fernet.json").read_text())["cases"][1]
    plant("documents/2019/04/statement.pdf", case["token"].encode())

    code, _, _ = scan()

    run = ScanRun.objects.get()
    legacy = keyring().keys[1]
    assert legacy.label == "casestudy"
    assert run.counts_by_format["fernet"]["files"] == 1
    assert run.counts_by_key == {
        legacy.key_id_hex: {
            "label": "casestudy",
            "status": "decrypt-only",
            "files": 1,
            "bytes": len(case["token"]),
            "formats": {"fernet": 1},
        }
    }
    # Ciphertext a configured key opens, but no document: a notice, not a failure.
    assert findings(run) == [(Kind.ORPHAN, "documents/2019/04/statement.pdf")]
    assert run.unbound_files == 1
    assert code == 0 and run.certified


def test_a_legacy_file_over_the_cap_is_not_opened_and_not_certified(settings):
    settings.VAULT_LEGACY_MAX_SIZE = 1000
    plant("documents/big", Fernet(keyring().primary.fernet_key).encrypt(b"x" * 2000))
    code, _, _ = scan()
    run = ScanRun.objects.get()
    (finding,) = run.findings.exclude(kind=Kind.ORPHAN)
    assert finding.kind == Kind.LEGACY_UNOPENED and "1000-byte legacy cap" in finding.detail
    assert code == 1


def test_the_vault_s_own_files_are_counted_apart_and_are_no_finding():
    # Plaintext by design (the access log publishes its chain heads there), never a document.
    plant("_docvault/archive/chain-heads.log", b"2026-11-29T14:00:00Z seq 12 hash abc\n")
    reserved = list(storage_walk(scan_storage(), "_docvault"))
    code, out, _ = scan()
    run = ScanRun.objects.get()
    assert code == 0
    assert run.files == 0 and run.reserved_files == len(reserved) >= 1
    assert list(run.findings.all()) == []
    assert f"Vault's own files (_docvault/, not documents): {len(reserved)}" in out


# Integrity: quick versus full --------------------------------------------------------------------


def test_a_tampered_file_passes_the_quick_scan_and_fails_the_full_one(client, alice, acme):
    document = upload(client, alice, acme, "Tampered", data=b"t" * 300_000)
    ciphertext = bytearray(stored_bytes(document.file.name))
    ciphertext[len(ciphertext) // 2] ^= 1
    replace_bytes(document.file.name, bytes(ciphertext))

    quick_code, _, _ = scan()
    full_code, _, _ = scan("--full")

    quick, full = ScanRun.objects.order_by("started_at")
    assert quick_code == 0 and quick.certified and list(quick.findings.all()) == []
    assert full_code == 1 and full.kind == ScanRun.Kind.FULL
    (finding,) = full.findings.all()
    assert finding.kind == Kind.DECRYPTION_FAILED
    assert finding.detail == "segment 0 failed authentication"
    assert finding.document_id == document.pk
    assert "1 failing authentication" in full.certification
    assert quick.inventory_digest == full.inventory_digest


def test_a_truncated_file_disagrees_with_its_row_and_fails_the_full_scan(client, alice, acme):
    document = upload(client, alice, acme, "Truncated", data=b"t" * 300_000)
    replace_bytes(document.file.name, stored_bytes(document.file.name)[:-100])

    quick_code, _, _ = scan()
    full_code, _, _ = scan("--full")

    quick, full = ScanRun.objects.order_by("started_at")
    assert quick_code == 1
    assert findings(quick) == [(Kind.MISMATCH, document.file.name)]
    assert "size: row 300000, file 299900" in quick.findings.get().detail
    assert full_code == 1
    assert findings(full) == [
        (Kind.DECRYPTION_FAILED, document.file.name),
        (Kind.MISMATCH, document.file.name),
    ]


def test_a_full_scan_of_a_clean_storage_authenticates_and_certifies(client, alice, acme):
    upload(client, alice, acme, "Big", data=os.urandom(2_200_000))
    code, _, _ = scan("--full")
    run = ScanRun.objects.get()
    assert code == 0 and run.certified
    assert "every segment authenticated" in run.certification


# The database cross-check ------------------------------------------------------------------------


def test_orphans_are_listed_and_written_as_a_manifest_template(tmp_path, client, alice, acme):
    upload(client, alice, acme, "Has a row")
    orphan = EncryptedStorage().save("documents/2026/11/orphan", ContentFile(PDF))
    plant("old, uploads/scan.pdf", PDF)
    manifest = tmp_path / "orphans.csv"

    code, _, err = scan("--orphans-csv", str(manifest))

    assert code == 1  # the plaintext orphan fails the certification
    assert manifest.read_text(encoding="utf-8") == (
        f'path,company,title,uploaded_by,uploaded_at\n{orphan},,,,\n"old, uploads/scan.pdf",,,,\n'
    )
    assert oct(manifest.stat().st_mode & 0o777) == "0o600"
    assert f"2 orphan(s) written to {manifest}" in err
    run = ScanRun.objects.get()
    finding = run.findings.get(path=orphan)
    assert finding.kind == Kind.ORPHAN and finding.file_format == "v2"
    assert finding.detail == "no document row has this stored name"


def test_ciphertext_orphans_alone_leave_the_certification_standing(tmp_path):
    EncryptedStorage().save("documents/x", ContentFile(PDF))
    code, _, _ = scan()
    run = ScanRun.objects.get()
    assert code == 0 and run.certified
    assert run.certification.endswith("; 1 without a document.")


def test_an_existing_manifest_is_never_overwritten(tmp_path):
    manifest = tmp_path / "orphans.csv"
    manifest.write_text("keep me")
    code, _, err = scan("--orphans-csv", str(manifest))
    assert code == 1 and "exists already" in err
    assert manifest.read_text() == "keep me"
    assert not ScanRun.objects.exists()


def test_a_document_without_its_file_is_missing(client, alice, acme):
    document = upload(client, alice, acme, "Gone")
    scan_storage().delete(document.file.name)

    code, _, _ = scan()

    run = ScanRun.objects.get()
    assert code == 1
    finding = run.findings.get()
    assert (finding.kind, finding.path, finding.document_id) == (
        Kind.MISSING,
        document.file.name,
        document.pk,
    )
    assert "Gone" in finding.detail
    assert "1 documents without a file" in run.certification


def test_files_swapped_between_documents_are_found(client, alice, acme, charlie, globex):
    mine = upload(client, alice, acme, "Acme revenue")
    theirs = upload(client, charlie, globex, "Globex memo", data=PDF + b"globex")
    # Someone with write access to the database alone swaps the stored names.
    Document.objects.filter(pk=mine.pk).update(file="tmp")
    Document.objects.filter(pk=theirs.pk).update(file=mine.file.name)
    Document.objects.filter(pk=mine.pk).update(file=theirs.file.name)

    code, _, _ = scan()

    run = ScanRun.objects.get()
    assert code == 1
    mismatches = {f.document_id: f for f in run.findings.filter(kind=Kind.MISMATCH)}
    assert set(mismatches) == {mine.pk, theirs.pk}
    assert "file ID: row " + mine.file_id[:16] in mismatches[mine.pk].detail
    assert f"size: row {len(PDF)}, file {len(PDF) + 6}" in mismatches[mine.pk].detail
    # Each file names, in its authenticated header, the document it was written for.
    bound = {f.document_id: f.detail for f in run.findings.filter(kind=Kind.BOUND_ELSEWHERE)}
    assert set(bound) == {mine.pk, theirs.pk}
    assert f"written for document {theirs.pk} (Globex memo)" in bound[mine.pk]


def test_a_file_written_for_another_document_is_found(client, alice, acme, charlie, globex):
    mine = upload(client, alice, acme, "Acme revenue")
    theirs = upload(client, charlie, globex, "Globex memo")
    # Someone with write access to the storage puts a file written for Acme's document under
    # Globex's stored name (made here with the primary key, so only the binding gives it away).
    ring = keyring()
    key = ring.primary
    forged = fileformat.encrypt(
        PDF, ring.file_keys[key.key_id], key.key_id, document_id=mine.pk.bytes
    )
    replace_bytes(theirs.file.name, b"".join(forged))

    code, _, _ = scan("--full")

    run = ScanRun.objects.get()
    assert code == 1
    bound = run.findings.get(kind=Kind.BOUND_ELSEWHERE)
    assert (bound.path, bound.document_id) == (theirs.file.name, theirs.pk)
    assert f"written for document {mine.pk} (Acme revenue)" in bound.detail
    assert "1 files not written for their document" in run.certification
    # It authenticates: the file is intact, it is just not this document's.
    assert not run.findings.filter(kind=Kind.DECRYPTION_FAILED).exists()


def test_a_file_written_for_no_document_is_not_a_document_s_file(client, alice, acme):
    document = upload(client, alice, acme, "Acme revenue")
    ring = keyring()
    key = ring.primary
    replace_bytes(
        document.file.name,
        b"".join(fileformat.encrypt(PDF, ring.file_keys[key.key_id], key.key_id)),
    )

    code, _, _ = scan()

    run = ScanRun.objects.get()
    assert code == 1
    bound = run.findings.get(kind=Kind.BOUND_ELSEWHERE)
    assert bound.detail == "the file was written for no document, so it is not this document's"
    assert run.unbound_files == 1


def test_unbound_files_are_counted():
    ring = keyring()
    key = ring.primary
    file_key = ring.file_keys[key.key_id]
    plant("old/v1", b"".join(fileformat.encrypt(PDF, file_key, key.key_id, _version=1)))
    plant("old/v2-unbound", b"".join(fileformat.encrypt(PDF, file_key, key.key_id)))
    plant("old/legacy", Fernet(key.fernet_key).encrypt(PDF))
    stranger = uuid.uuid4()
    plant(
        "old/v2-bound",
        b"".join(fileformat.encrypt(PDF, file_key, key.key_id, document_id=stranger.bytes)),
    )

    code, _, _ = scan()

    run = ScanRun.objects.get()
    assert code == 0
    assert run.unbound_files == 4
    assert {fmt: c["files"] for fmt, c in run.counts_by_format.items()} == {
        "fernet": 1,
        "v1": 1,
        "v2": 2,
    }
    detail = run.findings.get(path="old/v2-bound").detail
    assert detail.endswith(f"its header names document {stranger}")


# Output, digest, errors --------------------------------------------------------------------------


def test_json_output_for_machines(client, alice, acme):
    upload(client, alice, acme, "One")
    plant("stray.txt", b"plain words\n" * 10)

    code, out, _ = scan("--json")

    data = json.loads(out)
    assert code == 1
    assert set(data) == {
        "id",
        "kind",
        "started_at",
        "finished_at",
        "actor",
        "storage",
        "files",
        "bytes",
        "reserved_files",
        "unbound_files",
        "counts_by_format",
        "counts_by_key",
        "finding_counts",
        "verdict",
        "certified",
        "certification",
        "inventory_digest",
        "findings",
    }
    assert (data["files"], data["verdict"], data["certified"]) == (2, "not-certified", False)
    assert data["finding_counts"] == {"orphan": 1, "plaintext": 1}
    assert data["findings"][0] == {
        "path": "stray.txt",
        "kind": "orphan",
        "detail": "no document row has this stored name",
        "format": "plaintext",
        "key_id": "",
        "document": None,
    }
    assert data["id"] == ScanRun.objects.get().pk


def test_the_inventory_digest_is_stable_and_is_the_sha256_of_the_inventory(
    tmp_path, client, alice, acme
):
    upload(client, alice, acme, "One")
    plant("z/stray.txt", b"plain words\n")
    plant("a-b", b"x" * 100)
    inventory = tmp_path / "inventory.jsonl"

    scan("--inventory", str(inventory))
    scan()
    first, second = ScanRun.objects.order_by("started_at")
    assert first.inventory_digest == second.inventory_digest
    assert hashlib.sha256(inventory.read_bytes()).hexdigest() == first.inventory_digest
    lines = [json.loads(line) for line in inventory.read_text().splitlines()]
    assert [line[0] for line in lines] == sorted(line[0] for line in lines)
    assert ["z/stray.txt", 12, "plaintext", ""] in lines

    plant("late.pdf", PDF)
    scan()
    assert ScanRun.objects.order_by("started_at").last().inventory_digest != first.inventory_digest


def test_storage_walk_yields_names_in_full_name_order():
    planted = ["a/b", "a-b", "a.b", "a/a/z", "a0", "b", "_docvault/heads"]
    for name in planted:
        plant(name, b"x")
    names = list(storage_walk(scan_storage()))
    assert names == sorted(names)
    assert [name for name in names if name in planted] == sorted(planted)


def test_no_key_configured_cannot_scan(settings):
    settings.VAULT_KEYS = ""
    settings.ENCRYPTION_SECRET = ""
    code, _, err = scan()
    assert code == 2 and "Encryption key not configured" in err
    assert not ScanRun.objects.exists()


def test_a_terminal_gets_a_progress_bar(client, alice, acme):
    upload(client, alice, acme, "One")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    err = Terminal()
    call_command("vault_scan", stdout=io.StringIO(), stderr=err)
    assert "vault_scan: " in err.getvalue() and "1 files" in err.getvalue()


def test_storage_scan_records_the_dashboard_user(officer):
    run = storage_scan(user=officer)
    assert (run.actor, run.actor_username) == (officer, "officer")
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.actor_id) == ("scan", officer.pk)


def test_the_command_s_exit_status_from_a_shell(tmp_path):
    """0 certified, 1 not certified, 2 cannot scan: as a monitor or a cron job sees them."""
    media = tmp_path / "shell-media"
    media.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(media),
        "DOCVAULT_ENV_FILE": "",
    }

    def manage(*args, **extra):
        return helpers.manage({**env, **extra}, *args)

    assert manage("migrate", "--verbosity", "0").returncode == 0
    certified = manage("vault_scan")
    assert certified.returncode == 0, certified.stderr
    assert "0 files, 0 bytes: all ciphertext that configured keys open" in certified.stdout
    (media / "notes.txt").write_text("Board minutes: confidential.\n")
    not_certified = manage("vault_scan")
    assert not_certified.returncode == 1
    assert "1 plaintext" in not_certified.stdout
    no_key = manage("vault_scan", VAULT_KEYS="", ENCRYPTION_SECRET="")
    assert no_key.returncode == 2
    assert "vault.E001" in no_key.stderr


def test_an_unwritable_manifest_is_a_clear_error_after_the_run_is_stored(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    code, _, err = scan("--orphans-csv", str(blocked / "orphans.csv"))
    run = ScanRun.objects.get()
    assert code == 2
    assert f"Scan #{run.pk} is stored, but the manifest is not: cannot use {blocked}" in err
    assert not (tmp_path / "orphans.csv").exists()


def test_a_file_name_that_is_not_utf8_is_reported_escaped(media_root):
    if not isinstance(scan_storage(), FileSystemStorage):
        pytest.skip("a name that is not UTF-8 exists only on a local disk")
    (media_root / "old").mkdir()
    with open(os.path.join(os.fsencode(media_root), b"old", b"minutes-\xff.txt"), "wb") as out:
        out.write(b"Board minutes: confidential.\n")

    code, out, _ = scan()

    run = ScanRun.objects.get()
    assert code == 1
    assert set(run.findings.values_list("path", "kind")) == {
        ("old/minutes-\\xff.txt", Kind.PLAINTEXT),
        ("old/minutes-\\xff.txt", Kind.ORPHAN),
    }
    assert "old/minutes-\\xff.txt" in out


def test_a_file_that_cannot_be_read_is_unreadable_with_the_systems_reason(media_root):
    if not isinstance(scan_storage(), FileSystemStorage):
        pytest.skip("a link into /proc exists only on a local disk")
    (media_root / "old").mkdir()
    # Opens, then fails its first read with an I/O error, whoever runs the test (root too).
    (media_root / "old" / "bad-sector.pdf").symlink_to("/proc/self/mem")

    run = storage_scan()

    finding = run.findings.get(kind=Kind.UNREADABLE)
    assert finding.path == "old/bad-sector.pdf"
    assert finding.detail == "Input/output error"
    assert not run.certified


def test_a_link_to_a_folder_is_a_finding_and_a_loop_ends(client, media_root, alice, acme):
    if not isinstance(scan_storage(), FileSystemStorage):
        pytest.skip("symbolic links exist only on a local disk")
    document = upload(client, alice, acme, "Board minutes")
    (media_root / "old").mkdir()
    (media_root / "old" / "loop").symlink_to(media_root, target_is_directory=True)

    run = storage_scan()

    assert findings(run) == [(Kind.ORPHAN, "old/loop"), (Kind.UNREADABLE, "old/loop")]
    assert run.findings.get(kind=Kind.UNREADABLE).detail == FOLDER_LINK
    # The uploaded document was scanned once, not once more through the link.
    assert run.files == 2 and not run.certified
    assert document.file.name != "old/loop"
