"""What a report says: every figure computed in SQL over the period, never a year of rows in Python.

`report_content_build()` returns the content the template renders; `events_csv_chunks()` streams
the period's full event list (the PDF's CSV attachment). Both use one definition of the period's
events (`period_events()`), so the counts in the text and the rows in the attachment agree.
"""

import csv
import hashlib
import io
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import NotSupportedError, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, Max, Min, QuerySet, Sum
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.constants import MULTI
from django.utils import timezone

from compliance.access_log import ChainReport, ChainStatus, chain_verify
from compliance.charts import ActivityBar, activity_chart_svg
from compliance.export import CSV_COLUMNS, FORMULA_START
from compliance.forked import forked
from compliance.models import GENESIS_HASH, AccessEvent, ScanFinding, ScanRun
from vault import fileformat
from vault.access import Action, Outcome
from vault.keys import keyring
from vault.models import Document, Membership

from .models import Report

# Decryptions: what "read" means in the access tables.
READ_ACTIONS = (Action.DOWNLOAD, Action.RANGE, Action.OPEN, Action.CLI_DECRYPT)
# Tables cut to their first rows in the text; the attached CSV always holds every event.
MAX_USERS = 100
MAX_DOCUMENTS = 25
MAX_INCIDENTS = 1000
MAX_INCIDENT_REASONS = 50
MAX_BARS = 400
MAX_FINDINGS = 1000
# Free-text columns a spreadsheet could read as a formula (=, +, -, @): prefixed with a quote.
_CSV_TEXT_COLUMNS = frozenset(
    {"actor_username", "reason", "document_title", "stored_name", "user_agent", "request_id"}
)
_FORMULA_START = tuple(FORMULA_START)
_OUTCOMES = tuple(outcome.value for outcome in Outcome)
_UUID_HEX = re.compile(r"[0-9a-f]{32}")

NOT_CONFIGURED = "not configured"


class Level:
    """A summary line's verdict, spelled out so that it reads without colour."""

    OK = "OK"
    ATTENTION = "ATTENTION"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Period:
    """The reporting period [start, end) and the chain head at its end, which bounds its events."""

    start: datetime
    end: datetime
    head_seq: int
    head_hash: str

    @property
    def head(self) -> str:
        """Return the anchor as SEQ:HASH."""
        return f"{self.head_seq}:{self.head_hash}"

    @property
    def last_day(self) -> date:
        """Return the last day the period covers (its end is exclusive)."""
        return timezone.localtime(self.end - timedelta(microseconds=1)).date()

    @property
    def first_day(self) -> date:
        """Return the first day the period covers."""
        return timezone.localtime(self.start).date()


@dataclass(frozen=True)
class SummaryLine:
    area: str
    level: str
    text: str


@dataclass(frozen=True)
class KeyVersion:
    label: str
    key_id: str
    primary: bool
    files: int
    bytes: int


@dataclass(frozen=True)
class FormatInUse:
    name: str
    construction: str
    files: int


@dataclass
class Encryption:
    formats: list[FormatInUse]
    keys: list[KeyVersion]
    unknown_keys: list[KeyVersion]
    legacy_files: int
    total_files: int
    kdf: str
    kdf_iterations: int
    kdf_salt_bytes: int
    subkeys: str
    key_source: str
    rotations: list[dict]
    rotation_count: int


@dataclass
class Access:
    total: int
    by_outcome: dict[str, int]
    by_action: list[dict]
    companies: list[dict]
    users: list[dict]
    user_count: int
    documents: list[dict]
    document_count: int
    reads: int
    incidents: list[dict]
    incident_count: int
    incident_reasons: list[dict]
    incident_reason_count: int
    days: list[dict]
    activity_unit: str
    activity_svg: str


@dataclass
class Integrity:
    chain: ChainReport
    anchor: str
    previous: Report | None
    previous_present: bool | None


