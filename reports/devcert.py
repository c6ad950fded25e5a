"""A local CA and a report-signing certificate it issued, for development and demos only.

Pure `cryptography`, no Django: `scripts/dev_env.py` calls it before any settings exist. The CA's
private key is never written: once the signing certificate is issued the CA cannot issue anything
else, so trusting it (in pdfsig's NSS database, in Acrobat) trusts this one certificate only.
"""

import datetime
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

RSA_BITS = 3072
CA_DAYS = 5 * 365
SIGNER_DAYS = 2 * 365
CA_FILE = "ca.pem"
CERT_FILE = "signing-cert.pem"
P12_FILE = "signing.p12"
PASSPHRASE_FILE = "signing.passphrase"  # noqa: S105 (a file name)


@dataclass(frozen=True)
class DevSigningFiles:
    """Where the development CA and signing certificate were written, and what they are called."""

    directory: Path
    ca_name: str
    signer_name: str
    signer_fingerprint: str

    @property
    def ca(self) -> Path:
        """Return the CA certificate (PEM): the trust root to install."""
        return self.directory / CA_FILE

    @property
    def cert(self) -> Path:
        """Return the signing certificate (PEM)."""
        return self.directory / CERT_FILE

    @property
    def p12(self) -> Path:
        """Return the PKCS#12 file holding the signing key, its certificate and the CA."""
        return self.directory / P12_FILE

    @property
    def passphrase(self) -> Path:
        """Return the file holding the PKCS#12 passphrase."""
        return self.directory / PASSPHRASE_FILE

    def env_lines(self) -> list[str]:
        """Return the settings that make Docvault sign with this certificate and trust its CA."""
        return [
            f"REPORT_SIGNING_P12={self.p12}",
            f"REPORT_SIGNING_P12_PASSPHRASE_FILE={self.passphrase}",
            f"REPORT_TRUST_ROOTS={self.ca}",
        ]


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, created with `mode` (never world-readable first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def signing_cert_create(
    directory: str | os.PathLike[str], organisation: str = "Docvault development"
) -> DevSigningFiles:
    """Create a local CA and a signing certificate it issued in `directory`; never overwrite.

    Raise FileExistsError when any of the files exists already.
    """
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in (CA_FILE, CERT_FILE, P12_FILE, PASSPHRASE_FILE):
        if (folder / name).exists():
            raise FileExistsError(f"{folder / name} exists already: refusing to overwrite it.")

    # Unique subject names: validators look issuers up by name, and two demo CAs that share one
    # would shadow each other in a trust store.
    tag = secrets.token_hex(4)
    ca_name = f"Docvault development CA {tag}"
    signer_name = f"Docvault development report signer {tag}"
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    not_before = now - datetime.timedelta(hours=1)  # tolerate a validator's clock running behind

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    ca_subject = _name(ca_name, organisation)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    signer_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(signer_name, organisation))
        .issuer_name(ca_subject)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + datetime.timedelta(days=SIGNER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,  # nonRepudiation
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    passphrase = secrets.token_urlsafe(24)
    p12 = pkcs12.serialize_key_and_certificates(
        signer_name.encode(),
        signer_key,
        signer_cert,
        [ca_cert],
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    pem = serialization.Encoding.PEM
    # Secrets first and private: a half-finished run leaves no readable key behind.
    _write_new(folder / PASSPHRASE_FILE, passphrase.encode() + b"\n", 0o600)
    _write_new(folder / P12_FILE, p12, 0o600)
    _write_new(folder / CERT_FILE, signer_cert.public_bytes(pem), 0o644)
    _write_new(folder / CA_FILE, ca_cert.public_bytes(pem), 0o644)
    return DevSigningFiles(
        directory=folder.resolve(),
        ca_name=ca_name,
        signer_name=signer_name,
        signer_fingerprint=signer_cert.fingerprint(hashes.SHA256()).hex(),
    )
