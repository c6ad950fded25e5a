"""The canonical form the chain's HMAC covers: the same bytes for every input, whichever path.

`event_canonical()` formats the usual event straight into JSON and leaves every other one to
json.dumps; both must give exactly the bytes of docs/ACCESS_LOG.md's rule (existing chains must keep
verifying), checked here against a reference written plainly from that rule and against fixed
vectors made by the previous implementation.
"""

import ipaddress
import json
import string
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.access_log import (
    HASHED_FIELDS,
    _when_parse,
    access_event_record,
    chain_verify,
    event_canonical,
    link_digest_next,
)
from compliance.models import AccessEvent
from vault.access import Access, AccessContext, Action, Outcome

FORMAT = "docvault-access-event-v1"
PLAIN = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_canonical(fields: dict) -> bytes:
    """Return the canonical form as docs/ACCESS_LOG.md states it, written the plain way."""
    payload: dict = {"format": FORMAT}
    for name in HASHED_FIELDS:
        value = fields[name]
        if value is None:
            payload[name] = None
        elif name == "when":
            payload[name] = reference_time(value)
        elif name == "document_id":
            payload[name] = uuid.UUID(str(value)).hex
        elif name == "client_ip":
            payload[name] = ipaddress.ip_address(value).packed.hex()
        elif name == "duration_ms":
            payload[name] = f"{value:.3f}"
        else:
            payload[name] = value.hex if isinstance(value, uuid.UUID) else value
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def reference_time(value: datetime) -> str:
    """Return YYYY-MM-DDTHH:MM:SS.ffffffZ in UTC, a naive time being UTC already.

    Years before 1000 (which the recorder never writes) keep the spelling the chain has always
    had: the C library's %Y, which glibc does not pad.
    """
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    year = f"{utc.year:04d}" if utc.year >= 1000 else utc.strftime("%Y")
    return (
        f"{year}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def outcome(function, fields: dict) -> tuple[str, object]:
    """Return ("bytes", the result) or ("error", the exception's type)."""
    try:
        return "bytes", function(fields)
    except (ValueError, TypeError, OverflowError) as exc:
        return "error", type(exc)


# What the recorder writes and the databases return, with the edges of each column ---------------

# Text the fast path formats itself (printable ASCII but quote and backslash), and any text at all.
plain_text = st.text(alphabet=[chr(code) for code in range(0x20, 0x7F) if chr(code) not in '"\\'])
any_text = st.one_of(
    st.text(alphabet=string.printable, max_size=40),
    st.text(max_size=40),
    st.sampled_from(['"', "\\", "\x7f", "\x00", "é", "\ud800"]),
)
zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.builds(timezone, st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23))),
    st.timezones(),
)
times = st.one_of(
    st.datetimes(timezones=zones),
    st.datetimes(timezones=zones).map(lambda value: value.replace(microsecond=0)),
    st.datetimes(max_value=datetime(999, 12, 31), timezones=st.sampled_from([None, UTC])),
    st.datetimes(min_value=datetime(9999, 1, 1), timezones=st.sampled_from([None, UTC])),
)
uuids = st.uuids().flatmap(
    lambda value: st.sampled_from(
        [value, value.hex, value.hex.upper(), str(value), str(value).upper(), f"{{{value}}}"]
    )
)
ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)
addresses = st.one_of(
    ipv4.map(str),
    ipv6.map(str),
    ipv6.map(lambda address: address.exploded),
    ipv6.map(lambda address: str(address).upper()),
    ipv4.map(lambda address: f"::ffff:{address}"),
    ipv4.map(lambda address: f"::{address}"),
    ipv6.map(lambda address: f"{address}%eth0"),
    # Addresses to parse, never to bind.
    st.sampled_from(["0.0.0.0", "255.255.255.255", "::", "::1", "fe80::1%1", "010.0.0.1"]),  # noqa: S104
)
whole = st.one_of(st.integers(min_value=0, max_value=2**63 - 1), st.integers(min_value=2**63))
milliseconds = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**6), max_value=10**6)
)


