"""The access log's filter set: the same filters drive the table, the CSV export and the links.

Every filter is one index range scan on `compliance_accessevent` (see the model's indexes), and so
is every sort. A filter combined with another column's sort leaves SQLite a choice: walk the filter's
index and sort what it finds, or walk the sort's index and skip what does not match. It always takes
the first (its statistics are averages), which sorts most of the table when the filter matches most of
it. So when the sort is not by time, a bounded probe counts the matches (at most
DASHBOARD_SORT_IN_MEMORY_MAX + 1): above that, the filters compare an unindexed copy of their columns
(SQLite's unary +) and the sort's index serves the page.
"""

import re
from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.db.models import F, Func, QuerySet

from vault.access import Action, Outcome
from vault.models import Company, Document

from .models import AccessEvent

KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")


DEFAULT_SORT_IN_MEMORY_MAX = 30_000
# The table's sorts other than time, by the column each one walks first.
SORT_COLUMNS = {"actor": "actor_username", "action": "action", "outcome": "outcome"}


class Unindexed(Func):
    """A column's value that SQLite's planner cannot look up in an index (unary +)."""

    template = "%(expressions)s"
    arity = 1

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        """Return `+column`: the same value, but no index is considered for it."""
        return super().as_sql(compiler, connection, template="+%(expressions)s", **extra)


class KeyIdField(forms.CharField):
    """A key ID: 16 hex digits, any case."""

    def clean(self, value: Any) -> str:
        """Return the key ID in lower case; raise ValidationError for anything else."""
        value = (super().clean(value) or "").strip().lower()
        if value and not KEY_ID_PATTERN.fullmatch(value):
            raise forms.ValidationError("A key ID is 16 hexadecimal digits.")
        return value


class KeyIdFilter(django_filters.CharFilter):
    field_class = KeyIdField


class IPFilter(django_filters.CharFilter):
    field_class = forms.GenericIPAddressField


def _select() -> forms.Select:
    return forms.Select(attrs={"class": "form-select form-select-sm"})


class AccessEventFilter(django_filters.FilterSet):
    """Filter the access log by period, who, which company or document, what, outcome, where, key."""

    STAFF_ONLY = "only"
    STAFF_EXCLUDED = "exclude"

    when = django_filters.DateFromToRangeFilter(
        label="Period",
        widget=django_filters.widgets.DateRangeWidget(attrs={"type": "date"}),
    )
    actor = django_filters.CharFilter(field_name="actor_username", label="Actor")
    company = django_filters.ModelChoiceFilter(
        field_name="document_id",
        queryset=Company.objects.order_by("name"),
        method="company_filter",
        label="Company",
        empty_label="Any company",
        widget=_select(),
    )
    document = django_filters.UUIDFilter(field_name="document_id", label="Document ID")
    action = django_filters.ChoiceFilter(
        choices=Action.choices, empty_label="Any action", widget=_select()
    )
    outcome = django_filters.ChoiceFilter(
        choices=Outcome.choices, empty_label="Any outcome", widget=_select()
    )
    ip = IPFilter(field_name="client_ip", label="IP address")
    key = KeyIdFilter(field_name="key_id", label="Key ID")
    staff = django_filters.ChoiceFilter(
        field_name="staff_read",
        choices=[(STAFF_ONLY, "Staff reads only"), (STAFF_EXCLUDED, "No staff reads")],
        method="staff_filter",
        label="Staff reads",
        empty_label="Staff reads or not",
        widget=_select(),
    )

    class Meta:
        model = AccessEvent
        fields: list[str] = []

    def company_filter(self, queryset: QuerySet, name: str, value: Company) -> QuerySet:
        """Return the events of the company's documents (as they exist now)."""
        documents = Document.objects.filter(company=value).values("pk")
        return queryset.filter(**{f"{name}__in": documents})

    def staff_filter(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        """Return only staff reads, or everything but staff reads."""
        return queryset.filter(**{name: value == self.STAFF_ONLY})

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        """Return the filtered events; let a non-time sort walk its index when most rows match."""
        filtered = super().filter_queryset(queryset)
        request = getattr(self, "request", None)
        sort = request.GET.get("sort", "") if request is not None else ""
        column = SORT_COLUMNS.get(sort.lstrip("-"))
        active = [
            name
            for name, value in self.form.cleaned_data.items()
            if value not in (None, "", [], slice(None, None))
            and self.filters[name].field_name != column
        ]
        if column is None or not active:
            return filtered
        limit = int(getattr(settings, "DASHBOARD_SORT_IN_MEMORY_MAX", DEFAULT_SORT_IN_MEMORY_MAX))
        if filtered.order_by().values("pk")[: limit + 1].count() <= limit:
            return filtered
        steered = queryset
        for name, value in self.form.cleaned_data.items():
            entry = self.filters[name]
            if name not in active:  # empty, or the sort's own column: its index serves both
                steered = entry.filter(steered, value)
                continue
            # The filters are this filter set's own copies: renaming their field is local.
            field_name = entry.field_name
            alias = f"unindexed_{field_name}"
            steered = steered.alias(**{alias: Unindexed(F(field_name))})
            entry.field_name = alias
            try:
                steered = entry.filter(steered, value)
            finally:
                entry.field_name = field_name
        return steered

    def description(self) -> str:
        """Return the applied filters as text, as the export's log entry records them."""
        if not self.is_bound or not self.is_valid():
            return "no filter"
        parts = []
        for name, value in self.form.cleaned_data.items():
            if value in (None, "", []):
                continue
            if isinstance(value, slice):
                if value.start is None and value.stop is None:
                    continue
                start = f"{value.start:%Y-%m-%d}" if value.start else "…"
                stop = f"{value.stop:%Y-%m-%d}" if value.stop else "…"
                value = f"{start} to {stop}"
            parts.append(f"{name}={value}")
        return ", ".join(parts) or "no filter"
