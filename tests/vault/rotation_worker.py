"""A separate process of the rotation crash test, run against the DATABASE_URL and MEDIA_ROOT given.

    python -m tests.vault.rotation_worker setup COUNT SEED   # documents under the first key
    python -m tests.vault.rotation_worker check              # download every document
    python -m tests.vault.rotation_worker check-rotate       # check, then storage_rotate()
    python -m tests.vault.rotation_worker scan               # the full storage scan's verdict
    python -m tests.vault.rotation_worker import-setup COUNT SEED MANIFEST   # orphans, a manifest
    python -m tests.vault.rotation_worker check-import MANIFEST  # check, then manifest_import()

`setup` stores COUNT documents of mixed sizes and formats through the real paths: uploads (v2;
some files of several small segments), v1 files as uploads wrote them before v2, and the case
study's legacy Fernet files adopted with a row. It prints {document id: SHA-256 of its bytes}.
`check` downloads every document through the case study's /vault/<path> route as a member of its
company and prints one line of JSON: {document id: SHA-256 or the error}, and the stored files'
kinds. `check-rotate` then rotates (one process start saved per trial): it prints "started TOTAL",
then the index of each document it has handled, flushed, so that the test can kill it at a moment
of its choosing, and at the end the report's summary as JSON.
"""

import hashlib
import json
import os
import random
import sys

SEGMENT = 1024  # small segments: multi-segment files stay cheap
USERNAME = "rotation-member"
INNER_STORAGE_VARIABLE = "ROTATION_WORKER_INNER_STORAGE"  # JSON of VAULT_INNER_STORAGE, if set


def plaintext(rng: random.Random) -> bytes:
    """Return a plaintext of a size drawn from the mix: empty, small, several segments."""
    kind = rng.random()
    if kind < 0.05:
        return b""
    if kind < 0.55:
        size = rng.randint(1, 900)
    elif kind < 0.9:
        size = rng.randint(2 * SEGMENT, 12 * SEGMENT)
    else:
        size = rng.randint(40 * SEGMENT, 80 * SEGMENT)
    return b"%PDF-1.4\n" + rng.randbytes(size)


def setup(count: int, seed: int) -> None:
    """Store `count` documents (v2 mostly, v1 and legacy some), print their digests."""
    from cryptography.fernet import Fernet
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from tests.helpers import document_upload
    from vault import fileformat
    from vault.documents import document_metadata_refresh
    from vault.keys import keyring
    from vault.models import Company, Document, Membership

    rng = random.Random(seed)
    company = Company.objects.create(name="Rotation Ltd")
    user = get_user_model().objects.create_user(USERNAME)
    Membership.objects.create(user=user, company=company)
    ring = keyring()
    key = ring.primary
    inner = default_storage.inner
    digests = {}
    for number in range(count):
        data = plaintext(rng)
        form = rng.random()
        if form < 0.15:
            # The case study's file: a Fernet token in MEDIA_ROOT, adopted with a row.
            name = inner.save(
                f"company_docs/legacy-{number}.pdf",
                ContentFile(Fernet(key.fernet_key).encrypt(data)),
            )
            document = Document(
                company=company,
                title=f"legacy {number}",
                original_filename=f"{number}.pdf",
                file=name,
            )
            document_metadata_refresh(document, save=False)
            document.save()
        else:
            segment_size = SEGMENT if len(data) > SEGMENT else None
            document = document_upload(
                company, data, f"doc-{number}.pdf", segment_size=segment_size
            )
            if form < 0.35:
                # Written before v2: the same stream without the document ID; the row kept its ID.
                ciphertext = b"".join(
                    fileformat.encrypt(
                        data,
                        ring.file_keys[key.key_id],
                        key.key_id,
                        segment_size=segment_size or fileformat.SEGMENT_SIZE,
                        _version=1,
                    )
                )
                inner.delete(document.file.name)
                inner.save(document.file.name, ContentFile(ciphertext))
                file_id = fileformat.classify(ciphertext).file_id.hex()
                Document.objects.filter(pk=document.pk).update(file_id=file_id)
        digests[str(document.pk)] = hashlib.sha256(data).hexdigest()
    print(json.dumps(digests))


def rotate() -> None:
    """Rotate the storage, announcing each document as it is handled."""
    from vault.rotation import storage_rotate

    def announce(items, total):
        print(f"started {total}", flush=True)
        for number, item in enumerate(items):
            yield item
            print(number, flush=True)

    report = storage_rotate(progress=announce, operator="crash-test", workers=4)
    print(json.dumps({"summary": report.summary(), "ok": report.ok}), flush=True)


