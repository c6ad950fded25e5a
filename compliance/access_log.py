"""The access log's recorder and verifier: one hash chain over every AccessEvent.

Event n carries seq = n, prev_hash = the hash of event n-1 (64 zeros for event 1), chain_key_id =
the ID of the master key whose audit sub-key made its hash, and

    hash = HMAC-SHA256(audit sub-key, canonical JSON of every field below, seq and prev_hash included)

Appends are serialised by the database (SQLite: the IMMEDIATE transaction's write lock; PostgreSQL:
a transaction-scoped advisory lock), so concurrent processes never fork the chain nor leave a gap.
"""

import hashlib
import hmac
import ipaddress
import itertools
import json
import operator
import re
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import NotSupportedError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from vault.access import Access, AccessContext, Action, Outcome, RecordError, request_id_get
from vault.keys import PURPOSE_AUDIT_CHAIN, KeyRing, keyring

from . import heads
from .models import GENESIS_HASH, AccessEvent, ChainCheck, ChainCheckpoint, ChainStatus

CHAIN_FORMAT = "docvault-access-event-v1"
# The unkeyed link digest: SHA-256 over the previous digest, an event's canonical form and its hash.
LINK_FORMAT = b"docvault-chain-link-v1"
PROXY_COUNT_SETTING = "ACCESS_LOG_PROXY_COUNT"
# Key IDs (hex) of chain keys removed from VAULT_KEYS on purpose: their events cannot be verified
# any more, and say so, instead of counting as forged.
RETIRED_KEYS_SETTING = "ACCESS_LOG_RETIRED_KEY_IDS"
_HASH_FORMAT = re.compile(r"[0-9a-f]{64}")
# An arbitrary constant ("DocVault" in ASCII): the advisory lock that serialises appends.
POSTGRES_LOCK_KEY = 0x446F_6356_6175_6C74

# The fields the HMAC covers, in the order they are documented; the JSON keys are sorted anyway.
HASHED_FIELDS = (
    "seq",
    "prev_hash",
    "chain_key_id",
    "when",
    "actor_id",
    "actor_username",
    "action",
    "document_id",
    "document_title",
    "stored_name",
    "outcome",
    "reason",
    "staff_read",
    "client_ip",
    "user_agent",
    "key_id",
    "bytes_served",
    "duration_ms",
    "request_id",
)

# Writes that belong to the caller's transaction: if it rolls back, so does their record. Any
# other record (every read, every refusal, every failure) must be committed before the recorder
# returns, so it refuses to run inside an atomic block.
TRANSACTIONAL_ACTIONS = frozenset(
    {
        Action.UPLOAD,
        Action.DELETE,
        Action.SHARE,
        Action.UNSHARE,
        Action.CLI_ENCRYPT,
        Action.ROTATE,
        Action.IMPORT,
        Action.REPORT_GENERATED,
        # Account changes commit or roll back with their record (the admin's atomic blocks).
        Action.PASSWORD_CHANGE,
        Action.MEMBERSHIP_ADD,
        Action.MEMBERSHIP_REMOVE,
        Action.PERMISSION_GRANT,
        Action.PERMISSION_REVOKE,
        # Retention: the prune event and the legal hold commit or roll back with their change.
        Action.PRUNE,
        Action.LEGAL_HOLD,
    }
)

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_chain_keys_cache: "weakref.WeakKeyDictionary[KeyRing, dict[str, bytes]]" = (
    weakref.WeakKeyDictionary()
)


# Recording ---------------------------------------------------------------------------------------


def access_event_record(access: Access) -> AccessEvent:
    """Append one access to the chain and commit it; raise if it cannot be recorded durably."""
    return _event_record(access)


# Called with the connection and the head (seq, hash) while the append holds the chain's lock;
# returns values to set on the event before it is hashed (the seal's reason).
UnderLock = Callable[[BaseDatabaseWrapper, int, str], Mapping[str, Any]]


def _event_record(access: Access, under_lock: UnderLock | None = None) -> AccessEvent:
    context = access.context
    action = Action(context.action)
    outcome = Outcome(access.outcome)
    request = context.request
    key_id = access.key_id.hex() if isinstance(access.key_id, bytes) else access.key_id
    values: dict[str, Any] = dict.fromkeys((*HASHED_FIELDS, "hash"))
    values.update(
        action=action.value,
        outcome=outcome.value,
        reason=_text(access.reason, 500),
        staff_read=bool(context.staff_read),
        key_id=_text(key_id, 16),
        bytes_served=_byte_count(context.bytes_planned),
        stored_name=_text(access.stored_name, 255),
        document_title="",
        actor_username="",
        user_agent="",
        request_id="",
    )

    user = context.user if context.user is not None else getattr(request, "user", None)
    if getattr(user, "is_authenticated", False):
        values["actor_id"] = user.pk
        values["actor_username"] = _text(user.get_username(), 150)
    else:
        # Commands record the operating-system user who ran them.
        values["actor_username"] = _text(context.extra.get("operator", ""), 150)

    document = context.document
    if document is not None:
        values["document_id"] = document.pk
        values["document_title"] = _text(getattr(document, "title", ""), 200)
        if not values["stored_name"]:
            file_name = getattr(getattr(document, "file", None), "name", "")
            values["stored_name"] = _text(file_name, 255)

    if request is not None:
        values["client_ip"] = client_ip_get(request)
        values["user_agent"] = _text(request.META.get("HTTP_USER_AGENT", ""), 255)
        values["request_id"] = request_id_get(request)

    started = context.extra.get("started")
    if isinstance(started, int | float) and not isinstance(started, bool):
        values["duration_ms"] = round(max(0.0, (time.perf_counter() - started) * 1000), 3)

    ring = keyring()
    values["chain_key_id"] = ring.primary.key_id_hex
    chain_key = chain_keys(ring)[values["chain_key_id"]]

    alias = router.db_for_write(AccessEvent)
    connection = connections[alias]
    durable = not (outcome == Outcome.ALLOWED and action in TRANSACTIONAL_ACTIONS)
    if (
        durable
        and under_lock is None
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and connection.get_autocommit()
    ):
        pk = _append_postgresql(connection, values, chain_key)
    else:
        pk = _append_atomic(
            connection, alias, values, chain_key, durable, action, outcome, under_lock
        )
    if durable:
        heads.chain_head_publish_if_due(values["seq"], values["hash"])
    row = [pk if field.primary_key else values[field.attname] for field in _CONCRETE_FIELDS]
    return AccessEvent.from_db(alias, [field.attname for field in _CONCRETE_FIELDS], row)