@dataclass
class StorageCertification:
    """The latest full storage scan at or before the period end, and what the report says of it.

    `scan` is None when no full scan had run by then; `in_period` says whether it ran in the period.
    """

    scan: ScanRun | None
    in_period: bool
    findings: list[ScanFinding]
    finding_count: int
    note: str

    @property
    def available(self) -> bool:
        """Return whether a full scan certified the storage in the period."""
        return self.scan is not None and self.in_period and self.scan.certified


@dataclass
class ReportContent:
    report_id: uuid.UUID
    organisation: str
    period: Period
    generated_at: datetime
    generated_by: str
    signer_subject: str
    signer_issuer: str
    signer_fingerprint: str
    signer_not_after: datetime
    summary: list[SummaryLine] = field(default_factory=list)
    encryption: Encryption | None = None
    storage: StorageCertification | None = None
    access: Access | None = None
    integrity: Integrity | None = None
    processing: list[tuple[str, str, str]] = field(default_factory=list)
    csv_name: str = ""
    csv_rows: int = 0
    csv_size: int = 0
    csv_sha256: str = ""


# The period ---------------------------------------------------------------------------------------


def period_make(start: datetime, end: datetime) -> Period:
    """Return the period [start, end) with its anchor: the last event before `end`."""
    if timezone.is_naive(start) or timezone.is_naive(end):
        raise ValueError("The period's start and end must be aware datetimes.")
    if not start < end:
        raise ValueError("The period must end after it starts.")
    head = (
        AccessEvent.objects.filter(when__lt=end).order_by("-seq").values_list("seq", "hash").first()
    )
    seq, hash_ = head if head else (0, GENESIS_HASH)
    return Period(start, end, seq, hash_)


def period_from_dates(first_day: date, last_day: date) -> Period:
    """Return the period from the start of `first_day` to the end of `last_day`, local time."""
    if last_day < first_day:
        raise ValueError(f"The period ends ({last_day}) before it starts ({first_day}).")
    zone = timezone.get_current_timezone()
    start = datetime.combine(first_day, datetime.min.time(), zone)
    end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), zone)
    return period_make(start, end)


def period_events(period: Period) -> QuerySet[AccessEvent]:
    """Return the period's events, unordered: those in [start, end) up to the anchor."""
    return AccessEvent.objects.filter(
        when__gte=period.start, when__lt=period.end, seq__lte=period.head_seq
    ).order_by()


# The CSV attachment -------------------------------------------------------------------------------


@dataclass
class CsvStats:
    """What `events_csv_chunks()` wrote: rows (events), bytes and their SHA-256, once exhausted."""

    rows: int = 0
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)


def events_csv_chunks(
    period: Period, stats: CsvStats | None = None, chunk_rows: int = 5000
) -> Iterator[bytes]:
    """Yield the period's events as UTF-8 CSV, in seq order, a few thousand rows at a time.

    The ORM's own query runs, but its rows skip Django's per-value converters (a call per cell,
    more than the rest of the CSV costs): each column is converted in one pass over a batch, by a
    function chosen once per column (`_csv_column_cells`) that gives the same text, and the
    batch is written as csv.writer writes it (`_csv_batch_text`).
    """
    stats = stats if stats is not None else CsvStats()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=CSV_LINE_END)
    writer.writerow(CSV_COLUMNS)
    queryset = period_events(period).order_by("seq").values_list(*CSV_COLUMNS)
    compiler = queryset.query.get_compiler(queryset.db)
    batches = compiler.execute_sql(MULTI, chunked_fetch=True, chunk_size=chunk_rows)
    cells = _csv_column_cells(compiler)
    for batch in batches:
        columns: list[Any] = list(zip(*batch, strict=True))
        for index, cell in cells:
            columns[index] = list(map(cell, columns[index]))
        buffer.write(_csv_batch_text(columns, writer, buffer))
        stats.rows += len(batch)
        yield _csv_flush(buffer, stats)
    yield _csv_flush(buffer, stats)


CSV_LINE_END = "\r\n"


