"""EncryptedStorage: every FileField encrypted at rest, transparently.

Wraps an inner storage (the local MEDIA_ROOT by default, any Django storage by setting) that only
ever sees ciphertext. Opening a file records the access first and returns a decrypting reader.
"""

import posixpath
import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, BinaryIO

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.core.files.utils import validate_file_name
from django.urls import reverse
from django.utils.deconstruct import deconstructible
from django.utils.module_loading import import_string

from . import fileformat
from .access import Access, Action, Outcome, access_context_current, access_record
from .atomic import atomic_write
from .fileformat import DecryptionError
from .keys import keyring
from .objectstore import storage_class_ranged

STORED_NAME_BYTES = 16


class DecryptedFile(File):
    """A decrypting file over a stored ciphertext; its reader records any failure it meets."""

    def __init__(self, reader: BinaryIO, name: str, key_id: str, file_id: str = "") -> None:
        super().__init__(reader, name)
        self.key_id = key_id
        self.file_id = file_id
        self.mode = "rb"

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """Yield the plaintext from the start, one authenticated segment at a time."""
        self.seek(0)
        yield from self.segments()

    def segments(self) -> Iterator[bytes]:
        """Yield the plaintext from the current position, one authenticated segment at a time."""
        segments = getattr(self.file, "segments", None)
        if segments is not None:
            yield from segments()
        else:
            while data := self.file.read(fileformat.SEGMENT_SIZE):
                yield data


def decrypting_open(handle: BinaryIO, name: str) -> DecryptedFile:
    """Return a decrypting file over `handle`, recording the access first; close it on failure.

    Every decryption passes here: the storage, the CLI and rotation. The event is written before a
    byte of plaintext can leave; if it cannot be written, RecordError is raised and nothing is read.
    """
    context = access_context_current()
    key_id = ""

    def failure_record(exc: DecryptionError) -> None:
        access_record(
            Access(Outcome.FAILED, context, stored_name=name, key_id=key_id, reason=exc.reason)
        )

    try:
        ring = keyring()
        reader = fileformat.decrypt_open(
            handle, ring.file_keys, ring.fernet_keys, on_failure=failure_record
        )
    except DecryptionError as exc:
        handle.close()
        failure_record(exc)
        raise
    except BaseException:
        handle.close()
        raise
    key_id = reader.key_id.hex() if isinstance(getattr(reader, "key_id", None), bytes) else ""
    file_id = reader.file_id.hex() if isinstance(getattr(reader, "file_id", None), bytes) else ""
    if context.file_id and file_id != context.file_id:
        reader.close()
        mismatch = DecryptionError("the stored file is not the one recorded for this document")
        failure_record(mismatch)
        raise mismatch
    try:
        access_record(Access(Outcome.ALLOWED, context, stored_name=name, key_id=key_id))
    except BaseException:
        reader.close()
        raise
    return DecryptedFile(reader, name, key_id, file_id)


@deconstructible(path="vault.storage.EncryptedStorage")
class EncryptedStorage(Storage):
    """A storage that encrypts on save and decrypts, recorded, on open."""

    def __init__(self, inner: Storage | None = None, segment_size: int | None = None) -> None:
        self._inner = inner
        self._inner_conf: object = None
        self._inner_cached: Storage | None = None
        self.segment_size = segment_size

    @property
    def inner(self) -> Storage:
        """Return the storage that holds the ciphertext."""
        if self._inner is not None:
            return self._inner
        conf = settings.VAULT_INNER_STORAGE
        # Compared by identity so that override_settings in tests swaps the inner storage.
        if self._inner_cached is None or self._inner_conf is not conf:
            # On an object store, reads fetch byte ranges instead of whole objects.
            backend = storage_class_ranged(import_string(conf["BACKEND"]))
            self._inner_cached = backend(**conf.get("OPTIONS", {}))
            self._inner_conf = conf
        return self._inner_cached

    # Names -------------------------------------------------------------------------------------

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """Return a random stored name in the folder of `name`; the user's filename is dropped."""
        validate_file_name(name, allow_relative_path=True)
        folder = posixpath.dirname(name.replace("\\", "/"))
        while True:
            candidate = posixpath.join(folder, secrets.token_hex(STORED_NAME_BYTES))
            if max_length is not None and len(candidate) > max_length:
                raise SuspiciousFileOperation(
                    f"Storage can not find an available filename for {name!r} within "
                    f"{max_length} characters."
                )
            if not self.inner.exists(candidate):
                return candidate

    # Writing -----------------------------------------------------------------------------------

    def _save(self, name: str, content: File) -> str:
        ring = keyring()
        key = ring.primary
        file_key = ring.file_keys[key.key_id]
        options: dict[str, Any] = {}
        if self.segment_size:
            options["segment_size"] = self.segment_size
        if hasattr(content, "seek") and getattr(content, "seekable", lambda: True)():
            content.seek(0)
        inner = self.inner
        if isinstance(inner, FileSystemStorage):
            ciphertext = fileformat.encrypt(content.chunks(), file_key, key.key_id, **options)
            # A temporary file beside the target, fsynced, then linked: whole or not at all.
            with atomic_write(
                inner.path(name), inner.file_permissions_mode, inner.directory_permissions_mode
            ) as target:
                for piece in ciphertext:
                    target.write(piece)
        else:
            # Object stores publish an object only once its upload completes: atomic by nature.
            with fileformat.EncryptingReader(
                content.chunks(), file_key, key.key_id, **options
            ) as reader:
                name = inner.save(name, File(reader, name))
        context = access_context_current()
        if context.action == Action.OPEN:
            context = replace(context, action=Action.UPLOAD)
        try:
            access_record(Access(Outcome.ALLOWED, context, stored_name=name, key_id=key.key_id_hex))
        except BaseException:
            inner.delete(name)
            raise
        return name

    # Reading -----------------------------------------------------------------------------------

    def _open(self, name: str, mode: str = "rb") -> DecryptedFile:
        if mode not in ("r", "rb"):
            raise ValueError("EncryptedStorage files open read-only ('rb').")
        keyring()  # No key configured: fail before touching storage.
        return decrypting_open(self.inner.open(name, "rb"), name)

    def size(self, name: str) -> int:
        """Return the plaintext size; v1 files need no decryption for it."""
        with self.inner.open(name, "rb") as handle:
            kind = fileformat.classify(handle.read(fileformat.CLASSIFY_BYTES))
        if kind.kind is fileformat.Kind.V1:
            try:
                return fileformat.plaintext_size(self.inner.size(name), kind.segment_size)
            except ValueError:  # a header naming an impossible segment size: not our file
                raise DecryptionError(f"bad segment size {kind.segment_size}") from None
        with self.open(name) as decrypted:
            return decrypted.size

    def classify(self, name: str) -> fileformat.Classification:
        """Return what the stored file is (v1 and its key ID, legacy Fernet, unknown)."""
        with self.inner.open(name, "rb") as handle:
            return fileformat.classify(handle.read(fileformat.CLASSIFY_BYTES))

    # Delegated ---------------------------------------------------------------------------------

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        return self.inner.listdir(path)

    def url(self, name: str | None) -> str:
        """Return the vault route that serves this file after a permission check."""
        return reverse("vault:serve", kwargs={"path": name})

    def get_accessed_time(self, name: str) -> Any:
        return self.inner.get_accessed_time(name)

    def get_created_time(self, name: str) -> Any:
        return self.inner.get_created_time(name)

    def get_modified_time(self, name: str) -> Any:
        return self.inner.get_modified_time(name)
