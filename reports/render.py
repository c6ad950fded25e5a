"""HTML to PDF: the report template rendered by WeasyPrint, with nothing fetched from anywhere."""

from typing import BinaryIO

from django.template.loader import render_to_string

from .build import NOT_CONFIGURED, ReportContent

TEMPLATE = "reports/report.html"


def report_html(content: ReportContent) -> str:
    """Return the report as HTML."""
    return render_to_string(TEMPLATE, {"r": content, "not_configured": NOT_CONFIGURED})


def report_pdf_write(html: str, output: BinaryIO) -> None:
    """Render the HTML to an unsigned PDF into `output`; no URL is ever fetched."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # Everything the report shows is inline; refusing every protocol keeps a stray URL in some
    # recorded value (a title, a user agent) from reaching the network or the file system.
    fetcher = URLFetcher(allowed_protocols=set(), fail_on_errors=True)
    HTML(string=html, url_fetcher=fetcher).write_pdf(output)