def _insert_params(values: dict[str, Any], connection: BaseDatabaseWrapper) -> list[Any]:
    return [field.get_db_prep_save(values[field.attname], connection) for field in _INSERT_FIELDS]


def _chain_link(
    values: dict[str, Any],
    head: tuple | None,
    chain_key: bytes,
    under_lock: UnderLock | None = None,
    connection: BaseDatabaseWrapper | None = None,
) -> None:
    """Fill seq, prev_hash, when and hash from the head read under the lock."""
    values["seq"], values["prev_hash"] = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
    if under_lock is not None:
        values.update(under_lock(connection, values["seq"] - 1, values["prev_hash"]))
    # Taken under the lock, so that time never goes backwards along the chain.
    values["when"] = timezone.now()
    values["hash"] = event_hash_compute(values, chain_key)


def _append_atomic(
    connection: BaseDatabaseWrapper,
    alias: str,
    values: dict[str, Any],
    chain_key: bytes,
    durable: bool,
    action: Action,
    outcome: Outcome,
    under_lock: UnderLock | None = None,
) -> Any:
    """Append inside Django's transaction management (SQLite, and any append in an atomic block)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(transaction.atomic(using=alias, durable=durable))
        except RuntimeError as exc:
            raise RecordError(
                f"A {action.value} ({outcome.value}) must be recorded outside transaction.atomic():"
                " a rollback would erase its record."
            ) from exc
        cursor = stack.enter_context(connection.cursor())
        statements = _statements(connection)
        cursor.execute(statements.head)
        if statements.locked_first:
            cursor.nextset()
        _chain_link(values, cursor.fetchone(), chain_key, under_lock, connection)
        cursor.execute(statements.insert, _insert_params(values, connection))
        return cursor.fetchone()[0] if statements.returning else cursor.lastrowid


def _append_postgresql(
    connection: BaseDatabaseWrapper, values: dict[str, Any], chain_key: bytes
) -> Any:
    """Append and commit in two round trips while holding the lock: the chain's hot path.

    The lock is held from the first round trip (BEGIN, the advisory lock, the head read) to the
    end of the second (the insert and its COMMIT), so every round trip saved here is time no
    other writer can append, and so is every microsecond of Python between them: the insert's
    parameters are prepared before the lock, all but the four the head decides, and the
    statements go to the driver's own cursor (Django's wrapper, which only times and logs them,
    costs more than the append's hash). Django's atomic() would spend a third round trip on the
    COMMIT alone. Outside any atomic block only (the connection is in autocommit mode, so the
    explicit BEGIN and COMMIT are the whole transaction); any error rolls it back before it is
    raised, as Django's database error.
    """
    statements = _statements(connection)
    params = _insert_params(values, connection)
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.cursor() as cursor:
        try:
            cursor.execute("BEGIN; " + statements.head)
            cursor.nextset()
            cursor.nextset()
            _chain_link(values, cursor.fetchone(), chain_key)
            for index, field in _LINK_PARAMS:
                params[index] = field.get_db_prep_save(values[field.attname], connection)
            cursor.execute(statements.insert + "; COMMIT", params)
            return cursor.fetchone()[0]
        except BaseException:
            # A lost connection cannot roll back, and needs not: the server did, on its side.
            with suppress(Exception):
                cursor.execute("ROLLBACK")
            raise


@dataclass(frozen=True)
class _Statements:
    head: str
    locked_first: bool
    insert: str
    returning: bool


_CONCRETE_FIELDS = list(AccessEvent._meta.concrete_fields)
_INSERT_FIELDS = [field for field in _CONCRETE_FIELDS if not field.primary_key]
# The insert's parameters that only the head read under the lock decides: (position, field).
_LINK_PARAMS = [
    (index, field)
    for index, field in enumerate(_INSERT_FIELDS)
    if field.attname in {"seq", "prev_hash", "when", "hash"}
]
_statements_cache: dict[tuple[str, str], _Statements] = {}


def _statements(connection: BaseDatabaseWrapper) -> _Statements:
    """Return the append's SQL for this connection, built once from the model's metadata.

    The append is on every download's path: plain SQL here costs a third of the ORM's query
    building. Identifiers come from the model, values are parameters.
    """
    statements = _statements_cache.get((connection.alias, connection.vendor))
    if statements is not None:
        return statements
    quote = connection.ops.quote_name
    table = quote(AccessEvent._meta.db_table)
    head = (
        f"SELECT {quote('seq')}, {quote('hash')} FROM {table} "  # noqa: S608
        f"ORDER BY {quote('seq')} DESC LIMIT 1"
    )
    if connection.vendor == "postgresql":
        # Two statements in one round trip: a transaction-scoped lock, then the head read. Under
        # READ COMMITTED each statement takes its own snapshot, so the read sees every append the
        # previous holder of the lock committed. (A row lock on the last event would not do: a
        # statement that waited for it still cannot see rows inserted meanwhile.)
        head = f"SELECT pg_advisory_xact_lock({POSTGRES_LOCK_KEY:d}); {head}"
    elif connection.vendor != "sqlite":
        # SQLite needs no lock statement: the IMMEDIATE transaction holds its write lock since BEGIN.
        raise NotSupportedError(
            f"The access log chain supports SQLite and PostgreSQL, not {connection.vendor}."
        )
    columns = ", ".join(quote(field.column) for field in _INSERT_FIELDS)
    placeholders = ", ".join(["%s"] * len(_INSERT_FIELDS))
    returning = connection.features.can_return_columns_from_insert
    statements = _Statements(
        head=head,
        locked_first=connection.vendor == "postgresql",
        insert=f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        + (f" RETURNING {quote('id')}" if returning else ""),
        returning=returning,
    )
    _statements_cache[connection.alias, connection.vendor] = statements
    return statements


def client_ip_get(request: HttpRequest) -> str | None:
    """Return the client's IP: REMOTE_ADDR, or the X-Forwarded-For hop the trusted proxies vouch for."""
    address = request.META.get("REMOTE_ADDR", "")
    proxies = int(getattr(settings, PROXY_COUNT_SETTING, 0) or 0)
    if proxies > 0:
        # Each trusted proxy appends the address it saw; anything left of those came from the client.
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if hops:
            address = hops[-proxies] if len(hops) >= proxies else hops[0]
    try:
        return str(ipaddress.ip_address(address.split("%", 1)[0].strip()))
    except ValueError:
        return None


