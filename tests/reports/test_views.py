"""The reports pages: officers list, generate, download and verify; everyone else is refused, recorded."""

import hashlib
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import InMemoryUploadedFile, SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from compliance.models import AccessEvent
from compliance.permissions import OFFICERS_GROUP
from reports.build import period_make
from reports.generate import report_generate, report_open
from reports.models import Report
from reports.views import MAX_VERIFY_UPLOAD

pytestmark = pytest.mark.django_db


@pytest.fixture
def compliance_officer(officer):
    """The officer, in the group that holds the dashboard permission."""
    officer.groups.add(Group.objects.get(name=OFFICERS_GROUP))
    return officer


@pytest.fixture
def stored_report(signing, compliance_officer):
    now = timezone.now()
    return report_generate(
        period_make(now - timedelta(days=1), now + timedelta(seconds=1)), user=compliance_officer
    )


def period_post(first="2026-01-01", last="2026-01-31"):
    return {"first_day": first, "last_day": last}


def events(action, outcome="allowed"):
    return AccessEvent.objects.filter(action=action, outcome=outcome)


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# Refused twins: member, staff without the permission, anonymous ---------------------------------


def page_requests(report_pk):
    return [
        ("get", reverse("reports:report_list"), {}),
        ("post", reverse("reports:report_create"), period_post()),
        ("get", reverse("reports:report_download", args=[report_pk]), {}),
        ("get", reverse("reports:report_verify"), {}),
        (
            "post",
            reverse("reports:report_verify"),
            {"pdf": SimpleUploadedFile("r.pdf", b"%PDF-1.7\n", "application/pdf")},
        ),
    ]


@pytest.mark.parametrize("who", ["alice", "officer", "anonymous"])
def test_every_page_refuses_anyone_but_an_officer_and_records_it(
    client, request, signing, stored_report, who
):
    user = None if who == "anonymous" else request.getfixturevalue(who)
    if who == "officer":  # staff, but outside the officers' group
        user.groups.clear()
    if user is not None:
        client.force_login(user)
    reports_before = Report.objects.count()
    downloads_before = events("report-downloaded").count()

    for method, url, data in page_requests(stored_report.pk):
        refusals = events("compliance-view", "denied").count()
        response = getattr(client, method)(url, data)

        if user is None:
            assert response.status_code == 302 and "/accounts/login/" in response["Location"]
        else:
            assert response.status_code == 403
            assert b"%PDF" not in body_of(response)
        assert events("compliance-view", "denied").count() == refusals + 1

    assert Report.objects.count() == reports_before
    assert events("report-downloaded").count() == downloads_before
    assert not events("report-verified").exists()


# The pages ---------------------------------------------------------------------------------------


def test_an_officer_sees_the_stored_reports(client, stored_report, compliance_officer):
    client.force_login(compliance_officer)

    response = client.get(reverse("reports:report_list"))

    assert response.status_code == 200
    body = response.content.decode()
    for fact in (
        stored_report.sha256,
        stored_report.signer_fingerprint,
        stored_report.head,
        "officer",
        reverse("reports:report_download", args=[stored_report.pk]),
    ):
        assert fact in body
    assert 'href="/compliance/reports/"' in body  # the dashboard's Reports tab
    # The site's menu shows the officer inside the compliance section.
    assert '<a class="nav-link active" href="/compliance/">Compliance</a>' in body


