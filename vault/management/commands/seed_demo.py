"""`manage.py seed_demo`: demo companies, users, documents, a grant and some access history.

Development only: every demo user gets the same published password. Safe to run again: what exists
is kept as it is (a changed password too), nothing is duplicated.
"""

import csv
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from vault.access import Access, Action, Outcome, access_context, access_record
from vault.documents import document_create, grant_save
from vault.models import Company, Document, Grant, Membership

DEMO_PASSWORD = "docvault-demo"  # noqa: S105 (published on purpose: development data only)
ACME = "Acme Corp"
GLOBEX = "Globex"
# Created by the compliance app's migration: its staff members may use the dashboard.
COMPLIANCE_OFFICERS = "Compliance officers"

# username, company, role in the demo, extra user fields
USERS: list[tuple[str, str | None, str, dict[str, Any]]] = [
    ("alice", ACME, "Acme Corp member (manager)", {}),
    ("bob", ACME, "Acme Corp member", {}),
    ("charlie", GLOBEX, "Globex member (Acme shares one document with Globex)", {}),
    ("officer", None, "compliance officer: staff, may read any document", {"is_staff": True}),
    ("admin", None, "superuser", {"is_staff": True, "is_superuser": True}),
]


# Sample files, built here so the demo needs no binary fixtures ------------------------------------


