"""Reports end to end: real activity, a real signed PDF, checked by pyHanko and poppler."""

import csv
import io
import re
import subprocess
from datetime import timedelta

import pytest
from asn1crypto import cms
from django.core.files.storage import default_storage
from django.utils import timezone
from pyhanko.pdf_utils.reader import PdfFileReader

from compliance.export import CSV_COLUMNS
from compliance.models import AccessEvent
from compliance.scan import storage_scan
from reports.build import period_make
from reports.generate import report_generate, report_open
from reports.models import Report
from reports.signing import SigningUnavailable
from reports.verify import report_verify
from tests.helpers import ACCOUNT_ACTIONS, document_events
from vault.keys import keyring

from .conftest import download, pdfsig, pdftotext, upload

pytestmark = pytest.mark.django_db


def whole_log():
    """Return a period that holds every event so far."""
    now = timezone.now()
    return period_make(now - timedelta(days=1), now + timedelta(seconds=1))


def attached_csv(path):
    """Return the rows of the CSV file attached to the PDF, read back through pyHanko."""
    with open(path, "rb") as handle:
        reader = PdfFileReader(handle, strict=False)
        names = list(reader.root["/Names"]["/EmbeddedFiles"]["/Names"])
        specs = dict(zip(names[::2], names[1::2], strict=True))
        assert len(specs) == 1
        ((name, spec),) = specs.items()
        data = spec.get_object()["/EF"]["/F"].get_object().data
    return str(name), list(csv.reader(io.StringIO(data.decode("utf-8"))))


def test_a_report_is_signed_stored_encrypted_and_recorded(signing, activity, officer, tmp_path):
    output = tmp_path / "report.pdf"

    report = report_generate(whole_log(), user=officer, output=output)

    pdf = output.read_bytes()
    stored_ciphertext = default_storage.inner.open(report.file.name).read()
    generated = AccessEvent.objects.get(action="report-generated")
    assert Report.objects.get() == report
    assert pdf.startswith(b"%PDF-") and not stored_ciphertext.startswith(b"%PDF-")
    assert b"Valuation 2026" not in stored_ciphertext
    assert (report.size, report.sha256) == (len(pdf), __import__("hashlib").sha256(pdf).hexdigest())
    assert report.signer_fingerprint == signing.signer_fingerprint
    assert (generated.actor_username, generated.outcome, generated.stored_name) == (
        "officer",
        "allowed",
        report.file.name,
    )
    assert generated.seq > report.head_seq  # recorded after the period it reports on
    assert report.event_count == report.head_seq
    # 2 uploads, 4 reads, 2 refusals, besides the cast's logins, memberships and grants
    assert document_events().filter(seq__lte=report.head_seq).count() == 8
    assert output.stat().st_mode & 0o777 == 0o600


def test_the_stored_report_opens_recorded_as_a_download(signing, activity, officer, tmp_path):
    output = tmp_path / "report.pdf"
    report = report_generate(whole_log(), user=officer, output=output)

    with report_open(report, user=officer) as handle:
        data = handle.read()

    event = AccessEvent.objects.order_by("-seq").first()
    assert data == output.read_bytes()
    assert (event.action, event.actor_username, event.stored_name) == (
        "report-downloaded",
        "officer",
        report.file.name,
    )


def test_the_signature_is_valid_and_trusted_for_pyhanko_and_pdfsig(
    signing, activity, officer, tmp_path, nss_db
):
    output = tmp_path / "report.pdf"
    report_generate(whole_log(), user=officer, output=output)

    with open(output, "rb") as handle:
        verdict = report_verify(handle)
    text = pdfsig(output, nss_db)

    assert verdict.ok, verdict.lines()
    assert (verdict.intact, verdict.valid, verdict.trusted, verdict.whole_file, verdict.pades) == (
        True,
        True,
        True,
        True,
        True,
    )
    assert "Signature is Valid." in text
    assert "Certificate is Trusted." in text
    assert "Total document signed" in text
    assert "Signing Hash Algorithm: SHA-256" in text
    assert "ETSI.CAdES.detached" in text


def _signature_value_offset(pdf: bytes) -> int:
    """Return the offset of a hex digit inside the RSA signature value of /Contents."""
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    embedded = reader.embedded_signatures[0]
    start = embedded.byte_range[0] + embedded.byte_range[1] + 1  # after '<'
    signed_data = cms.ContentInfo.load(bytes(embedded.pkcs7_content))["content"]
    value = signed_data["signer_infos"][0]["signature"].native
    at = pdf.lower().index(value.hex().encode(), start)  # pyHanko writes upper-case hex
    return at + len(value)  # a digit in the middle of the value


