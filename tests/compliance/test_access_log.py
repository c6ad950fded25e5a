"""Recording: what one access leaves in the log, with and without a request."""

import time

import pytest
from django.db import transaction

from compliance.access_log import access_event_record, chain_verify, client_ip_get
from compliance.models import GENESIS_HASH, AccessEvent
from tests.helpers import document_events
from vault.access import (
    REQUEST_ID_ATTRIBUTE,
    Access,
    AccessContext,
    Action,
    Outcome,
    RecordError,
    access_record,
    request_id_get,
)
from vault.keys import keyring

pytestmark = pytest.mark.django_db


def test_record_without_request_keeps_the_operator_and_no_client():
    access = Access(
        Outcome.ALLOWED,
        AccessContext(action=Action.CLI_DECRYPT, extra={"operator": "ops-oncall"}),
        stored_name="documents/2026/11/aa",
        key_id="0123456789abcdef",
    )

    event = access_event_record(access)

    stored = AccessEvent.objects.get()
    assert (stored.pk, stored.seq, stored.prev_hash, stored.hash) == (
        event.pk,
        1,
        GENESIS_HASH,
        event.hash,
    )
    assert stored.actor_id is None
    assert stored.actor_username == "ops-oncall"
    assert (stored.action, stored.outcome) == ("cli-decrypt", "allowed")
    assert stored.stored_name == "documents/2026/11/aa"
    assert stored.key_id == "0123456789abcdef"
    assert stored.chain_key_id == keyring().primary.key_id_hex
    assert (stored.client_ip, stored.user_agent, stored.request_id) == (None, "", "")
    assert stored.document_id is None
    assert stored.duration_ms is None and stored.bytes_served is None


def test_record_with_request_snapshots_who_what_and_where(rf, alice, document):
    request = rf.get(
        "/documents/x/download/",
        REMOTE_ADDR="203.0.113.7",
        HTTP_USER_AGENT="Mozilla/5.0 " + "x" * 400,
        HTTP_X_FORWARDED_FOR="198.51.100.99",
    )
    request.user = alice
    context = AccessContext(
        action=Action.DOWNLOAD,
        user=alice,
        request=request,
        document=document,
        bytes_planned=1_048_576,
        extra={"started": time.perf_counter() - 0.02},
    )

    access_event_record(Access(Outcome.ALLOWED, context, key_id="0123456789abcdef"))

    event = document_events().get()
    assert (event.actor_id, event.actor_username) == (alice.pk, "alice")
    assert event.document_id == document.pk
    assert event.document_title == "Acme valuation 2026"
    assert event.stored_name == document.file.name
    # X-Forwarded-For is ignored unless ACCESS_LOG_PROXY_COUNT says a proxy sets it.
    assert event.client_ip == "203.0.113.7"
    assert len(event.user_agent) == 255 and event.user_agent.startswith("Mozilla/5.0 x")
    assert event.bytes_served == 1_048_576
    assert 20 <= event.duration_ms < 10_000
    assert event.request_id == getattr(request, REQUEST_ID_ATTRIBUTE)
    assert len(event.request_id) == 32
    assert event.staff_read is False


def test_staff_read_and_refusal_are_recorded(rf, officer, charlie, document):
    access_event_record(
        Access(
            Outcome.ALLOWED,
            AccessContext(action=Action.DOWNLOAD, user=officer, document=document, staff_read=True),
        )
    )
    access_event_record(
        Access(
            Outcome.DENIED,
            AccessContext(action=Action.DOWNLOAD, user=charlie, document=document),
            reason="not a reader",
        )
    )

    staff, refused = document_events().order_by("seq")
    assert (staff.actor_username, staff.staff_read, staff.outcome) == ("officer", True, "allowed")
    assert (refused.actor_username, refused.outcome, refused.reason) == (
        "charlie",
        "denied",
        "not a reader",
    )


def test_the_user_comes_from_the_request_when_the_context_has_none(rf, bob):
    request = rf.get("/")
    request.user = bob

    event = access_event_record(
        Access(Outcome.ALLOWED, AccessContext(action=Action.OPEN, request=request))
    )

    assert (event.actor_id, event.actor_username) == (bob.pk, "bob")


def test_anonymous_request_has_no_actor(rf):
    from django.contrib.auth.models import AnonymousUser

    request = rf.get("/")
    request.user = AnonymousUser()

    event = access_event_record(
        Access(Outcome.DENIED, AccessContext(action=Action.DOWNLOAD, request=request))
    )

    assert (event.actor_id, event.actor_username) == (None, "")


