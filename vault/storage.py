"""EncryptedStorage: every FileField encrypted at rest, transparently.

Wraps an inner storage (the local MEDIA_ROOT by default, any Django storage by setting) that only
ever sees ciphertext. Opening a file records the access first and returns a decrypting reader.

What a stored file is (size, sniffed type, key ID, file ID, version, bound document) comes from the
file only: `_save` reports it as it writes (`document_save()` returns it, with the document bound
into the header), `describe()` reads it back from an existing file.
"""

import contextvars
import io
import posixpath
import secrets
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
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
from .mime import SNIFF_BYTES, mime_sniff
from .objectstore import storage_class_ranged

STORED_NAME_BYTES = 16
MiB = 1 << 20
DEFAULT_LEGACY_MAX_SIZE = 256 * MiB
NOT_BOUND = "the stored file is not the one recorded for this document"
LEGACY_OFF = "legacy Fernet file refused: VAULT_LEGACY_READ is off"


@dataclass(frozen=True)
class StoredFile:
    """What a stored file is, read from the file itself: the one source of a document's metadata.

    `version` is 2 or 1 for Docvault files, 0 for a legacy Fernet file (which has no key ID nor
    file ID); `document_id` is the document a v2 file was written for, None if it names none.
    """

    name: str
    size: int
    mime_type: str
    key_id: str
    file_id: str
    version: int
    document_id: uuid.UUID | None


class DecryptedFile(File):
    """A decrypting file over a stored ciphertext; its reader records any failure it meets."""

    def __init__(
        self,
        reader: BinaryIO,
        name: str,
        key_id: str,
        file_id: str = "",
        *,
        version: int = 0,
        document_id: uuid.UUID | None = None,
        size: int | None = None,
    ) -> None:
        super().__init__(reader, name)
        self.key_id = key_id
        self.file_id = file_id
        self.version = version
        self.document_id = document_id
        if size is not None:
            self.size = size
        self.mode = "rb"
        # Plaintext handed out by segments(): what a failure had sent when it struck.
        self.delivered = 0

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """Yield the plaintext from the start, one authenticated segment at a time."""
        self.seek(0)
        yield from self.segments()

    def segments(self, *, read_ahead: int = 0) -> Iterator[bytes]:
        """Yield the plaintext from the current position, one authenticated segment at a time.

        `read_ahead` segments are decrypted ahead in a thread (see DecryptingReader.segments):
        for large files only, where it overlaps decryption with the caller's socket writes.
        """
        segments = getattr(self.file, "segments", None)
        if segments is None:
            pieces = iter(lambda: self.file.read(fileformat.SEGMENT_SIZE), b"")
        elif read_ahead > 0:
            pieces = segments(read_ahead=read_ahead)
        else:
            pieces = segments()
        try:
            for piece in pieces:
                self.delivered += len(piece)
                yield piece
        finally:
            # Stops a read-ahead thread now, before anyone closes the file under it.
            close = getattr(pieces, "close", None)
            if close is not None:
                close()


def legacy_read_enabled() -> bool:
    """Return whether legacy Fernet files are read (VAULT_LEGACY_READ, default on)."""
    return bool(getattr(settings, "VAULT_LEGACY_READ", True))


def legacy_max_size() -> int:
    """Return the largest legacy Fernet file read, whole, into memory (VAULT_LEGACY_MAX_SIZE)."""
    return int(getattr(settings, "VAULT_LEGACY_MAX_SIZE", DEFAULT_LEGACY_MAX_SIZE))


