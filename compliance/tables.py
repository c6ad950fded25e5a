"""The access log as a django-tables2 table: dense, sortable only where an index serves the sort.

tables2 owns the columns, the sort links and the pagination; the rows are drawn by a plain
template (compliance/snippets/access_log_table.html), because tables2's per-cell rendering
(a signature inspection per cell) costs several milliseconds per row.
"""

import django_tables2 as tables

from .models import AccessEvent


class AccessEventTable(tables.Table):
    """One row per event, newest first. Each sort is (column, when, id): one index, no sort step."""

    when = tables.Column(order_by=("when", "id"), verbose_name="When")
    actor = tables.Column(
        accessor="actor_username", order_by=("actor_username", "when", "id"), verbose_name="Actor"
    )
    action = tables.Column(order_by=("action", "when", "id"))
    outcome = tables.Column(order_by=("outcome", "when", "id"))
    document = tables.Column(accessor="document_title", orderable=False, verbose_name="Document")
    client_ip = tables.Column(orderable=False, verbose_name="IP")
    key_id = tables.Column(orderable=False, verbose_name="Key ID")
    reason = tables.Column(orderable=False)
    seq = tables.Column(orderable=False, verbose_name="#", attrs={"th": {"class": "text-end"}})

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
        template_name = "compliance/snippets/access_log_table.html"
        attrs = {"class": "table table-sm table-hover align-middle access-log", "id": "access-log"}
        empty_text = "No events match these filters."