def _content_offset(pdf: bytes) -> int:
    """Return the offset of a byte inside the first page's content stream (signed content)."""
    return pdf.index(b"stream\n", 1000) + 40


@pytest.mark.parametrize("where", ["signed content", "signature value"])
def test_one_changed_byte_fails_pyhanko_and_pdfsig(
    where, signing, activity, officer, tmp_path, nss_db
):
    output = tmp_path / "report.pdf"
    report_generate(whole_log(), user=officer, output=output)
    pdf = bytearray(output.read_bytes())
    if where == "signed content":
        at = _content_offset(bytes(pdf))
        pdf[at] ^= 0x01
    else:
        at = _signature_value_offset(bytes(pdf))
        pdf[at : at + 1] = b"0" if pdf[at : at + 1] != b"0" else b"1"
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(pdf))

    verdict = report_verify(io.BytesIO(bytes(pdf)))
    text = pdfsig(tampered, nss_db)

    assert not verdict.ok and not verdict.signature_ok
    assert verdict.problem or not (verdict.intact and verdict.valid)
    assert not verdict.issued_here  # the digest differs from the stored report's
    assert "Signature is Valid." not in text
    assert ("Digest Mismatch." in text) or ("Signature is Invalid." in text), text


def test_the_attached_csv_holds_exactly_the_periods_events(
    signing, activity, client, bob, officer, tmp_path
):
    # Events before the period, then the period, then events after it.
    start = timezone.now()
    assert download(client, bob, activity["contract"]) == 200
    assert download(client, bob, activity["valuation"]) == 200
    end = timezone.now()
    assert download(client, bob, activity["contract"]) == 200
    output = tmp_path / "report.pdf"

    report = report_generate(period_make(start, end), user=officer, output=output)

    name, rows = attached_csv(output)
    expected = list(
        AccessEvent.objects.filter(when__gte=start, when__lt=end)
        .order_by("seq")
        .values_list("seq", "action", "actor_username", "hash")
    )
    header, body = rows[0], rows[1:]
    assert name.endswith(".csv") and tuple(header) == CSV_COLUMNS
    column = {name: index for index, name in enumerate(header)}
    got = [
        (
            int(row[column["seq"]]),
            row[column["action"]],
            row[column["actor_username"]],
            row[column["hash"]],
        )
        for row in body
    ]
    assert got == expected
    assert [row[1] for row in got if row[1] not in ACCOUNT_ACTIONS] == ["download", "download"]
    assert report.event_count == len(expected)
    assert report.head_seq == expected[-1][0]


def test_the_text_holds_key_ids_iterations_and_counts_of_the_database(
    signing, activity, officer, tmp_path, settings
):
    settings.REPORT_ORGANISATION = "Acme Marketplace Ltd"
    settings.REPORT_DPO = "Jane Doe, dpo@acme.example"
    output = tmp_path / "report.pdf"
    report = report_generate(whole_log(), user=officer, output=output)

    text = pdftotext(output)

    ring = keyring()
    events = AccessEvent.objects.filter(seq__lte=report.head_seq)
    allowed = events.filter(outcome="allowed").count()
    denied = events.filter(outcome="denied").count()
    assert document_events().filter(seq__lte=report.head_seq, outcome="allowed").count() == 6
    assert (denied, document_events().filter(outcome="denied").count()) == (2, 2)
    for key in ring.keys:
        assert key.key_id_hex in text
    assert f"Iterations {ring.iterations:,}" in text
    assert f"Allowed {allowed} Denied {denied} Failed 0 Total {allowed + denied}" in text
    assert "Acme Marketplace Ltd" in text and "Jane Doe, dpo@acme.example" in text
    assert "Purposes of the processing not configured" in text
    assert str(report.id) in text and report.head in text.replace(" ", "")
    assert "Not certified" in text and "No full storage scan had run" in text  # no scan yet
    assert "Valuation 2026" in text and "charlie" in text  # most read; refusals listed
    assert "Page 1 of" in text


def test_a_report_without_a_signing_key_is_refused_and_leaves_nothing(
    settings, activity, officer, tmp_path
):
    settings.REPORT_SIGNING_P12 = None
    settings.REPORT_SIGNING_CERT = None
    settings.REPORT_SIGNING_KEY = None
    output = tmp_path / "report.pdf"
    before = AccessEvent.objects.count()

    with pytest.raises(SigningUnavailable, match="Report signing key not configured"):
        report_generate(whole_log(), user=officer, output=output)

    assert not output.exists()
    assert not Report.objects.exists()
    assert AccessEvent.objects.count() == before