def decrypting_open(handle: BinaryIO, name: str) -> DecryptedFile:
    """Return a decrypting file over `handle`, recording the access first; close it on failure.

    Every decryption passes here: the storage, the CLI and rotation. The event is written before a
    byte of plaintext can leave; if it cannot be written, RecordError is raised and nothing is read.
    When the access context names a `bound_document`, a file written for any other document is
    refused and recorded; its `plan` (a download's Range) is judged against the real size.
    """
    context = access_context_current()
    key_id = ""
    opened: list[DecryptedFile] = []

    def failure_record(exc: DecryptionError) -> None:
        sent = opened[0].delivered if opened else 0
        failed = replace(context, bytes_planned=sent)
        access_record(
            Access(Outcome.FAILED, failed, stored_name=name, key_id=key_id, reason=exc.reason)
        )

    try:
        ring = keyring()
        reader = fileformat.decrypt_open(
            handle,
            ring.file_keys,
            ring.fernet_keys,
            on_failure=failure_record,
            legacy_max_size=legacy_max_size(),
            legacy_refusal=None if legacy_read_enabled() else LEGACY_OFF,
        )
    except DecryptionError as exc:
        handle.close()
        failure_record(exc)
        raise
    except BaseException:
        handle.close()
        raise
    try:
        file = _decrypted_file(reader, name)
        key_id = file.key_id
        if context.bound_document is not None:
            bound_check(file, context.bound_document)
        if context.plan is not None:
            action, count = context.plan(file.size)
            context = replace(context, action=action, bytes_planned=count)
    except DecryptionError as exc:
        reader.close()
        failure_record(exc)
        raise
    except BaseException:
        reader.close()
        raise
    try:
        access_record(
            Access(Outcome.ALLOWED, context, stored_name=name, key_id=key_id, reason=context.reason)
        )
    except BaseException:
        reader.close()
        raise
    opened.append(file)
    return file


def bound_check(file: DecryptedFile, document: Any) -> None:
    """Raise DecryptionError unless `file` was written for `document`; legacy files name none.

    A v2 file names its document in its authenticated header; a v1 file is known by the file ID
    the row recorded when it was written (an empty one matches nothing).
    """
    if file.version >= 2:
        bound = file.document_id == document.pk
    elif file.version == 1:
        bound = bool(document.file_id) and file.file_id == document.file_id
    else:
        return  # legacy Fernet: bound once rotation or import rewrites it
    if not bound:
        raise DecryptionError(NOT_BOUND)


def _decrypted_file(reader: Any, name: str) -> DecryptedFile:
    """Wrap a reader of decrypt_open(): its key ID, file ID, version, bound document and size."""
    if isinstance(reader, fileformat.DecryptingReader):
        return DecryptedFile(
            reader,
            name,
            reader.key_id.hex(),
            reader.file_id.hex(),
            version=reader.version,
            document_id=_document_uuid(reader.document_id),
            size=reader.size,
        )
    # A legacy file, decrypted whole into memory: its end is its size.
    size = reader.seek(0, io.SEEK_END)
    reader.seek(0)
    return DecryptedFile(reader, name, "", "", version=0, size=size)


def _document_uuid(value: bytes | None) -> uuid.UUID | None:
    """Return the document a header names, None for none (absent, or all zeros)."""
    if not value or not any(value):
        return None
    return uuid.UUID(bytes=bytes(value))


def stored_file_describe(
    name: str,
    head: bytes,
    size: int,
    *,
    key_id: str,
    file_id: str,
    version: int,
    document_id: uuid.UUID | None,
) -> StoredFile:
    """Return a StoredFile from what its writer or reader found; the type is sniffed here, once."""
    return StoredFile(
        name=name,
        size=size,
        mime_type=mime_sniff(bytes(head[:SNIFF_BYTES])),
        key_id=key_id,
        file_id=file_id,
        version=version,
        document_id=document_id,
    )


def _header_fields(classification: fileformat.Classification) -> dict[str, Any]:
    """Return the key ID, file ID, version and bound document a stored header names."""
    if not classification.is_docvault:
        return {"key_id": "", "file_id": "", "version": 0, "document_id": None}
    return {
        "key_id": classification.key_id.hex() if classification.key_id else "",
        "file_id": classification.file_id.hex() if classification.file_id else "",
        "version": classification.version,
        "document_id": _document_uuid(classification.document_id),
    }


