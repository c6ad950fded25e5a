"""Key rotation: every file to v2 under the primary key, bound, in place; and the crash test."""

import json
import os
import random
import subprocess
import sys
import time

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse

from compliance.models import AccessEvent
from tests.helpers import document_upload, response_close
from tests.vault.rotation_worker import INNER_STORAGE_VARIABLE
from vault import fileformat
from vault.documents import document_metadata_refresh
from vault.keys import keyring
from vault.models import Document
from vault.rotation import ROTATE_TEMP_PREFIX, Status, document_rotate, storage_rotate

pytestmark = pytest.mark.django_db

CURRENT = "current:test-secret-current-0123456789abcdef0123456789"
PREVIOUS = "previous:test-secret-previous-0123456789abcdef012345678"
SEGMENT = 1024
PDF = b"%PDF-1.4\n" + b"rotation test plaintext " * 300


@pytest.fixture
def old_key(settings):
    """Make `previous` the primary key while the block runs, as before a rotation."""

    class Switch:
        def __enter__(self):
            settings.VAULT_KEYS = f"{PREVIOUS},{CURRENT}"

        def __exit__(self, *exc):
            settings.VAULT_KEYS = f"{CURRENT},{PREVIOUS}"

    settings.VAULT_KEYS = f"{CURRENT},{PREVIOUS}"
    return Switch()


def key_id(label):
    return next(key.key_id_hex for key in keyring().keys if key.label == label)


def stored_bytes(document):
    with default_storage.inner.open(document.file.name, "rb") as handle:
        return handle.read()


def download(client, user, document):
    client.force_login(user)
    response = client.get("/vault/" + document.file.name)
    try:
        return response.status_code, b"".join(response.streaming_content)
    finally:
        response_close(response)


def v1_document(company, data=PDF):
    """A document whose file was written as v1, with the file ID its row recorded then."""
    document = document_upload(company, data, "v1.pdf")
    key = keyring().primary
    ciphertext = b"".join(
        fileformat.encrypt(data, keyring().file_keys[key.key_id], key.key_id, _version=1)
    )
    default_storage.inner.delete(document.file.name)
    default_storage.inner.save(document.file.name, ContentFile(ciphertext))
    Document.objects.filter(pk=document.pk).update(
        file_id=fileformat.classify(ciphertext).file_id.hex()
    )
    return Document.objects.get(pk=document.pk)


def legacy_document(company, data=PDF, name="company_docs/nda.pdf"):
    """The case study's file, a Fernet token, adopted with a row."""
    token = Fernet(keyring().primary.fernet_key).encrypt(data)
    default_storage.inner.save(name, ContentFile(token))
    document = Document(company=company, title="NDA", original_filename="nda.pdf", file=name)
    document_metadata_refresh(document, save=False)
    document.save()
    return document


def rotate_events():
    return list(AccessEvent.objects.filter(action="rotate").order_by("seq"))


# One document ------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["v2", "v1", "legacy"])
def test_an_old_file_is_rewritten_in_place_bound_and_still_downloads(
    form, acme, alice, client, old_key, inner_storage
):
    with old_key:
        if form == "v2":
            document = document_upload(acme, PDF, "a.pdf", segment_size=SEGMENT)
        elif form == "v1":
            document = v1_document(acme)
        else:
            document = legacy_document(acme)
    name, before = document.file.name, stored_bytes(document)

    rotation = document_rotate(document)

    document.refresh_from_db()
    after = stored_bytes(document)
    found = fileformat.classify(after)
    assert rotation.status is Status.REWRITTEN
    assert (document.file.name, after != before) == (name, True)
    assert (found.kind, found.key_id.hex(), found.document_id) == (
        fileformat.Kind.V2,
        key_id("current"),
        document.pk.bytes,
    )
    assert (document.key_id, document.file_id, document.size) == (
        key_id("current"),
        found.file_id.hex(),
        len(PDF),
    )
    assert document.mime_type == "application/pdf"
    assert download(client, alice, document) == (200, PDF)
    [event] = rotate_events()
    old = "legacy Fernet" if form == "legacy" else f"{form} key {key_id('previous')}"
    assert (event.outcome, event.document_id, event.stored_name) == ("allowed", document.pk, name)
    assert event.reason == f"re-encrypted: {old} -> v2 key {key_id('current')}, bound"
    assert event.key_id == ("" if form == "legacy" else key_id("previous"))


def test_a_current_file_is_left_alone_and_nothing_is_recorded(acme):
    document = document_upload(acme, PDF, "a.pdf")
    before = stored_bytes(document)

    rotation = document_rotate(document)

    assert rotation.status is Status.CURRENT
    assert stored_bytes(document) == before
    assert rotate_events() == []


