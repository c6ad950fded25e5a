"""Fixtures of the report tests: a development CA and signer, pdfsig's NSS database, real activity."""

import re
import subprocess
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from reports.devcert import signing_cert_create


@pytest.fixture(scope="session")
def dev_signing(tmp_path_factory):
    """A development CA and a signing certificate it issued (made once: RSA keys are slow)."""
    return signing_cert_create(tmp_path_factory.mktemp("signing"), "Docvault tests")


@pytest.fixture
def signing(settings, dev_signing):
    """Configure report signing with the development PKCS#12 and trust its CA."""
    settings.REPORT_SIGNING_P12 = str(dev_signing.p12)
    settings.REPORT_SIGNING_P12_PASSPHRASE = dev_signing.passphrase.read_text().strip()
    settings.REPORT_SIGNING_CERT = None
    settings.REPORT_SIGNING_KEY = None
    settings.REPORT_TRUST_ROOTS = [str(dev_signing.ca)]
    return dev_signing


@pytest.fixture(scope="session")
def nss_db(tmp_path_factory, dev_signing):
    """An NSS database for poppler's pdfsig that trusts the development CA."""
    folder = tmp_path_factory.mktemp("nss")
    subprocess.run(["certutil", "-N", "-d", f"sql:{folder}", "--empty-password"], check=True)
    trust = ["-n", dev_signing.ca_name, "-t", "C,C,C", "-i", str(dev_signing.ca)]
    subprocess.run(["certutil", "-A", "-d", f"sql:{folder}", *trust], check=True)
    return folder


def pdfsig(path: Path, nss_db: Path) -> str:
    """Return pdfsig's report on a PDF (its exit code is 0 even for a bad signature)."""
    result = subprocess.run(
        ["pdfsig", "-nssdir", f"sql:{nss_db}", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


def pdftotext(path: Path) -> str:
    """Return the PDF's text in reading order, whitespace runs collapsed to one space."""
    result = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, timeout=60, check=True
    )
    return re.sub(r"\s+", " ", result.stdout.decode())


def upload(client, user, company, data: bytes, title: str):
    """Upload a document through the portal as `user`; return it."""
    from vault.models import Document

    client.force_login(user)
    response = client.post(
        reverse("vault:document_upload"),
        {"title": title, "company": company.pk, "file": ContentFile(data, name="doc.pdf")},
    )
    assert response.status_code == 302, response.content[:500]
    return Document.objects.get(title=title)


def download(client, user, document) -> int:
    """Download a document through the vault view as `user`; return the status code."""
    client.force_login(user)
    response = client.get(reverse("vault:document_download", kwargs={"pk": document.pk}))
    if response.streaming:
        b"".join(response.streaming_content)
    return response.status_code


@pytest.fixture
def activity(client, acme, globex, alice, bob, charlie, officer):
    """Real history through the portal: two uploads, reads by members and staff, refusals."""
    valuation = upload(client, alice, acme, b"%PDF-1.7\nvaluation " * 200, "Valuation 2026")
    contract = upload(client, bob, acme, b"%PDF-1.7\ncontract " * 100, "Supply contract")
    assert download(client, bob, valuation) == 200
    assert download(client, alice, valuation) == 200
    assert download(client, alice, contract) == 200
    assert download(client, officer, valuation) == 200
    assert download(client, charlie, valuation) == 404
    assert download(client, charlie, contract) == 404
    client.logout()
    return {"valuation": valuation, "contract": contract}
