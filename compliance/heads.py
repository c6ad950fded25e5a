"""Published chain heads: the access log's latest (seq, hash), kept outside the database.

A verification alone cannot notice events cut from the end of the log, or a log deleted whole:
what is left still chains. So the head is appended, one line per publication, to a heads file in
the storage that holds the ciphertext (not in the database), under the reserved name HEADS_NAME:

    docvault-chain-head-v1 <seq> <hash> <published at, UTC ISO> <key ID> <HMAC-SHA256, hex>

The HMAC covers everything before it, under the chain-head sub-key of the named master key, so a
line cannot be edited or forged without a key; heads are not personal data and are not encrypted.
"""

import hashlib
import hmac
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, default_storage
from django.utils import timezone

from vault.keys import PURPOSE_CHAIN_HEAD, keyring
from vault.storage import EncryptedStorage

# Reserved in the inner storage: the storage scan must recognise it as the heads file, not a finding.
HEADS_NAME = "_docvault/chain-heads.log"
HEAD_FORMAT = "docvault-chain-head-v1"
# Seconds between automatic publications by the recorder (0 turns them off).
PUBLISH_INTERVAL_SETTING = "ACCESS_LOG_HEAD_PUBLISH_INTERVAL"
DEFAULT_PUBLISH_INTERVAL = 24 * 3600
# How often one process looks at the heads file's age: the recorder's check costs nothing between.
_AGE_CHECK_SECONDS = 3600
_LINE = re.compile(
    rf"{HEAD_FORMAT} (?P<seq>\d+) (?P<hash>[0-9a-f]{{64}}) "
    r"(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<key_id>[0-9a-f]{16}) (?P<mac>[0-9a-f]{64})"
)

logger = logging.getLogger(__name__)


class HeadsFileError(Exception):
    """Raised when the heads file holds a line that does not authenticate: it was edited."""


@dataclass(frozen=True)
class PublishedHead:
    """One published chain head."""

    seq: int
    hash: str
    published_at: datetime
    key_id: str

    @property
    def pair(self) -> tuple[int, str]:
        """Return (seq, hash), as chain_verify() takes an expected head."""
        return self.seq, self.hash


def heads_storage() -> Storage:
    """Return the storage that holds the heads file: the one that holds the ciphertext."""
    if isinstance(default_storage, EncryptedStorage):
        return default_storage.inner
    return EncryptedStorage().inner


def _head_keys() -> dict[str, bytes]:
    return {key.key_id_hex: key.subkey(PURPOSE_CHAIN_HEAD) for key in keyring().keys}


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("ascii"), hashlib.sha256).hexdigest()


def chain_head_publish(
    seq: int, head_hash: str, *, storage: Storage | None = None
) -> PublishedHead:
    """Append one authenticated head line to the heads file; return what was published."""
    if not re.fullmatch(r"[0-9a-f]{64}", head_hash) or seq < 0:
        raise ValueError("A chain head is a seq of 0 or more and a hash of 64 hex digits.")
    key = keyring().primary
    published_at = timezone.now().astimezone(UTC)
    text = f"{HEAD_FORMAT} {seq} {head_hash} {published_at:%Y-%m-%dT%H:%M:%S.%fZ} {key.key_id_hex}"
    line = f"{text} {_mac(key.subkey(PURPOSE_CHAIN_HEAD), text)}\n".encode("ascii")
    storage = storage or heads_storage()
    if isinstance(storage, FileSystemStorage):
        path = storage.path(HEADS_NAME)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # O_APPEND: concurrent publishers each add a whole line, none overwrites another.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    else:
        # Object stores cannot append: rewrite the object (a concurrent publisher may lose its
        # line; the next publication pins a later head anyway).
        previous = b""
        if storage.exists(HEADS_NAME):
            with storage.open(HEADS_NAME, "rb") as handle:
                previous = handle.read()
            if previous and not previous.endswith(b"\n"):
                previous += b"\n"
            if not getattr(storage, "file_overwrite", False):
                storage.delete(HEADS_NAME)
        storage.save(HEADS_NAME, ContentFile(previous + line))
    return PublishedHead(seq, head_hash, published_at, key.key_id_hex)


def chain_head_latest(
    *, storage: Storage | None = None, retired_key_ids: frozenset[str] = frozenset()
) -> PublishedHead | None:
    """Return the published head with the highest seq, or None; raise HeadsFileError if edited.

    Lines under a retired key (no longer configured, named in `retired_key_ids`) are skipped; a
    torn last line (no newline: a crash while appending) is ignored.
    """
    storage = storage or heads_storage()
    if not storage.exists(HEADS_NAME):
        return None
    handle = storage.open(HEADS_NAME, "rb")
    keys = _head_keys()
    latest: PublishedHead | None = None
    with handle:
        content = handle.read()
    lines = content.split(b"\n")
    # The piece after the last newline is empty, or a line whose append did not finish.
    for number, raw in enumerate(lines[:-1], start=1):
        match = _LINE.fullmatch(raw.decode("ascii", "replace"))
        if match is None:
            raise HeadsFileError(f"line {number} of {HEADS_NAME} is not a chain head: edited.")
        key = keys.get(match["key_id"])
        if key is None:
            if match["key_id"] in retired_key_ids:
                continue
            raise HeadsFileError(
                f"line {number} of {HEADS_NAME} names key {match['key_id']}, which is neither "
                "configured nor retired: forged."
            )
        text = match[0].rsplit(" ", 1)[0]
        if not hmac.compare_digest(_mac(key, text), match["mac"]):
            raise HeadsFileError(
                f"line {number} of {HEADS_NAME} does not authenticate: it was edited or forged."
            )
        seq = int(match["seq"])
        if latest is None or seq >= latest.seq:
            at = datetime.strptime(match["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            latest = PublishedHead(seq, match["hash"], at, match["key_id"])
    return latest


_next_age_check = 0.0


def chain_head_publish_if_due(seq: int, head_hash: str) -> bool:
    """Publish this head if the heads file is older than the interval; return whether it did.

    Called by the recorder after each durable append: between hourly looks at the file's age it
    costs one clock read. A heads file must exist (the first verification or
    `audit_publish_head` starts it). Never raises: the access is recorded already.
    """
    global _next_age_check
    now = time.monotonic()
    if now < _next_age_check:
        return False
    _next_age_check = now + _AGE_CHECK_SECONDS
    interval = int(getattr(settings, PUBLISH_INTERVAL_SETTING, DEFAULT_PUBLISH_INTERVAL) or 0)
    if interval <= 0:
        return False
    try:
        storage = heads_storage()
        if not storage.exists(HEADS_NAME):
            return False
        if timezone.now() - storage.get_modified_time(HEADS_NAME) < timedelta(seconds=interval):
            return False
        chain_head_publish(seq, head_hash, storage=storage)
    except Exception:
        logger.exception("The chain head could not be published to %s.", HEADS_NAME)
        return False
    return True


def chain_head_schedule_reset() -> None:
    """Make the recorder look at the heads file's age on its next append (tests, after a restore)."""
    global _next_age_check
    _next_age_check = 0.0


def chain_head_publish_current(*, using: str | None = None) -> PublishedHead | None:
    """Publish the log's last event as the head, unverified (it pins it); None if the log is empty."""
    from .models import access_event_latest

    last = access_event_latest(using=using)
    if last is None:
        return None
    return chain_head_publish(last.seq, last.hash)
