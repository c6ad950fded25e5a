"""The encrypting upload handler: uploaded plaintext never touches the disk.

Django spools an upload above FILE_UPLOAD_MAX_MEMORY_SIZE to a plaintext temporary file. This handler
encrypts what it receives instead, as one Docvault stream (`vault.fileformat.Encryptor`) under a random key
and key ID that live only in memory, into a temporary file that therefore only ever holds ciphertext
nobody else can read. The file it returns decrypts that spool as it is read, segment by authenticated
segment, and EncryptedStorage re-encrypts the plaintext under the vault's primary key on save: the
plaintext exists only in memory, one segment at a time (AES-GCM at GB/s makes the second pass cheap).
"""

import logging
import os
import secrets
import tempfile
import unicodedata
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers

from . import fileformat

logger = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_MAX_UPLOAD_SIZE = 100 * MiB
FILENAME_MAX_LENGTH = 200
FILENAME_FALLBACK = "document"
# The name handed to the storage: the user's filename never reaches it, even as a hint.
STORED_NAME_HINT = "document"

_EXTENSION_MAX_LENGTH = 16


class UploadRejected(ValueError):
    """Raised on any attempt to store an upload that was refused while it was received."""


def upload_max_size() -> int:
    """Return the largest upload accepted, in bytes (VAULT_MAX_UPLOAD_SIZE, default 100 MiB)."""
    return int(getattr(settings, "VAULT_MAX_UPLOAD_SIZE", DEFAULT_MAX_UPLOAD_SIZE))


