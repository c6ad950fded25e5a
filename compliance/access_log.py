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
import json
import re
import time
import uuid
import weakref
from collections.abc import Mapping
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
from .models import GENESIS_HASH, AccessEvent, ChainCheck, ChainStatus

CHAIN_FORMAT = "docvault-access-event-v1"
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
    }
)

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_chain_keys_cache: "weakref.WeakKeyDictionary[KeyRing, dict[str, bytes]]" = (
    weakref.WeakKeyDictionary()
)


# Recording ---------------------------------------------------------------------------------------


def access_event_record(access: Access) -> AccessEvent:
    """Append one access to the chain and commit it; raise if it cannot be recorded durably."""
    context = access.context
    action = Action(context.action)
    outcome = Outcome(access.outcome)
    request = context.request
    key_id = access.key_id.hex() if isinstance(access.key_id, bytes) else access.key_id
    values: dict[str, Any] = dict.fromkeys(HASHED_FIELDS)
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
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and connection.get_autocommit()
    ):
        pk = _append_postgresql(connection, values, chain_key)
    else:
        pk = _append_atomic(connection, alias, values, chain_key, durable, action, outcome)
    if durable:
        heads.chain_head_publish_if_due(values["seq"], values["hash"])
    row = [pk if field.primary_key else values[field.attname] for field in _CONCRETE_FIELDS]
    return AccessEvent.from_db(alias, [field.attname for field in _CONCRETE_FIELDS], row)


def _insert_params(values: dict[str, Any], connection: BaseDatabaseWrapper) -> list[Any]:
    return [field.get_db_prep_save(values[field.attname], connection) for field in _INSERT_FIELDS]


def _chain_link(values: dict[str, Any], head: tuple | None, chain_key: bytes) -> None:
    """Fill seq, prev_hash, when and hash from the head read under the lock."""
    values["seq"], values["prev_hash"] = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
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
        _chain_link(values, cursor.fetchone(), chain_key)
        cursor.execute(statements.insert, _insert_params(values, connection))
        return cursor.fetchone()[0] if statements.returning else cursor.lastrowid


def _append_postgresql(
    connection: BaseDatabaseWrapper, values: dict[str, Any], chain_key: bytes
) -> Any:
    """Append and commit in two round trips while holding the lock: the chain's hot path.

    The lock is held from the first round trip (BEGIN, the advisory lock, the head read) to the
    end of the second (the insert and its COMMIT), so every round trip saved here is time no
    other writer can append. Django's atomic() would spend a third one on the COMMIT alone.
    Outside any atomic block only (the connection is in autocommit mode, so the explicit BEGIN
    and COMMIT are the whole transaction); any error rolls it back before it is raised.
    """
    statements = _statements(connection)
    with connection.cursor() as cursor:
        try:
            cursor.execute("BEGIN; " + statements.head)
            cursor.nextset()
            cursor.nextset()
            _chain_link(values, cursor.fetchone(), chain_key)
            cursor.execute(statements.insert + "; COMMIT", _insert_params(values, connection))
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
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical_ip(value: str) -> str:
    # Packed bytes: independent of how a database or a Python version spells an address.
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
    return uuid.UUID(str(value)).hex


_CANONICAL = {
    "when": _canonical_datetime,
    "document_id": _canonical_uuid,
    "client_ip": _canonical_ip,
    "duration_ms": _canonical_milliseconds,
}


def event_canonical(fields: Mapping[str, Any]) -> bytes:
    """Return the bytes the chain's HMAC covers: sorted, compact, ASCII JSON of HASHED_FIELDS."""
    payload: dict[str, Any] = {"format": CHAIN_FORMAT}
    for name in HASHED_FIELDS:
        value = fields[name]
        payload[name] = None if value is None else _CANONICAL.get(name, _canonical_plain)(value)
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def event_hash_compute(fields: Mapping[str, Any], key: bytes) -> str:
    """Return the hex HMAC-SHA256 of an event's canonical form under a chain key."""
    return hmac.new(key, event_canonical(fields), hashlib.sha256).hexdigest()


# Verification ------------------------------------------------------------------------------------


