"""Verify a report PDF: its one signature, the trust in its signer, and whether this system issued it.

Used by `audit_report_verify` and the dashboard. Any PDF may arrive here, hostile ones included:
whatever pyHanko cannot read becomes a verdict with a clear problem, never an exception.
"""

import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from vault.access import Access, Action, Outcome, access_context, access_record

from .models import Report
from .signing import trust_roots_load

logger = logging.getLogger(__name__)

# A report is a few megabytes; a year's attachment compresses to tens. Anything far larger is
# refused before pyHanko parses it.
MAX_PDF_SIZE = 1 << 30
PADES_SUBFILTER = "/ETSI.CAdES.detached"


@dataclass(frozen=True)
class ReportVerdict:
    """What verifying one PDF found. `problem` explains a file that could not be checked at all."""

    sha256: str
    size: int
    problem: str = ""
    intact: bool = False
    valid: bool = False
    trusted: bool = False
    whole_file: bool = False
    pades: bool = False
    trust_problem: str = ""
    coverage_problem: str = ""
    signer_subject: str = ""
    signer_fingerprint: str = ""
    signed_at: datetime | None = None
    md_algorithm: str = ""
    report: Report | None = None

    @property
    def signature_ok(self) -> bool:
        """Return whether the signature is intact, valid, trusted and covers the whole file."""
        return not self.problem and self.intact and self.valid and self.trusted and self.whole_file

    @property
    def issued_here(self) -> bool:
        """Return whether a stored report has this file's SHA-256."""
        return self.report is not None

    @property
    def ok(self) -> bool:
        """Return whether the signature holds and this system issued the file."""
        return self.signature_ok and self.issued_here

    def lines(self) -> list[str]:
        """Return the verdict as the lines the command prints."""

        def yes(flag: bool) -> str:
            return "yes" if flag else "NO"

        lines = [f"File SHA-256: {self.sha256} ({self.size:,} bytes)"]
        if self.problem:
            lines.append(f"Cannot verify: {self.problem}")
        else:
            lines += [
                f"Signer: {self.signer_subject}",
                f"Signer certificate SHA-256: {self.signer_fingerprint}",
                f"Signed at (signer's clock): {self.signed_at:%Y-%m-%d %H:%M:%S %Z}"
                if self.signed_at
                else "Signed at: not stated",
                f"PAdES (ETSI.CAdES.detached), {self.md_algorithm or '?'}: {yes(self.pades)}",
                f"Intact (the signed bytes are unchanged): {yes(self.intact)}",
                f"Valid (the signature value checks out): {yes(self.valid)}",
                f"Trusted (signer chains to REPORT_TRUST_ROOTS): {yes(self.trusted)}"
                + (f" - {self.trust_problem}" if self.trust_problem else ""),
                f"Covers the whole file: {yes(self.whole_file)}"
                + (f" - {self.coverage_problem}" if self.coverage_problem else ""),
            ]
        if self.report is not None:
            lines.append(
                f"Issued by this system: yes, report {self.report.id} for "
                f"{self.report.period_start:%Y-%m-%d %H:%M} to {self.report.period_end:%Y-%m-%d %H:%M}"
                f", generated {self.report.generated_at:%Y-%m-%d %H:%M:%S %Z} by "
                f"{self.report.generated_by_name or '?'}"
            )
        else:
            lines.append("Issued by this system: NO (no stored report has this SHA-256)")
        lines.append(
            "Verdict: "
            + (
                "GOOD"
                if self.ok
                else "signature good, but not issued by this system"
                if self.signature_ok
                else "BAD"
            )
        )
        return lines


def _digest(stream: BinaryIO) -> tuple[bytes, str]:
    """Return the whole file and its SHA-256, refusing anything larger than MAX_PDF_SIZE."""
    data = stream.read(MAX_PDF_SIZE + 1)
    return data, hashlib.sha256(data).hexdigest()


