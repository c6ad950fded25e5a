"""vault_import: row-less files adopted from a manifest, encrypted in place, bound, resumable."""

import csv
import io
import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from compliance.models import AccessEvent
from tests.helpers import document_upload, response_close
from tests.vault.test_rotation import CRASH_TIMEOUT, _crash_env, _run
from vault import fileformat
from vault.imports import ImportFailed, ManifestError, Status, manifest_import
from vault.keys import keyring
from vault.models import Document

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n" + b"an old contract, kept in plaintext " * 100
HEADER = ["path", "company", "title", "uploaded_by", "uploaded_at"]


def manifest(*rows, header=HEADER):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    out.seek(0)
    return out


def plant(name, data):
    """A file the case study left in MEDIA_ROOT with no row (or a deployment's plaintext)."""
    return default_storage.inner.save(name, ContentFile(data))


def stored(name):
    with default_storage.inner.open(name, "rb") as handle:
        return handle.read()


def download(client, user, name):
    client.force_login(user)
    response = client.get("/vault/" + name)
    if response.status_code != 200:
        return response.status_code, b""
    try:
        return 200, b"".join(response.streaming_content)
    finally:
        response_close(response)


def import_events():
    return list(AccessEvent.objects.filter(action="import").order_by("seq"))


@pytest.mark.parametrize("form", ["plaintext", "legacy"])
def test_an_orphan_is_adopted_in_place_bound_and_served_to_its_readers_only(
    form, acme, alice, bob, charlie, client, inner_storage
):
    data = PDF if form == "plaintext" else Fernet(keyring().primary.fernet_key).encrypt(PDF)
    name = plant("company_docs/contract.pdf", data)

    report = manifest_import(
        manifest([name, "Acme", "Old contract", "bob", "2019-03-04T10:00:00Z"]), operator="ops"
    )

    document = Document.objects.get(file=name)
    found = fileformat.classify(stored(name))
    assert [(r.line, r.status) for r in report.results] == [(2, Status.IMPORTED)]
    assert (document.company, document.title, document.uploaded_by) == (acme, "Old contract", bob)
    assert document.uploaded_at == datetime(2019, 3, 4, 10, tzinfo=UTC)
    assert (document.original_filename, document.size, document.mime_type) == (
        "contract.pdf",
        len(PDF),
        "application/pdf",
    )
    assert (found.kind, found.document_id, found.key_id) == (
        fileformat.Kind.V2,
        document.pk.bytes,
        keyring().primary.key_id,
    )
    assert (document.key_id, document.file_id) == (found.key_id.hex(), found.file_id.hex())
    assert PDF not in stored(name)
    assert download(client, alice, name) == (200, PDF)
    assert download(client, charlie, name) == (404, b"")
    first = import_events()[0]
    assert (first.outcome, first.document_id, first.actor_username) == (
        "allowed",
        document.pk,
        "ops",
    )
    assert first.reason.startswith("adopted from manifest line 2")


def test_a_plaintext_import_is_one_event(acme):
    name = plant("company_docs/a.pdf", PDF)
    manifest_import(manifest([name, "Acme", "A", "", ""]))
    assert len(import_events()) == 1


def test_a_bad_manifest_names_every_bad_line_and_does_nothing(acme, globex):
    good = plant("company_docs/good.pdf", PDF)
    taken = document_upload(acme, PDF, "taken.pdf")
    rows = [
        [good, "Acme", "Good", "", ""],
        [plant("company_docs/b.pdf", PDF), "Initech", "Unknown company", "", ""],
        ["company_docs/nowhere.pdf", "Acme", "Missing file", "", ""],
        [taken.file.name, "Globex", "Someone else's", "", ""],
        [plant("company_docs/c.pdf", PDF), "Acme", "Bad date", "", "last tuesday"],
        [good, "Acme", "Twice", "", ""],
        ["../etc/passwd", "Acme", "Hostile", "", ""],
        [plant("company_docs/d.pdf", PDF), "Acme", "Nobody", "mallory", ""],
    ]
    before = Document.objects.count()

    with pytest.raises(ManifestError) as caught:
        manifest_import(manifest(*rows))

    errors = caught.value.errors
    assert [error.split(":")[0] for error in errors] == [f"line {n}" for n in range(3, 10)]
    assert "unknown company 'Initech'" in errors[0]
    assert "no file 'company_docs/nowhere.pdf' in storage" in errors[1]
    assert f"already belongs to document {taken.pk}" in errors[2]
    assert "bad date 'last tuesday'" in errors[3]
    assert "repeats line 2" in errors[4]
    assert "unsafe path" in errors[5]
    assert "unknown user 'mallory'" in errors[6]
    assert Document.objects.count() == before
    assert stored(good) == PDF
    assert import_events() == []


def test_a_header_without_the_required_columns_is_refused(acme):
    with pytest.raises(ManifestError, match=r"line 1 \(header\): missing column\(s\) title"):
        manifest_import(manifest(["a", "Acme"], header=["path", "company"]))


def test_a_file_bound_to_another_document_is_refused(acme):
    other = document_upload(acme, PDF, "other.pdf")
    name = plant("company_docs/copy.pdf", stored(other.file.name))

    with pytest.raises(ManifestError, match="written for another document"):
        manifest_import(manifest([name, "Acme", "Copy", "", ""]))


