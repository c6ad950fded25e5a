"""The access log's filter set: the same filters drive the table, the CSV export and the links.

Every filter is one index range scan on `compliance_accessevent` (see the model's indexes).
"""

import re
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet

from vault.access import Action, Outcome
from vault.models import Company, Document

from .models import AccessEvent

KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")


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
        return queryset.filter(document_id__in=documents)

    def staff_filter(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        """Return only staff reads, or everything but staff reads."""
        return queryset.filter(staff_read=value == self.STAFF_ONLY)

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
