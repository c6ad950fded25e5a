"""The reports pages of the compliance dashboard: list, generate, download, verify.

Included under /compliance/reports/ in the `reports` namespace (config/urls.py), so the
dependencies keep pointing reports -> compliance -> vault. Officers only (staff holding
compliance.view_dashboard); every refusal is recorded by `officer_required`.
"""

import logging
from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadhandler import MemoryFileUploadHandler, SkipFile
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from compliance.permissions import officer_required
from vault.access import RecordError
from vault.middleware import accepts_uploads

from .build import period_from_dates
from .generate import report_generate, report_open
from .models import Report
from .verify import report_verification_record, report_verify

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
# A report is a few megabytes; its CSV attachment compressed, tens at most over a busy year.
MAX_VERIFY_UPLOAD = 50 * 1024 * 1024
UNRECORDED = "The action could not be recorded in the access log, so it was not carried out."


class PeriodForm(forms.Form):
    first_day = forms.DateField(
        label="From", widget=forms.DateInput(attrs={"type": "date", "class": "form-control"})
    )
    last_day = forms.DateField(
        label="To (included)",
        widget=forms.DateInput(attrs={"type": "date", "class": "form-control"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, last = data.get("first_day"), data.get("last_day")
        if first and last and last < first:
            raise forms.ValidationError("The period ends before it starts.")
        return data


class VerifyForm(forms.Form):
    pdf = forms.FileField(
        label="Report PDF",
        widget=forms.ClearableFileInput(
            attrs={"accept": "application/pdf", "class": "form-control"}
        ),
    )


def _default_period() -> dict[str, date]:
    """Return last month, the period an officer most often reports on."""
    first_of_month = timezone.localdate().replace(day=1)
    last_month_end = first_of_month - timedelta(days=1)
    return {"first_day": last_month_end.replace(day=1), "last_day": last_month_end}


def _list_page(
    request: HttpRequest, form: PeriodForm, *, error: str = "", status: int = 200
) -> HttpResponse:
    reports = Report.objects.select_related("generated_by").order_by("-generated_at")
    page = Paginator(reports, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "error": error}
    return render(request, "reports/report_list.html", context, status=status)


@officer_required
@require_safe
def report_list(request: HttpRequest) -> HttpResponse:
    """Show the stored reports and the form to generate one."""
    return _list_page(request, PeriodForm(initial=_default_period()))


@officer_required
@require_POST
def report_create(request: HttpRequest) -> HttpResponse:
    """Generate, sign and store the report of the posted period; never an unsigned one."""
    form = PeriodForm(request.POST)
    if not form.is_valid():
        return _list_page(request, form, status=400)
    period = period_from_dates(form.cleaned_data["first_day"], form.cleaned_data["last_day"])
    try:
        report = report_generate(period, user=request.user)
    except ImproperlyConfigured as exc:  # SigningUnavailable among them: never unsigned
        return _list_page(request, form, error=f"No report was made: {exc}", status=503)
    except RecordError:
        logger.exception("A report could not be recorded")
        return _list_page(request, form, error=UNRECORDED, status=503)
    messages.success(
        request,
        f"Report {report.id} generated and signed for "
        f"{period.first_day:%Y-%m-%d} to {period.last_day:%Y-%m-%d}.",
    )
    return redirect("reports:report_list")


@officer_required
@require_safe
def report_download(request: HttpRequest, pk: str) -> HttpResponse:
    """Send a stored report, decrypted through the vault storage and recorded as a download."""
    report = get_object_or_404(Report, pk=pk)
    try:
        handle = report_open(report, user=request.user, request=request)
    except RecordError:
        logger.exception("A report download could not be recorded")
        return render(request, "vault/unavailable.html", {"message": UNRECORDED}, status=503)
    name = f"docvault-report-{report.period_start:%Y%m%d}-{str(report.id)[:8]}.pdf"
    response = FileResponse(
        handle, as_attachment=True, filename=name, content_type="application/pdf"
    )
    response["Cache-Control"] = "private, no-store"
    return response


class ReportUploadHandler(MemoryFileUploadHandler):
    """Keep the uploaded PDF in memory, never in a temp file; skip it past `limit` bytes."""

    def __init__(self, request: HttpRequest, limit: int = MAX_VERIFY_UPLOAD) -> None:
        super().__init__(request)
        self.limit = limit
        self.too_large = False

    def handle_raw_input(self, *args: Any, **kwargs: Any) -> None:
        # Always in memory, whatever FILE_UPLOAD_MAX_MEMORY_SIZE says; the cap is ours.
        self.activated = True

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > self.limit:
            self.too_large = True
            raise SkipFile
        return super().receive_data_chunk(raw_data, start)


@csrf_protect
def _verify(request: HttpRequest, handler: ReportUploadHandler) -> HttpResponse:
    verdict = None
    if request.method == "POST":
        form = VerifyForm(request.POST, request.FILES)
        if handler.too_large:
            form.add_error("pdf", f"The file is larger than {MAX_VERIFY_UPLOAD:,} bytes.")
        elif form.is_valid():
            upload = form.cleaned_data["pdf"]
            try:
                verdict = report_verify(upload.file)
                report_verification_record(
                    verdict, user=request.user, request=request, name=upload.name
                )
            except ImproperlyConfigured as exc:
                form.add_error(None, str(exc))
            except RecordError:
                logger.exception("A report verification could not be recorded")
                return render(
                    request, "vault/unavailable.html", {"message": UNRECORDED}, status=503
                )
        status = 200 if verdict is not None else 400
    else:
        form, status = VerifyForm(), 200
    context = {"form": form, "verdict": verdict, "max_size": MAX_VERIFY_UPLOAD}
    return render(request, "reports/report_verify.html", context, status=status)


@csrf_exempt  # checked by _verify, once the upload handlers are in place
@accepts_uploads
@officer_required
@require_http_methods(["GET", "HEAD", "POST"])
def report_verify_page(request: HttpRequest) -> HttpResponse:
    """Verify an uploaded report PDF and show the verdict of `audit_report_verify`."""
    # Set before the body is parsed (the CSRF check parses it): the PDF stays in memory.
    handler = ReportUploadHandler(request)
    request.upload_handlers = [handler]
    return _verify(request, handler)