def test_a_row_left_behind_its_rewritten_file_serves_and_catches_up(acme, alice, client, old_key):
    with old_key:
        document = v1_document(acme)
    stale = Document.objects.get(pk=document.pk)
    document_rotate(document)
    # A crash between the swap and the row's update: put the row back as it was.
    Document.objects.filter(pk=document.pk).update(key_id=stale.key_id, file_id=stale.file_id)
    lagging = Document.objects.get(pk=document.pk)
    assert lagging.key_id == key_id("previous")

    served = download(client, alice, lagging)
    rotation = document_rotate(lagging)

    assert served == (200, PDF)
    assert rotation.status is Status.REFRESHED
    lagging.refresh_from_db()
    assert (lagging.key_id, lagging.file_id) == (
        key_id("current"),
        fileformat.classify(stored_bytes(lagging)).file_id.hex(),
    )
    assert rotate_events()[-1].reason.startswith("row brought up to date with its file")


def test_a_file_written_for_another_document_is_refused_not_rotated(acme, globex, old_key):
    with old_key:
        mine = document_upload(acme, PDF, "mine.pdf")
        theirs = document_upload(globex, b"Globex secret\n", "theirs.txt")
    # Someone with access to the storage copies Globex's file over Acme's.
    copied = stored_bytes(theirs)
    default_storage.inner.delete(mine.file.name)
    default_storage.inner.save(mine.file.name, ContentFile(copied))

    rotation = document_rotate(mine)

    assert (rotation.status, rotation.reason) == (
        Status.FAILED,
        "the stored file was written for another document",
    )
    assert stored_bytes(mine) == copied


def test_a_v2_file_written_for_no_document_is_refused_as_a_download_refuses_it(acme):
    document = document_upload(acme, PDF, "a.pdf")
    key = keyring().primary
    unbound = b"".join(fileformat.encrypt(PDF, keyring().file_keys[key.key_id], key.key_id))
    default_storage.inner.delete(document.file.name)
    default_storage.inner.save(document.file.name, ContentFile(unbound))

    rotation = document_rotate(document)

    assert (rotation.status, rotation.reason) == (
        Status.FAILED,
        "the stored file names no document (adopt it with vault_import)",
    )
    assert stored_bytes(document) == unbound


def test_a_v1_file_with_another_file_id_is_refused(acme, old_key):
    with old_key:
        document = v1_document(acme)
    Document.objects.filter(pk=document.pk).update(file_id="00" * 32)
    document = Document.objects.get(pk=document.pk)

    rotation = document_rotate(document)

    assert rotation.status is Status.FAILED
    assert fileformat.classify(stored_bytes(document)).kind is fileformat.Kind.V1


def test_a_tampered_file_fails_recorded_and_keeps_its_old_bytes(acme, old_key):
    with old_key:
        document = document_upload(acme, PDF * 4, "a.pdf", segment_size=SEGMENT)
    data = bytearray(stored_bytes(document))
    data[-5] ^= 1
    default_storage.inner.delete(document.file.name)
    default_storage.inner.save(document.file.name, ContentFile(bytes(data)))

    rotation = document_rotate(document)

    assert rotation.status is Status.FAILED
    assert "failed authentication" in rotation.reason
    assert stored_bytes(document) == bytes(data)
    assert [e.outcome for e in rotate_events()] == ["allowed", "failed"]
    document.refresh_from_db()
    assert document.key_id == key_id("previous")
    assert not [p for p in os.listdir(default_storage.inner.path("documents")) if "rotate" in p]


def test_a_document_deleted_during_its_rotation_is_reported(acme, old_key):
    with old_key:
        document = document_upload(acme, PDF, "a.pdf")
    # Deleted by another process after this one read the row (its file goes once it commits).
    Document.objects.filter(pk=document.pk).delete()

    rotation = document_rotate(document)

    assert (rotation.status, rotation.reason) == (
        Status.FAILED,
        "the document was deleted meanwhile",
    )


def test_a_missing_file_is_reported(acme):
    document = document_upload(acme, PDF, "a.pdf")
    default_storage.inner.delete(document.file.name)

    assert document_rotate(document).status is Status.MISSING


def test_an_unreadable_file_is_reported_with_the_systems_reason(acme):
    document = document_upload(acme, PDF, "a.pdf")
    path = default_storage.inner.path(document.file.name)
    os.remove(path)
    os.symlink(path, path)  # a link to itself: every open fails, whoever runs the test

    rotation = document_rotate(document)

    assert rotation.status is Status.FAILED
    assert rotation.reason == f"cannot use {path}: Too many levels of symbolic links"