def _pdf_escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def pdf_build(title: str, lines: list[str]) -> bytes:
    """Return a valid one-page PDF showing a title and some lines of text."""
    text = [b"BT /F1 18 Tf 72 720 Td (" + _pdf_escape(title) + b") Tj /F1 11 Tf"]
    for line in lines:
        text.append(b"0 -20 Td (" + _pdf_escape(line) + b") Tj")
    text.append(b"ET")
    content = b"\n".join(text)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def docx_build(paragraphs: list[str]) -> bytes:
    """Return a minimal valid Word document (DOCX) with these paragraphs."""
    body = "".join(
        f'<w:p><w:r><w:t xml:space="preserve">{_xml_escape(text)}</w:t></w:r></w:p>'
        for text in paragraphs
    )
    files = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
            '2006/relationships/officeDocument" Target="word/document.xml"/>'
            "</Relationships>"
        ),
        "word/document.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body>{body}</w:body></w:document>"
        ),
    }
    buffer = io.BytesIO()
    # [Content_Types].xml first: that is what identifies an Office document (python-magic too).
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def png_build(width: int = 96, height: int = 64) -> bytes:
    """Return a valid RGB PNG image (a colour gradient)."""
    rows = b"".join(
        b"\x00"
        + bytes(value for x in range(width) for value in (x * 255 // width, y * 255 // height, 160))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def csv_build() -> bytes:
    """Return a small CSV of quarterly figures."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["quarter", "revenue_eur", "ebitda_eur", "headcount"])
    for quarter, revenue, ebitda, headcount in [
        ("2025-Q1", 4_120_000, 610_000, 84),
        ("2025-Q2", 4_480_000, 702_000, 88),
        ("2025-Q3", 4_390_000, 655_000, 91),
        ("2025-Q4", 5_010_000, 820_000, 95),
    ]:
        writer.writerow([quarter, revenue, ebitda, headcount])
    return buffer.getvalue().encode()


def text_build() -> bytes:
    """Return a short plain-text checklist."""
    items = [
        "Articles of association",
        "Last three annual reports",
        "Customer contracts over EUR 100k",
        "Pending litigation",
        "IP register",
        "Employment contracts of key staff",
    ]
    lines = ["Globex - due diligence checklist", ""] + [f"[ ] {item}" for item in items]
    return ("\n".join(lines) + "\n").encode()


# company, uploader, title, filename, builder
SAMPLES: list[tuple[str, str, str, str, Callable[[], bytes]]] = [
    (
        ACME,
        "alice",
        "Financial statement FY2025",
        "Acme Corp - Financial statement FY2025.pdf",
        lambda: pdf_build(
            "Acme Corp - Financial statement FY2025",
            ["Revenue: EUR 18.0m", "EBITDA: EUR 2.8m", "Net debt: EUR 3.1m", "Confidential."],
        ),
    ),
    (
        ACME,
        "alice",
        "Mutual NDA Acme Corp / Globex",
        "Mutual NDA Acme-Globex.docx",
        lambda: docx_build(
            [
                "Mutual non-disclosure agreement",
                "Between Acme Corp and Globex, for the evaluation of a possible acquisition.",
                "Each party keeps the other's information confidential for five years.",
            ]
        ),
    ),
    (ACME, "bob", "Revenue by quarter 2025", "revenue-2025.csv", csv_build),
    (ACME, "bob", "Warehouse floor plan", "floor-plan.png", png_build),
    (GLOBEX, "charlie", "Due diligence checklist", "dd-checklist.txt", text_build),
]
SHARED_TITLE = "Financial statement FY2025"


class Command(BaseCommand):
    help = "Create demo companies, users, documents and access history (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        """Add --force."""
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off (the demo users share a published password).",
        )

    def handle(self, *args: Any, force: bool = False, **options: Any) -> None:
        """Create what is missing, then print the logins."""
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates users with a published password: it runs only with DEBUG on. "
                "Use --force to run it anyway."
            )
        with transaction.atomic():
            companies = {
                name: Company.objects.get_or_create(name=name)[0] for name in (ACME, GLOBEX)
            }
            users = {
                username: self._user(username, companies.get(company), extra)
                for username, company, _, extra in USERS
            }
        created = []
        for company, uploader, title, filename, build in SAMPLES:
            if Document.objects.filter(company=companies[company], title=title).exists():
                continue
            created.append(
                document_create(
                    company=companies[company],
                    content=ContentFile(build(), name=filename),
                    uploaded_by=users[uploader],
                    title=title,
                )
            )
        shared = Document.objects.get(company=companies[ACME], title=SHARED_TITLE)
        if not Grant.objects.filter(document=shared, company=companies[GLOBEX]).exists():
            grant_save(shared, companies[GLOBEX], None, user=users["alice"])
        if created:
            self._history(users, companies)
        self._report(len(created))

    def _user(self, username: str, company: Company | None, extra: dict[str, Any]) -> Any:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com", **extra}
        )
        if not created:
            # An existing account keeps its rights and password: --force never promotes anyone.
            return user
        user.set_password(DEMO_PASSWORD)
        user.save()
        if company is not None:
            role = Membership.Role.MANAGER if username == "alice" else Membership.Role.MEMBER
            Membership.objects.get_or_create(user=user, company=company, defaults={"role": role})
        if username == "officer":
            user.user_permissions.add(
                Permission.objects.get(
                    content_type__app_label="vault", codename="read_any_document"
                )
            )
            user.groups.add(Group.objects.get(name=COMPLIANCE_OFFICERS))
        return user

    def _history(self, users: dict[str, Any], companies: dict[str, Company]) -> None:
        """Record a few real accesses: downloads through the storage, a staff read, a refusal."""
        acme = companies[ACME]
        statement = Document.objects.get(company=acme, title=SHARED_TITLE)
        nda = Document.objects.get(company=acme, title="Mutual NDA Acme Corp / Globex")
        revenue = Document.objects.get(company=acme, title="Revenue by quarter 2025")
        for user, document, staff_read in [
            (users["bob"], statement, False),
            (users["charlie"], statement, False),
            (users["alice"], nda, False),
            (users["officer"], nda, True),
        ]:
            self._download(user, document, staff_read)
        with access_context(
            action=Action.DOWNLOAD, user=users["charlie"], document=revenue
        ) as context:
            access_record(
                Access(
                    Outcome.DENIED,
                    context,
                    stored_name=revenue.file.name,
                    key_id=revenue.key_id,
                    reason="not a reader of this document",
                )
            )

    def _download(self, user: Any, document: Document, staff_read: bool) -> None:
        """Decrypt a whole document as a download would, recorded by the storage's open."""
        with (
            access_context(
                action=Action.DOWNLOAD,
                user=user,
                document=document,
                staff_read=staff_read,
                bytes_planned=document.size,
            ),
            document.file.storage.open(document.file.name) as plaintext,
        ):
            for _ in plaintext.chunks():
                pass

    def _report(self, created: int) -> None:
        self.stdout.write(f"Demo data ready ({created} new documents).")
        self.stdout.write(
            self.style.WARNING("Development only: every demo user has this password.")
        )
        self.stdout.write(f"\n  Password for every login: {DEMO_PASSWORD}\n")
        for username, _, role, _ in USERS:
            self.stdout.write(f"  {username:<8}  {role}")
        self.stdout.write("")