def test_the_second_report_checks_the_first_ones_anchor(signing, activity, officer, tmp_path):
    first = report_generate(whole_log(), user=officer, output=tmp_path / "1.pdf")

    report_generate(whole_log(), user=officer, output=tmp_path / "2.pdf")

    text = pdftotext(tmp_path / "2.pdf")
    assert f"anchor{first.head}:stillinthelog" in text.replace(" ", "")


def test_an_existing_output_file_is_never_overwritten(signing, activity, officer, tmp_path):
    output = tmp_path / "report.pdf"
    output.write_bytes(b"keep me")

    with pytest.raises(FileExistsError):
        report_generate(whole_log(), user=officer, output=output)

    assert output.read_bytes() == b"keep me"
    assert not Report.objects.exists()


def test_pdftoppm_renders_every_page(signing, activity, officer, tmp_path):
    output = tmp_path / "report.pdf"
    report_generate(whole_log(), user=officer, output=output)

    subprocess.run(
        ["pdftoppm", "-r", "30", "-png", str(output), str(tmp_path / "page")],
        check=True,
        timeout=120,
    )

    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 4


def test_hostile_text_is_shown_as_text_and_never_a_formula(
    signing, client, acme, alice, officer, tmp_path
):
    title = '=HYPERLINK("http://127.0.0.1:9/x")<img src="http://127.0.0.1:9/y.png">'
    document = upload(client, alice, acme, b"%PDF-1.7\nhostile", title)
    assert download(client, alice, document) == 200
    output = tmp_path / "report.pdf"

    report_generate(whole_log(), user=officer, output=output)

    _, rows = attached_csv(output)
    titles = {row[CSV_COLUMNS.index("document_title")] for row in rows[1:]}
    assert titles - {""} == {"'" + title}  # account events name no document
    assert '<imgsrc="http://127.0.0.1:9/y.png">' in pdftotext(output).replace(" ", "")


def test_rotations_in_the_period_are_listed_with_their_key_ids(signing, officer, tmp_path):
    from compliance.access_log import access_event_record
    from vault.access import Access, AccessContext, Action

    old_key = keyring().keys[1].key_id_hex
    for _ in range(3):
        access_event_record(
            Access("allowed", AccessContext(action=Action.ROTATE, user=officer), key_id=old_key)
        )
    output = tmp_path / "report.pdf"

    report_generate(whole_log(), user=officer, output=output)

    text = pdftotext(output)
    assert "3 rotation events in the period" in text
    # pdftotext reads this small table's last header cells after the first data cells.
    assert re.search(rf"{old_key} allowed (Files )?3 ", text)


def test_a_full_scan_in_the_period_certifies_storage_with_its_line_and_digest(
    signing, activity, officer, tmp_path
):
    scan = storage_scan(full=True, user=officer)
    assert scan.certified
    output = tmp_path / "report.pdf"

    report_generate(whole_log(), user=officer, output=output)

    text = pdftotext(output).replace(" ", "")
    assert "Certified." in text
    assert scan.certification.replace(" ", "") in text
    assert scan.inventory_digest in text
    assert "Notcertified" not in text
    for key_id in scan.counts_by_key:
        assert key_id in text


def test_a_quick_scan_does_not_certify_and_a_full_one_outside_the_period_warns(
    signing, activity, officer, tmp_path
):
    storage_scan(full=False, user=officer)
    quick_only = tmp_path / "quick.pdf"
    report_generate(whole_log(), user=officer, output=quick_only)
    assert "No full storage scan had run" in pdftotext(quick_only)

    scan = storage_scan(full=True, user=officer)
    later = scan.finished_at + timedelta(seconds=1)
    period = period_make(later, later + timedelta(days=1))
    output = tmp_path / "later.pdf"
    report_generate(period, user=officer, output=output)

    text = pdftotext(output)
    assert "Not certified." in text and "No full storage scan ran in the period" in text
    assert scan.inventory_digest in text.replace(" ", "")


def test_a_scan_that_finds_plaintext_fails_the_summary_and_lists_the_finding(
    signing, activity, officer, tmp_path
):
    from django.core.files.base import ContentFile

    default_storage.inner.save("stray/notes.txt", ContentFile(b"%PDF-1.7 plaintext here\n" * 4))
    scan = storage_scan(full=True, user=officer)
    assert not scan.certified
    output = tmp_path / "report.pdf"

    report_generate(whole_log(), user=officer, output=output)

    text = pdftotext(output)
    assert "Every file encrypted FAILED" in text
    assert "stray/notes.txt" in text.replace(" ", "")
    assert "Plaintext" in text