def test_every_event_of_a_request_shares_its_id(rf):
    request = rf.get("/")

    first = access_event_record(Access(Outcome.DENIED, AccessContext(request=request)))
    second = access_event_record(Access(Outcome.DENIED, AccessContext(request=request)))

    assert first.request_id == second.request_id == request_id_get(request)


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("9f1c2b3a-1d2e-4f5a-8b9c-0d1e2f3a4b5c", True),
        ("Root=1-67891233-abcdef012345678912345678", True),
        ("", False),
        ("x" * 65, False),
        ("id with spaces", False),
        ("<script>alert(1)</script>", False),
        ("line\nbreak", False),
    ],
)
def test_request_id_header_is_reused_only_when_sane(rf, header, kept):
    request = rf.get("/", HTTP_X_REQUEST_ID=header)

    request_id = request_id_get(request)

    if kept:
        assert request_id == header
    else:
        assert request_id != header and len(request_id) == 32
        int(request_id, 16)


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "198.51.100.1", "10.0.0.2"),
        (1, "198.51.100.1", "198.51.100.1"),
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        (2, "6.6.6.6, 198.51.100.1, 10.0.0.9", "198.51.100.1"),
        (2, "198.51.100.1", "198.51.100.1"),
        (1, "", "10.0.0.2"),
        (1, "not-an-address", None),
        (1, "2001:0db8:0000::0001", "2001:db8::1"),
    ],
)
def test_forwarded_for_is_trusted_only_as_far_as_the_setting_says(
    rf, settings, proxies, forwarded, expected
):
    settings.ACCESS_LOG_PROXY_COUNT = proxies
    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip_get(request) == expected


def test_ipv6_client_is_stored_and_verifies(rf):
    request = rf.get("/", REMOTE_ADDR="2001:0DB8:0:0::1")

    event = access_event_record(Access(Outcome.ALLOWED, AccessContext(request=request)))

    assert AccessEvent.objects.get(pk=event.pk).client_ip == "2001:db8::1"
    assert chain_verify().ok


def test_control_characters_and_overlong_text_are_made_safe(alice):
    event = access_event_record(
        Access(
            Outcome.FAILED,
            AccessContext(action=Action.DOWNLOAD, user=alice),
            reason="bad\x00segment\r\n" + "r" * 600,
        )
    )

    stored = AccessEvent.objects.get(pk=event.pk)
    assert stored.reason.startswith("bad segment  r")
    assert len(stored.reason) == 500
    assert chain_verify().ok


def test_the_vault_hook_records_through_the_registered_recorder(alice, document):
    access_record(
        Access(Outcome.ALLOWED, AccessContext(action=Action.RANGE, user=alice, document=document))
    )

    assert document_events().get().action == "range"


def test_invalid_action_is_refused_and_nothing_is_recorded():
    with pytest.raises(RecordError):
        access_record(Access(Outcome.ALLOWED, AccessContext(action="peek")))
    with pytest.raises(RecordError):
        access_record(Access("maybe", AccessContext()))
    with pytest.raises(RecordError):
        access_record(Access(Outcome.ALLOWED, AccessContext(bytes_planned=-1)))

    assert not AccessEvent.objects.exists()


def test_a_read_is_never_recorded_inside_a_transaction_that_could_roll_back():
    with pytest.raises(RecordError, match=r"outside transaction\.atomic"), transaction.atomic():
        access_record(Access(Outcome.ALLOWED, AccessContext(action=Action.DOWNLOAD)))

    assert not AccessEvent.objects.exists()


def test_a_refusal_is_never_recorded_inside_a_transaction_that_could_roll_back():
    with pytest.raises(RecordError), transaction.atomic():
        access_record(Access(Outcome.DENIED, AccessContext(action=Action.UPLOAD)))


def test_an_allowed_write_joins_the_callers_transaction():
    with transaction.atomic():
        access_record(Access(Outcome.ALLOWED, AccessContext(action=Action.UPLOAD)))
        access_record(Access(Outcome.ALLOWED, AccessContext(action=Action.SHARE)))

    assert list(AccessEvent.objects.order_by("seq").values_list("seq", "action")) == [
        (1, "upload"),
        (2, "share"),
    ]


def test_a_rolled_back_write_leaves_no_gap():
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        access_record(Access(Outcome.ALLOWED, AccessContext(action=Action.DELETE)))
        raise Rollback
    access_record(Access(Outcome.ALLOWED, AccessContext(action=Action.DOWNLOAD)))

    assert list(AccessEvent.objects.values_list("seq", "action")) == [(1, "download")]
    assert chain_verify().ok


def test_deleting_the_user_and_the_document_leaves_events_untouched(alice, document):
    event = access_event_record(
        Access(
            Outcome.ALLOWED, AccessContext(action=Action.DOWNLOAD, user=alice, document=document)
        )
    )
    document_id, alice_id = document.pk, alice.pk

    document.delete()
    alice.delete()

    stored = AccessEvent.objects.get(pk=event.pk)
    assert (stored.actor_id, stored.actor_username) == (alice_id, "alice")
    assert (stored.document_id, stored.document_title) == (document_id, "Acme valuation 2026")
    assert stored.hash == event.hash
    assert chain_verify().ok