def test_a_file_that_cannot_be_read_is_a_bad_line_and_nothing_is_imported(acme, media_root):
    good = plant("company_docs/a.pdf", PDF)
    loop = media_root / "company_docs" / "loop.pdf"
    loop.symlink_to(loop)  # every open fails, whoever runs the test

    with pytest.raises(ManifestError) as refused:
        manifest_import(
            manifest([good, "Acme", "A", "", ""], ["company_docs/loop.pdf", "Acme", "B", "", ""])
        )

    assert refused.value.errors == [
        f"line 3: cannot use {loop}: Too many levels of symbolic links."
    ]
    assert not Document.objects.exists()
    assert stored(good) == PDF


def test_a_dry_run_validates_lists_and_changes_nothing(acme):
    name = plant("company_docs/a.pdf", PDF)

    report = manifest_import(manifest([name, "Acme", "A", "", ""]), dry_run=True)

    assert [(r.path, r.status, r.before) for r in report.results] == [
        (name, Status.IMPORTED, "plaintext or unknown")
    ]
    assert not Document.objects.exists()
    assert stored(name) == PDF
    assert AccessEvent.objects.count() == 0


def test_a_stopped_import_is_finished_by_the_next_run_and_a_third_does_nothing(
    acme, alice, client, settings
):
    small = plant("company_docs/small.pdf", PDF)
    token = Fernet(keyring().primary.fernet_key).encrypt(PDF * 10)
    large = plant("company_docs/large.pdf", token)
    rows = [[small, "Acme", "Small", "", ""], [large, "Acme", "Large", "", ""]]
    # The second file is above the legacy cap: the run stops there, its row made, its file not.
    settings.VAULT_LEGACY_MAX_SIZE = len(token) - 1

    with pytest.raises(ImportFailed, match=r"line 3: company_docs/large\.pdf: legacy file larger"):
        manifest_import(manifest(*rows))
    assert stored(large) == token
    assert Document.objects.filter(file=large).exists()
    settings.VAULT_LEGACY_MAX_SIZE = len(token)
    second = manifest_import(manifest(*rows))
    third = manifest_import(manifest(*rows))

    assert [r.status for r in second.results] == [Status.DONE, Status.RESUMED]
    assert [r.status for r in third.results] == [Status.DONE, Status.DONE]
    assert Document.objects.count() == 2
    assert fileformat.classify(stored(large)).kind is fileformat.Kind.V2
    assert download(client, alice, large) == (200, PDF * 10)


def test_the_command_imports_and_reports_bad_lines(acme, tmp_path, capsys):
    name = plant("company_docs/a.pdf", PDF)
    good = tmp_path / "manifest.csv"
    good.write_text(f"path,company,title\n{name},Acme,A\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,company,title\ncompany_docs/a.pdf,Nope,A\n")

    with pytest.raises(CommandError, match="nothing imported, 1 bad line"):
        call_command("vault_import", str(bad))
    call_command("vault_import", str(good), "--dry-run")
    dry = capsys.readouterr().out
    call_command("vault_import", str(good))
    done = capsys.readouterr().out

    assert f"line 2: would import {name} (plaintext or unknown)" in dry
    assert f"line 2: imported {name} (plaintext or unknown)" in done
    assert "Imported 1 files, finished 0, 0 already imported." in done
    assert Document.objects.get(file=name).title == "A"


def test_the_command_imports_nothing_when_the_access_log_cannot_be_written(
    acme, tmp_path, no_recorder
):
    name = plant("company_docs/a.pdf", PDF)
    good = tmp_path / "manifest.csv"
    good.write_text(f"path,company,title\n{name},Acme,A\n")

    with pytest.raises(
        CommandError,
        match=r"No access recorder is registered.* Run the command again once the access log",
    ):
        call_command("vault_import", str(good))

    assert not Document.objects.exists()
    assert stored(name) == PDF


# Crash test: kill -9 at random moments, rerun the same manifest, nothing lost --------------------

IMPORT_CRASH_FILES = 100
IMPORT_CRASH_TRIALS = 10
WORKER = "tests.vault.rotation_worker"


def test_an_import_killed_at_random_moments_loses_nothing(tmp_path, settings):
    env = _crash_env(tmp_path, settings.VAULT_KEYS)
    manifest_path = str(tmp_path / "manifest.csv")
    _run(["manage.py", "migrate", "--noinput", "-v", "0"], env)
    expected = json.loads(
        _run(["-m", WORKER, "import-setup", str(IMPORT_CRASH_FILES), "11", manifest_path], env)
    )
    rng = random.Random(20261129)
    reached, kills = -1, 0
    for _ in range(IMPORT_CRASH_TRIALS):
        worker = subprocess.Popen(
            [sys.executable, "-m", WORKER, "check-import", manifest_path],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            served = json.loads(worker.stdout.readline())
            # Every row has its import event; each serves its original bytes, but the one whose
            # plaintext file was being bound when the import was killed (refused until rerun).
            pending = {name: v for name, v in served.items() if v != expected[name]}
            assert len(pending) <= 1 and set(pending.values()) <= {"HTTP 500"}, pending
            assert worker.stdout.readline().startswith("started ")
            target = reached + rng.randint(1, 10)
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

    final = _run(["-m", "tests.vault.rotation_worker", "check-import", manifest_path], env)
    served = json.loads(
        _run(
            ["-m", "tests.vault.rotation_worker", "check-import", manifest_path], env
        ).splitlines()[0]
    )
    scan = json.loads(_run(["-m", "tests.vault.rotation_worker", "scan"], env))

    assert kills == IMPORT_CRASH_TRIALS
    assert json.loads(final.splitlines()[-1])["summary"].startswith("Imported ")
    assert served == expected
    assert scan == {"verdict": "certified", "findings": {}, "files": IMPORT_CRASH_FILES}