# The whole storage -------------------------------------------------------------------------------


def test_storage_rotate_rewrites_what_is_old_reports_orphans_and_reruns_as_a_no_op(
    acme, old_key, inner_storage
):
    with old_key:
        old = [document_upload(acme, PDF, "old.pdf"), legacy_document(acme)]
    new = document_upload(acme, PDF, "new.pdf")
    orphan = inner_storage.save("company_docs/orphan.pdf", ContentFile(b"plaintext, no row"))
    inner_storage.save("_docvault/chain-heads.log", ContentFile(b"the vault's own file\n"))

    first = storage_rotate()
    second = storage_rotate()

    assert (first.counts[Status.REWRITTEN], first.counts[Status.CURRENT]) == (2, 1)
    assert [r.name for r in first.changes if r.status is Status.ORPHAN] == [orphan]
    assert (second.counts[Status.REWRITTEN], second.counts[Status.CURRENT]) == (0, 3)
    assert second.counts[Status.ORPHAN] == 1
    assert inner_storage.open(orphan).read() == b"plaintext, no row"
    assert {e.document_id for e in rotate_events()} == {d.pk for d in old}
    assert new.pk not in {e.document_id for e in rotate_events()}


def test_a_dry_run_lists_and_changes_nothing(acme, old_key):
    with old_key:
        document = document_upload(acme, PDF, "old.pdf")
    before = stored_bytes(document)
    events_before = AccessEvent.objects.count()

    report = storage_rotate(dry_run=True)

    assert [(r.name, r.status) for r in report.changes] == [(document.file.name, Status.REWRITTEN)]
    assert stored_bytes(document) == before
    assert AccessEvent.objects.count() == events_before


def test_a_leftover_temporary_file_is_removed_by_the_next_run(acme, media_root):
    document = document_upload(acme, PDF, "a.pdf")
    folder = os.path.dirname(default_storage.inner.path(document.file.name))
    leftover = os.path.join(folder, f"{ROTATE_TEMP_PREFIX}abcd1234.part")
    upload_temp = os.path.join(folder, ".docvault-abcd1234.part")
    for path in (leftover, upload_temp):
        with open(path, "wb") as handle:
            handle.write(b"half a file")

    dry = storage_rotate(dry_run=True)
    assert os.path.exists(leftover)
    report = storage_rotate()

    assert not os.path.exists(leftover)
    assert os.path.exists(upload_temp)  # an upload's, perhaps in progress: not rotation's to remove
    assert report.temporaries_removed == [os.path.relpath(leftover, media_root)]
    assert dry.temporaries_removed == []
    assert report.counts[Status.ORPHAN] == 0


# The command -------------------------------------------------------------------------------------
# One worker here: the command's threads would each open a connection of their own, which cannot
# see this test's uncommitted rows. The crash test runs several, in a process of its own.


def test_the_command_lists_a_dry_run_then_rotates(acme, old_key, capsys):
    with old_key:
        document = document_upload(acme, PDF, "old.pdf")

    call_command("vault_rotate", "--dry-run", "--workers=1")
    dry = capsys.readouterr().out
    call_command("vault_rotate", "--workers=1")
    done = capsys.readouterr().out

    old, new = key_id("previous"), key_id("current")
    assert f"would rewrite {document.file.name}: v2 key {old} -> v2 key {new}" in dry
    assert "Dry run: would rewrite 1 files" in dry
    assert f"rewritten {document.file.name}: v2 key {old} -> v2 key {new}" in done
    assert "rewrote 1 files, refreshed 0 rows, 0 already current, 0 failed" in done
    [event] = rotate_events()
    assert event.actor_username  # the operating-system user who ran it


def test_the_command_fails_when_a_file_cannot_be_rotated(acme, capsys):
    document = document_upload(acme, PDF, "a.pdf")
    default_storage.inner.delete(document.file.name)

    with pytest.raises(CommandError, match="could not be rotated"):
        call_command("vault_rotate", "--workers=1")
    assert f"missing {document.file.name}: no such file in storage" in capsys.readouterr().out


@pytest.fixture
def old_document(acme, old_key):
    with old_key:
        return document_upload(acme, PDF, "old.pdf")


def test_with_no_recorder_nothing_is_rotated(old_document, no_recorder):
    before = stored_bytes(old_document)

    with pytest.raises(
        CommandError,
        match=r"No access recorder is registered.* Run the command again once the access log",
    ):
        call_command("vault_rotate", "--workers=1")

    assert stored_bytes(old_document) == before


