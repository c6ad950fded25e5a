"""The signing key from settings: every way to configure it, and every way to get it wrong."""

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from reports.signing import SigningUnavailable, signer_load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def unsigned(settings):
    """No signing setting at all."""
    for name in ("REPORT_SIGNING_P12", "REPORT_SIGNING_CERT", "REPORT_SIGNING_KEY"):
        setattr(settings, name, None)
    settings.REPORT_SIGNING_P12_PASSPHRASE = None
    settings.REPORT_SIGNING_KEY_PASSPHRASE = None
    return settings


def pem_files(dev_signing, folder: Path, passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Write the development key and certificate as PEM files; return (cert, key)."""
    key, cert, _ = pkcs12.load_key_and_certificates(
        dev_signing.p12.read_bytes(), dev_signing.passphrase.read_text().strip().encode()
    )
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return cert_path, key_path


def self_signed(
    folder: Path, *, days: tuple[int, int] = (-1, 30), non_repudiation: bool = True
) -> tuple[Path, Path]:
    """Write a small self-signed certificate and its key (EC, fast); return (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {os.urandom(4).hex()}")])
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(True, non_repudiation, False, False, False, False, False, False, False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "self.pem", folder / "self-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_no_key_is_refused_with_what_to_set(unsigned):
    with pytest.raises(SigningUnavailable) as error:
        signer_load()

    assert isinstance(error.value, ImproperlyConfigured)
    assert "REPORT_SIGNING_P12" in str(error.value) and "never" in str(error.value)


def test_the_pkcs12_file_signs(signing):
    assert signer_load().fingerprint == signing.signer_fingerprint


def test_pem_files_with_an_encrypted_key_sign(unsigned, dev_signing, tmp_path):
    cert, key = pem_files(dev_signing, tmp_path, b"pem passphrase")
    unsigned.REPORT_SIGNING_CERT, unsigned.REPORT_SIGNING_KEY = str(cert), str(key)
    unsigned.REPORT_SIGNING_KEY_PASSPHRASE = "pem passphrase"

    assert signer_load().fingerprint == dev_signing.signer_fingerprint


def test_a_wrong_pkcs12_passphrase_is_refused_without_showing_it(signing, settings):
    settings.REPORT_SIGNING_P12_PASSPHRASE = "wrong-passphrase-value"

    with pytest.raises(SigningUnavailable, match="PASSPHRASE is wrong") as error:
        signer_load()

    assert "wrong-passphrase-value" not in str(error.value)


def test_a_wrong_pem_passphrase_is_refused(unsigned, dev_signing, tmp_path):
    cert, key = pem_files(dev_signing, tmp_path, b"right")
    unsigned.REPORT_SIGNING_CERT, unsigned.REPORT_SIGNING_KEY = str(cert), str(key)
    unsigned.REPORT_SIGNING_KEY_PASSPHRASE = "wrong"

    with pytest.raises(SigningUnavailable, match="REPORT_SIGNING_KEY_PASSPHRASE is wrong"):
        signer_load()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"REPORT_SIGNING_P12": "/nonexistent/signing.p12"}, "cannot be read"),
        ({"REPORT_SIGNING_CERT": "cert"}, "not both"),
    ],
)
def test_unusable_pkcs12_settings_are_refused(signing, settings, tmp_path, change, message):
    for name, value in change.items():
        setattr(settings, name, value)

    with pytest.raises(SigningUnavailable, match=message):
        signer_load()


def test_a_certificate_without_its_key_is_refused(unsigned, dev_signing, tmp_path):
    cert, _ = pem_files(dev_signing, tmp_path)
    unsigned.REPORT_SIGNING_CERT = str(cert)

    with pytest.raises(SigningUnavailable, match="go together"):
        signer_load()


def test_a_key_of_another_certificate_is_refused(unsigned, dev_signing, tmp_path):
    cert, _ = pem_files(dev_signing, tmp_path)
    _, other_key = self_signed(tmp_path)
    unsigned.REPORT_SIGNING_CERT, unsigned.REPORT_SIGNING_KEY = str(cert), str(other_key)

    with pytest.raises(SigningUnavailable, match="does not belong"):
        signer_load()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"days": (-30, -1)}, "not now: renew it"),
        ({"days": (2, 30)}, "not now: renew it"),
        ({"non_repudiation": False}, "nonRepudiation"),
    ],
)
def test_an_unfit_certificate_is_refused(unsigned, tmp_path, options, message):
    cert, key = self_signed(tmp_path, **options)
    unsigned.REPORT_SIGNING_CERT, unsigned.REPORT_SIGNING_KEY = str(cert), str(key)

    with pytest.raises(SigningUnavailable, match=message):
        signer_load()


def check_ids() -> list[str]:
    return [message.id for message in run_checks() if message.id.startswith("reports.")]


def test_the_system_check_warns_when_unconfigured(unsigned):
    unsigned.REPORT_TRUST_ROOTS = []

    assert check_ids() == ["reports.W001", "reports.W003"]


def test_the_system_check_names_a_broken_configuration(signing, settings):
    settings.REPORT_SIGNING_P12_PASSPHRASE = "wrong"

    assert check_ids() == ["reports.W002"]


def test_the_system_check_is_quiet_when_configured(signing):
    assert check_ids() == []


def test_paths_and_passphrases_come_through_name_file_too(dev_signing):
    # A fresh process: settings read REPORT_SIGNING_P12_FILE as the path of the PKCS#12 file, and
    # REPORT_SIGNING_P12_PASSPHRASE_FILE as a file holding the passphrase.
    probe = (
        "import django; django.setup(); from reports.signing import signer_load; "
        "print(signer_load().fingerprint)"
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REPORT_", "DOCVAULT_ENV_FILE"))
    }
    env.update(
        DOCVAULT_ENV_FILE="",
        DJANGO_SETTINGS_MODULE="config.settings",
        REPORT_SIGNING_P12_FILE=str(dev_signing.p12),
        REPORT_SIGNING_P12_PASSPHRASE_FILE=str(dev_signing.passphrase),
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == dev_signing.signer_fingerprint
