"""The report's building blocks: periods, chart buckets, the access figures."""

import csv
import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.access_log import access_event_record
from reports.build import (
    CSV_LINE_END,
    MAX_BARS,
    READ_ACTIONS,
    _access,
    _csv_batch_text,
    activity_buckets,
    period_events,
    period_from_dates,
    period_make,
)
from vault.access import Access, AccessContext, Action, Outcome
from vault.models import Membership

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("last_day", "unit"),
    [(date(2026, 1, 31), "day"), (date(2028, 12, 31), "month"), (date(2125, 12, 31), "year")],
)
def test_long_periods_are_drawn_in_coarser_buckets_and_keep_every_count(last_day, unit):
    days = [
        {"day": date(2026, 1, 3), "allowed": 5, "denied": 1},
        {"day": date(2026, 1, 4), "allowed": 2, "failed": 3},
    ]

    got_unit, buckets = activity_buckets(days, date(2026, 1, 1), last_day)

    assert got_unit == unit and len(buckets) <= MAX_BARS
    assert sum(bucket["allowed"] for bucket in buckets) == 7
    assert sum(bucket["denied"] for bucket in buckets) == 1
    assert sum(bucket["failed"] for bucket in buckets) == 3


def test_a_period_of_dates_runs_from_local_midnight_to_local_midnight(settings):
    settings.TIME_ZONE = "Europe/Paris"
    with timezone.override(ZoneInfo("Europe/Paris")):
        period = period_from_dates(date(2026, 1, 1), date(2026, 12, 31))

        assert period.start == datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))
        assert period.end == datetime(2027, 1, 1, tzinfo=ZoneInfo("Europe/Paris"))
        assert (period.first_day, period.last_day) == (date(2026, 1, 1), date(2026, 12, 31))


def test_an_empty_log_anchors_at_the_genesis_head():
    now = timezone.now()

    period = period_make(now - timedelta(days=1), now)

    assert period.head == "0:" + "0" * 64


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (
            datetime(2026, 1, 2, tzinfo=ZoneInfo("UTC")),
            datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")),
        ),
        (datetime(2026, 1, 1), datetime(2026, 1, 2)),
    ],
)
def test_a_backwards_or_naive_period_is_refused(start, end):
    with pytest.raises(ValueError, match="period"):
        period_make(start, end)


def test_the_access_figures_are_those_of_plain_queries(activity, alice, globex):
    """The access section sums one fine GROUP BY in Python: each figure against its own query."""
    Membership.objects.create(user=alice, company=globex)  # alice counts for both companies
    command = AccessContext(action=Action.CLI_DECRYPT, extra={"operator": "root"})
    access_event_record(Access(Outcome.ALLOWED, command, key_id="0123456789abcdef"))
    contract = activity["contract"].pk
    activity["contract"].delete()  # its events stay, listed as "(deleted)"
    now = timezone.now()
    with timezone.override("Asia/Kathmandu"):  # local days start at 18:15 UTC
        period = period_make(now - timedelta(days=3), now + timedelta(seconds=1))
        access = _access(period)
        events = period_events(period)
        days = {}
        for row in (
            events.annotate(day=TruncDate("when")).values("day", "outcome").annotate(n=Count("pk"))
        ):
            days.setdefault(row["day"], {"day": row["day"]})[row["outcome"]] = row["n"]

    read = Q(outcome=Outcome.ALLOWED, action__in=READ_ACTIONS)
    outcomes = {o: Count("pk", filter=Q(outcome=o)) for o in ("allowed", "denied", "failed")}
    companies = {
        row.pop("actor__memberships__company__name"): row
        for row in events.values("actor__memberships__company__name").annotate(
            total=Count("pk"),
            users=Count("actor_username", distinct=True),
            reads=Count("pk", filter=read),
            **outcomes,
        )
    }
    users = events.values("actor_username").annotate(
        total=Count("pk"),
        reads=Count("pk", filter=read),
        documents=Count("document_id", distinct=True, filter=read),
        staff_reads=Count("pk", filter=Q(staff_read=True, outcome=Outcome.ALLOWED)),
        bytes=Sum("bytes_served", filter=Q(outcome=Outcome.ALLOWED)),
        **outcomes,
    )
    documents = (  # the company's join leaves out a deleted document: checked apart below
        events.filter(read, document__isnull=False)
        .values("document_id")
        .annotate(
            reads=Count("pk"),
            readers=Count("actor_username", distinct=True),
            title=Max("document_title"),
            company=Max("document__company__name"),
            last=Max("when"),
        )
        .order_by("-reads", "document_id")
    )
    assert {
        row["company"]: {k: v for k, v in row.items() if k != "company"} for row in access.companies
    } == companies
    assert set(companies) >= {"Acme", "Globex", None}
    assert access.users == list(users.order_by("-total", "actor_username"))
    assert access.user_count == users.count()
    listed = [row for row in access.documents if row["company"] is not None]
    deleted = [row for row in access.documents if row["company"] is None]
    assert listed == list(documents)
    assert [(row["document_id"], row["title"]) for row in deleted] == [
        (contract, "Supply contract")
    ]
    assert access.document_count == len(documents) + 1
    assert access.reads == events.filter(read).count()
    assert access.by_action == [
        {**row, "label": dict(Action.choices)[row["action"]]}
        for row in events.values("action")
        .annotate(total=Count("pk"), **outcomes)
        .order_by("-total", "action")
    ]
    assert access.total == events.count() == sum(access.by_outcome.values())
    assert access.days == [days[day] for day in sorted(days)]


cells = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from('ab ,"\r\n\x00=é'), max_size=8),
    st.text(max_size=8),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.uuids(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda width: st.lists(st.lists(cells, min_size=width, max_size=width))
    )
)
def test_a_batch_is_written_as_csv_writer_writes_it(rows):
    expected = io.StringIO()
    csv_error = None
    try:
        csv.writer(expected, lineterminator=CSV_LINE_END).writerows(rows)
    except csv.Error as exc:
        csv_error = str(exc)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=CSV_LINE_END)
    columns = [list(column) for column in zip(*rows, strict=True)]

    try:
        text = _csv_batch_text(columns, writer, buffer)
    except csv.Error as exc:
        assert str(exc) == csv_error
    else:
        assert csv_error is None
        assert buffer.getvalue() + text == expected.getvalue()
