"""The reports pages in a real browser: an officer generates a report, sees it listed, verifies it.

Uses the dashboard's browser fixtures (tests/compliance/test_browser.py, Debian's Chromium driven by
Playwright, the demo data loaded through its real paths); skipped where they are not.
"""

import pytest

from compliance.models import AccessEvent
from reports.models import Report

browser = pytest.importorskip(
    "tests.compliance.test_browser", reason="the dashboard's browser fixtures are not here"
)
browser_type_launch_args = browser.browser_type_launch_args
browser_context_args = browser.browser_context_args
demo = browser.demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_officer_generates_lists_downloads_and_verifies_a_report(page, demo, signing, tmp_path):
    base = demo.url
    errors = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    browser.log_in(page, base, "officer")

    page.goto(f"{base}/compliance/")
    page.click("text=Reports")
    page.wait_for_url(f"{base}/compliance/reports/")
    assert page.locator("#no-reports").is_visible()
    page.fill("#id_first_day", "2026-01-01")
    page.fill("#id_last_day", "2026-12-31")
    page.click("#generate-report")
    page.wait_for_url(f"{base}/compliance/reports/")

    report = Report.objects.get()
    assert f"Report {report.id} generated and signed" in page.locator(".alert").inner_text()
    history = page.locator("#report-history").inner_text()
    assert "2026-01-01 to 2026-12-31" in history and "officer" in history
    browser.shot(page, "reports-list")

    with page.expect_download() as download_info:
        page.click("#report-history >> text=Download")
    saved = tmp_path / "report.pdf"
    download_info.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF-")

    page.click("text=Verify a report")
    page.wait_for_url(f"{base}/compliance/reports/verify/")
    browser.shot(page, "reports-verify-empty")
    page.set_input_files("#id_pdf", str(saved))
    page.click("#verify-report")
    page.wait_for_selector("#report-verdict")
    assert page.locator("#verdict-word").inner_text() == "GOOD"
    assert str(report.id) in page.locator("#verdict-issued").inner_text()
    browser.shot(page, "reports-verify")

    actions = set(
        AccessEvent.objects.filter(actor_username="officer").values_list("action", flat=True)
    )
    assert {"report-generated", "report-downloaded", "report-verified"} <= actions
    assert errors == []


def test_member_cannot_open_the_reports_page(page, demo):
    base = demo.url
    browser.log_in(page, base, "alice")
    response = page.goto(f"{base}/compliance/reports/")
    assert response.status == 403
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome, event.actor_username) == (
        "compliance-view",
        "denied",
        "alice",
    )
