"""The report's building blocks: periods, chart buckets, CSV cells."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from reports.build import MAX_BARS, activity_buckets, period_from_dates, period_make

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
