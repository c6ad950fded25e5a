"""Request limits, private caching and the Content-Security-Policy, on the real middleware stack."""

import io

import pytest
from csp.constants import NONCE
from csp.decorators import csp_exempt, csp_update
from csp.exceptions import CSPNonceError
from csp.utils import build_policy
from django.contrib.staticfiles import finders
from django.core.files.base import ContentFile
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from tests.helpers import document_events, response_close
from vault.middleware import RequestLimitMiddleware, SitePolicyCSPMiddleware, request_body_limit
from vault.models import Company, Document

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n% a small test file\n" + b"x" * 2000


def upload(client, data: bytes = PDF, name: str = "q3.pdf"):
    company = Company.objects.get(name="Acme")
    payload = {"title": "Q3", "company": company.pk, "file": ContentFile(data, name=name)}
    return client.post(reverse("vault:document_upload"), payload)


def browser(user) -> Client:
    """Return a client that enforces CSRF, as a browser's session does, with its token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get(reverse("login"))
    return client


def assert_site_policy(response):
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


# File parts only where files are taken ------------------------------------------------------------


def test_a_file_posted_to_the_login_page_is_refused_unread(client, alice):
    response = client.post(
        reverse("login"),
        {"username": "alice", "password": "x", "file": ContentFile(b"A" * 4096, name="a.bin")},
    )

    assert response.status_code == 415
    assert "does not take file uploads" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_large_multipart_form_to_the_login_page_is_refused_before_reading(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000

    response = client.post(
        reverse("login"),
        data=b"x" * 10,
        content_type="multipart/form-data; boundary=b",
        CONTENT_LENGTH=str(10_001),  # more than the body: reading it would fail the test
    )

    assert response.status_code == 415


def test_a_multipart_form_without_files_still_logs_in(client, alice):
    alice.set_password("a long enough password")
    alice.save()

    response = client.post(
        reverse("login"), {"username": "alice", "password": "a long enough password"}
    )

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_the_upload_view_takes_files(client, alice):
    client.force_login(alice)

    response = upload(client)

    assert response.status_code == 302
    assert Document.objects.get().title == "Q3"


def test_a_file_posted_to_another_page_is_refused_and_changes_nothing(client, alice):
    client.force_login(alice)
    upload(client)
    document = Document.objects.get()
    events = document_events().count()
    alices_browser = browser(alice)
    token = alices_browser.cookies["csrftoken"].value

    response = alices_browser.post(
        reverse("vault:document_delete", args=[document.pk]),
        {"csrfmiddlewaretoken": token, "file": ContentFile(b"A" * 100, name="a.bin")},
    )

    assert response.status_code == 415
    assert Document.objects.filter(pk=document.pk).exists()
    assert document_events().count() == events


def test_staff_post_files_to_the_admin_and_others_cannot(admin, alice):
    def post(client):
        token = client.cookies["csrftoken"].value
        payload = {"csrfmiddlewaretoken": token, "file": ContentFile(b"A" * 100, name="a.bin")}
        return client.post(reverse("admin:index"), payload)

    refused = post(browser(alice))
    accepted = post(browser(admin))

    assert refused.status_code == 415
    assert accepted.status_code == 200


# The body cap ------------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_refused_before_reading(client, settings):
    settings.VAULT_MAX_UPLOAD_SIZE = 1000
    settings.VAULT_REQUEST_MARGIN = 500

    response = client.post(
        reverse("login"),
        data=b"x",
        content_type="application/x-www-form-urlencoded",
        CONTENT_LENGTH=str(1501),  # more than the body: reading it would fail the test
    )

    assert request_body_limit() == 1500
    assert response.status_code == 413
    assert "larger than 1,500 bytes" in response.content.decode()


def test_an_upload_over_the_cap_is_refused_and_stores_nothing(client, alice, settings, media_root):
    settings.VAULT_MAX_UPLOAD_SIZE = 1000
    settings.VAULT_REQUEST_MARGIN = 500
    client.force_login(alice)

    response = upload(client, b"x" * 2000)

    assert response.status_code == 413
    assert not Document.objects.exists()
    assert not document_events().exists()
    assert not [path for path in media_root.rglob("*") if path.is_file()]


def test_a_malformed_content_length_is_refused(client):
    response = client.post(
        reverse("login"), data=b"x", content_type="text/plain", CONTENT_LENGTH="-5"
    )

    assert response.status_code == 400


def _asgi_post(body: bytes) -> ASGIRequest:
    """A request as an ASGI server hands it over for a chunked body: no Content-Length."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/accounts/login/",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }
    return ASGIRequest(scope, io.BytesIO(body))


