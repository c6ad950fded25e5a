"""Object stores (S3 and compatibles) as the vault's inner storage: ranged reads, streamed writes.

django-storages' `S3Storage` holds the ciphertext, configured by its own settings (`AWS_*`). This
module changes only how an object is read. `S3File` downloads the whole object on its first read,
so a `Range` request for one segment of a 1 GB file would fetch 1 GB. The vault instead opens each
object for reading as a `RangedObjectFile`: one small ranged GET for the head when it is opened
(existence, size, ETag and the file's header in one round trip), then one ranged GET for each read
the head cannot answer, of the bytes it lacks. The decrypting reader reads one whole segment per
call, so a download fetches each segment with one GET and every byte once, and a Range request only
the segments it needs.

Writes stream through boto3's managed transfer (`S3Storage._save`): one PUT below the multipart
threshold, a multipart upload above it, with at most `UPLOAD_CHUNKS_IN_MEMORY` parts of
`UPLOAD_PART_SIZE` held at once (the encrypting reader is not seekable, so boto3 buffers the parts
it sends, with `UPLOAD_CONCURRENCY` parts in flight). An object becomes visible only when its PUT
or CompleteMultipartUpload succeeds, and replaces an earlier object under the same key whole:
readers see the old object or the new one, never part of one; `object_replace()` writes such a
replacement (rotation, import). A reader pins the ETag it opened, so an object replaced while it
is being read fails the next read (`ObjectChangedError`) instead of mixing two files' bytes.

Nothing here imports boto3 unless the configured backend is django-storages' S3Storage.
"""

import functools
import io
import sys
from typing import Any

from django.core.files import File
from django.core.files.storage import Storage

from .fileformat import CLASSIFY_BYTES

# The first GET reads this much: enough to classify the file and parse its header.
HEAD_BYTES = CLASSIFY_BYTES
UPLOAD_PART_SIZE = 8 * 1024 * 1024
UPLOAD_CHUNKS_IN_MEMORY = 2
UPLOAD_CONCURRENCY = 2


class ObjectChangedError(OSError):
    """The object was replaced or removed while it was being read."""