def _raw_select(connection: BaseDatabaseWrapper) -> str:
    """Return the verifier's SELECT: every hashed column, the time as text the driver leaves alone.

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
    return (
        f"SELECT {', '.join(columns)} FROM {quote(AccessEvent._meta.db_table)} "  # noqa: S608
        f"ORDER BY {quote('seq')}"
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
    parsed = parse_datetime(text)
    if parsed is None:
        raise ValueError(f"the time {_shown(value)} is not a date")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
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

    @property
    def ok(self) -> bool:
        """Return whether every event verified and every link holds."""
        return self.status is ChainStatus.OK

    def summary(self) -> str:
        """Return the one-line verdict the command prints."""
        head = f"chain head seq {self.head_seq} hash {self.head_hash}"
        if self.status is ChainStatus.BROKEN:
            return (
                f"Access log BROKEN at seq {self.broken_seq}: {self.problem} "
                f"{self.count} events before it are intact; last intact {head}."
            )
        if self.status is ChainStatus.UNVERIFIABLE:
            return (
                f"Access log cannot verify {self.unverifiable_count} of {self.count} events, "
                f"first at seq {self.first_unverifiable_seq}: chain key ID(s) "
                f"{', '.join(self.missing_key_ids)} retired (add the old key to VAULT_KEYS as a "
                f"non-primary entry to verify them); every other event verifies; {head}."
            )
        return f"Access log OK: {self.count} events, {head}."


def chain_verify(
    *,
    using: str | None = None,
    chunk_size: int = 2000,
    expected_head: tuple[int, str] | None = None,
) -> ChainReport:
    """Walk the chain in seq order, in constant memory; return the first broken link, if any.

    `expected_head` is a previously published (seq, hash): the walk must reach it with that hash,
    which is the only way to notice events removed from the end of the log.
    """
    keys = chain_keys(keyring())
    retired = {key_id.lower() for key_id in getattr(settings, RETIRED_KEYS_SETTING, ())}
    verified_since_retired = False
    alias = using or router.db_for_read(AccessEvent)
    count = 0
    head_seq, head_hash = 0, GENESIS_HASH
    unverifiable = 0
    first_unverifiable: int | None = None
    missing_keys: dict[str, None] = {}

    def broken(seq: int, problem: str) -> ChainReport:
        return ChainReport(
            ChainStatus.BROKEN,
            count,
            head_seq,
            head_hash,
            broken_seq=seq,
            problem=problem,
            unverifiable_count=unverifiable,
            first_unverifiable_seq=first_unverifiable,
            missing_key_ids=tuple(missing_keys),
        )

    with connections[alias].chunked_cursor() as cursor:
        cursor.execute(_raw_select(connections[alias]))
        position = 0
        while batch := cursor.fetchmany(chunk_size):
            for row in batch:
                position += 1
                fields = dict(zip(HASHED_FIELDS, row, strict=False))
                seq, stored_hash = fields["seq"], row[-1]
                if not isinstance(seq, int) or isinstance(seq, bool):
                    return broken(
                        head_seq + 1,
                        f"row {position} in seq order holds the seq {_shown(seq)}, which is "
                        "not a number: it was written outside the application.",
                    )
                expected_seq = head_seq + 1
                if seq > expected_seq:
                    gap = (
                        f"event {expected_seq} is"
                        if seq == expected_seq + 1
                        else f"events {expected_seq}-{seq - 1} are"
                    )
                    return broken(
                        expected_seq, f"{gap} missing (deleted); the next event is {seq}."
                    )
                if seq < expected_seq:
                    return broken(seq, f"event {seq} does not belong in the chain (inserted).")
                if not _digest_equal(fields["prev_hash"], head_hash):
                    return broken(
                        seq,
                        f"event {seq} does not link to event {head_seq} (its prev_hash differs): "
                        "it was inserted, or an event before it was replaced.",
                    )
                if not (
                    isinstance(stored_hash, str)
                    and _HASH_FORMAT.fullmatch(stored_hash)
                    and _HASH_FORMAT.fullmatch(head_hash)
                ):
                    return broken(
                        seq, f"event {seq} holds a hash that is not 64 hex digits: forged."
                    )
                try:
                    # Converted here, one row at a time: a value the application never writes
                    # (a date before year 1 in UTC, an impossible date) is this row's fault.
                    fields["when"] = _when_parse(fields["when"])
                    chain_key_id = fields["chain_key_id"]
                    key = keys.get(chain_key_id)
                    computed = None if key is None else event_hash_compute(fields, key)
                except (ValueError, TypeError, OverflowError) as exc:
                    return broken(
                        seq,
                        f"event {seq} holds a malformed value ({exc}): it was written outside "
                        "the application.",
                    )
                if key is None:
                    # Without the key nothing proves the event; only a key the operator declared
                    # retired may leave events unproven, and only before the configured keys'
                    # events: otherwise anyone with the database could edit an event and name a
                    # made-up key.
                    if chain_key_id not in retired:
                        return broken(
                            seq,
                            f"event {seq} names chain key {_shown(chain_key_id)}, which is "
                            f"neither configured nor in {RETIRED_KEYS_SETTING}: it was changed "
                            "or forged.",
                        )
                    if verified_since_retired:
                        return broken(
                            seq,
                            f"event {seq} names the retired chain key {chain_key_id} after "
                            "events under a configured key: it was changed or forged.",
                        )
                    unverifiable += 1
                    first_unverifiable = first_unverifiable or seq
                    missing_keys[chain_key_id] = None
                elif not _digest_equal(computed, stored_hash):
                    return broken(
                        seq,
                        f"event {seq} does not match its hash: it was changed after it was "
                        "written, or forged.",
                    )
                if (
                    expected_head
                    and seq == expected_head[0]
                    and not _digest_equal(stored_hash, expected_head[1])
                ):
                    return broken(
                        seq,
                        f"event {seq} is not the published head (hash {expected_head[1]}): "
                        "the chain was rewritten from there.",
                    )
                verified_since_retired = verified_since_retired or key is not None
                count += 1
                head_seq, head_hash = seq, stored_hash

    if expected_head is not None and head_seq < expected_head[0]:
        return broken(
            head_seq + 1,
            f"the log ends at seq {head_seq}, before the published head seq {expected_head[0]}: "
            "events were removed from its end.",
        )
    if unverifiable:
        return ChainReport(
            ChainStatus.UNVERIFIABLE,
            count,
            head_seq,
            head_hash,
            unverifiable_count=unverifiable,
            first_unverifiable_seq=first_unverifiable,
            missing_key_ids=tuple(missing_keys),
        )
    return ChainReport(ChainStatus.OK, count, head_seq, head_hash)


def chain_check_run(
    *,
    user: Any = None,
    via: str = "command",
    operator: str = "",
    expected_head: tuple[int, str] | None = None,
    published_head: bool = True,
    publish: bool = True,
    using: str | None = None,
    chunk_size: int = 2000,
) -> ChainCheck:
    """Verify the chain against a head, publish the head reached, record and return the check.

    The head checked against is `expected_head` if given, else the latest published head (unless
    `published_head` is False). A heads file that fails to authenticate makes the check BROKEN.
    An unbroken walk publishes its head, so the next check notices a cut tail.
    """
    problems: list[str] = []
    if expected_head is None and published_head:
        retired = frozenset(
            key_id.lower() for key_id in getattr(settings, RETIRED_KEYS_SETTING, ())
        )
        try:
            latest = heads.chain_head_latest(retired_key_ids=retired)
        except heads.HeadsFileError as exc:
            latest = None
            problems.append(f"The published heads are not intact: {exc}")
        except OSError as exc:
            latest = None
            problems.append(f"The published heads cannot be read ({exc}).")
        expected_head = latest.pair if latest is not None else None
    report = chain_verify(using=using, chunk_size=chunk_size, expected_head=expected_head)
    status = ChainStatus.BROKEN if problems else report.status
    published = False
    if publish and status is not ChainStatus.BROKEN and report.head_seq > 0:
        try:
            heads.chain_head_publish(report.head_seq, report.head_hash)
            published = True
        except OSError as exc:
            problems.append(f"The head could not be published to {heads.HEADS_NAME} ({exc}).")
    summary = " ".join([report.summary(), *problems])
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
        head_seq=report.head_seq,
        head_hash=report.head_hash,
        broken_seq=report.broken_seq,
        expected_head_seq=expected_head[0] if expected_head else None,
        expected_head_hash=expected_head[1] if expected_head else "",
        published=published,
        summary=summary,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        requested_by_username=username[:150],
        via=via[:16],
    )