@pytest.mark.parametrize(("size", "status"), [(1500, 200), (1501, 413)])
def test_a_body_without_length_is_cut_at_the_cap(settings, size, status):
    settings.VAULT_MAX_UPLOAD_SIZE = 1000
    settings.VAULT_REQUEST_MARGIN = 500
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = None

    def view(request):
        return HttpResponse(str(len(request.body)))

    middleware = RequestLimitMiddleware(convert_exception_to_response(view))
    response = middleware(_asgi_post(b"a" * size))

    assert response.status_code == status
    if status == 200:
        assert response.content == b"1500"


# Caching and the Content-Security-Policy ---------------------------------------------------------


def test_logged_in_pages_are_private_and_restricted(client, alice):
    client.force_login(alice)

    response = client.get(reverse("vault:document_list"))

    assert response.status_code == 200
    assert set(response["Cache-Control"].split(", ")) >= {"private", "no-store"}
    assert_site_policy(response)
    assert "<style" not in response.content.decode() and "<script" not in response.content.decode()
    # The site's look is static files of our own (base.html: Bootstrap and the site's stylesheet).
    for stylesheet in ("bootstrap/css/bootstrap.min.css", "docvault/docvault.css"):
        assert stylesheet in response.content.decode()
        assert finders.find(stylesheet)


def test_the_login_page_is_restricted(client):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert_site_policy(response)


def test_the_admin_is_private_and_restricted(client, admin):
    client.force_login(admin)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert {"private", "no-store"} <= set(response["Cache-Control"].split(", "))
    assert_site_policy(response)


def test_an_attachment_download_has_the_site_policy(client, alice):
    client.force_login(alice)
    upload(client, b"plain words\n", "notes.txt")
    document = Document.objects.get()

    response = client.get(reverse("vault:document_download", args=[document.pk]))
    response_close(response)

    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    assert_site_policy(response)


def test_an_inline_pdf_keeps_its_own_stricter_policy(client, alice):
    client.force_login(alice)
    upload(client)
    document = Document.objects.get()

    response = client.get(reverse("vault:document_download", args=[document.pk]) + "?inline=1")
    response_close(response)

    assert response.status_code == 200
    assert response["Content-Security-Policy"].startswith("default-src 'none'")
    assert response["Cache-Control"] == "private, no-store"


def csp_middleware_run(view, path="/documents/"):
    """Return the response of `view` through the site's CSP middleware alone."""
    middleware = SitePolicyCSPMiddleware(view)
    return middleware(RequestFactory().get(path))


def test_the_site_policy_is_django_csps_own(client):
    response = client.get(reverse("login"))

    assert response["Content-Security-Policy"] == build_policy()
    assert "Content-Security-Policy-Report-Only" not in response


def test_a_changed_policy_setting_is_served_at_once(settings):
    csp_middleware_run(lambda request: HttpResponse())  # the first policy, built and kept
    settings.CONTENT_SECURITY_POLICY = {
        "DIRECTIVES": {"default-src": ["'none'"]},
        "EXCLUDE_URL_PREFIXES": ["/static/"],
    }
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"img-src": ["'self'"]}}

    response = csp_middleware_run(lambda request: HttpResponse())
    excluded = csp_middleware_run(lambda request: HttpResponse(), path="/static/site.css")

    assert response["Content-Security-Policy"] == "default-src 'none'"
    assert response["Content-Security-Policy-Report-Only"] == build_policy(report_only=True)
    assert "img-src 'self'" in response["Content-Security-Policy-Report-Only"]
    assert "Content-Security-Policy" not in excluded
    assert "img-src 'self'" in excluded["Content-Security-Policy-Report-Only"]


def test_a_views_own_policy_and_a_nonce_go_through_django_csp(settings):
    settings.CONTENT_SECURITY_POLICY = {
        "DIRECTIVES": {"default-src": ["'self'"], "img-src": ["'self'"], "script-src": [NONCE]}
    }

    @csp_update({"img-src": ["https://images.example"]})
    def updated(request):
        return HttpResponse()

    @csp_exempt()
    def exempt(request):
        return HttpResponse()

    def with_nonce(request):
        return HttpResponse(f"<script nonce='{request.csp_nonce}'></script>")

    def nonce_too_late(request):
        response = HttpResponse()
        response.request = request
        return response

    assert (
        "img-src 'self' https://images.example"
        in (csp_middleware_run(updated)["Content-Security-Policy"])
    )
    assert "Content-Security-Policy" not in csp_middleware_run(exempt)
    response = csp_middleware_run(with_nonce)
    nonce = response.content.decode().split("'")[1]
    assert response["Content-Security-Policy"] == build_policy(nonce=nonce) != build_policy()
    late = csp_middleware_run(nonce_too_late)
    assert late["Content-Security-Policy"] == build_policy()
    with pytest.raises(CSPNonceError):
        str(late.request.csp_nonce)
