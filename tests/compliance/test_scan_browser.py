"""The scan pages in a real browser: an officer runs a quick scan and sees a planted plaintext file.

Uses the dashboard's browser fixtures (tests/compliance/test_browser.py, Debian's Chromium driven by
Playwright, the demo data loaded through its real paths); skipped where they are not.
"""

import pytest
from django.core.files.base import ContentFile

from compliance.models import AccessEvent, ScanRun
from compliance.scan import scan_storage

browser = pytest.importorskip(
    "tests.compliance.test_browser", reason="the dashboard's browser fixtures are not here"
)
browser_type_launch_args = browser.browser_type_launch_args
browser_context_args = browser.browser_context_args
demo = browser.demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PLANTED = "media-old/board-minutes.txt"


def test_officer_runs_a_scan_and_sees_a_planted_plaintext_file(page, demo):
    scan_storage().save(PLANTED, ContentFile(b"Board minutes: confidential.\n" * 20))
    base = demo.url
    browser.log_in(page, base, "officer")

    page.goto(f"{base}/compliance/scans/")
    assert "No storage scan has run" in page.locator("#encryption-status").inner_text()
    page.click("#run-scan")
    page.wait_for_url(f"{base}/compliance/scans/*/")

    run = ScanRun.objects.get()
    assert page.locator("h1").inner_text().startswith(f"Quick scan #{run.pk}")
    assert page.locator("#certification").inner_text() == run.certification
    findings = page.locator("#findings").inner_text()
    assert PLANTED in findings and "not encrypted: looks like text/plain" in findings
    browser.shot(page, "compliance-scan-detail")
    event = AccessEvent.objects.filter(action="scan").get()
    assert (event.actor_username, event.outcome) == ("officer", "allowed")

    page.goto(f"{base}/compliance/")
    assert "not certified" in page.locator("#encryption-status").inner_text()
    browser.shot(page, "compliance-overview-scanned")
    page.goto(f"{base}/compliance/scans/")
    browser.shot(page, "compliance-scans")


def test_member_cannot_run_a_scan(page, demo):
    base = demo.url
    browser.log_in(page, base, "alice")
    response = page.goto(f"{base}/compliance/scans/")
    assert response.status == 403
    assert not ScanRun.objects.exists()
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome, event.actor_username) == (
        "compliance-view",
        "denied",
        "alice",
    )
