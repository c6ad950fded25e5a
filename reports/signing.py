"""The organisation's signature on every report: PAdES (ETSI.CAdES.detached), SHA-256, with pyHanko.

The signing certificate and key come from settings, as a PKCS#12 file and its passphrase
(REPORT_SIGNING_P12, REPORT_SIGNING_P12_PASSPHRASE) or as PEM files (REPORT_SIGNING_CERT,
REPORT_SIGNING_KEY, REPORT_SIGNING_KEY_PASSPHRASE). Without a usable key a report is refused with
`SigningUnavailable`; it is never produced unsigned.
"""

import datetime
import hashlib
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables
from pyhanko.pdf_utils import embed, generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

SIGNATURE_FIELD = "DocvaultReportSignature"
NO_SIGNING_KEY_MESSAGE = (
    "Report signing key not configured: set REPORT_SIGNING_P12 and REPORT_SIGNING_P12_PASSPHRASE "
    "(or REPORT_SIGNING_CERT and REPORT_SIGNING_KEY, PEM files), each also as NAME_FILE; "
    "`python manage.py report_signing_cert` makes a development certificate. Reports are never "
    "issued unsigned."
)


class SigningUnavailable(ImproperlyConfigured):
    """Raised when no usable signing key is configured: the report is refused, never unsigned."""


@dataclass(frozen=True)
class ReportSigner:
    """The organisation's signing key and certificate, ready for pyHanko."""

    signer: signers.SimpleSigner
    certificate: x509.Certificate

    @property
    def fingerprint(self) -> str:
        """Return the SHA-256 fingerprint (hex) of the signer certificate."""
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    @property
    def subject(self) -> str:
        """Return the certificate's subject as an RFC 4514 string."""
        return self.certificate.subject.rfc4514_string()

    @property
    def issuer(self) -> str:
        """Return the certificate's issuer as an RFC 4514 string."""
        return self.certificate.issuer.rfc4514_string()

    @property
    def not_after(self) -> datetime.datetime:
        """Return the end of the certificate's validity."""
        return self.certificate.not_valid_after_utc


@dataclass(frozen=True)
class Attachment:
    """A file to embed in the PDF, already zlib-compressed (FlateDecode) on disk.

    A year of events is hundreds of megabytes of CSV: it is compressed while it is written and
    copied from disk into the PDF in its encoded form, so it is never held in memory.
    """

    name: str
    description: str
    mime_type: str
    compressed_path: Path
    size: int
    md5: bytes


def _read(setting: str) -> bytes:
    path = getattr(settings, setting, None)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningUnavailable(
            f"{setting}={path} cannot be read: {exc.strerror or exc}."
        ) from None


def _passphrase(setting: str) -> bytes | None:
    value = getattr(settings, setting, None)
    return value.encode() if value else None