def check() -> None:
    """Download every document through /vault/<path>; print digests and the storage's state."""
    from django.contrib.auth import get_user_model
    from django.core.files.storage import default_storage
    from django.test import Client

    from tests.helpers import response_close
    from vault import fileformat
    from vault.models import Document
    from vault.rotation import _walk

    client = Client()
    client.force_login(get_user_model().objects.get(username=USERNAME))
    digests = {}
    for document in Document.objects.all():
        response = client.get("/vault/" + document.file.name)
        if response.status_code != 200:
            digests[str(document.pk)] = f"HTTP {response.status_code}"
            continue
        try:
            digests[str(document.pk)] = hashlib.sha256(
                b"".join(response.streaming_content)
            ).hexdigest()
        except Exception as exc:  # a stream cut short: reported, the test fails on it
            digests[str(document.pk)] = f"{type(exc).__name__}: {exc}"
        finally:
            response_close(response)
    inner = default_storage.inner
    files = {}
    for name in _walk(inner):
        with inner.open(name, "rb") as handle:
            files[name] = fileformat.classify(handle.read(fileformat.CLASSIFY_BYTES)).kind.value
    print(json.dumps({"digests": digests, "files": files}), flush=True)


def import_setup(count: int, seed: int, manifest: str) -> None:
    """Leave `count` row-less files (plaintext, some legacy), write their manifest; print digests."""
    import csv

    from cryptography.fernet import Fernet
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from vault.keys import keyring
    from vault.models import Company, Membership

    rng = random.Random(seed)
    company = Company.objects.create(name="Import Ltd")
    user = get_user_model().objects.create_user(USERNAME)
    Membership.objects.create(user=user, company=company)
    fernet = Fernet(keyring().primary.fernet_key)
    digests = {}
    with open(manifest, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "company", "title"])
        for number in range(count):
            data = plaintext(rng)
            stored = fernet.encrypt(data) if rng.random() < 0.3 else data
            name = default_storage.inner.save(f"company_docs/{number:04d}.pdf", ContentFile(stored))
            writer.writerow([name, company.name, f"Old file {number}"])
            digests[name] = hashlib.sha256(data).hexdigest()
    print(json.dumps(digests))


def import_check(manifest: str) -> None:
    """Print, per manifest path, the SHA-256 a download gives, or why there is none yet."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from compliance.models import AccessEvent
    from tests.helpers import response_close
    from vault.models import Document

    client = Client()
    client.force_login(get_user_model().objects.get(username=USERNAME))
    imported = set(
        AccessEvent.objects.filter(action="import", reason__startswith="adopted").values_list(
            "document_id", flat=True
        )
    )
    result = {}
    for document in Document.objects.all():
        if document.pk not in imported:
            result[document.file.name] = "a row without its import event"
            continue
        response = client.get("/vault/" + document.file.name)
        try:
            if response.status_code == 200:
                result[document.file.name] = hashlib.sha256(
                    b"".join(response.streaming_content)
                ).hexdigest()
            else:
                result[document.file.name] = f"HTTP {response.status_code}"
        finally:
            response_close(response)
    print(json.dumps(result), flush=True)


def import_run(manifest: str) -> None:
    """Run the import, announcing each line as it is handled."""
    from vault.imports import manifest_import

    def announce(items, total):
        print(f"started {total}", flush=True)
        for number, item in enumerate(items):
            yield item
            print(number, flush=True)

    with open(manifest, newline="") as source:
        report = manifest_import(source, operator="crash-test", progress=announce)
    print(json.dumps({"summary": report.summary()}), flush=True)


def scan() -> None:
    """Run the full storage scan (every segment authenticated); print its verdict and findings."""
    from compliance.scan import storage_scan

    run = storage_scan(full=True, operator="crash-test")
    print(json.dumps({"verdict": run.verdict, "findings": run.finding_counts, "files": run.files}))


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    if os.environ.get(INNER_STORAGE_VARIABLE):
        # The bucket's test prefix, as the test's settings name it.
        from django.conf import settings

        settings.VAULT_INNER_STORAGE = json.loads(os.environ[INNER_STORAGE_VARIABLE])

    command, *args = argv
    if command == "setup":
        setup(int(args[0]), int(args[1]))
    elif command == "check":
        check()
    elif command == "scan":
        scan()
    elif command == "import-setup":
        import_setup(int(args[0]), int(args[1]), args[2])
    elif command == "check-import":
        import_check(args[0])
        import_run(args[0])
    elif command == "check-rotate":
        check()
        rotate()
    else:
        raise SystemExit(f"Unknown command {command!r}.")


if __name__ == "__main__":
    main(sys.argv[1:])