class RangedObjectFile(io.RawIOBase):
    """A seekable, read-only file over one object, reading it with ranged GETs.

    Each `read(n)` that the last fetched range cannot answer fetches the `n` bytes asked for
    (fewer at the end), less those at its start that the last range holds: callers should read in
    large pieces, as the decrypting reader does.
    Raises FileNotFoundError when the object does not exist.
    """

    def __init__(self, client: Any, bucket: str, key: str, head_bytes: int = HEAD_BYTES) -> None:
        super().__init__()
        self.name = key
        self._client = client
        self._bucket = bucket
        self._key = key
        self._pos = 0
        self._buffer = b""
        self._buffer_start = 0
        self.size = 0
        self.etag = ""
        self._head_fetch(head_bytes)

    # io.RawIOBase ------------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_closed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_closed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        """Return up to `size` bytes from the current position (all the rest if negative)."""
        self._check_closed()
        end = self.size if size is None or size < 0 else min(self._pos + size, self.size)
        if end <= self._pos:
            return b""
        start = self._pos
        buffer_end = self._buffer_start + len(self._buffer)
        if self._buffer_start <= start < buffer_end < end:
            # Only what the last range lacks: the first segment starts inside the head's GET.
            kept = self._buffer[start - self._buffer_start :]
            self._buffer = kept + self._get(buffer_end, end)
            self._buffer_start = start
        elif not (self._buffer_start <= start and end <= buffer_end):
            self._buffer = self._get(start, end)
            self._buffer_start = start
        offset = start - self._buffer_start
        if offset == 0 and end - start == len(self._buffer):
            data = self._buffer  # the whole fetched range: no copy
        else:
            data = self._buffer[offset : end - self._buffer_start]
        self._pos = start + len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._buffer = b""
        super().close()

    # Fetching ----------------------------------------------------------------------------------

    def _head_fetch(self, head_bytes: int) -> None:
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes=0-{head_bytes - 1}"
            )
        except ClientError as exc:
            status = _status(exc)
            if status == 404:
                raise FileNotFoundError(f"No such object: {self._key}") from None
            if status != 416:
                raise
            # An empty object has no byte to range over.
            head = self._client.head_object(Bucket=self._bucket, Key=self._key)
            self.size, self.etag = head["ContentLength"], head.get("ETag", "")
            return
        with response["Body"] as body:
            self._buffer = body.read()
        self.size = _total_size(response, len(self._buffer))
        self.etag = response.get("ETag", "")

    def _get(self, start: int, end: int) -> bytes:
        from botocore.exceptions import ClientError

        extra = {"IfMatch": self.etag} if self.etag else {}
        try:
            response = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={start}-{end - 1}", **extra
            )
        except ClientError as exc:
            if _status(exc) in (404, 412, 416):
                raise ObjectChangedError(
                    f"{self._key} was replaced or removed while being read"
                ) from None
            raise
        with response["Body"] as body:
            data = body.read()
        if len(data) != end - start:
            raise ObjectChangedError(f"{self._key}: asked for {end - start} bytes, got {len(data)}")
        return data

    def _check_closed(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")


def _status(exc: Exception) -> int | None:
    return getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")


def _total_size(response: dict[str, Any], got: int) -> int:
    # "bytes 0-63/12345": the total follows the slash. A server that ignores Range sends it all.
    content_range = response.get("ContentRange") or ""
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else got


class RangedReadMixin:
    """Open objects for reading as RangedObjectFile; bound the memory of streamed uploads."""

    def _open(self, name: str, mode: str = "rb") -> File:
        if mode != "rb":
            return super()._open(name, mode)  # type: ignore[misc]
        from storages.utils import clean_name

        key = self._normalize_name(clean_name(name))  # type: ignore[attr-defined]
        client = self.connection.meta.client  # type: ignore[attr-defined]
        return File(RangedObjectFile(client, self.bucket_name, key), name)  # type: ignore[attr-defined]

    def get_default_settings(self) -> dict[str, Any]:
        defaults = super().get_default_settings()  # type: ignore[misc]
        if defaults.get("transfer_config") is None:
            from boto3.s3.transfer import TransferConfig

            config = TransferConfig(
                multipart_threshold=UPLOAD_PART_SIZE,
                multipart_chunksize=UPLOAD_PART_SIZE,
                max_concurrency=UPLOAD_CONCURRENCY,
            )
            # s3transfer's bound on the parts a non-seekable upload holds; boto3 does not pass it on.
            config.max_in_memory_upload_chunks = UPLOAD_CHUNKS_IN_MEMORY
            defaults["transfer_config"] = config
        return defaults


def object_replace(storage: Storage, name: str, content: File) -> str:
    """Write `content` under exactly `name` in the bucket, replacing any object there whole.

    `Storage.save()` picks another name when one is taken (AWS_S3_FILE_OVERWRITE is off). A PUT or a
    completed multipart upload to the same key swaps the object atomically: readers see the old
    object or the new one. Raise TypeError for a storage that is not an object store.
    """
    if not isinstance(storage, RangedReadMixin):
        raise TypeError(f"object_replace() needs an S3 storage, not {type(storage).__name__}")
    return storage._save(name, content)  # type: ignore[attr-defined]


def storage_class_ranged(backend: type[Storage]) -> type[Storage]:
    """Return the ranged-reading subclass of an S3Storage class, any other class unchanged."""
    s3 = sys.modules.get("storages.backends.s3")
    if s3 is None or not issubclass(backend, s3.S3Storage) or issubclass(backend, RangedReadMixin):
        return backend
    return _ranged_subclass(backend)


_RANGED: dict[str, type[Storage]] = {}


@functools.cache
def _ranged_subclass(backend: type[Storage]) -> type[Storage]:
    name = f"Ranged{backend.__name__}"
    ranged = type(name, (RangedReadMixin, backend), {"__module__": __name__, "__qualname__": name})
    _RANGED.setdefault(name, ranged)
    return ranged


def __getattr__(name: str) -> type[Storage]:
    # The subclasses are made on demand; naming one here (vault.objectstore.RangedS3Storage as a
    # backend, or pickle finding its class) makes it too.
    if name == "RangedS3Storage" and name not in _RANGED:
        from storages.backends.s3 import S3Storage

        return storage_class_ranged(S3Storage)
    if name in _RANGED:
        return _RANGED[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