@sensitive_variables("passphrase", "key")
def signer_load() -> ReportSigner:
    """Return the configured report signer; raise SigningUnavailable saying what is missing."""
    p12_path = getattr(settings, "REPORT_SIGNING_P12", None)
    cert_path = getattr(settings, "REPORT_SIGNING_CERT", None)
    key_path = getattr(settings, "REPORT_SIGNING_KEY", None)
    if p12_path and (cert_path or key_path):
        raise SigningUnavailable(
            "Set either REPORT_SIGNING_P12 or REPORT_SIGNING_CERT and REPORT_SIGNING_KEY, not both."
        )
    extra: list[x509.Certificate] = []
    if p12_path:
        passphrase = _passphrase("REPORT_SIGNING_P12_PASSPHRASE")
        try:
            key, certificate, extra = pkcs12.load_key_and_certificates(
                _read("REPORT_SIGNING_P12"), passphrase
            )
        except ValueError:
            raise SigningUnavailable(
                f"REPORT_SIGNING_P12={p12_path} cannot be opened: not a PKCS#12 file, or "
                "REPORT_SIGNING_P12_PASSPHRASE is wrong."
            ) from None
        if key is None or certificate is None:
            raise SigningUnavailable(
                f"REPORT_SIGNING_P12={p12_path} holds no private key and certificate."
            )
    elif cert_path or key_path:
        if not (cert_path and key_path):
            raise SigningUnavailable(
                "REPORT_SIGNING_CERT and REPORT_SIGNING_KEY go together: set both (PEM files)."
            )
        cert_pem = _read("REPORT_SIGNING_CERT")
        try:
            certificates = x509.load_pem_x509_certificates(cert_pem)
        except ValueError:
            raise SigningUnavailable(
                f"REPORT_SIGNING_CERT={cert_path} is not a PEM certificate."
            ) from None
        certificate, extra = certificates[0], certificates[1:]
        passphrase = _passphrase("REPORT_SIGNING_KEY_PASSPHRASE")
        try:
            key = serialization.load_pem_private_key(_read("REPORT_SIGNING_KEY"), passphrase)
        except (ValueError, TypeError):
            raise SigningUnavailable(
                f"REPORT_SIGNING_KEY={key_path} cannot be opened: not a PEM private key, or "
                "REPORT_SIGNING_KEY_PASSPHRASE is wrong or missing."
            ) from None
    else:
        raise SigningUnavailable(NO_SIGNING_KEY_MESSAGE)

    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != certificate.public_key().public_bytes(
        der, public
    ):
        raise SigningUnavailable("The report signing key does not belong to its certificate.")
    now = datetime.datetime.now(datetime.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise SigningUnavailable(
            f"The report signing certificate is valid from {certificate.not_valid_before_utc:%Y-%m-%d}"
            f" to {certificate.not_valid_after_utc:%Y-%m-%d}, not now: renew it."
        )
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.content_commitment:
        raise SigningUnavailable(
            "The report signing certificate lacks the nonRepudiation (contentCommitment) key "
            "usage that PDF signature validators require."
        )

    registry = SimpleCertificateStore()
    registry.register_multiple(
        [asn1_x509.Certificate.load(cert.public_bytes(der)) for cert in extra]
    )
    key_der = key.private_bytes(
        der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(certificate.public_bytes(der)),
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=registry,
    )
    return ReportSigner(signer=signer, certificate=certificate)


# zlib level for the attachment: a year's CSV is mostly random hex (hashes, request IDs), which
# level 6 packs only 8% tighter than level 1, at twice the CPU (bench/RESULTS.md, issue 8).
ATTACHMENT_ZLIB_LEVEL = 1


def attachment_compress(
    chunks: Iterator[bytes], path: Path, *, name: str, description: str, mime_type: str
) -> Attachment:
    """Compress the chunks into `path` as they come (constant memory); return the attachment.

    zlib and MD5 run in a second thread (both release the GIL), so compressing one chunk overlaps
    with making the next; at most a few chunks wait between the two.
    """
    compressor = zlib.compressobj(ATTACHMENT_ZLIB_LEVEL)
    size = 0
    md5 = hashlib.md5(usedforsecurity=False)  # the PDF's /CheckSum entry is MD5 by definition
    pending: deque[Future[None]] = deque()

    def compress(target: BinaryIO, chunk: bytes) -> None:
        md5.update(chunk)
        target.write(compressor.compress(chunk))

    with (
        open(path, "wb") as target,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-zlib") as worker,
    ):
        # One worker runs the chunks in order; an error in it is raised here at the next result().
        for chunk in chunks:
            size += len(chunk)
            pending.append(worker.submit(compress, target, chunk))
            if len(pending) > 2:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
        target.write(compressor.flush())
    return Attachment(name, description, mime_type, path, size, md5.digest())


class _AttachmentStream(embed.EmbeddedFileObject):
    """An embedded file whose compressed bytes are copied from disk while the PDF is written.

    pyHanko's stream objects hold their encoded bytes in memory: for a year of events, a hundred
    megabytes more at the report's peak. This one writes what pyHanko's StreamObject writes (the
    dictionary with /Length, `stream`, the bytes, `endstream`), the bytes straight from the file.
    """

    def __init__(self, writer: IncrementalPdfFileWriter, attachment: Attachment) -> None:
        super().__init__(
            writer,
            dict_data={generic.pdf_name("/Filter"): generic.pdf_name("/FlateDecode")},
            mime_type=attachment.mime_type,
        )
        self.attachment = attachment

    @property
    def encoded_data(self) -> bytes:
        """Refuse: the bytes stay on disk (nothing in signing reads them back)."""
        raise NotImplementedError("The attachment is copied from disk as the PDF is written.")

    def write_to_stream(
        self, stream: BinaryIO, handler: Any = None, container_ref: Any = None
    ) -> None:
        """Write the stream object, its data copied from the compressed file in 1 MiB blocks."""
        if handler is not None:
            raise NotImplementedError("Reports are not encrypted: no security handler expected.")
        path = self.attachment.compressed_path
        length = path.stat().st_size
        self[generic.pdf_name("/Length")] = generic.NumberObject(length)
        generic.DictionaryObject.write_to_stream(self, stream, handler, container_ref)
        del self["/Length"]
        stream.write(b"\nstream\n")
        copied = 0
        with open(path, "rb") as source:
            while block := source.read(1 << 20):
                stream.write(block)
                copied += len(block)
        if copied != length:
            raise OSError(f"{path} changed while it was embedded ({copied} of {length} bytes).")
        stream.write(b"\nendstream")


def pdf_sign(
    source: BinaryIO,
    output: BinaryIO,
    report_signer: ReportSigner,
    *,
    attachments: tuple[Attachment, ...] = (),
    reason: str = "",
) -> None:
    """Embed the attachments, then sign the whole file with a PAdES signature (SHA-256)."""
    writer = IncrementalPdfFileWriter(source)
    for attachment in attachments:
        stream = _AttachmentStream(writer, attachment)
        stream["/Params"] = generic.DictionaryObject(
            {
                generic.pdf_name("/Size"): generic.NumberObject(attachment.size),
                generic.pdf_name("/CheckSum"): generic.ByteStringObject(attachment.md5),
            }
        )
        embed.embed_file(
            writer,
            embed.FileSpec(
                file_spec_string=attachment.name,
                file_name=attachment.name,
                embedded_data=stream,
                description=attachment.description,
            ),
        )
    metadata = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=reason or None,
    )
    signers.PdfSigner(metadata, report_signer.signer).sign_pdf(writer, output=output)


def trust_roots_load() -> list[asn1_x509.Certificate]:
    """Return the CA certificates verification trusts (REPORT_TRUST_ROOTS); raise if unreadable."""
    roots: list[asn1_x509.Certificate] = []
    for path in getattr(settings, "REPORT_TRUST_ROOTS", None) or ():
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"REPORT_TRUST_ROOTS: {path} cannot be read: {exc.strerror or exc}."
            ) from None
        try:
            certificates = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ImproperlyConfigured(
                f"REPORT_TRUST_ROOTS: {path} holds no PEM certificate."
            ) from None
        roots.extend(
            asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
            for cert in certificates
        )
    return roots