def events_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict]:
    """Return events whose free text comes from `text`, every other column at its edges."""
    return st.fixed_dictionaries(
        {
            "seq": whole,
            "prev_hash": st.one_of(
                st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), text
            ),
            "chain_key_id": st.one_of(st.text(alphabet="0123456789abcdef", max_size=16), text),
            "when": times,
            "actor_id": st.one_of(st.none(), whole),
            "actor_username": text,
            "action": st.one_of(st.sampled_from([action.value for action in Action]), text),
            "document_id": st.one_of(st.none(), uuids),
            "document_title": text,
            "stored_name": text,
            "outcome": st.one_of(st.sampled_from([outcome.value for outcome in Outcome]), text),
            "reason": text,
            "staff_read": st.booleans(),
            "client_ip": st.one_of(st.none(), addresses),
            "user_agent": text,
            "key_id": text,
            "bytes_served": st.one_of(st.none(), whole),
            "duration_ms": st.one_of(st.none(), milliseconds),
            "request_id": text,
        }
    )


events = st.one_of(events_of(plain_text), events_of(any_text))


@PLAIN
@given(events)
def test_the_canonical_form_is_the_documented_one_for_every_event(fields):
    assert outcome(event_canonical, fields) == outcome(reference_canonical, fields)


@PLAIN
@given(events, st.sampled_from(HASHED_FIELDS), st.none())
def test_none_in_any_field_is_null(fields, name, value):
    fields = {**fields, name: value}

    assert outcome(event_canonical, fields) == outcome(reference_canonical, fields)


@PLAIN
@given(times.filter(lambda value: value.tzinfo is None or value.tzinfo is UTC))
def test_a_stored_time_read_back_gives_the_same_canonical_time(value):
    # SQLite's text (naive, UTC) and PostgreSQL's to_char() text (with the era) as the walk reads them.
    aware = value.replace(tzinfo=UTC)
    sqlite_text = str(aware.replace(tzinfo=None))
    postgres_text = aware.strftime("%Y-%m-%d %H:%M:%S.%f") + " AD"

    for text in (sqlite_text, postgres_text):
        if aware.year < 1000 and text is postgres_text:
            continue  # to_char() pads the year; strftime on glibc does not: not this test's point
        parsed = _when_parse(text)
        assert parsed == aware and parsed.tzinfo is UTC
        assert reference_time(parsed) == reference_time(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-02-30 10:00:00", "day is out of range"),
        ("0001-01-01 00:00:00+01:00", "outside the years 1-9999"),
        ("2026-01-01 00:00:00 BC", "before year 1"),
        ("yesterday", "not a date"),
        (20260101, "not a date"),
    ],
)
def test_a_time_that_is_no_time_is_refused(value, message):
    with pytest.raises(ValueError, match=message):
        _when_parse(value)


# Fixed vectors: the bytes the previous implementation (before issue 8) made -----------------------