def _csv_batch_text(columns: list[list[Any]], writer: Any, buffer: io.StringIO) -> str:
    """Return rows, given column by column, as the text csv.writer writes for them.

    csv.writer looks at every character of every cell, a third of the CSV's cost. This looks at
    each column once: a column without a comma, quote or line break is written as it is, the
    cells of the others quoted as csv quotes them. csv writes None as nothing, floats with
    repr() and the rest with str(). A NUL anywhere (csv's business: it may refuse it), or rows of
    one cell (csv quotes an empty one), send the batch through the writer itself, into `buffer`.
    """
    if len(columns) < 2:
        writer.writerows(zip(*columns, strict=True))
        return ""
    texts = []
    for column in columns:
        try:
            text, joined = column, "".join(column)  # the drivers return text as str itself
        except TypeError:
            text = _csv_str_column(column)
            joined = "".join(text)
        if "\x00" in joined:
            writer.writerows(zip(*columns, strict=True))
            return ""
        if _csv_needs_quotes(joined):
            text = list(map(_csv_quote, text))
        texts.append(text)
    lines = list(map(",".join, zip(*texts, strict=True)))
    return CSV_LINE_END.join(lines) + CSV_LINE_END if lines else ""


def _csv_str_column(column: list) -> list[str]:
    """Return the cells of a column that is not all text as csv writes them."""
    types = set(map(type, column))
    if types <= {int, bool, uuid.UUID}:
        return list(map(str, column))
    if types == {float}:
        return list(map(repr, column))
    return list(map(_csv_str, column))


