"""The scan pages of the dashboard: officers see and run scans; everyone else is refused, recorded."""

import datetime

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from compliance.models import AccessEvent, ScanRun
from compliance.scan import scan_storage, storage_scan

pytestmark = pytest.mark.django_db

PLANTED = "media-old/board-minutes.txt"


def dashboard_permission():
    found = Permission.objects.filter(
        content_type__app_label="compliance", codename="view_dashboard"
    ).first()
    if found is not None:
        return found
    return Permission.objects.create(
        codename="view_dashboard",
        name="Can use the compliance dashboard",
        content_type=ContentType.objects.get_for_model(ScanRun),
    )


@pytest.fixture
def compliance_officer(officer):
    """The officer, holding the dashboard permission."""
    officer.user_permissions.add(dashboard_permission())
    return officer


@pytest.fixture
def planted_scan(compliance_officer):
    scan_storage().save(PLANTED, ContentFile(b"Board minutes: confidential.\n" * 10))
    return storage_scan(user=compliance_officer)


def refusals():
    return list(
        AccessEvent.objects.filter(action="compliance-view", outcome="denied").values_list(
            "actor_username", "reason"
        )
    )


def test_an_officer_sees_the_list_of_scans(client, compliance_officer, planted_scan):
    client.force_login(compliance_officer)
    response = client.get(reverse("compliance:scan_list"))
    assert response.status_code == 200
    body = response.content.decode()
    assert reverse("compliance:scan_detail", args=[planted_scan.pk]) in body
    assert "Not certified" in body and 'id="run-scan"' in body
    assert planted_scan.certification in body
    assert "<script" not in body.split("</header>")[-1] and " style=" not in body


def test_before_any_scan_the_list_says_how_to_run_one_under_the_dashboard_tabs(
    client, compliance_officer
):
    client.force_login(compliance_officer)
    body = client.get(reverse("compliance:scan_list")).content.decode()
    assert "No scan has run yet: run a quick scan, or python manage.py vault_scan." in body
    assert 'aria-label="Compliance dashboard"' in body
    assert 'class="nav-link active" href="/compliance/scans/"' in body


@pytest.mark.parametrize(
    ("who", "reason"),
    [("alice", "not staff"), ("officer", "lacks the compliance.view_dashboard permission")],
)
def test_the_list_is_refused_to_members_and_to_staff_without_the_permission(
    client, request, who, reason
):
    user = request.getfixturevalue(who)
    client.force_login(user)
    response = client.get(reverse("compliance:scan_list"))
    assert response.status_code == 403
    assert 'id="forbidden"' in response.content.decode()  # the dashboard's own refusal page
    assert refusals() == [(who, f"{reason}: /compliance/scans/")]


def test_anonymous_visitors_go_to_the_login_page_recorded(client, db):
    response = client.get(reverse("compliance:scan_list"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert refusals() == [("", "not logged in: /compliance/scans/")]


def test_an_officer_sees_a_scan_with_its_findings(client, compliance_officer, planted_scan):
    client.force_login(compliance_officer)
    url = reverse("compliance:scan_detail", args=[planted_scan.pk])
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert PLANTED in body
    assert "not encrypted: looks like text/plain" in body
    assert planted_scan.inventory_digest in body
    only_orphans = client.get(url, {"kind": "orphan"}).content.decode()
    assert "no document row has this stored name" in only_orphans
    assert "not encrypted: looks like text/plain" not in only_orphans


def test_a_scan_is_refused_to_a_member(client, alice, planted_scan):
    client.force_login(alice)
    response = client.get(reverse("compliance:scan_detail", args=[planted_scan.pk]))
    assert response.status_code == 403
    assert PLANTED not in response.content.decode()
    assert len(refusals()) == 1


def test_the_button_runs_a_quick_scan_recorded(client, compliance_officer):
    scan_storage().save(PLANTED, ContentFile(b"Board minutes: confidential.\n"))
    client.force_login(compliance_officer)

    response = client.post(reverse("compliance:scan_run"))

    run = ScanRun.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("compliance:scan_detail", args=[run.pk])
    assert (run.kind, run.actor, run.verdict) == ("quick", compliance_officer, "not-certified")
    event = AccessEvent.objects.filter(action="scan").get()
    assert (event.actor_id, event.outcome) == (compliance_officer.pk, "allowed")
    assert event.request_id
    page = client.get(response.url).content.decode()
    assert run.certification in page


def test_the_button_is_refused_to_a_member_and_runs_nothing(client, alice):
    client.force_login(alice)
    response = client.post(reverse("compliance:scan_run"))
    assert response.status_code == 403
    assert not ScanRun.objects.exists()
    assert not AccessEvent.objects.filter(action="scan").exists()
    assert refusals() == [("alice", "not staff: /compliance/scans/run/")]


def test_the_button_refuses_a_get_from_a_member_recorded_not_a_405(client, alice):
    client.force_login(alice)
    response = client.get(reverse("compliance:scan_run"))
    assert response.status_code == 403
    assert not ScanRun.objects.exists()
    assert refusals() == [("alice", "not staff: /compliance/scans/run/")]


def test_the_button_sends_an_anonymous_get_to_the_login_page_recorded(client, db):
    response = client.get(reverse("compliance:scan_run"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert refusals() == [("", "not logged in: /compliance/scans/run/")]


def test_the_button_needs_a_post(client, compliance_officer):
    client.force_login(compliance_officer)
    assert client.get(reverse("compliance:scan_run")).status_code == 405
    assert not ScanRun.objects.exists()
    assert refusals() == []


def test_the_scan_pages_are_read_only(client, compliance_officer, planted_scan):
    client.force_login(compliance_officer)
    assert client.post(reverse("compliance:scan_list")).status_code == 405
    assert client.post(reverse("compliance:scan_detail", args=[planted_scan.pk])).status_code == 405


def test_the_status_snippet_warns_when_no_scan_ran():
    html = render_to_string(
        "compliance/snippets/scan_status.html", {"latest_scan": None, "scan_max_age_days": 7}
    )
    assert "No storage scan has run" in html


def test_the_status_snippet_flags_an_old_scan(compliance_officer):
    run = storage_scan(user=compliance_officer)
    context = {"latest_scan": run, "scan_max_age_days": 7}
    assert "days old" not in render_to_string("compliance/snippets/scan_status.html", context)
    run.finished_at = timezone.now() - datetime.timedelta(days=8)
    html = render_to_string("compliance/snippets/scan_status.html", context)
    assert "The last scan is 8 days old" in html
    assert "certified" in html and run.certification in html


def test_every_page_shows_the_scan_that_finished_last(client, compliance_officer):
    scan_storage().save(PLANTED, ContentFile(b"Board minutes: confidential.\n"))
    inner = []

    def scan_inside(entry):
        # Started after the outer scan, finished before it: the outer one finished last.
        if not inner:
            inner.append(storage_scan(user=compliance_officer))

    outer = storage_scan(user=compliance_officer, progress=scan_inside)
    assert outer.started_at < inner[0].started_at <= inner[0].finished_at < outer.finished_at
    client.force_login(compliance_officer)
    for name in ("compliance:overview", "compliance:scan_list", "compliance:keys"):
        response = client.get(reverse(name))
        assert response.status_code == 200
        latest = response.context.get("latest_scan") or response.context["status"].scan
        assert latest == outer, name