USUAL = {
    "seq": 301,
    "prev_hash": "280b52faba622651d08bfde31d30d5c9fdd3fca3cb7ebdbba18ca86aa62fadf0",
    "chain_key_id": "0b302c49f1d2507f",
    "when": datetime(2025, 1, 1, 0, 5, 15, 360000, tzinfo=UTC),
    "actor_id": 210,
    "actor_username": "user209",
    "action": "download",
    "document_id": uuid.UUID("75f10f1a-0d75-45b4-9601-63f051f9f03c"),
    "document_title": "Document 0226 financial statement",
    "stored_name": "documents/2025/01/b0759e480c7c4f629b3b691af416739b",
    "outcome": "allowed",
    "reason": "",
    "staff_read": False,
    "client_ip": "10.193.76.180",
    "user_agent": "Mozilla/5.0 (bench)",
    "key_id": "0b302c49f1d2507f",
    "bytes_served": 240471,
    "duration_ms": 17.743,
    "request_id": "0504a80fbbd134c002d4711e736bb03b",
}
ODD = {
    **USUAL,
    "when": datetime(999, 12, 31, 23, 59, 59),
    "actor_id": None,
    "actor_username": 'Zoë "the admin" \\ ☃',
    "document_id": "75F10F1A0D7545B4960163F051F9F03C",
    "staff_read": True,
    "client_ip": "::ffff:10.0.0.1",
    "bytes_served": None,
    "duration_ms": 0,
    "seq": 2**70,
}
VECTORS = [
    (
        USUAL,
        '{"action":"download","actor_id":210,"actor_username":"user209","bytes_served":240471,'
        '"chain_key_id":"0b302c49f1d2507f","client_ip":"0ac14cb4","document_id":'
        '"75f10f1a0d7545b4960163f051f9f03c","document_title":"Document 0226 financial statement",'
        '"duration_ms":"17.743","format":"docvault-access-event-v1","key_id":"0b302c49f1d2507f",'
        '"outcome":"allowed","prev_hash":'
        '"280b52faba622651d08bfde31d30d5c9fdd3fca3cb7ebdbba18ca86aa62fadf0","reason":"",'
        '"request_id":"0504a80fbbd134c002d4711e736bb03b","seq":301,"staff_read":false,'
        '"stored_name":"documents/2025/01/b0759e480c7c4f629b3b691af416739b",'
        '"user_agent":"Mozilla/5.0 (bench)","when":"2025-01-01T00:05:15.360000Z"}',
    ),
    (
        ODD,
        '{"action":"download","actor_id":null,"actor_username":'
        '"Zo\\u00eb \\"the admin\\" \\\\ \\u2603","bytes_served":null,'
        '"chain_key_id":"0b302c49f1d2507f","client_ip":"00000000000000000000ffff0a000001",'
        '"document_id":"75f10f1a0d7545b4960163f051f9f03c","document_title":'
        '"Document 0226 financial statement","duration_ms":"0.000",'
        '"format":"docvault-access-event-v1","key_id":"0b302c49f1d2507f","outcome":"allowed",'
        '"prev_hash":"280b52faba622651d08bfde31d30d5c9fdd3fca3cb7ebdbba18ca86aa62fadf0",'
        '"reason":"","request_id":"0504a80fbbd134c002d4711e736bb03b","seq":1180591620717411303424,'
        '"staff_read":true,"stored_name":"documents/2025/01/b0759e480c7c4f629b3b691af416739b",'
        '"user_agent":"Mozilla/5.0 (bench)","when":"999-12-31T23:59:59.000000Z"}',
    ),
]


@pytest.mark.parametrize(("fields", "expected"), VECTORS)
def test_the_fixed_vectors_keep_their_bytes(fields, expected):
    assert event_canonical(fields) == expected.encode("ascii")


def test_the_link_digest_keeps_its_bytes():
    assert (
        link_digest_next("0" * 64, VECTORS[0][1].encode(), "3c9f31be" * 8)
        == "30a845ed2b992c85251aed022e2f5dd11f2c927a4f4792de23ea4e0e98ae387e"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("actor_id", 1.5), ("reason", b"bytes"), ("seq", [1]), ("staff_read", 1.0), ("key_id", None)],
)
def test_a_value_of_a_type_without_a_rule_is_refused(name, value):
    # What a hostile SQLite row can hold (a REAL in an integer column, a BLOB): the walk turns the
    # TypeError into a BROKEN verdict at that row. (None is null wherever it appears.)
    fields = {**USUAL, name: value}

    if value is None:
        assert b'"key_id":null' in event_canonical(fields)
    else:
        with pytest.raises(TypeError, match="No canonical form"):
            event_canonical(fields)


# Recorded through the recorder, read back from the database: the chain verifies ------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "agent", "reason"),
    [
        ("192.0.2.7", "Mozilla/5.0", "plain"),
        ("2001:db8::7", 'agent "quoted" \\ back', 'reason with a "quote" and a \\'),
        ("::ffff:192.0.2.7", "Zoë's browser ☃", "naïve résumé"),
        ("fe80::1%eth0", "tab\there", "control\x01characters\x7f"),
        ("not an address", "", ""),
    ],
)
def test_recorded_edge_values_verify_once_stored(document, alice, address, agent, reason):
    request = RequestFactory().get("/", REMOTE_ADDR=address, HTTP_USER_AGENT=agent)
    request.user = alice
    context = AccessContext(action=Action.DOWNLOAD, request=request, document=document)

    event = access_event_record(Access(Outcome.DENIED, context, reason=reason))
    report = chain_verify()

    assert report.ok and report.head_hash == event.hash
    stored = AccessEvent.objects.get(seq=event.seq)
    assert stored.hash == event.hash and stored.user_agent == event.user_agent
