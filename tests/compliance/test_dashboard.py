"""The dashboard's door and its overview: who gets in, what is recorded, what the overview shows."""

import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from lxml import etree

from compliance.charts import activity_chart_svg
from compliance.models import AccessEvent, ChainCheck
from compliance.overview import activity_by_day, key_inventory_get
from compliance.permissions import dashboard_allowed
from tests.compliance import dashboard
from tests.helpers import response_close
from vault.access import Action, Outcome, recorder_register
from vault.keys import keyring

pytestmark = pytest.mark.django_db
compliance_officer = dashboard.compliance_officer
uploaded = dashboard.uploaded

PAGES = [
    ("compliance:overview", {}),
    ("compliance:activity_chart", {}),
    ("compliance:access_log", {}),
    ("compliance:access_log_export", {}),
    ("compliance:event_detail", {"seq": 1}),
]
TEST_SECRETS = (
    "test-secret-current-0123456789abcdef0123456789",
    "test-secret-previous-0123456789abcdef012345678",
)


def last_event():
    return AccessEvent.objects.latest("seq")


# Who gets in -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_an_officer_opens_every_page(client, compliance_officer, name, kwargs):
    dashboard.access_add(compliance_officer)
    client.force_login(compliance_officer)
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 200
    response_close(response)


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_anonymous_goes_to_the_login_page_and_is_recorded(client, db, name, kwargs):
    url = reverse(name, kwargs=kwargs)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"
    event = last_event()
    assert (event.action, event.outcome, event.actor_id) == ("compliance-view", "denied", None)
    assert event.reason == f"not logged in: {url}"


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_a_member_gets_403_and_is_recorded(client, alice, name, kwargs):
    dashboard.access_add(alice)
    client.force_login(alice)
    url = reverse(name, kwargs=kwargs)
    response = client.get(url)
    assert response.status_code == 403
    assert b"You cannot open the compliance dashboard" in response.content
    assert b"access-log" not in response.content.split(b"<main")[1]
    event = last_event()
    assert (event.action, event.outcome, event.actor_username) == (
        "compliance-view",
        "denied",
        "alice",
    )
    assert event.reason == f"not staff: {url}"
    assert event.client_ip == "127.0.0.1"


def test_staff_without_the_permission_get_403(client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)
    client.force_login(clerk)
    response = client.get(reverse("compliance:overview"))
    assert response.status_code == 403
    assert last_event().reason == "lacks the compliance.view_dashboard permission: /compliance/"


def test_an_inactive_officer_is_refused(client, compliance_officer):
    compliance_officer.is_active = False
    compliance_officer.save()
    client.force_login(compliance_officer)
    response = client.get(reverse("compliance:overview"))
    # An inactive account's session does not authenticate: it is sent to log in, and recorded.
    assert response.status_code == 302
    assert last_event().reason == "not logged in: /compliance/"


def test_the_group_without_staff_status_is_not_enough(client, django_user_model):
    user = django_user_model.objects.create_user("intern")
    user.groups.add(Group.objects.get(name="Compliance officers"))
    client.force_login(user)
    assert client.get(reverse("compliance:access_log")).status_code == 403
    assert last_event().reason == "not staff: /compliance/access-log/"


def test_read_any_is_not_the_dashboard(client, officer):
    """The read-any-document permission and the dashboard are separate grants."""
    client.force_login(officer)
    assert client.get(reverse("compliance:overview")).status_code == 403
    assert not dashboard_allowed(officer)


def test_the_officers_group_holds_the_dashboard_permission_only(db):
    group = Group.objects.get(name="Compliance officers")
    permissions = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
    assert permissions == {"compliance.view_dashboard"}


def test_seed_demo_puts_the_officer_in_the_group(db):
    from django.contrib.auth import get_user_model

    call_command("seed_demo", "--force", stdout=io.StringIO())
    users = get_user_model().objects
    assert dashboard_allowed(users.get(username="officer"))
    assert not dashboard_allowed(users.get(username="alice"))


def test_the_navigation_offers_the_dashboard_to_officers_only(client, compliance_officer, alice):
    link = f'href="{reverse("compliance:overview")}"'.encode()
    client.force_login(alice)
    assert link not in client.get(reverse("vault:document_list")).content
    client.force_login(compliance_officer)
    assert link in client.get(reverse("vault:document_list")).content