def _text(value: object, max_length: int) -> str:
    """Return printable text that fits the column and stores in any database (no NUL)."""
    text = _CONTROL_CHARACTERS.sub(" ", str(value or ""))
    return text.encode("utf-8", "replace").decode("utf-8")[:max_length]


def _byte_count(value: object) -> int | None:
    if value is None:
        return None
    count = int(value)  # type: ignore[call-overload]
    if count < 0:
        raise ValueError(f"A byte count cannot be negative: {count}.")
    return count


# The chain ---------------------------------------------------------------------------------------


def chain_keys(ring: KeyRing) -> dict[str, bytes]:
    """Return the (secret) audit-chain sub-key of every configured key, by key ID (hex)."""
    keys = _chain_keys_cache.get(ring)
    if keys is None:
        keys = {key.key_id_hex: key.subkey(PURPOSE_AUDIT_CHAIN) for key in ring.keys}
        _chain_keys_cache[ring] = keys
    return keys


def _canonical_datetime(value: datetime) -> str:
    zone = getattr(value, "tzinfo", False)
    if type(value) is datetime and value.year >= 1000 and (zone is UTC or zone is None):
        # The usual case, formatted directly: strftime() costs more than the rest of an event.
        # (Years before 1000 take strftime's path: the C library decides how %Y pads them.)
        return _DATETIME_FORMAT % (
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
        )
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical_ip(value: str) -> str:
    # Packed bytes: independent of how a database or a Python version spells an address.
    if type(value) is str:
        # The C parser first, trusted only for an address it spells back exactly as given: any
        # other spelling (a scope, leading zeros, mapped forms) is ipaddress's to judge.
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                packed = socket.inet_pton(family, value)
            except (OSError, ValueError):
                continue
            if socket.inet_ntop(family, packed) == value:
                return packed.hex()
            break
    return ipaddress.ip_address(value).packed.hex()


def _canonical_milliseconds(value: float) -> str:
    return f"{value:.3f}"


def _canonical_plain(value: Any) -> Any:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, uuid.UUID):
        return value.hex
    raise TypeError(f"No canonical form for {type(value).__name__}.")


def _canonical_uuid(value: uuid.UUID | str) -> str:
    if type(value) is uuid.UUID:
        return value.hex
    if type(value) is str and _UUID_HEX.fullmatch(value):
        # How SQLite stores a UUID: already its canonical form.
        return value
    return uuid.UUID(str(value)).hex


_CANONICAL = {
    "when": _canonical_datetime,
    "document_id": _canonical_uuid,
    "client_ip": _canonical_ip,
    "duration_ms": _canonical_milliseconds,
}
_DATETIME_FORMAT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"
_UUID_HEX = re.compile(r"[0-9a-f]{32}")

# The members of the canonical JSON (but "format") in its order, json.dumps(sort_keys=True)'s.
_SORTED_FIELDS = tuple(sorted(HASHED_FIELDS))
_sorted_values = operator.itemgetter(*_SORTED_FIELDS)
# The same from a row in HASHED_FIELDS order, as the verifier reads it.
_row_sorted_values = operator.itemgetter(*(HASHED_FIELDS.index(name) for name in _SORTED_FIELDS))

# The fast path of _canonical(): the usual event, formatted straight into the JSON that
# json.dumps would write. Text fields are always strings; the others are written from their
# canonical form. The tests compare both paths with a reference built from the spec.
_TEXT_FIELDS = (
    "prev_hash",
    "chain_key_id",
    "actor_username",
    "action",
    "document_title",
    "stored_name",
    "outcome",
    "reason",
    "user_agent",
    "key_id",
    "request_id",
)
# The value types the fast path formats; any other event (None where the recorder never writes
# one, bytes, floats in an integer column, subclasses) takes json.dumps.
_FAST_TYPES = {
    "seq": (int,),
    "actor_id": (int, type(None)),
    "when": (datetime,),
    "document_id": (str, uuid.UUID, type(None)),
    "staff_read": (bool,),
    "client_ip": (str, type(None)),
    "bytes_served": (int, type(None)),
    "duration_ms": (float, int, type(None)),
    **{name: (str,) for name in _TEXT_FIELDS},
}
_FAST_SIGNATURES = frozenset(itertools.product(*(_FAST_TYPES[name] for name in _SORTED_FIELDS)))
_text_of = operator.itemgetter(*(_SORTED_FIELDS.index(name) for name in _TEXT_FIELDS))
# Converted in HASHED_FIELDS order, as json.dumps's path does: the same error for a bad row.
_CONVERTED = tuple((_SORTED_FIELDS.index(name), convert) for name, convert in _CANONICAL.items())
_WHOLE = tuple(_SORTED_FIELDS.index(name) for name in ("seq", "actor_id", "bytes_served"))
_STAFF_READ = _SORTED_FIELDS.index("staff_read")


