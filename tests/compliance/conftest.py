"""Fixtures of the access log tests: a document row (no file needed) and a recording helper."""

import pytest

from vault.access import Access, AccessContext, Action, Outcome


@pytest.fixture
def document(acme, alice):
    """One of Acme's documents; its stored name is set directly, no file is written."""
    from vault.models import Document

    return Document.objects.create(
        company=acme,
        title="Acme valuation 2026",
        original_filename="valuation.pdf",
        uploaded_by=alice,
        size=1_048_576,
        key_id="0123456789abcdef",
        file="documents/2026/11/00112233445566778899aabbccddeeff",
    )


@pytest.fixture
def record(db):
    """Return a function that records `count` simple accesses and returns the last event."""
    from compliance.access_log import access_event_record

    def record(count: int = 1, **context: object):
        context.setdefault("action", Action.DOWNLOAD)
        event = None
        for number in range(count):
            event = access_event_record(
                Access(Outcome.ALLOWED, AccessContext(**context), reason=f"event {number}")
            )
        return event

    return record
