"""The operator commands: report_signing_cert, audit_report, audit_report_verify."""

import io
import os
import sqlite3
import subprocess

import pytest
from cryptography import x509
from django.core.management import CommandError, call_command

from compliance.models import AccessEvent
from reports.models import Report
from tests.helpers import document_events, manage

from .conftest import pdftotext


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# report_signing_cert -----------------------------------------------------------------------------


def test_report_signing_cert_writes_a_ca_and_a_signer_it_issued(tmp_path):
    folder = tmp_path / "signing"

    text = run("report_signing_cert", "--dir", str(folder), "--organisation", "Acme Ltd")

    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((folder / "signing-cert.pem").read_bytes())
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert cert.issuer == ca.subject != cert.subject
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert "Acme Ltd" in cert.subject.rfc4514_string()
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert modes == {
        "ca.pem": 0o644,
        "signing-cert.pem": 0o644,
        "signing.p12": 0o600,
        "signing.passphrase": 0o600,
    }
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (
        f'certutil -A -d sql:DIR -n "{ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value}" -t "C,C,C" -i {folder / "ca.pem"}'
        in text
    )
    assert "certutil -N -d sql:DIR --empty-password" in text and "pdfsig -nssdir sql:DIR" in text
    assert f"REPORT_SIGNING_P12={folder / 'signing.p12'}" in text
    assert f"REPORT_SIGNING_P12_PASSPHRASE_FILE={folder / 'signing.passphrase'}" in text
    assert f"REPORT_TRUST_ROOTS={folder / 'ca.pem'}" in text
    assert "Acrobat" in text
    assert (folder / "signing.passphrase").read_text().strip() not in text


def test_report_signing_cert_never_overwrites_and_names_are_unique(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    run("report_signing_cert", "--dir", str(first))
    before = (first / "signing.p12").read_bytes()

    with pytest.raises(CommandError, match="exists already"):
        run("report_signing_cert", "--dir", str(first))
    run("report_signing_cert", "--dir", str(second))

    ca_a = x509.load_pem_x509_certificate((first / "ca.pem").read_bytes())
    ca_b = x509.load_pem_x509_certificate((second / "ca.pem").read_bytes())
    assert (first / "signing.p12").read_bytes() == before
    assert ca_a.subject != ca_b.subject


# audit_report ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_report_writes_stores_and_prints_the_digest(signing, activity, tmp_path):
    output = tmp_path / "report.pdf"

    text = run("audit_report", "--from", "2000-01-01", "--to", "2099-12-31", "-o", str(output))

    report = Report.objects.get()
    assert report.sha256 in text and report.head in text
    assert output.read_bytes().startswith(b"%PDF-")
    assert report.generated_by_name  # the OS user who ran it
    assert report.event_count == AccessEvent.objects.filter(seq__lte=report.head_seq).count()
    assert document_events().filter(seq__lte=report.head_seq).count() == 8


@pytest.mark.django_db
def test_audit_report_without_a_key_is_refused_and_writes_nothing(settings, tmp_path):
    settings.REPORT_SIGNING_P12 = settings.REPORT_SIGNING_CERT = settings.REPORT_SIGNING_KEY = None
    output = tmp_path / "report.pdf"

    with pytest.raises(CommandError, match="Report signing key not configured"):
        run("audit_report", "--from", "2026-01-01", "--to", "2026-12-31", "-o", str(output))

    assert not output.exists() and not Report.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-13-01", "2026-12-31", "is not a date"),
        ("2026-02-01", "2026-01-31", "before it starts"),
    ],
)
def test_audit_report_refuses_bad_periods(signing, tmp_path, first, last, message):
    with pytest.raises(CommandError, match=message):
        run("audit_report", "--from", first, "--to", last, "-o", str(tmp_path / "r.pdf"))

    assert not Report.objects.exists()


# audit_report_verify -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_report_verify_passes_a_report_issued_here(signing, activity, tmp_path):
    output = tmp_path / "report.pdf"
    run("audit_report", "--from", "2000-01-01", "--to", "2099-12-31", "-o", str(output))

    text = run("audit_report_verify", str(output))

    for line in (
        "Intact (the signed bytes are unchanged): yes",
        "Valid (the signature value checks out): yes",
        "Trusted (signer chains to REPORT_TRUST_ROOTS): yes",
        "Covers the whole file: yes",
        f"Issued by this system: yes, report {Report.objects.get().id}",
        "Verdict: GOOD",
    ):
        assert line in text


@pytest.mark.django_db
def test_audit_report_verify_exits_2_for_a_good_signature_not_issued_here(
    signing, activity, tmp_path
):
    output = tmp_path / "report.pdf"
    run("audit_report", "--from", "2000-01-01", "--to", "2099-12-31", "-o", str(output))
    Report.objects.all().delete()
    out = io.StringIO()

    with pytest.raises(CommandError) as error:
        call_command("audit_report_verify", str(output), stdout=out)

    assert error.value.returncode == 2
    assert "Issued by this system: NO" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("content", [b"", b"%PDF-1.7\nnothing else", b"\x00" * 4096])
def test_audit_report_verify_exits_1_with_a_message_for_a_hostile_file(signing, tmp_path, content):
    path = tmp_path / "hostile.pdf"
    path.write_bytes(content)
    out = io.StringIO()

    with pytest.raises(CommandError) as error:
        call_command("audit_report_verify", str(path), stdout=out)

    assert error.value.returncode == 1
    assert "Cannot verify:" in out.getvalue() and "Verdict: BAD" in out.getvalue()


@pytest.mark.django_db
def test_audit_report_verify_names_a_missing_file(signing, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run("audit_report_verify", str(tmp_path / "missing.pdf"))


def test_audit_report_on_a_database_file_walks_the_chain_beside_the_rest(dev_signing, tmp_path):
    """From a shell, as an operator runs it: the walk runs in a second process, and its verdict,
    good or bad, reaches the report."""
    database = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "DOCVAULT_ENV_FILE": "",
        "REPORT_SIGNING_P12": str(dev_signing.p12),
        "REPORT_SIGNING_P12_PASSPHRASE_FILE": str(dev_signing.passphrase),
        "REPORT_TRUST_ROOTS": str(dev_signing.ca),
    }

    def report(name: str) -> subprocess.CompletedProcess:
        period = ("--from", "2000-01-01", "--to", "2099-12-31")
        return manage(env, "audit_report", *period, "-o", str(tmp_path / name), timeout=300)

    for setup in (("migrate", "--verbosity", "0"), ("seed_demo", "--force")):
        done = manage(env, *setup)
        assert done.returncode == 0, done.stderr[-3000:]
    intact = report("intact.pdf")
    assert intact.returncode == 0, intact.stderr[-3000:]
    assert "chain ok" in intact.stdout
    with sqlite3.connect(database) as db:
        db.execute("UPDATE compliance_accessevent SET reason = 'rewritten' WHERE seq = 2")

    rewritten = report("rewritten.pdf")

    assert rewritten.returncode == 0, rewritten.stderr[-3000:]
    assert "chain broken" in rewritten.stdout
    assert "event 2 does not match its hash" in pdftotext(tmp_path / "rewritten.pdf")