# One look, no inline code ------------------------------------------------------------------------

INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(rb"<style\b|\sstyle=", re.I)
EXTERNAL = re.compile(rb"""(?:src|href)=["']?(?:https?:)?//""", re.I)


def test_every_page_works_under_a_strict_csp(client, compliance_officer, alice, uploaded):
    """No inline script or style and nothing loaded from elsewhere, on portal and dashboard pages."""
    document = uploaded["valuation"]
    pages = [(None, reverse("login"))]
    pages += [
        (alice, reverse("vault:document_list")),
        (alice, reverse("vault:document_upload")),
        (alice, reverse("vault:document_detail", args=[document.pk])),
        (alice, reverse("vault:document_delete", args=[document.pk])),
        (alice, reverse("compliance:overview")),  # the 403 page
        (compliance_officer, reverse("compliance:overview")),
        (compliance_officer, reverse("compliance:access_log")),
        (compliance_officer, reverse("compliance:access_log") + "?ip=nonsense"),
        (compliance_officer, reverse("compliance:event_detail", args=[1])),
    ]
    for user, url in pages:
        client.logout()
        if user is not None:
            client.force_login(user)
        content = client.get(url).content
        assert b"/static/bootstrap/css/bootstrap.min.css" in content, url
        assert b"/static/docvault/docvault.css" in content, url
        assert not INLINE_SCRIPT.search(content), url
        assert not INLINE_STYLE.search(content), url
        assert not EXTERNAL.search(content), url


def test_bootstrap_and_the_site_css_are_our_own_static_files():
    for path in ("bootstrap/css/bootstrap.min.css", "docvault/docvault.css"):
        assert finders.find(path), path


# The overview ------------------------------------------------------------------------------------


def test_the_key_ring_shows_ids_roles_and_documents_never_a_secret(
    client, compliance_officer, uploaded, settings
):
    ring = keyring()
    client.force_login(compliance_officer)
    response = client.get(reverse("compliance:overview"))
    content = response.content.decode()
    table = content[content.index('id="key-ring"') :]
    primary, previous = ring.keys
    assert re.search(
        rf"current</td>\s*<td[^>]*>{primary.key_id_hex}</td>\s*<td>\s*<span[^>]*>primary", table
    )
    assert re.search(
        rf"previous</td>\s*<td[^>]*>{previous.key_id_hex}</td>\s*<td>\s*.*decrypt-only", table
    )
    rows = {row.key_id: row for row in key_inventory_get().rows}
    assert rows[primary.key_id_hex].documents == 3
    assert rows[previous.key_id_hex].documents == 0
    assert "PBKDF2-HMAC-SHA256" in content and "100,000" in content
    assert f"{len(settings.VAULT_KDF_SALT.encode())} bytes" in content
    for secret in (*TEST_SECRETS, settings.VAULT_KDF_SALT):
        assert secret not in content
    assert "No storage scan has run" in content


def test_the_overview_shows_the_vaults_check_warnings(client, compliance_officer, settings):
    settings.VAULT_KDF_ITERATIONS = "50000"
    client.force_login(compliance_officer)
    content = client.get(reverse("compliance:overview")).content.decode()
    checks = content[content.index('id="vault-checks"') :]
    assert "vault.W002" in checks and "below 100,000" in checks


def test_refusals_and_failures_are_counted_and_link_into_the_log(
    client, compliance_officer, charlie, uploaded
):
    document = uploaded["valuation"]
    for _ in range(2):
        dashboard.access_add(charlie, outcome=Outcome.DENIED, document=document)
    dashboard.access_add(charlie, outcome=Outcome.FAILED, document=document)
    client.force_login(compliance_officer)
    response = client.get(reverse("compliance:overview"))
    assert (response.context["denied_count"], response.context["failed_count"]) == (2, 1)
    start = timezone.localdate() - timedelta(days=29)
    denied_url = f"{reverse('compliance:access_log')}?outcome=denied&amp;when_after={start}"
    assert denied_url.encode() in response.content
    # The link leads to exactly those refusals.
    listed = client.get(denied_url.replace("&amp;", "&"))
    assert [row.record.outcome for row in listed.context["table"].paginated_rows] == ["denied"] * 2