def report_verify(stream: BinaryIO) -> ReportVerdict:
    """Return the verdict on the PDF read from `stream` (any bytes at all)."""
    data, sha256 = _digest(stream)
    report = Report.objects.filter(sha256=sha256).first()

    def refused(problem: str) -> ReportVerdict:
        return ReportVerdict(sha256=sha256, size=len(data), problem=problem, report=report)

    if len(data) > MAX_PDF_SIZE:
        return refused(f"the file is larger than {MAX_PDF_SIZE:,} bytes.")
    if b"%PDF-" not in data[:1024]:
        return refused("not a PDF file (no %PDF- header).")
    # Read before the file is parsed: a configuration error is the operator's, not the file's.
    roots = trust_roots_load()
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except Exception as exc:  # any parser failure on untrusted input is a verdict, not a crash
        logger.info("Unreadable PDF %s: %s", sha256, exc, exc_info=True)
        return refused(f"the PDF cannot be read ({_brief(exc)}); it is damaged or truncated.")
    if not signatures:
        return refused("the PDF holds no signature.")
    if len(signatures) > 1:
        return refused(
            f"the PDF holds {len(signatures)} signatures; a Docvault report carries exactly one."
        )
    embedded = signatures[0]
    context = ValidationContext(trust_roots=roots, allow_fetching=False)
    try:
        status = validate_pdf_signature(embedded, context)
    except Exception as exc:  # as above: a malformed signature is a verdict
        logger.info("Unverifiable signature in %s: %s", sha256, exc, exc_info=True)
        return refused(f"the signature cannot be checked ({_brief(exc)}).")

    try:
        subfilter = str(embedded.sig_object.get("/SubFilter", ""))
    except Exception:  # a hostile signature dictionary: not PAdES then
        subfilter = ""
    certificate = x509.load_der_x509_certificate(status.signing_cert.dump())
    whole_file = status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    if not roots:
        trust_problem = "no trust roots configured (REPORT_TRUST_ROOTS)"
    elif not status.trusted:
        indication = status.trust_problem_indic
        trust_problem = (
            f"{indication.name.replace('_', ' ').lower()}" if indication else "no path to a root"
        )
    else:
        trust_problem = ""
    return ReportVerdict(
        sha256=sha256,
        size=len(data),
        intact=bool(status.intact),
        valid=bool(status.valid),
        trusted=bool(status.trusted),
        whole_file=whole_file,
        pades=subfilter == PADES_SUBFILTER,
        trust_problem=trust_problem,
        coverage_problem=""
        if whole_file
        else "bytes were added after the signature (an incremental update or appended data)",
        signer_subject=certificate.subject.rfc4514_string(),
        signer_fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
        signed_at=status.signer_reported_dt,
        md_algorithm=str(status.md_algorithm or "").upper().replace("SHA", "SHA-"),
        report=report,
    )


def report_verification_record(
    verdict: ReportVerdict, *, user: Any = None, request: Any = None, name: str = ""
) -> None:
    """Record a verification and its verdict; raise RecordError if it cannot be recorded."""
    if verdict.problem:
        result = f"cannot verify: {verdict.problem}"
    else:
        flags = (
            ("intact", verdict.intact),
            ("valid", verdict.valid),
            ("trusted", verdict.trusted),
            ("whole file", verdict.whole_file),
        )
        result = ", ".join(f"{label} {'yes' if flag else 'NO'}" for label, flag in flags)
    issued = f"report {verdict.report.id}" if verdict.report else "not issued here"
    verdict_word = "GOOD" if verdict.ok else "signature good" if verdict.signature_ok else "BAD"
    reason = f"{verdict_word}: {result}; {issued}; sha256 {verdict.sha256}"
    if name:
        reason += f"; file {name[:120]}"
    with access_context(action=Action.REPORT_VERIFIED, user=user, request=request) as context:
        access_record(Access(Outcome.ALLOWED, context, reason=reason[:500]))


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