def _canonical_parts() -> list[str | None]:
    """Return the canonical JSON as its literal pieces with a slot (None) between each two.

    Keys sorted, "format" and its value written out, text values quoted; the slots take the
    values of _SORTED_FIELDS, in order, as JSON text.
    """
    pieces, piece = [], "{"
    for name in sorted(("format", *HASHED_FIELDS)):
        if piece != "{":
            piece += ","
        if name == "format":
            piece += f'"format":{json.dumps(CHAIN_FORMAT)}'
            continue
        quote = '"' if name in _TEXT_FIELDS else ""
        pieces.append(f'{piece}"{name}":{quote}')
        piece = quote
    pieces.append(piece + "}")
    parts: list[str | None] = [None] * (2 * len(pieces) - 1)
    parts[0::2] = pieces
    return parts


_CANONICAL_PARTS = _canonical_parts()


def event_canonical(fields: Mapping[str, Any]) -> bytes:
    """Return the bytes the chain's HMAC covers: sorted, compact, ASCII JSON of HASHED_FIELDS."""
    return _canonical(_sorted_values(fields))


def _canonical(values: tuple[Any, ...]) -> bytes:
    """Return the canonical form of an event given as its values in _SORTED_FIELDS order.

    The one implementation: the recorder reaches it through event_canonical(), the verifier
    straight from the row it reads.
    """
    formatted = _canonical_formatted(values)
    if formatted is not None:
        return formatted.encode("ascii")
    fields = dict(zip(_SORTED_FIELDS, values, strict=True))
    payload: dict[str, Any] = {"format": CHAIN_FORMAT}
    for name in HASHED_FIELDS:
        value = fields[name]
        payload[name] = None if value is None else _CANONICAL.get(name, _canonical_plain)(value)
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _canonical_formatted(values: tuple[Any, ...]) -> str | None:
    """Return the canonical JSON of an event typed as the recorder writes it, whose text needs no
    JSON escape (printable ASCII without quote or backslash); None for any other event."""
    if tuple(map(type, values)) not in _FAST_SIGNATURES:
        return None
    text = "".join(_text_of(values))
    if not (text.isascii() and text.isprintable() and '"' not in text and "\\" not in text):
        return None
    tokens = list(values)
    for position, convert in _CONVERTED:
        value = tokens[position]
        # Converted values are digits, hex and punctuation: quoted as they are.
        tokens[position] = "null" if value is None else f'"{convert(value)}"'
    tokens[_STAFF_READ] = "true" if tokens[_STAFF_READ] else "false"
    for position in _WHOLE:
        value = tokens[position]
        tokens[position] = "null" if value is None else str(value)
    parts = _CANONICAL_PARTS.copy()
    parts[1::2] = tokens
    return "".join(parts)  # type: ignore[arg-type]


def event_hash_compute(fields: Mapping[str, Any], key: bytes) -> str:
    """Return the hex HMAC-SHA256 of an event's canonical form under a chain key."""
    return _event_hmac(key, event_canonical(fields))


def _event_hmac(key: bytes, canonical: bytes) -> str:
    return hmac.digest(key, canonical, "sha256").hex()


# Verification ------------------------------------------------------------------------------------


def _raw_select(connection: BaseDatabaseWrapper, *, after: int | None = None) -> str:
    """Return the verifier's SELECT: every hashed column, the time as text the driver leaves alone.

    With `after`, only the events after that seq (a whole number, formatted into the SQL).

    Drivers convert timestamps while fetching a batch, so one hostile row (a date before year 1
    in UTC) would stop the whole walk with a traceback, or blame the batch's first row.
    """
    quote = connection.ops.quote_name
    when = quote("when")
    if connection.vendor == "postgresql":
        # ISO in UTC, era spelled out: PostgreSQL stores years before 1 that Python cannot.
        when_text = f"to_char({when} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US BC')"
    elif connection.vendor == "sqlite":
        when_text = f"CAST({when} AS TEXT)"
    else:
        raise NotSupportedError(
            f"The access log chain supports SQLite and PostgreSQL, not {connection.vendor}."
        )
    fields = {field.attname: field for field in _CONCRETE_FIELDS}
    columns = [
        when_text if name == "when" else quote(fields[name].column)
        for name in (*HASHED_FIELDS, "hash")
    ]
    where = "" if after is None else f"WHERE {quote('seq')} > {int(after):d} "
    return (
        f"SELECT {', '.join(columns)} FROM {quote(AccessEvent._meta.db_table)} "  # noqa: S608
        f"{where}ORDER BY {quote('seq')}"
    )