def test_activity_by_day_counts_each_outcome_and_every_day(compliance_officer, charlie):
    today = timezone.localdate()
    # The fixtures' account events (charlie's membership) count too: start from them.
    [seed] = activity_by_day(today, today)
    dashboard.access_add(charlie, outcome=Outcome.DENIED)
    dashboard.access_add(charlie, outcome=Outcome.FAILED)
    dashboard.access_add(compliance_officer)
    days = activity_by_day(today - timedelta(days=2), today)
    assert [day.day for day in days] == [today - timedelta(days=n) for n in (2, 1, 0)]
    assert [(day.allowed, day.denied, day.failed) for day in days] == [
        (0, 0, 0),
        (0, 0, 0),
        (seed.allowed + 1, seed.denied + 1, seed.failed + 1),
    ]
    assert activity_by_day(today - timedelta(days=9), today - timedelta(days=1))[-1].allowed == 0
    with pytest.raises(ValueError):
        activity_by_day(today, today - timedelta(days=1))


def test_the_chart_is_a_script_free_svg_image(client, compliance_officer, charlie):
    dashboard.access_add(charlie, outcome=Outcome.DENIED)
    client.force_login(compliance_officer)
    response = client.get(reverse("compliance:activity_chart"))
    assert response["Content-Type"] == "image/svg+xml"
    assert response["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert response["Cache-Control"] == "private, no-store"
    root = etree.fromstring(response.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert not root.findall(".//{http://www.w3.org/2000/svg}script")
    assert b"http://pygal" not in response.content
    text = " ".join(root.itertext())
    assert "Allowed" in text and "Denied" in text and "Failed" in text
    assert "Access events per day" in text
    overview = client.get(reverse("compliance:overview")).content.decode()
    assert f'src="{reverse("compliance:activity_chart")}"' in overview


def test_the_chart_function_serves_the_reports_too(charlie):
    dashboard.access_add(charlie, outcome=Outcome.DENIED)
    today = timezone.localdate()
    svg = activity_chart_svg(today - timedelta(days=6), today, width=600, height=200)
    root = etree.fromstring(svg.encode())
    assert root.get("viewBox") == "0 0 600 200"
    assert root.find("{http://www.w3.org/2000/svg}title").text == (
        f"Access events per day, {today - timedelta(days=6):%Y-%m-%d} to {today:%Y-%m-%d}"
    )


# Verify now --------------------------------------------------------------------------------------


def test_verify_now_checks_the_chain_and_records_it(client, compliance_officer, alice):
    dashboard.access_add(alice)
    client.force_login(compliance_officer)
    head = last_event().seq  # after alice's membership, her access and carol's login
    response = client.post(reverse("compliance:chain_verify"), follow=True)
    assert response.redirect_chain == [(reverse("compliance:overview"), 302)]
    check = ChainCheck.objects.get()
    assert (check.status, check.via, check.requested_by) == ("ok", "dashboard", compliance_officer)
    assert check.head_seq == head
    event = last_event()
    assert (event.action, event.outcome, event.actor_username) == (
        "chain-verify",
        "allowed",
        "carol",
    )
    assert event.seq == head + 1
    content = response.content.decode()
    assert "Access log OK" in content and 'id="chain-verdict"' in content and "intact" in content


def test_verify_now_is_post_only_and_officers_only(client, compliance_officer, alice):
    client.force_login(compliance_officer)
    assert client.get(reverse("compliance:chain_verify")).status_code == 405
    client.force_login(alice)
    assert client.post(reverse("compliance:chain_verify")).status_code == 403
    assert not ChainCheck.objects.exists()
    assert last_event().action == Action.COMPLIANCE_VIEW


def test_nothing_is_done_when_it_cannot_be_recorded(client, compliance_officer, alice):
    """Fail closed: with no recorder, neither an export nor a verification happens."""
    from compliance.access_log import access_event_record

    dashboard.access_add(alice)
    client.force_login(compliance_officer)
    head = last_event().seq
    recorder_register(None)
    try:
        export = client.get(reverse("compliance:access_log_export"))
    finally:
        recorder_register(access_event_record)
    assert export.status_code == 503
    assert not export.streaming
    assert b"could not be recorded" in export.content
    assert AccessEvent.objects.count() == head == last_event().seq
