"""Verification of any PDF at all: good, tampered, hostile, untrusted, not ours."""

import functools
import io

import pytest
from django.test import override_settings
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers

from reports.devcert import signing_cert_create
from reports.render import report_pdf_write
from reports.signing import pdf_sign, signer_load
from reports.verify import report_verify

pytestmark = pytest.mark.django_db


@functools.cache
def unsigned_pdf() -> bytes:
    output = io.BytesIO()
    report_pdf_write("<p>Not a report, just a page.</p>", output)
    return output.getvalue()


@pytest.fixture(scope="session")
def signed_once(dev_signing) -> bytes:
    """A small PDF signed with the development key (once: rendering and signing take a while)."""
    output = io.BytesIO()
    with override_settings(
        REPORT_SIGNING_P12=str(dev_signing.p12),
        REPORT_SIGNING_P12_PASSPHRASE=dev_signing.passphrase.read_text().strip(),
    ):
        pdf_sign(io.BytesIO(unsigned_pdf()), output, signer_load())
    return output.getvalue()


@pytest.fixture
def signed(signing, signed_once) -> bytes:
    """That signed PDF, with its signer configured and its CA trusted."""
    return signed_once


def verify(data: bytes):
    return report_verify(io.BytesIO(data))


def test_a_signed_pdf_not_issued_here_has_a_good_signature_only(signed):
    verdict = verify(signed)

    assert verdict.signature_ok and not verdict.issued_here and not verdict.ok
    assert verdict.lines()[-1] == "Verdict: signature good, but not issued by this system"


def test_a_signer_from_another_ca_is_not_trusted(signed, settings, tmp_path):
    stranger = signing_cert_create(tmp_path / "stranger", "Someone else")
    settings.REPORT_SIGNING_P12 = str(stranger.p12)
    settings.REPORT_SIGNING_P12_PASSPHRASE = stranger.passphrase.read_text().strip()
    output = io.BytesIO()
    pdf_sign(io.BytesIO(unsigned_pdf()), output, signer_load())

    verdict = verify(output.getvalue())

    assert verdict.intact and verdict.valid and verdict.whole_file
    assert not verdict.trusted and verdict.trust_problem
    assert not verdict.signature_ok


def test_without_trust_roots_nothing_is_trusted(signed, settings):
    settings.REPORT_TRUST_ROOTS = []

    verdict = verify(signed)

    assert verdict.intact and verdict.valid and not verdict.trusted
    assert "no trust roots configured" in verdict.trust_problem


def _incremental_update(data: bytes) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    info = generic.DictionaryObject({generic.pdf_name("/Title"): generic.pdf_string("Changed")})
    writer.trailer["/Info"] = writer.add_object(info)
    writer.update_root()
    output = io.BytesIO()
    writer.write(output)
    return output.getvalue()


def _second_signature(data: bytes) -> bytes:
    output = io.BytesIO()
    metadata = signers.PdfSignatureMetadata(
        field_name="Second", subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256"
    )
    signers.PdfSigner(metadata, signer_load().signer).sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(data)), output=output
    )
    return output.getvalue()


def _byte_range_changed(data: bytes) -> bytes:
    at = data.index(b"/ByteRange [0 ") + len(b"/ByteRange [0 ")
    return data[:at] + b"1" + data[at + 1 :]


HOSTILE = {
    "empty": lambda signed: b"",
    "garbage": lambda signed: bytes(range(256)) * 40,
    "a PDF header and garbage": lambda signed: b"%PDF-1.7\n" + b"\x00\xff garbage " * 500,
    "truncated in half": lambda signed: signed[: len(signed) // 2],
    "truncated before the end marker": lambda signed: signed[:-30],
    "self-referencing xref": lambda signed: (
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 1 0 R >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R /Prev 9 >>\nstartxref\n9\n%%EOF\n"
    ),
    "no signature": lambda signed: unsigned_pdf(),
    "two signatures": _second_signature,
    "an update after the signature": _incremental_update,
    "bytes appended after the signature": lambda signed: signed + b"\n% appended\n" * 10,
    "a forged byte range": _byte_range_changed,
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_or_damaged_pdf_gets_a_verdict_never_an_exception(kind, signed):
    data = HOSTILE[kind](signed)

    verdict = verify(data)

    assert not verdict.ok and not verdict.signature_ok
    assert verdict.lines()[-1] == "Verdict: BAD"
    assert verdict.problem or not (
        verdict.intact and verdict.valid and verdict.trusted and verdict.whole_file
    )


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "not a PDF file"),
        ("garbage", "not a PDF file"),
        ("a PDF header and garbage", "cannot be read"),
        ("no signature", "holds no signature"),
        ("two signatures", "holds 2 signatures"),
    ],
)
def test_the_problem_is_said_plainly(kind, message, signed):
    assert message in verify(HOSTILE[kind](signed)).problem


@pytest.mark.parametrize(
    "kind", ["an update after the signature", "bytes appended after the signature"]
)
def test_a_signature_that_does_not_cover_the_whole_file_is_refused(kind, signed):
    verdict = verify(HOSTILE[kind](signed))

    assert not verdict.problem and not verdict.whole_file
    assert "added after the signature" in verdict.coverage_problem