# Downloads during a rotation ---------------------------------------------------------------------


def test_a_download_opened_before_the_swap_finishes_on_the_old_file(acme, alice, client, old_key):
    with old_key:
        document = document_upload(acme, PDF * 50, "big.pdf", segment_size=SEGMENT)
    client.force_login(alice)
    response = client.get(reverse("vault:document_download", kwargs={"pk": document.pk}))
    stream = iter(response.streaming_content)
    first = next(stream)

    document_rotate(Document.objects.get(pk=document.pk))
    rest = b"".join(stream)
    response_close(response)

    assert first + rest == PDF * 50
    assert download(client, alice, Document.objects.get(pk=document.pk)) == (200, PDF * 50)


# Crash test: kill -9 at random moments, rerun, nothing lost -------------------------------------

CRASH_FILES = 200
CRASH_TRIALS = 10
# Each request to the test bucket takes tens of milliseconds here (about 0.4 s per document to set
# up, 5 s per trial): on the bucket, fewer files and trials, kills closer together.
CRASH_FILES_S3 = 20
CRASH_TRIALS_S3 = 5
CRASH_TIMEOUT = 120


def _crash_env(tmp_path, keys, inner_storage=None):
    media = tmp_path / "crash-media"
    media.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'crash.sqlite3'}",
        "MEDIA_ROOT": str(media),
        "VAULT_KEYS": keys,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    if inner_storage is not None and not isinstance(inner_storage, FileSystemStorage):
        # The bucket's fresh key prefix that this test was given.
        env[INNER_STORAGE_VARIABLE] = json.dumps(django_settings.VAULT_INNER_STORAGE)
    return env


def _run(args, env):
    done = subprocess.run(
        [sys.executable, *args],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=CRASH_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _assert_all_serve(check, expected):
    assert check["digests"] == expected
    kinds = {name: kind for name, kind in check["files"].items() if "/.docvault-" not in name}
    assert set(kinds.values()) <= {"v2", "v1", "fernet"}, kinds
    assert len(kinds) == len(expected)


def test_rotation_killed_at_random_moments_loses_nothing(tmp_path, inner_storage):
    local = isinstance(inner_storage, FileSystemStorage)
    files, trials, step = (
        (CRASH_FILES, CRASH_TRIALS, 20) if local else (CRASH_FILES_S3, CRASH_TRIALS_S3, 3)
    )
    old = _crash_env(tmp_path, f"{PREVIOUS},{CURRENT}", inner_storage)
    new = _crash_env(tmp_path, f"{CURRENT},{PREVIOUS}", inner_storage)
    _run(["manage.py", "migrate", "--noinput", "-v", "0"], old)
    expected = json.loads(
        _run(["-m", "tests.vault.rotation_worker", "setup", str(files), "7"], old)
    )
    rng = random.Random(20261129)
    reached = -1
    kills = 0
    for _ in range(trials):
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.vault.rotation_worker", "check-rotate"],
            cwd=django_settings.BASE_DIR,
            env=new,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Every document downloads its original bytes after the previous kill.
            _assert_all_serve(json.loads(worker.stdout.readline()), expected)
            assert worker.stdout.readline().startswith("started ")
            # Somewhere in the next few documents, then anywhere inside one.
            target = reached + rng.randint(1, step)
            for line in worker.stdout:
                if line.strip().isdigit():
                    reached = max(reached, int(line))
                    if int(line) >= target:
                        break
            time.sleep(rng.uniform(0, 0.01))
            worker.kill()
            if worker.wait(timeout=CRASH_TIMEOUT) == -9:
                kills += 1
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            worker.stdout.close()
            worker.stderr.close()

    final = _run(["-m", "tests.vault.rotation_worker", "check-rotate"], new).splitlines()
    after = _run(["-m", "tests.vault.rotation_worker", "check"], new)

    assert kills == trials
    assert json.loads(final[-1])["ok"] is True
    check = json.loads(after)
    _assert_all_serve(check, expected)
    assert set(check["files"].values()) == {"v2"}  # every file rotated, no temporary file left
    scan = json.loads(_run(["-m", "tests.vault.rotation_worker", "scan"], new))
    assert scan == {"verdict": "certified", "findings": {}, "files": files}
    again = _run(["-m", "tests.vault.rotation_worker", "check-rotate"], new).splitlines()
    assert json.loads(again[-1])["summary"].startswith(
        f"rewrote 0 files, refreshed 0 rows, {files} already current, 0 failed"
    )