def test_generate_list_download_verify_round_trip(client, signing, compliance_officer):
    client.force_login(compliance_officer)
    today = timezone.localdate()

    response = client.post(
        reverse("reports:report_create"), period_post(today - timedelta(days=6), today)
    )

    assert response.status_code == 302 and response["Location"] == reverse("reports:report_list")
    report = Report.objects.get()
    assert report.period_first_day == today - timedelta(days=6)
    assert report.period_last_day == today
    assert events("report-generated").filter(actor_username="officer").count() == 1
    listed = client.get(reverse("reports:report_list")).content.decode()
    assert report.sha256 in listed and f"Report {report.id} generated and signed" in listed

    response = client.get(reverse("reports:report_download", args=[report.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "no-store" in response["Cache-Control"]
    pdf = body_of(response)
    assert hashlib.sha256(pdf).hexdigest() == report.sha256
    assert events("report-downloaded").filter(actor_username="officer").count() == 1

    response = client.post(
        reverse("reports:report_verify"),
        {"pdf": SimpleUploadedFile("report.pdf", pdf, "application/pdf")},
    )

    assert response.status_code == 200
    verdict = response.context["verdict"]
    assert verdict.ok and verdict.report == report
    body = response.content.decode()
    assert 'id="verdict-word">GOOD<' in body and str(report.id) in body
    for flag in ("intact", "valid", "trusted", "whole"):
        assert f'id="verdict-{flag}"><span class="badge text-bg-success">yes' in body
    event = events("report-verified").get()
    assert event.actor_username == "officer" and report.sha256 in event.reason
    assert event.reason.startswith("GOOD")


def test_a_tampered_pdf_gets_a_failing_verdict(client, stored_report, compliance_officer):
    client.force_login(compliance_officer)
    data = bytearray(stored_pdf(stored_report))
    # One byte of the signed content: inside the first stream of the file.
    at = data.index(b"stream\n") + 20
    data[at] ^= 0x01

    response = client.post(
        reverse("reports:report_verify"),
        {"pdf": SimpleUploadedFile("report.pdf", bytes(data), "application/pdf")},
    )

    assert response.status_code == 200
    verdict = response.context["verdict"]
    assert not verdict.ok and not verdict.issued_here
    assert not (verdict.intact and verdict.valid) or verdict.problem
    assert 'id="verdict-word">BAD<' in response.content.decode()
    assert events("report-verified").get().reason.startswith("BAD")


def test_a_file_that_is_no_pdf_gets_a_clear_verdict(client, signing, compliance_officer):
    client.force_login(compliance_officer)

    response = client.post(
        reverse("reports:report_verify"),
        {"pdf": SimpleUploadedFile("notes.pdf", b"just text", "application/pdf")},
    )

    assert response.status_code == 200
    assert "Cannot verify: not a PDF file" in response.content.decode()


def test_a_too_large_upload_is_refused_before_it_is_verified(
    client, signing, compliance_officer, settings
):
    settings.VAULT_MAX_UPLOAD_SIZE = MAX_VERIFY_UPLOAD * 2
    client.force_login(compliance_officer)
    data = b"%PDF-1.7\n" + b"0" * MAX_VERIFY_UPLOAD

    response = client.post(
        reverse("reports:report_verify"),
        {"pdf": SimpleUploadedFile("big.pdf", data, "application/pdf")},
    )

    assert response.status_code == 400
    assert f"larger than {MAX_VERIFY_UPLOAD:,} bytes" in response.content.decode()
    assert not events("report-verified").exists()


def test_the_upload_stays_in_memory(client, signing, compliance_officer, tmp_path, settings):
    # Any spool (Django's or the vault's encrypting one) would land in FILE_UPLOAD_TEMP_DIR.
    spool = tmp_path / "spool"
    spool.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    client.force_login(compliance_officer)

    response = client.post(
        reverse("reports:report_verify"),
        {"pdf": SimpleUploadedFile("r.pdf", b"%PDF-1.7\n" + b"x" * 100_000, "application/pdf")},
    )

    assert response.status_code == 200
    assert isinstance(response.context["form"].cleaned_data["pdf"], InMemoryUploadedFile)
    assert list(spool.iterdir()) == []


def test_other_pages_still_refuse_file_parts(client, compliance_officer):
    client.force_login(compliance_officer)

    response = client.post(
        reverse("reports:report_create"),
        {**period_post(), "pdf": SimpleUploadedFile("r.pdf", b"%PDF-1.7\n")},
    )

    assert response.status_code == 415
    assert not Report.objects.exists()


def test_without_a_signing_key_the_page_says_so_and_makes_nothing(
    client, settings, compliance_officer
):
    settings.REPORT_SIGNING_P12 = None
    settings.REPORT_SIGNING_CERT = None
    settings.REPORT_SIGNING_KEY = None
    client.force_login(compliance_officer)

    response = client.post(reverse("reports:report_create"), period_post())

    assert response.status_code == 503
    body = response.content.decode()
    assert 'id="report-error"' in body and "Report signing key not configured" in body
    assert not Report.objects.exists()
    assert not events("report-generated").exists()


def test_a_backwards_period_is_a_form_error(client, signing, compliance_officer):
    client.force_login(compliance_officer)

    response = client.post(
        reverse("reports:report_create"), period_post("2026-02-01", "2026-01-01")
    )

    assert response.status_code == 400
    assert "The period ends before it starts." in response.content.decode()
    assert not Report.objects.exists()


def test_an_unknown_report_is_not_found(client, compliance_officer):
    client.force_login(compliance_officer)

    response = client.get(reverse("reports:report_download", args=[uuid.uuid4()]))

    assert response.status_code == 404


def stored_pdf(report) -> bytes:
    """Read a stored report's PDF back through the real decrypting path."""
    with report_open(report, operator="tests") as handle:
        return handle.read()
