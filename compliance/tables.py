"""The access log as a django-tables2 table: dense, sortable only where an index serves the sort."""

from typing import Any

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from .models import AccessEvent

OUTCOME_BADGES = {
    "allowed": "text-bg-light border",
    "denied": "text-bg-warning",
    "failed": "text-bg-danger",
}


def filter_url(request: Any, **params: str) -> str:
    """Return the access log's URL with the current filters plus (or replaced by) `params`."""
    query = request.GET.copy() if request is not None else {}
    for name in ("page", "sort"):
        query.pop(name, None)
    for name, value in params.items():
        query[name] = value
    encoded = query.urlencode() if hasattr(query, "urlencode") else ""
    return reverse("compliance:access_log") + (f"?{encoded}" if encoded else "")


class AccessEventTable(tables.Table):
    """One row per event, newest first. Each sort is (column, when, id): one index, no sort step."""

    when = tables.DateTimeColumn(
        format="Y-m-d H:i:s",
        order_by=("when", "id"),
        linkify=("compliance:event_detail", {"seq": tables.A("seq")}),
        verbose_name="When",
        attrs={"td": {"class": "text-nowrap font-monospace small"}},
    )
    actor = tables.Column(
        accessor="actor_username",
        order_by=("actor_username", "when", "id"),
        verbose_name="Actor",
        empty_values=(),
    )
    action = tables.Column(order_by=("action", "when", "id"))
    outcome = tables.Column(order_by=("outcome", "when", "id"))
    document = tables.Column(
        accessor="document_title", orderable=False, verbose_name="Document", empty_values=()
    )
    client_ip = tables.Column(
        orderable=False, verbose_name="IP", attrs={"td": {"class": "font-monospace small"}}
    )
    key_id = tables.Column(
        orderable=False, verbose_name="Key ID", attrs={"td": {"class": "font-monospace small"}}
    )
    reason = tables.Column(orderable=False, attrs={"td": {"class": "small text-secondary"}})
    seq = tables.Column(
        orderable=False,
        verbose_name="#",
        linkify=("compliance:event_detail", {"seq": tables.A("seq")}),
        attrs={"td": {"class": "text-end small"}, "th": {"class": "text-end"}},
    )

    class Meta:
        model = AccessEvent
        fields = ()
        sequence = (
            "when",
            "actor",
            "action",
            "outcome",
            "document",
            "client_ip",
            "key_id",
            "reason",
            "seq",
        )
        order_by = ("-when",)
        attrs = {"class": "table table-sm table-hover align-middle access-log", "id": "access-log"}
        row_attrs = {"data-seq": lambda record: record.seq}
        empty_text = "No events match these filters."

    def render_actor(self, record: AccessEvent) -> str:
        """Return the actor as a link that narrows the log to them."""
        name = record.actor_username
        if not name:
            return format_html('<span class="text-secondary">anonymous</span>')
        return format_html(
            '<a href="{}" title="Only {}">{}</a>',
            filter_url(getattr(self, "request", None), actor=name),
            name,
            name,
        )

    def render_action(self, record: AccessEvent) -> str:
        """Return the action's label, with a staff-read badge when it was one."""
        staff = (
            format_html(' <span class="badge text-bg-info" title="{}">staff</span>', "Staff read")
            if record.staff_read
            else ""
        )
        return format_html("{}{}", record.get_action_display(), staff)

    def render_outcome(self, value: str, record: AccessEvent) -> str:
        """Return the outcome as a coloured badge."""
        return format_html(
            '<span class="badge {}">{}</span>',
            OUTCOME_BADGES.get(record.outcome, "text-bg-secondary"),
            value,
        )

    def render_document(self, record: AccessEvent) -> str:
        """Return the document's title (as recorded) linking to its events."""
        if not record.document_id:
            return format_html('<span class="text-secondary">{}</span>', "—")
        title = Truncator(record.document_title or str(record.document_id)).chars(40)
        return format_html(
            '<a href="{}" title="Only this document">{}</a>',
            filter_url(getattr(self, "request", None), document=str(record.document_id)),
            title,
        )

    def render_key_id(self, value: str) -> str:
        """Return a shortened key ID; the full one is in the title and on the event page."""
        return format_html('<span title="{}">{}…</span>', value, value[:8])

    def render_reason(self, value: str) -> str:
        """Return the reason, cut to fit a row."""
        return format_html('<span title="{}">{}</span>', value, Truncator(value).chars(60))