def size_format(size: int) -> str:
    """Return a size in binary units as people write limits: '100 MiB', '512 KiB', '1000 bytes'."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def upload_too_large_message(limit: int | None = None) -> str:
    """Return the error shown when an upload exceeds the limit."""
    return f"File too large: the limit is {size_format(upload_max_size() if limit is None else limit)}."


def filename_sanitise(name: str) -> str:
    """Return a filename safe to show and to offer back on download: no path, no control characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Whitespace (tabs, newlines) becomes one space; then categories C* go: control, format (bidi
    # overrides that disguise an extension), unassigned, private use.
    name = " ".join(name.split())
    name = "".join(char for char in name if not unicodedata.category(char).startswith("C"))
    name = name.strip().rstrip(". ")
    if len(name) > FILENAME_MAX_LENGTH:
        stem, extension = os.path.splitext(name)
        if 1 < len(extension) <= _EXTENSION_MAX_LENGTH:
            name = stem[: FILENAME_MAX_LENGTH - len(extension)].rstrip(". ") + extension
        else:
            name = name[:FILENAME_MAX_LENGTH].rstrip(". ")
    return name or FILENAME_FALLBACK


class _Spool:
    """An upload encrypted as it arrives into a temporary file, under a key that lives only in memory."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._key_id = secrets.token_bytes(fileformat.KEY_ID_SIZE)
        self._encryptor = fileformat.Encryptor(self._key, self._key_id)
        # No extension from the user's filename: the temporary name says nothing about the content.
        self.file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by close(), or its reader)
            prefix="docvault-upload-", suffix=".enc", dir=settings.FILE_UPLOAD_TEMP_DIR
        )
        self.size = 0

    def write(self, data: bytes) -> None:
        """Encrypt received plaintext into the temporary file."""
        self.file.write(self._encryptor.update(data))
        self.size += len(data)

    def reader(self) -> fileformat.DecryptingReader:
        """Seal the stream; return a seekable plaintext reader that owns (and deletes) the file."""
        self.file.write(self._encryptor.finalize())
        self.file.flush()
        self.file.seek(0)
        reader = fileformat.DecryptingReader(self.file, {self._key_id: self._key})
        if reader.size != self.size:
            reader.close()
            raise fileformat.DecryptionError("upload spool of the wrong size")
        return reader

    def close(self) -> None:
        """Delete the temporary file."""
        self.file.close()


class EncryptedUploadedFile(UploadedFile):
    """An upload held encrypted in a temporary file; reading it decrypts, closing it deletes it."""

    def __init__(self, reader: fileformat.DecryptingReader, name: str, **kwargs: Any) -> None:
        super().__init__(reader, name, size=reader.size, **kwargs)

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes | memoryview]:
        """Yield the plaintext from the start, one authenticated segment at a time."""
        self.seek(0)
        yield from self.file.segments()

    def multiple_chunks(self, chunk_size: int | None = None) -> bool:
        """Return whether the plaintext spans more than one segment."""
        return self.size > fileformat.SEGMENT_SIZE

    def open(self, mode: str | None = None) -> "EncryptedUploadedFile":
        """Rewind; a closed upload is gone and cannot be reopened."""
        if self.closed:
            raise ValueError("The upload is closed and its temporary file deleted.")
        self.seek(0)
        return self


class RejectedUploadedFile(UploadedFile):
    """An upload refused while it was received: a name, a size and the reason, but no content."""

    def __init__(self, name: str, size: int, error: str) -> None:
        super().__init__(None, name, size=size)
        self.error = error

    @property
    def closed(self) -> bool:
        """Return True: there is no content to read."""
        return True

    def open(self, mode: str | None = None) -> "RejectedUploadedFile":
        """Raise UploadRejected: nothing of the upload was kept."""
        raise UploadRejected(self.error)

    def read(self, size: int = -1) -> bytes:
        """Raise UploadRejected: nothing of the upload was kept."""
        raise UploadRejected(self.error)

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """Raise UploadRejected: nothing of the upload was kept."""
        raise UploadRejected(self.error)

    def close(self) -> None:
        """Do nothing: nothing of the upload was kept."""


def upload_error(upload: object) -> str | None:
    """Return why an upload was refused while it was received, or None if it was not."""
    return getattr(upload, "error", None) if isinstance(upload, RejectedUploadedFile) else None


class EncryptingUploadHandler(FileUploadHandler):
    """Encrypt every uploaded file while it is received; enforce VAULT_MAX_UPLOAD_SIZE as it arrives.

    Meant to be the only upload handler (FILE_UPLOAD_HANDLERS, or `request.upload_handlers`): it
    keeps every byte it receives from the handlers after it, so none of them can spool plaintext.
    """

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.max_size = upload_max_size()
        self._spool: _Spool | None = None
        self._received = 0
        self._rejected = False

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        """Start a spool for the next file, or refuse it at once if it announces too many bytes."""
        super().new_file(*args, **kwargs)
        self._discard()
        self._received = 0
        self._rejected = bool(self.content_length and self.content_length > self.max_size)
        if not self._rejected:
            self._spool = _Spool()
            # Django's parser closes `handler.file` when an upload is stopped.
            self.file = self._spool.file
        raise StopFutureHandlers

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        """Encrypt a received chunk into the spool."""
        self._received += len(raw_data)
        if self._rejected:
            return None
        if self._received > self.max_size:
            # Refused, and the rest of the file is read and dropped: the form can then say why.
            self._rejected = True
            self._discard()
            return None
        assert self._spool is not None
        try:
            self._spool.write(raw_data)
        except BaseException:
            self._discard()
            raise
        return None

    def file_complete(self, file_size: int) -> UploadedFile:
        """Return the upload as an EncryptedUploadedFile, or a RejectedUploadedFile if too large."""
        name = filename_sanitise(self.file_name or "")
        if self._rejected or self._spool is None:
            return RejectedUploadedFile(
                name, self._received, upload_too_large_message(self.max_size)
            )
        spool, self._spool = self._spool, None
        try:
            reader = spool.reader()
        except BaseException:
            spool.close()
            raise
        return EncryptedUploadedFile(
            reader,
            name,
            content_type=self.content_type,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )

    def upload_interrupted(self) -> None:
        """Delete the spool of a file whose upload never finished."""
        self._discard()

    def _discard(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()