def _csv_str(value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _csv_needs_quotes(text: str) -> bool:
    """Return whether csv.writer quotes this text (QUOTE_MINIMAL): a comma, quote or line break.

    Four substring searches: an order of magnitude faster than a regex's character class.
    """
    return "," in text or '"' in text or "\r" in text or "\n" in text


def _csv_quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if _csv_needs_quotes(text) else text


def _csv_column_cells(compiler: SQLCompiler) -> list[tuple[int, Callable[[Any], Any]]]:
    """Return (column, function) for each column whose raw value is not its CSV cell already.

    A cell is what the ORM's value would be written as: Django's converters for the column (the
    usual ones by a shortcut that gives the same value), then the time in UTC, ISO 8601, and a
    quote before free text a spreadsheet would run as a formula. csv writes the rest with str().
    """
    connection = compiler.connection
    ops = connection.ops
    expressions = [selected[0] for selected in compiler.select[: len(CSV_COLUMNS)]]
    converters = compiler.get_converters(expressions)
    cells: list[tuple[int, Callable[[Any], Any]]] = []
    for index, name in enumerate(CSV_COLUMNS):
        functions, expression = converters.get(index, ([], None))
        if name in _CSV_TEXT_COLUMNS and functions:
            raise NotSupportedError(f"{name} is text: no database converts it.")

        def converted(value: Any, functions: list = functions, expression: Any = expression) -> Any:
            for function in functions:
                value = function(value, expression, connection)
            return value

        if name == "when":
            cells.append((index, _csv_when_cell(connection, functions, converted)))
        elif name in _CSV_TEXT_COLUMNS:
            cells.append((index, _csv_text_cell))
        elif _converts_only(functions, ops, "convert_uuidfield_value"):
            cells.append((index, _csv_uuid_cell))
        elif _converts_only(functions, ops, "convert_booleanfield_value"):
            cells.append(
                (index, lambda value, c=converted: value if type(value) is bool else c(value))
            )
        elif functions:
            cells.append((index, converted))
    return cells


def _csv_when_cell(
    connection: BaseDatabaseWrapper, functions: list, converted: Callable[[Any], Any]
) -> Callable[[Any], str]:
    """Return the function that writes a stored time as the CSV's UTC ISO 8601 text."""
    naive_zone = connection.timezone if settings.USE_TZ else None
    shortcut = naive_zone is not None and _converts_only(
        functions, connection.ops, "convert_datetimefield_value"
    )

    def when(value: Any) -> str:
        if shortcut and type(value) is datetime and value.tzinfo is None:
            # What Django's converter does with SQLite's naive UTC time (make_aware).
            value = value.replace(tzinfo=naive_zone)
        else:
            value = converted(value)
        return value.astimezone(UTC).isoformat()

    return when


def _converts_only(functions: list, ops: Any, name: str) -> bool:
    """Return whether the converters of a column are exactly the backend's method `name`."""
    method = getattr(ops, name, None)
    return method is not None and functions == [method]


def _csv_text_cell(value: str) -> str:
    return "'" + value if value and value.startswith(_FORMULA_START) else value


def _csv_uuid_cell(value: Any) -> Any:
    """Return a stored UUID as csv writes Django's UUID value: 8-4-4-4-12 lowercase hex."""
    if type(value) is str and _UUID_HEX.fullmatch(value):
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    return None if value is None else uuid.UUID(value)


def _csv_flush(buffer: io.StringIO, stats: CsvStats) -> bytes:
    data = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    stats.size += len(data)
    stats.sha256.update(data)
    return data


# Sections -----------------------------------------------------------------------------------------


def _encryption(period: Period) -> Encryption:
    ring = keyring()
    by_key = {
        row["key_id"]: row
        for row in Document.objects.order_by()
        .values("key_id")
        .annotate(files=Count("pk"), bytes=Sum("size"))
    }
    keys = []
    for key in ring.keys:
        row = by_key.pop(key.key_id_hex, {})
        keys.append(
            KeyVersion(
                key.label,
                key.key_id_hex,
                key is ring.primary,
                row.get("files", 0),
                row.get("bytes") or 0,
            )
        )
    legacy = by_key.pop("", {})
    unknown = [
        KeyVersion("(not configured)", key_id, False, row["files"], row["bytes"] or 0)
        for key_id, row in sorted(by_key.items())
    ]
    docvault_files = sum(key.files for key in keys) + sum(key.files for key in unknown)
    formats = []
    if docvault_files or not legacy:
        formats.append(
            FormatInUse(
                "Docvault streaming format (v2; v1 until rotated)",
                "AES-256-GCM in Google Tink's AES-GCM-HKDF streaming construction: a per-file "
                "key from HKDF-SHA256 over a random 32-byte salt, "
                f"{fileformat.SEGMENT_SIZE // (1 << 20)} MiB segments each authenticated, "
                "the header (key ID; in v2 the document it belongs to) bound as associated data; "
                "the storage certification below counts files per version",
                docvault_files,
            )
        )
    if legacy:
        formats.append(
            FormatInUse(
                "Legacy Fernet (first system)",
                "Fernet: AES-128-CBC with HMAC-SHA256, the whole file as one token; read only, "
                "rewritten as bound v2 by key rotation",
                legacy["files"],
            )
        )
    rotations = list(
        period_events(period)
        .filter(action=Action.ROTATE)
        .values("key_id", "outcome")
        .annotate(events=Count("pk"), first=Min("when"), last=Max("when"))
        .order_by("first")
    )
    source = "VAULT_KEYS" if getattr(settings, "VAULT_KEYS", None) else "ENCRYPTION_SECRET"
    return Encryption(
        formats=formats,
        keys=keys,
        unknown_keys=unknown,
        legacy_files=legacy.get("files", 0),
        total_files=docvault_files + legacy.get("files", 0),
        kdf="PBKDF2-HMAC-SHA256, 32-byte output, once per key version and process",
        kdf_iterations=ring.iterations,
        kdf_salt_bytes=len((getattr(settings, "VAULT_KDF_SALT", "") or "").encode()),
        subkeys="HKDF-SHA256 sub-keys, one label per purpose (files, access-log chain, key ID)",
        key_source=(
            f"Master secrets are read from the process environment ({source}, or {source}_FILE "
            "naming a secret file), never from the database. The database and the files hold "
            "only key IDs: one-way HKDF fingerprints that reveal nothing about a key."
        ),
        rotations=rotations,
        rotation_count=sum(row["events"] for row in rotations),
    )


def _storage_certification(period: Period) -> StorageCertification:
    """Return the latest full storage scan finished at or before the period end, and its verdict."""
    scan = (
        ScanRun.objects.filter(kind=ScanRun.Kind.FULL, finished_at__lt=period.end)
        .order_by("-finished_at", "-id")
        .first()
    )
    if scan is None:
        return StorageCertification(
            scan=None,
            in_period=False,
            findings=[],
            finding_count=0,
            note=(
                "No full storage scan had run by the end of the period, so storage is not "
                "certified by this report: nothing here proves that every stored object is "
                "ciphertext. The encryption figures above come from the document records. Run "
                "a full scan (vault_scan --full, or the dashboard's Scans page) before the period "
                "ends."
            ),
        )
    in_period = scan.finished_at >= period.start
    findings = scan.findings.order_by("path", "kind")
    count = findings.count()
    if not in_period:
        note = (
            f"No full storage scan ran in the period; the latest one before it finished "
            f"{timezone.localtime(scan.finished_at):%Y-%m-%d %H:%M %Z}, so storage is not "
            f"certified for this period. That scan said: {scan.certification}"
        )
    elif scan.certified:
        note = scan.certification
    else:
        note = f"The storage is not certified: {scan.certification}"
    return StorageCertification(
        scan=scan,
        in_period=in_period,
        findings=list(findings[:MAX_FINDINGS]),
        finding_count=count,
        note=note,
    )


def activity_buckets(days: list[dict], first_day: date, last_day: date) -> tuple[str, list[dict]]:
    """Return the unit (day, month, year) and the counts per bucket, at most MAX_BARS buckets."""
    span = (last_day - first_day).days + 1
    if span <= MAX_BARS:
        unit, key, label = "day", (lambda day: day), (lambda day: day.isoformat())
    elif span // 28 <= MAX_BARS:
        unit, key, label = "month", (lambda day: day.replace(day=1)), (lambda day: f"{day:%Y-%m}")
    else:
        unit, key, label = "year", (lambda day: date(day.year, 1, 1)), (lambda day: f"{day:%Y}")
    buckets: dict[date, dict] = {}
    day = first_day
    while day <= last_day:
        buckets.setdefault(
            key(day), {"label": label(key(day)), "allowed": 0, "denied": 0, "failed": 0}
        )
        day += timedelta(days=1)
    for row in days:
        bucket = buckets.get(key(row["day"]))
        if bucket is not None:
            bucket["allowed"] += row.get(Outcome.ALLOWED, 0)
            bucket["denied"] += row.get(Outcome.DENIED, 0)
            bucket["failed"] += row.get(Outcome.FAILED, 0)
    return unit, list(buckets.values())


def _activity_svg(period: Period, unit: str, buckets: list[dict]) -> str:
    """Return the dashboard's activity chart of the period's buckets (day, month or year)."""
    bars = [
        ActivityBar(bucket["label"], bucket["allowed"], bucket["denied"], bucket["failed"])
        for bucket in buckets
    ]
    return activity_chart_svg(period.first_day, period.last_day, bars=bars, unit=unit)


def _access(period: Period) -> Access:
    """Return the access section: a few grouped passes over the period's events in SQL.

    A year holds a million events: each full pass costs about a second, so one GROUP BY fine
    enough for every per-outcome, per-action, per-person and per-company figure is summed here,
    and only what it cannot give (distinct documents, the documents table, days) has its own.
    """
    events = period_events(period)
    labels = dict(Action.choices)
    read_actions = {action.value for action in READ_ACTIONS}
    groups = list(
        events.values("actor_id", "actor_username", "action", "outcome", "staff_read").annotate(
            n=Count("pk"), bytes=Sum("bytes_served")
        )
    )
    companies_of = _companies_of({group["actor_id"] for group in groups})
    by_outcome = {outcome.value: 0 for outcome in Outcome}
    actions: dict[str, dict] = {}
    people: dict[str, dict] = {}
    companies: dict[str | None, dict] = {}
    company_people: dict[str | None, set[str]] = {}
    reads = 0
    for group in groups:
        n, outcome, action = group["n"], group["outcome"], group["action"]
        read = n if outcome == Outcome.ALLOWED and action in read_actions else 0
        reads += read
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
        _tally(actions.setdefault(action, _counts(action=action)), outcome, n)
        username = group["actor_username"]
        person = people.setdefault(
            username,
            _counts(actor_username=username, reads=0, documents=0, staff_reads=0, bytes=None),
        )
        _tally(person, outcome, n)
        person["reads"] += read
        if outcome == Outcome.ALLOWED:
            person["staff_reads"] += n if group["staff_read"] else 0
            if group["bytes"] is not None:
                person["bytes"] = (person["bytes"] or 0) + group["bytes"]
        # An event counts once for each company its actor belongs to (or "no company").
        for company in companies_of.get(group["actor_id"], (None,)):
            row = companies.setdefault(company, _counts(company=company, reads=0))
            _tally(row, outcome, n)
            row["reads"] += read
            company_people.setdefault(company, set()).add(username)
    for company, row in companies.items():
        row["users"] = len(company_people[company])
    read_events = events.filter(outcome=Outcome.ALLOWED, action__in=READ_ACTIONS)
    for row in read_events.values("actor_username").annotate(
        documents=Count("document_id", distinct=True)
    ):
        people[row["actor_username"]]["documents"] = row["documents"]
    document_reads = read_events.filter(document__isnull=False)  # CLI decryptions name no document
    documents = list(
        document_reads.values("document_id")
        .annotate(
            reads=Count("pk"),
            readers=Count("actor_username", distinct=True),
            title=Max("document_title"),
            last=Max("when"),
        )
        .order_by("-reads", "document_id")
    )
    # The owner as it is now (None once the document is deleted), looked up for the rows shown
    # rather than joined to every event.
    owners = dict(
        Document.objects.filter(
            pk__in=[row["document_id"] for row in documents[:MAX_DOCUMENTS]]
        ).values_list("pk", "company__name")
    )
    for row in documents[:MAX_DOCUMENTS]:
        row["company"] = owners.get(row["document_id"])
    incidents_qs = events.filter(outcome__in=(Outcome.DENIED, Outcome.FAILED))
    incidents = list(
        incidents_qs.order_by("seq").values(
            "seq",
            "when",
            "actor_username",
            "action",
            "outcome",
            "reason",
            "document_title",
            "stored_name",
            "client_ip",
        )[:MAX_INCIDENTS]
    )
    for row in incidents:
        row["action_label"] = labels.get(row["action"], row["action"])
    reasons = incidents_qs.values("outcome", "action", "reason").annotate(
        events=Count("pk"), first=Min("when"), last=Max("when")
    )
    day_rows = _day_counts(period)
    # Future days add nothing to the chart; a period of decades is drawn per month or year.
    last_day = min(period.last_day, timezone.localdate())
    unit, buckets = activity_buckets(day_rows, period.first_day, max(last_day, period.first_day))
    user_rows = sorted(people.values(), key=lambda row: (-row["total"], row["actor_username"]))
    return Access(
        total=sum(by_outcome.values()),
        by_outcome=by_outcome,
        by_action=[
            {**row, "label": labels.get(row["action"], row["action"])}
            for row in sorted(actions.values(), key=lambda row: (-row["total"], row["action"]))
        ],
        companies=sorted(
            companies.values(),
            key=lambda row: (-row["total"], row["company"] is None, row["company"] or ""),
        ),
        users=user_rows[:MAX_USERS],
        user_count=len(people),
        documents=documents[:MAX_DOCUMENTS],
        document_count=len(documents),
        reads=reads,
        incidents=incidents,
        incident_count=by_outcome[Outcome.DENIED] + by_outcome[Outcome.FAILED],
        incident_reasons=[
            {**row, "action_label": labels.get(row["action"], row["action"])}
            for row in reasons.order_by("-events", "outcome", "action", "reason")[
                :MAX_INCIDENT_REASONS
            ]
        ],
        incident_reason_count=reasons.count(),
        days=day_rows,
        activity_unit=unit,
        activity_svg=_activity_svg(period, unit, buckets),
    )


def _counts(**fields: Any) -> dict:
    """Return a table row: `fields`, a total and a count per outcome, all zero."""
    return {**fields, "total": 0, **dict.fromkeys(_OUTCOMES, 0)}


def _tally(row: dict, outcome: str, n: int) -> None:
    """Add `n` events of `outcome` to a table row made by _counts()."""
    row["total"] += n
    if outcome in _OUTCOMES:
        row[outcome] += n


def _companies_of(actor_ids: set[Any]) -> dict[Any, list[str]]:
    """Return the names of the companies of each of these users that belongs to any."""
    names: dict[Any, list[str]] = {}
    memberships = Membership.objects.filter(user_id__in=actor_ids - {None})
    for user_id, name in memberships.values_list("user_id", "company__name"):
        names.setdefault(user_id, []).append(name)
    return names


def _day_counts(period: Period) -> list[dict]:
    """Return the events per local day and outcome: one index range per day with events.

    Grouping by TruncDate would convert every event's time (on SQLite in Python: seconds for a
    year); the events of a day are those of the period cut to [local midnight, next midnight).
    Only the days from the first event to the last are asked: a period of a century is 36,525 days.
    """
    zone = timezone.get_current_timezone()
    events = period_events(period)
    first = events.order_by("when").values_list("when", flat=True).first()
    if first is None:
        return []
    last = events.order_by("-when").values_list("when", flat=True).first()
    assert last is not None
    rows = []
    day = max(period.first_day, timezone.localdate(first, zone))
    while day <= min(period.last_day, timezone.localdate(last, zone)):
        day_after = day + timedelta(days=1)
        start = max(period.start, datetime.combine(day, datetime.min.time(), zone))
        end = min(period.end, datetime.combine(day_after, datetime.min.time(), zone))
        counts = {
            row["outcome"]: row["n"]
            for row in period_events(replace(period, start=start, end=end))
            .values("outcome")
            .annotate(n=Count("pk"))
        }
        if counts:
            rows.append({"day": day, **counts})
        day = day_after
    return rows


@contextmanager
def integrity_check_started(period: Period) -> Iterator[Callable[[], Integrity]]:
    """Start verifying the chain, in a second process where it can; yield what waits for the result.

    The walk reads the whole log, the longest part of a large report; started first, it runs beside
    the CSV and the figures (compliance/forked.py says when a second process is used).
    """
    previous = Report.objects.order_by("-generated_at").first()
    expected = (previous.head_seq, previous.head_hash) if previous and previous.head_seq else None
    using = router.db_for_read(AccessEvent)
    with forked(partial(chain_verify, using=using, expected_head=expected), using=using) as chain:

        def integrity() -> Integrity:
            present = None
            if previous is not None:
                present = (
                    previous.head_seq == 0
                    or AccessEvent.objects.filter(
                        seq=previous.head_seq, hash=previous.head_hash
                    ).exists()
                )
            return Integrity(
                chain=chain(), anchor=period.head, previous=previous, previous_present=present
            )

        yield integrity


PROCESSING_ENTRIES = (
    ("(a)", "Controller: name and contact details", "REPORT_CONTROLLER"),
    ("(a)", "Joint controller or representative", "REPORT_REPRESENTATIVE"),
    ("(a)", "Data protection officer", "REPORT_DPO"),
    ("(b)", "Purposes of the processing", "REPORT_PURPOSES"),
    ("(c)", "Categories of data subjects", "REPORT_DATA_SUBJECTS"),
    ("(c)", "Categories of personal data", "REPORT_DATA_CATEGORIES"),
    ("(d)", "Categories of recipients", "REPORT_RECIPIENTS"),
    ("(e)", "Transfers to third countries and safeguards", "REPORT_TRANSFERS"),
    ("(f)", "Time limits for erasure", "REPORT_RETENTION"),
    ("(g)", "Organisational security measures", "REPORT_SECURITY_MEASURES"),
)


def _processing() -> list[tuple[str, str, str]]:
    return [
        (letter, label, (getattr(settings, name, None) or "").strip() or NOT_CONFIGURED)
        for letter, label, name in PROCESSING_ENTRIES
    ]


def _summary(content: ReportContent) -> list[SummaryLine]:
    encryption, access, integrity = content.encryption, content.access, content.integrity
    assert encryption and access and integrity and content.storage
    lines = []
    storage = content.storage
    if storage.available:
        lines.append(SummaryLine("Every file encrypted", Level.OK, storage.note))
    elif storage.scan is not None and storage.in_period:
        lines.append(SummaryLine("Every file encrypted", Level.FAILED, storage.note))
    else:
        lines.append(
            SummaryLine(
                "Every file encrypted",
                Level.ATTENTION,
                f"Not certified: no full storage scan ran in the period. The document records "
                f"list {encryption.total_files:,} files, "
                f"{encryption.total_files - encryption.legacy_files:,} in the v1 format and "
                f"{encryption.legacy_files:,} legacy Fernet files.",
            )
        )
    primary = encryption.keys[0]
    older = sum(key.files for key in encryption.keys[1:])
    unknown = sum(key.files for key in encryption.unknown_keys)
    key_text = (
        f"{len(encryption.keys)} key version(s), primary {primary.label} ({primary.key_id}); "
        f"{primary.files:,} files on the primary key, {older:,} on older keys, "
        f"{encryption.legacy_files:,} legacy, {unknown:,} on keys not configured; "
        f"{encryption.rotation_count:,} rotation events in the period."
    )
    key_level = (
        Level.FAILED
        if unknown
        else Level.ATTENTION
        if older or encryption.legacy_files
        else Level.OK
    )
    lines.append(SummaryLine("Keys", key_level, key_text))
    lines.append(
        SummaryLine(
            "Access",
            Level.ATTENTION if access.by_outcome[Outcome.FAILED] else Level.OK,
            f"{access.total:,} events: {access.by_outcome[Outcome.ALLOWED]:,} allowed, "
            f"{access.by_outcome[Outcome.DENIED]:,} denied, {access.by_outcome[Outcome.FAILED]:,} "
            f"failed; {access.reads:,} decryptions of {access.document_count:,} documents by "
            f"{access.user_count:,} users or operators.",
        )
    )
    chain = integrity.chain
    if chain.status is ChainStatus.BROKEN:
        level, text = Level.FAILED, chain.summary()
    elif integrity.previous_present is False:
        level = Level.FAILED
        text = (
            f"The previous report's anchor {integrity.previous.head if integrity.previous else ''} "
            "is no longer in the log: the log was rewritten or cut."
        )
    elif chain.status is ChainStatus.UNVERIFIABLE:
        level, text = Level.ATTENTION, chain.summary()
    else:
        level = Level.OK
        text = f"Chain verified: {chain.count:,} events intact; anchor {integrity.anchor}."
    lines.append(SummaryLine("Log integrity", level, text))
    missing = sum(1 for _, _, value in content.processing if value == NOT_CONFIGURED)
    lines.append(
        SummaryLine(
            "Record of processing",
            Level.ATTENTION if missing else Level.OK,
            f"{len(content.processing) - missing} of {len(content.processing)} entries configured"
            + (f"; {missing} marked not configured." if missing else "."),
        )
    )
    return lines


def report_content_build(
    period: Period,
    *,
    report_id: uuid.UUID,
    generated_at: datetime,
    generated_by: str,
    signer_subject: str,
    signer_issuer: str,
    signer_fingerprint: str,
    signer_not_after: datetime,
    integrity: Callable[[], Integrity],
) -> ReportContent:
    """Return everything the report says about `period`, computed from the database now.

    `integrity` (from integrity_check_started()) is asked for last, so that a walk of the chain
    started earlier runs while the rest is computed.
    """
    content = ReportContent(
        report_id=report_id,
        organisation=(getattr(settings, "REPORT_ORGANISATION", None) or "").strip()
        or NOT_CONFIGURED,
        period=period,
        generated_at=generated_at,
        generated_by=generated_by,
        signer_subject=signer_subject,
        signer_issuer=signer_issuer,
        signer_fingerprint=signer_fingerprint,
        signer_not_after=signer_not_after,
    )
    content.encryption = _encryption(period)
    content.storage = _storage_certification(period)
    content.access = _access(period)
    content.integrity = integrity()
    content.processing = _processing()
    content.summary = _summary(content)
    return content