def _when_parse(value: object) -> datetime:
    """Return the stored time of an event as an aware datetime; raise ValueError if it is none."""
    if not isinstance(value, str):
        raise ValueError(f"the time {_shown(value)} is not a date")
    text = value.strip()
    if text.endswith((" AD", " BC")):
        text, era = text[:-3], text[-2:]
        if era == "BC":
            raise ValueError(f"the time {_shown(value)} is before year 1")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # Django's parser: fromisoformat() first (as above), then a regex for other spellings.
        parsed = parse_datetime(text)
    if parsed is None:
        raise ValueError(f"the time {_shown(value)} is not a date")
    if parsed.tzinfo is None:
        # What both databases return (UTC): nothing to convert, nothing that can overflow.
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"the time {_shown(value)} is outside the years 1-9999 in UTC") from None


def _digest_equal(left: object, right: object) -> bool:
    """Return whether two hex digests are equal, in time independent of where they differ."""
    if not (isinstance(left, str) and isinstance(right, str)):
        return False
    return hmac.compare_digest(left.encode("utf-8", "replace"), right.encode("utf-8", "replace"))


def _shown(value: object) -> str:
    """Return a stored value as a short printable quote for a verdict."""
    return repr(_text(repr(value) if not isinstance(value, str) else value, 60))


@dataclass(frozen=True)
class PrunedRange:
    """Events removed by `audit_prune`, as the checkpoint the walk started from records them."""

    first_seq: int
    last_seq: int
    when: datetime
    checkpoint_id: int


