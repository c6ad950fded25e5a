"""The compliance dashboard: overview, access-log browser, event detail, CSV export, chain check.

Every view is behind `officer_required` (staff holding compliance.view_dashboard); refusals are
recorded. What the dashboard itself does with personal data (exports, verifications) is recorded
too, before it happens.
"""

import csv
import logging
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET, require_POST, require_safe
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.paginators import LazyPaginator

from vault.access import (
    Access,
    Action,
    Outcome,
    RecordError,
    access_context,
    access_record,
)

from .access_log import chain_check_run
from .charts import activity_chart_svg
from .export import CSV_COLUMNS, csv_cell
from .filters import AccessEventFilter
from .models import (
    AccessEvent,
    ChainCheck,
    ChainStatus,
    access_event_latest,
    scan_run_latest,
)
from .overview import activity_by_day, day_start, key_inventory_get, vault_checks_run
from .permissions import officer_required
from .tables import AccessEventTable

logger = logging.getLogger(__name__)

ACTIVITY_DAYS = 30
UNAVAILABLE = "The action could not be recorded in the access log, so it was not carried out."


def _activity_period() -> tuple[date, date]:
    end = timezone.localdate()
    return end - timedelta(days=ACTIVITY_DAYS - 1), end


def _record(request: HttpRequest, action: str, reason: str) -> None:
    """Record what the dashboard does with the log; raise RecordError if that is impossible."""
    with access_context(action=action, user=request.user, request=request) as context:
        access_record(Access(Outcome.ALLOWED, context, reason=reason))


def _unavailable(request: HttpRequest) -> HttpResponse:
    return render(request, "vault/unavailable.html", {"message": UNAVAILABLE}, status=503)


# Overview ----------------------------------------------------------------------------------------


@officer_required
@require_safe
def overview(request: HttpRequest) -> HttpResponse:
    """Show encryption status, the key ring, 30 days of activity and the audit chain."""
    start, end = _activity_period()
    activity = activity_by_day(start, end)
    log_url = reverse("compliance:access_log")
    period = f"when_after={start:%Y-%m-%d}"
    context = {
        "latest_scan": scan_run_latest(),
        "scan_max_age_days": settings.DASHBOARD_SCAN_MAX_AGE_DAYS,
        "keys": key_inventory_get(),
        "checks": vault_checks_run(),
        "activity": activity,
        "activity_start": start,
        "activity_end": end,
        "allowed_count": sum(day.allowed for day in activity),
        "denied_count": sum(day.denied for day in activity),
        "failed_count": sum(day.failed for day in activity),
        "staff_count": AccessEvent.objects.filter(when__gte=day_start(start), staff_read=True)
        .order_by()
        .count(),
        "denied_url": f"{log_url}?outcome={Outcome.DENIED}&{period}",
        "failed_url": f"{log_url}?outcome={Outcome.FAILED}&{period}",
        "staff_url": f"{log_url}?staff=only&{period}",
        "last_check": ChainCheck.objects.order_by("-when", "-id").first(),
        "head": access_event_latest(),
    }
    return render(request, "compliance/overview.html", context)


@officer_required
@require_safe
def activity_chart(request: HttpRequest) -> HttpResponse:
    """Serve the 30-day activity chart as an SVG image."""
    start, end = _activity_period()
    response = HttpResponse(activity_chart_svg(start, end), content_type="image/svg+xml")
    # The image styles itself with an inline <style> and runs nothing: allow exactly that.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["Cache-Control"] = "private, no-store"
    return response


@officer_required
@require_POST
def chain_verify_now(request: HttpRequest) -> HttpResponse:
    """Verify the whole chain against the published head now; the check records itself."""
    try:
        check = chain_check_run(user=request.user, via="dashboard")
    except (RecordError, DatabaseError):
        logger.exception("A chain verification could not be recorded")
        return _unavailable(request)
    if check.status == ChainStatus.OK:
        messages.success(request, check.summary)
    else:
        messages.error(request, check.summary)
    return redirect("compliance:overview")


# Access log --------------------------------------------------------------------------------------


