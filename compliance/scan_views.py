"""The storage scans on the compliance dashboard: the list, one run and its findings, a quick scan now.

`urlpatterns` is included under /compliance/scans/ in the `compliance` namespace. Officers only
(staff holding compliance.view_dashboard); every refusal is recorded.
"""

import logging

import django_tables2 as tables
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST, require_safe

from vault.access import RecordError

from .models import ScanFinding, ScanRun, scan_run_latest
from .permissions import officer_required
from .scan import storage_scan

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
FINDINGS_PAGE_SIZE = 50


# Tables ------------------------------------------------------------------------------------------


def _verdict_badge(verdict: str, label: str) -> str:
    css = "text-bg-success" if verdict == ScanRun.Verdict.CERTIFIED else "text-bg-danger"
    return format_html('<span class="badge {}">{}</span>', css, label)


RIGHT = {"th": {"class": "text-end"}, "td": {"class": "text-end"}}


class ScanRunTable(tables.Table):
    started_at = tables.DateTimeColumn(
        verbose_name="Started",
        format="Y-m-d H:i:s",
        linkify=lambda record: reverse("compliance:scan_detail", args=[record.pk]),
    )
    kind = tables.Column(verbose_name="Kind")
    actor_username = tables.Column(verbose_name="By")
    files = tables.Column(verbose_name="Files", attrs=RIGHT)
    bytes = tables.Column(verbose_name="Size", attrs=RIGHT)
    findings = tables.Column(
        verbose_name="Findings",
        accessor="finding_counts",
        orderable=False,
        empty_values=(),
        attrs=RIGHT,
    )
    verdict = tables.Column(verbose_name="Verdict")

    class Meta:
        model = ScanRun
        fields = ("started_at", "kind", "actor_username", "files", "bytes", "findings", "verdict")
        template_name = "django_tables2/bootstrap5.html"
        attrs = {"class": "table table-sm table-hover align-middle"}
        order_by = ("-started_at",)
        empty_text = "No scan has run yet: run a quick scan, or python manage.py vault_scan."

    def render_files(self, value: int) -> str:
        return f"{value:,}"

    def render_bytes(self, value: int) -> str:
        return filesizeformat(value)

    def render_findings(self, value: dict[str, int]) -> str:
        return f"{sum((value or {}).values()):,}"

    def render_verdict(self, record: ScanRun) -> str:
        return _verdict_badge(record.verdict, record.get_verdict_display())


class ScanFindingTable(tables.Table):
    kind = tables.Column(verbose_name="Finding")
    path = tables.Column(verbose_name="Stored name")
    file_format = tables.Column(verbose_name="Format")
    key_id = tables.Column(verbose_name="Key ID")
    document = tables.Column(verbose_name="Document", accessor="document_id", orderable=False)
    detail = tables.Column(verbose_name="Detail", orderable=False)

    class Meta:
        model = ScanFinding
        fields = ("kind", "path", "file_format", "key_id", "document", "detail")
        template_name = "django_tables2/bootstrap5.html"
        attrs = {"class": "table table-sm align-middle"}
        order_by = ("path",)

    def render_kind(self, record: ScanFinding) -> str:
        css = "text-bg-warning" if record.is_notice else "text-bg-danger"
        return format_html('<span class="badge {}">{}</span>', css, record.get_kind_display())

    def render_path(self, value: str) -> str:
        return format_html('<code class="text-break">{}</code>', value)

    def render_key_id(self, value: str) -> str:
        return format_html("<code>{}</code>", value)

    def render_document(self, record: ScanFinding) -> str:
        document = record.document
        if document is None:
            return format_html('<span class="text-body-secondary">{}</span>', "—")
        url = reverse("vault:document_detail", args=[document.pk])
        return format_html('<a href="{}">{}</a>', url, document.title)


# Views -------------------------------------------------------------------------------------------


@officer_required
@require_safe
def scan_list(request: HttpRequest) -> HttpResponse:
    """List the scans, newest first, with a button that runs a quick scan."""
    table = ScanRunTable(ScanRun.objects.all())
    tables.RequestConfig(request, paginate={"per_page": PAGE_SIZE}).configure(table)
    return render(
        request,
        "compliance/scan_list.html",
        {
            "table": table,
            "latest_scan": scan_run_latest(),
            "scan_max_age_days": getattr(settings, "DASHBOARD_SCAN_MAX_AGE_DAYS", 7),
        },
    )


@officer_required
@require_safe
def scan_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show one scan: its certification, counts by format and key ID, and its findings."""
    run = get_object_or_404(ScanRun, pk=pk)
    findings = run.findings.select_related("document")
    kind = request.GET.get("kind", "")
    if kind in ScanFinding.Kind.values:
        findings = findings.filter(kind=kind)
    else:
        kind = ""
    table = ScanFindingTable(findings)
    tables.RequestConfig(request, paginate={"per_page": FINDINGS_PAGE_SIZE}).configure(table)
    return render(
        request,
        "compliance/scan_detail.html",
        {
            "run": run,
            "table": table,
            "kind": kind,
            "total_findings": sum(run.finding_counts.values()),
            "formats": sorted(run.counts_by_format.items()),
            "keys": sorted(run.counts_by_key.items()),
        },
    )


@officer_required  # first: a refusal is recorded whatever the method
@require_POST
def scan_run(request: HttpRequest) -> HttpResponse:
    """Run a quick scan now, recorded like any other; show its result."""
    try:
        run = storage_scan(user=request.user, request=request)
    except ImproperlyConfigured:
        messages.error(request, "Encryption key not configured: the scan cannot run.")
        return redirect("compliance:scan_list")
    except RecordError:
        logger.exception("A scan could not be recorded")
        messages.error(
            request, "The scan could not be recorded in the access log, so it was not kept."
        )
        return redirect("compliance:scan_list")
    verdict = "certified" if run.certified else "not certified"
    messages.info(request, f"Quick scan #{run.pk} finished: {verdict}.")
    return redirect("compliance:scan_detail", pk=run.pk)


urlpatterns = [
    path("", scan_list, name="scan_list"),
    path("run/", scan_run, name="scan_run"),
    path("<int:pk>/", scan_detail, name="scan_detail"),
]