@dataclass(frozen=True)
class ChainReport:
    """What a walk of the chain found: the head it reached and the first broken link, if any."""

    status: ChainStatus
    count: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str = ""
    unverifiable_count: int = 0
    first_unverifiable_seq: int | None = None
    missing_key_ids: tuple[str, ...] = ()
    # Events under retired keys proven by a later seal under a configured key.
    sealed_count: int = 0
    # Chain keys other than the primary with events after the last seal: a seal is due.
    unsealed_key_ids: tuple[str, ...] = ()
    pruned: PrunedRange | None = None
    # The unkeyed link digest through the head, and (seq, hash, link digest) at `capture_seq`.
    link_digest: str = GENESIS_HASH
    captured: tuple[int, str, str] | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Return whether every event verified and every link holds."""
        return self.status is ChainStatus.OK

    def summary(self) -> str:
        """Return the one-line verdict the command prints."""
        head = f"chain head seq {self.head_seq} hash {self.head_hash}"
        if self.status is ChainStatus.BROKEN:
            line = (
                f"Access log BROKEN at seq {self.broken_seq}: {self.problem} "
                f"{self.count} events before it are intact; last intact {head}."
            )
        elif self.status is ChainStatus.UNVERIFIABLE:
            line = (
                f"Access log cannot verify {self.unverifiable_count} of {self.count} events, "
                f"first at seq {self.first_unverifiable_seq}: chain key ID(s) "
                f"{', '.join(self.missing_key_ids)} retired and no seal covers them (add the old "
                f"key to VAULT_KEYS as a non-primary entry to verify them); every other event "
                f"verifies; {head}."
            )
        else:
            line = f"Access log OK: {self.count} events, {head}."
        if self.sealed_count and self.status is not ChainStatus.BROKEN:
            line += (
                f" {self.sealed_count} events under retired chain keys verified through the "
                "seals that cover them."
            )
        if self.pruned is not None:
            pruned = self.pruned
            line += (
                f" Events {pruned.first_seq}-{pruned.last_seq} pruned on "
                f"{pruned.when:%Y-%m-%d} under checkpoint #{pruned.checkpoint_id}, verified "
                f"from {pruned.last_seq + 1}."
            )
        return " ".join([line, *self.notes])


def link_digest_next(digest: str, canonical: bytes, event_hash: str) -> str:
    """Return the unkeyed SHA-256 link digest through one more event (its content and its hash)."""
    return _link_next(bytes.fromhex(digest), canonical, event_hash).hex()


def _link_next(link: bytes, canonical: bytes, event_hash: str) -> bytes:
    return hashlib.sha256(LINK_FORMAT + link + canonical + event_hash.encode("ascii")).digest()


def seal_reason(through_seq: int, digest: str) -> str:
    """Return the reason a seal event carries: the seq and link digest it vouches for."""
    return f"Sealed the chain through seq {through_seq}: link digest {digest}."


def prune_reason(
    first_seq: int, last_seq: int, cutoff: datetime, chain_hash: str, digest: str
) -> str:
    """Return the reason a prune event carries: exactly what its checkpoint records."""
    return (
        f"Pruned events {first_seq}-{last_seq} ({last_seq - first_seq + 1} events) older than "
        f"{_canonical_datetime(cutoff)}; chain hash at the cut {chain_hash}; link digest {digest}."
    )


# Where the walk finds the fields it reads by name in a row (HASHED_FIELDS, then the hash).
_SEQ, _PREV_HASH, _CHAIN_KEY_ID, _WHEN, _ACTION, _REASON = (
    HASHED_FIELDS.index(name)
    for name in ("seq", "prev_hash", "chain_key_id", "when", "action", "reason")
)
_CHAIN_SEAL = Action.CHAIN_SEAL.value


class _ChainWalk:
    """The state of a walk in seq order: fed one raw row at a time, so it can resume under a lock."""

    def __init__(
        self,
        *,
        start: ChainCheckpoint | None,
        expected_head: tuple[int, str] | None,
        capture_seq: int | None = None,
    ) -> None:
        self.keys = chain_keys(keyring())
        self.primary = keyring().primary.key_id_hex
        self.retired = {key_id.lower() for key_id in getattr(settings, RETIRED_KEYS_SETTING, ())}
        self.expected_head = expected_head
        self.capture_seq = capture_seq
        self.captured: tuple[int, str, str] | None = None
        self.start = start
        self.start_vouched = start is None
        self.count = 0
        self.position = 0
        self.head_seq, self.head_hash = 0, GENESIS_HASH
        self.notes: list[str] = []
        self.start_head_mismatch = False
        # The link digest is kept as bytes along the walk, and spelled in hex when asked for. A
        # malformed checkpoint digest is kept as it is: _chain_walk() stops before any event.
        link = GENESIS_HASH if start is None else start.link_digest
        self._link_hex: str | None = link
        self._link = bytes.fromhex(link) if _HASH_FORMAT.fullmatch(str(link)) else b""
        if start is not None:
            self.head_seq, self.head_hash = start.last_seq, start.chain_hash
            if expected_head is not None and expected_head[0] <= start.last_seq:
                # A head inside the pruned range: only the cut itself can still be compared.
                if expected_head[0] == start.last_seq:
                    self.start_head_mismatch = not _digest_equal(start.chain_hash, expected_head[1])
                self.notes.append(
                    f"The head seq {expected_head[0]} lies in the pruned range; the prune "
                    "verified the log against it before removing events."
                )
                self.expected_head = None
        # Events under retired keys since the last seal: (first seq, count before it, head before).
        self.pending = 0
        self.pending_from: tuple[int, int, int, str] | None = None
        self.pending_after_configured: tuple[int, int, int, str] | None = None
        self.pending_keys: dict[str, None] = {}
        self.configured_since_seal = False
        self.start_vouch_pending = False
        self.sealed = 0
        self.unsealed_keys: dict[str, None] = {}

    @property
    def digest(self) -> str:
        """Return the unkeyed link digest through the head (hex)."""
        if self._link_hex is None:
            self._link_hex = self._link.hex()
        return self._link_hex

    def _report(self, status: ChainStatus, **fields: Any) -> ChainReport:
        values: dict[str, Any] = {
            "count": self.count,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "unverifiable_count": self.pending,
            "first_unverifiable_seq": self.pending_from[0] if self.pending_from else None,
            "missing_key_ids": tuple(self.pending_keys),
            "sealed_count": self.sealed,
            "unsealed_key_ids": tuple(self.unsealed_keys),
            "pruned": self._pruned(),
            "link_digest": self.digest,
            "captured": self.captured,
            "notes": tuple(self.notes),
        }
        values.update(fields)
        return ChainReport(status, **values)

    def _pruned(self) -> PrunedRange | None:
        if self.start is None:
            return None
        start = self.start
        return PrunedRange(start.first_seq, start.last_seq, start.when, start.pk)

    def broken(
        self, seq: int, problem: str, at: tuple[int, int, int, str] | None = None
    ) -> ChainReport:
        """Return a BROKEN report at `seq`; `at` names an earlier point (count and head there)."""
        if at is None:
            return self._report(ChainStatus.BROKEN, broken_seq=seq, problem=problem)
        _, count, head_seq, head_hash = at
        return self._report(
            ChainStatus.BROKEN,
            broken_seq=seq,
            problem=problem,
            count=count,
            head_seq=head_seq,
            head_hash=head_hash,
        )

    def feed(self, row: tuple[Any, ...]) -> ChainReport | None:
        """Check one raw row (HASHED_FIELDS, then hash); return a BROKEN report, else None."""
        self.position += 1
        seq, stored_hash = row[_SEQ], row[-1]
        head_seq, head_hash = self.head_seq, self.head_hash
        if not isinstance(seq, int) or isinstance(seq, bool):
            return self.broken(
                head_seq + 1,
                f"row {self.position} in seq order holds the seq {_shown(seq)}, which is "
                "not a number: it was written outside the application.",
            )
        expected_seq = head_seq + 1
        if seq > expected_seq:
            gap = (
                f"event {expected_seq} is"
                if seq == expected_seq + 1
                else f"events {expected_seq}-{seq - 1} are"
            )
            return self.broken(expected_seq, f"{gap} missing (deleted); the next event is {seq}.")
        if seq < expected_seq:
            return self.broken(seq, f"event {seq} does not belong in the chain (inserted).")
        if not _digest_equal(row[_PREV_HASH], head_hash):
            return self.broken(
                seq,
                f"event {seq} does not link to event {head_seq} (its prev_hash differs): "
                "it was inserted, or an event before it was replaced.",
            )
        if not (
            isinstance(stored_hash, str)
            and _HASH_FORMAT.fullmatch(stored_hash)
            and _HASH_FORMAT.fullmatch(head_hash)
        ):
            return self.broken(seq, f"event {seq} holds a hash that is not 64 hex digits: forged.")
        try:
            # Converted here, one row at a time: a value the application never writes (a date
            # before year 1 in UTC, an impossible date) is this row's fault.
            values = list(row)
            values[_WHEN] = _when_parse(row[_WHEN])
            canonical = _canonical(_row_sorted_values(values))
        except (ValueError, TypeError, OverflowError) as exc:
            return self.broken(
                seq,
                f"event {seq} holds a malformed value ({exc}): it was written outside "
                "the application.",
            )
        chain_key_id, action = row[_CHAIN_KEY_ID], row[_ACTION]
        key = self.keys.get(chain_key_id)
        vouches_start = (
            not self.start_vouched and self.start is not None and seq == self.start.event_seq
        )
        if vouches_start and not self._prune_event_matches(action, row[_REASON]):
            return self.broken(
                seq,
                f"event {seq} is not the prune event that checkpoint #{self.start.pk} names "  # type: ignore[union-attr]
                "(its action or figures differ): the checkpoint or the event was forged.",
            )
        if key is None:
            # Without the key nothing proves the event by itself: only a key the operator
            # declared retired may leave events pending, until a seal under a configured key
            # covers them; otherwise anyone with the database could name a made-up key.
            if chain_key_id not in self.retired:
                return self.broken(
                    seq,
                    f"event {seq} names chain key {_shown(chain_key_id)}, which is neither "
                    f"configured nor in {RETIRED_KEYS_SETTING}: it was changed or forged.",
                )
            here = (seq, self.count, head_seq, head_hash)
            self.pending += 1
            self.pending_from = self.pending_from or here
            self.pending_keys[chain_key_id] = None
            if self.configured_since_seal and self.pending_after_configured is None:
                self.pending_after_configured = here
            self.start_vouch_pending = self.start_vouch_pending or vouches_start
        else:
            if not hmac.compare_digest(_event_hmac(key, canonical), stored_hash):
                return self.broken(
                    seq,
                    f"event {seq} does not match its hash: it was changed after it was "
                    "written, or forged.",
                )
            self.start_vouched = self.start_vouched or vouches_start
            if action == _CHAIN_SEAL:
                problem = self._seal_check(seq, row[_REASON])
                if problem is not None:
                    return problem
            self.configured_since_seal = True
        if chain_key_id != self.primary:
            self.unsealed_keys[chain_key_id] = None
        if (
            self.expected_head
            and seq == self.expected_head[0]
            and not _digest_equal(stored_hash, self.expected_head[1])
        ):
            return self.broken(
                seq,
                f"event {seq} is not the published head (hash {self.expected_head[1]}): "
                "the chain was rewritten from there.",
            )
        self._link = _link_next(self._link, canonical, stored_hash)
        self._link_hex = None
        self.count += 1
        self.head_seq, self.head_hash = seq, stored_hash
        if seq == self.capture_seq:
            self.captured = (seq, stored_hash, self.digest)
        return None

    def _prune_event_matches(self, action: object, reason: object) -> bool:
        start = self.start
        assert start is not None
        expected = prune_reason(
            start.first_seq, start.last_seq, start.cutoff, start.chain_hash, start.link_digest
        )
        return action == Action.PRUNE and reason == expected

    def _seal_check(self, seq: int, reason: object) -> ChainReport | None:
        """Check a seal event (authenticated already) against the link digest of what it covers."""
        if reason != seal_reason(seq - 1, self.digest):
            if self.pending_from is not None:
                first = self.pending_from[0]
                return self.broken(
                    first,
                    f"events {first}-{seq - 1}, under the retired chain key(s) "
                    f"{', '.join(self.pending_keys)}, do not hash to what the seal at seq {seq} "
                    "recorded: one of them was changed, inserted or removed.",
                    at=self.pending_from,
                )
            return self.broken(
                seq,
                f"the seal at seq {seq} does not match the events before it: they were "
                "changed, or the checkpoint the walk started from was.",
            )
        self.sealed += self.pending
        self.pending = 0
        self.pending_from = self.pending_after_configured = None
        self.pending_keys.clear()
        self.unsealed_keys.clear()
        self.start_vouched = self.start_vouched or self.start_vouch_pending
        return None

    def finish(self) -> ChainReport:
        """Return the verdict once every row has been fed."""
        if self.expected_head is not None and self.head_seq < self.expected_head[0]:
            return self.broken(
                self.head_seq + 1,
                f"the log ends at seq {self.head_seq}, before the published head seq "
                f"{self.expected_head[0]}: events were removed from its end.",
            )
        if self.start_head_mismatch:
            start = self.start
            assert start is not None
            return self.broken(
                start.last_seq,
                f"checkpoint #{start.pk} records a chain hash at seq {start.last_seq} that is not "
                "the published head's: the checkpoint was forged.",
                at=(start.last_seq, 0, 0, GENESIS_HASH),
            )
        if self.pending_after_configured is not None:
            seq = self.pending_after_configured[0]
            return self.broken(
                seq,
                f"event {seq} names a retired chain key after events under a configured key, "
                "and no seal covers it: it was changed or forged.",
                at=self.pending_after_configured,
            )
        if not (self.start_vouched or self.start_vouch_pending):
            start = self.start
            assert start is not None
            return self.broken(
                start.first_seq,
                f"events {start.first_seq}-{start.last_seq} are missing, and the prune event "
                f"(seq {start.event_seq}) that checkpoint #{start.pk} names is not in the log: "
                "the checkpoint was forged.",
                at=(start.first_seq, 0, 0, GENESIS_HASH),
            )
        if self.pending:
            return self._report(ChainStatus.UNVERIFIABLE)
        return self._report(ChainStatus.OK)


def chain_checkpoint_latest(using: str | None = None) -> ChainCheckpoint | None:
    """Return the checkpoint the log starts from (the latest prune), or None."""
    alias = using or router.db_for_read(ChainCheckpoint)
    return ChainCheckpoint.objects.using(alias).order_by("-last_seq", "-id").first()


def _chain_walk(
    *,
    using: str | None,
    chunk_size: int,
    expected_head: tuple[int, str] | None,
    capture_seq: int | None = None,
) -> tuple[_ChainWalk, ChainReport]:
    alias = using or router.db_for_read(AccessEvent)
    start = chain_checkpoint_latest(alias)
    walk = _ChainWalk(start=start, expected_head=expected_head, capture_seq=capture_seq)
    if start is not None and not all(
        isinstance(value, str) and _HASH_FORMAT.fullmatch(value)
        for value in (start.chain_hash, start.link_digest)
    ):
        return walk, walk.broken(
            start.last_seq + 1,
            f"checkpoint #{start.pk} holds a malformed hash: it was written outside the "
            "application.",
            at=(start.last_seq + 1, 0, 0, GENESIS_HASH),
        )
    with connections[alias].chunked_cursor() as cursor:
        cursor.execute(_raw_select(connections[alias]))
        while batch := cursor.fetchmany(chunk_size):
            for row in batch:
                report = walk.feed(row)
                if report is not None:
                    return walk, report
    return walk, walk.finish()


def chain_verify(
    *,
    using: str | None = None,
    chunk_size: int = 2000,
    expected_head: tuple[int, str] | None = None,
    capture_seq: int | None = None,
) -> ChainReport:
    """Walk the chain in seq order, in constant memory; return the first broken link, if any.

    The walk starts from the latest prune checkpoint, if any. `expected_head` is a previously
    published (seq, hash): the walk must reach it with that hash, which is the only way to notice
    events removed from the end of the log. `capture_seq` asks for the chain state at that event.
    """
    return _chain_walk(
        using=using, chunk_size=chunk_size, expected_head=expected_head, capture_seq=capture_seq
    )[1]


class ChainSealError(Exception):
    """Raised when the chain cannot be sealed: it does not verify, or changed under the lock."""


def _seal_append(walk: _ChainWalk, *, user: Any, operator: str) -> AccessEvent:
    """Append a seal over every event before it, under the primary key; raise ChainSealError.

    The walk has verified the log up to some head; under the append lock it verifies the events
    appended since, so the seal vouches only for events that verified with every key configured.
    """

    def under_lock(connection: BaseDatabaseWrapper, head_seq: int, head_hash: str) -> dict:
        with connection.cursor() as cursor:
            cursor.execute(_raw_select(connection, after=walk.head_seq))
            for row in cursor.fetchall():
                report = walk.feed(row)
                if report is not None:
                    raise ChainSealError(report.summary())
        report = walk.finish()
        if not report.ok or (walk.head_seq, walk.head_hash) != (head_seq, head_hash):
            raise ChainSealError(f"The chain does not verify; nothing sealed. {report.summary()}")
        return {"reason": seal_reason(head_seq, walk.digest)}

    context = AccessContext(action=Action.CHAIN_SEAL, user=user, extra={"operator": operator})
    return _event_record(Access(Outcome.ALLOWED, context), under_lock=under_lock)


def chain_head_expected() -> tuple[tuple[int, str] | None, list[str]]:
    """Return the latest published head (or None) and the problems met reading the heads file."""
    retired = frozenset(key_id.lower() for key_id in getattr(settings, RETIRED_KEYS_SETTING, ()))
    try:
        latest = heads.chain_head_latest(retired_key_ids=retired)
    except heads.HeadsFileError as exc:
        return None, [f"The published heads are not intact: {exc}"]
    except OSError as exc:
        return None, [f"The published heads cannot be read ({exc})."]
    return (latest.pair if latest is not None else None), []


def chain_check_run(
    *,
    user: Any = None,
    via: str = "command",
    operator: str = "",
    expected_head: tuple[int, str] | None = None,
    published_head: bool = True,
    publish: bool = True,
    seal: str = "auto",
    using: str | None = None,
    chunk_size: int = 2000,
) -> ChainCheck:
    """Verify the chain against a head, seal it if due, publish the head, record and return the check.

    The head checked against is `expected_head` if given, else the latest published head (unless
    `published_head` is False). A heads file that fails to authenticate makes the check BROKEN.
    `seal`: "auto" appends a seal when the log verifies OK and holds events under a key other
    than the primary that no seal covers yet (after a key rotation), "always" whenever it
    verifies OK, "never" not at all. An unbroken walk publishes its head (the seal's, if sealed),
    so the next check notices a cut tail.
    """
    if seal not in {"auto", "always", "never"}:
        raise ValueError(f"seal is 'auto', 'always' or 'never', not {seal!r}.")
    problems: list[str] = []
    if expected_head is None and published_head:
        expected_head, problems = chain_head_expected()
    walk, report = _chain_walk(using=using, chunk_size=chunk_size, expected_head=expected_head)
    status = ChainStatus.BROKEN if problems else report.status
    head_seq, head_hash = report.head_seq, report.head_hash
    sealed = ""
    if status is ChainStatus.OK and (
        seal == "always" or (seal == "auto" and report.unsealed_key_ids)
    ):
        try:
            event = _seal_append(walk, user=user, operator=operator)
        except ChainSealError as exc:
            status, problems = ChainStatus.BROKEN, [*problems, str(exc)]
        else:
            head_seq, head_hash = event.seq, event.hash
            sealed = (
                f" Sealed events through seq {event.seq - 1} with the seal at seq {event.seq} "
                f"under chain key {event.chain_key_id}."
            )
    published = False
    if publish and status is not ChainStatus.BROKEN and head_seq > 0:
        try:
            heads.chain_head_publish(head_seq, head_hash)
            published = True
        except OSError as exc:
            problems.append(f"The head could not be published to {heads.HEADS_NAME} ({exc}).")
    summary = " ".join([report.summary() + sealed, *problems])
    if expected_head is not None:
        summary += f" Checked against head seq {expected_head[0]}."
    elif published_head:
        summary += " No head published yet: a cut tail cannot be noticed this time."
    outcome = Outcome.ALLOWED if status is ChainStatus.OK else Outcome.FAILED
    access_event_record(
        Access(
            outcome,
            AccessContext(action=Action.CHAIN_VERIFY, user=user, extra={"operator": operator}),
            reason=summary,
        )
    )
    username = user.get_username() if getattr(user, "is_authenticated", False) else operator
    return ChainCheck.objects.create(
        when=timezone.now(),
        status=status,
        count=report.count,
        head_seq=head_seq,
        head_hash=head_hash,
        broken_seq=report.broken_seq,
        expected_head_seq=expected_head[0] if expected_head else None,
        expected_head_hash=expected_head[1] if expected_head else "",
        published=published,
        summary=summary,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        requested_by_username=username[:150],
        via=via[:16],
    )