@method_decorator(officer_required, name="dispatch")
class AccessLogView(SingleTableMixin, FilterView):
    """The access log, filtered, sorted and paginated without ever counting the whole table."""

    model = AccessEvent
    table_class = AccessEventTable
    filterset_class = AccessEventFilter
    template_name = "compliance/access_log.html"
    paginator_class = LazyPaginator

    def get_table_pagination(self, table: AccessEventTable) -> dict[str, Any]:
        """Return LazyPaginator options: settings.DASHBOARD_PAGE_SIZE rows a page."""
        options = super().get_table_pagination(table)
        options["per_page"] = settings.DASHBOARD_PAGE_SIZE
        return options

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """Add the export link carrying the current filters."""
        context = super().get_context_data(**kwargs)
        query = self.request.GET.copy()
        for name in ("page", "sort"):
            query.pop(name, None)
        context["filter_query"] = query.urlencode()
        context["filtered"] = bool(query)
        context["active_filters"] = self._active_filters(context["filter"])
        return context

    def _active_filters(self, filterset: AccessEventFilter) -> list[dict[str, str]]:
        """Return each applied filter as label, value and the URL without it."""
        if not filterset.is_bound or not filterset.is_valid():
            return []
        active = []
        for name, value in filterset.form.cleaned_data.items():
            if value in (None, "", []):
                continue
            field = filterset.form.fields[name]
            if isinstance(value, slice):
                if value.start is None and value.stop is None:
                    continue
                start = f"{value.start:%Y-%m-%d}" if value.start else "…"
                stop = f"{value.stop:%Y-%m-%d}" if value.stop else "…"
                text, params = f"{start} to {stop}", [f"{name}_after", f"{name}_before"]
            else:
                choices = dict(getattr(field, "choices", ()))
                text, params = str(choices.get(value, value)), [name]
            query = self.request.GET.copy()
            for param in (*params, "page"):
                query.pop(param, None)
            encoded = query.urlencode()
            active.append(
                {
                    "label": str(field.label),
                    "value": text,
                    "remove_url": self.request.path + (f"?{encoded}" if encoded else ""),
                }
            )
        return active


@officer_required
@require_safe
def event_detail(request: HttpRequest, seq: int) -> HttpResponse:
    """Show every recorded field of one event, with links to its neighbours and related events."""
    event = get_object_or_404(AccessEvent, seq=seq)
    context = {
        "event": event,
        "previous_seq": seq - 1 if seq > 1 else None,
        "next_seq": seq + 1 if AccessEvent.objects.filter(seq=seq + 1).exists() else None,
        "log_url": reverse("compliance:access_log"),
    }
    return render(request, "compliance/event_detail.html", context)


# CSV export --------------------------------------------------------------------------------------

CSV_ROWS_PER_CHUNK = 200


class _Lines:
    """A file-like object collecting what csv.writer writes."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, value: str) -> None:
        self.lines.append(value)


def access_log_csv(events: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    """Yield the CSV of these rows (values of CSV_COLUMNS), header first, a few hundred rows a chunk."""
    buffer = _Lines()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in events:
        writer.writerow([csv_cell(value) for value in row])
        if len(buffer.lines) >= CSV_ROWS_PER_CHUNK:
            yield "".join(buffer.lines)
            buffer.lines.clear()
    yield "".join(buffer.lines)


def access_log_export_queryset(filterset: AccessEventFilter) -> QuerySet:
    """Return the filtered events up to the current head, oldest first (what an export holds)."""
    head = getattr(access_event_latest(), "seq", 0)
    # Bounded by the head, so the count recorded is the count served even while events arrive.
    return filterset.qs.filter(seq__lte=head).order_by("when", "id")


@officer_required
@require_GET
def access_log_export(request: HttpRequest) -> HttpResponse:
    """Stream the filtered access log as CSV; the export is recorded first, with its row count."""
    filterset = AccessEventFilter(request.GET or None, queryset=AccessEvent.objects.all())
    if filterset.is_bound and not filterset.is_valid():
        errors = "; ".join(
            f"{name}: {' '.join(error_list)}" for name, error_list in filterset.errors.items()
        )
        return HttpResponse(
            f"Invalid filter: {errors}", status=400, content_type="text/plain; charset=utf-8"
        )
    queryset = access_log_export_queryset(filterset)
    rows = queryset.count()
    try:
        _record(request, Action.LOG_EXPORT, f"{rows} rows; filter: {filterset.description()}")
    except RecordError:
        logger.exception("An access-log export could not be recorded")
        return _unavailable(request)
    lines = access_log_csv(queryset.values_list(*CSV_COLUMNS).iterator(chunk_size=2000))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="access-log-{stamp}.csv"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