class _Tally:
    """Plaintext chunks passed through, counted, their first bytes kept for sniffing."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.size = 0
        self.head = bytearray()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            if len(self.head) < SNIFF_BYTES:
                self.head += chunk[: SNIFF_BYTES - len(self.head)]
            yield chunk


@dataclass
class _Write:
    """A save in progress: the document it writes for, and what it wrote, once written."""

    document_id: uuid.UUID | None
    stored: StoredFile | None = None


_writing: contextvars.ContextVar[_Write | None] = contextvars.ContextVar(
    "vault_storage_write", default=None
)


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

    def document_save(
        self, name: str, content: File, document_id: uuid.UUID, max_length: int | None = None
    ) -> StoredFile:
        """Save `content` encrypted for the document `document_id`; return what was written."""
        write = _Write(document_id)
        token = _writing.set(write)
        try:
            self.save(name, content, max_length=max_length)
        finally:
            _writing.reset(token)
        assert write.stored is not None
        return write.stored

    def _save(self, name: str, content: File) -> str:
        ring = keyring()
        key = ring.primary
        file_key = ring.file_keys[key.key_id]
        write = _writing.get()
        # A file written for a document names it in its authenticated header, for good: whoever
        # points another row at it, it is never served as that row's file.
        document_id = write.document_id if write is not None else None
        options: dict[str, Any] = {
            "document_id": document_id.bytes if document_id else fileformat.NO_DOCUMENT
        }
        if self.segment_size:
            options["segment_size"] = self.segment_size
        if hasattr(content, "seek") and getattr(content, "seekable", lambda: True)():
            content.seek(0)
        plaintext = _Tally(content.chunks())
        inner = self.inner
        if isinstance(inner, FileSystemStorage):
            ciphertext = fileformat.encrypt(plaintext, file_key, key.key_id, **options)
            # A temporary file beside the target, fsynced, then linked: whole or not at all.
            with atomic_write(
                inner.path(name), inner.file_permissions_mode, inner.directory_permissions_mode
            ) as target:
                for piece in ciphertext:
                    target.write(piece)
        else:
            # Object stores publish an object only once its upload completes: atomic by nature.
            with fileformat.EncryptingReader(plaintext, file_key, key.key_id, **options) as reader:
                name = inner.save(name, File(reader, name))
        context = access_context_current()
        if context.action == Action.OPEN:
            context = replace(context, action=Action.UPLOAD)
        try:
            # The header as stored, not as meant: the file is the source of its own metadata.
            stored = stored_file_describe(
                name, plaintext.head, plaintext.size, **_header_fields(self.classify(name))
            )
            access_record(Access(Outcome.ALLOWED, context, stored_name=name, key_id=stored.key_id))
        except BaseException:
            inner.delete(name)
            raise
        if write is not None:
            write.stored = stored
        return name

    # Reading -----------------------------------------------------------------------------------

    def _open(self, name: str, mode: str = "rb") -> DecryptedFile:
        if mode not in ("r", "rb"):
            raise ValueError("EncryptedStorage files open read-only ('rb').")
        keyring()  # No key configured: fail before touching storage.
        return decrypting_open(self.inner.open(name, "rb"), name)

    def describe(self, name: str) -> StoredFile:
        """Return what the stored file is, read from it: a decryption, recorded as any other."""
        with self.open(name) as file:
            return stored_file_describe(
                name,
                file.read(SNIFF_BYTES),
                file.size,
                key_id=file.key_id,
                file_id=file.file_id,
                version=file.version,
                document_id=file.document_id,
            )

    def size(self, name: str) -> int:
        """Return the plaintext size; Docvault files need no decryption for it."""
        with self.inner.open(name, "rb") as handle:
            kind = fileformat.classify(handle.read(fileformat.CLASSIFY_BYTES))
        if kind.is_docvault:
            try:
                return fileformat.plaintext_size(
                    self.inner.size(name), kind.segment_size, version=kind.version
                )
            except ValueError:  # a header naming an impossible segment size: not our file
                raise DecryptionError(f"bad segment size {kind.segment_size}") from None
        with self.open(name) as decrypted:
            return decrypted.size

    def classify(self, name: str) -> fileformat.Classification:
        """Return what the stored file is (v2 or v1 and its header, legacy Fernet, unknown)."""
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
