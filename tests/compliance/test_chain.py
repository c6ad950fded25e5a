"""The hash chain: verification passes on an honest log and names the first broken link."""

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from compliance.access_log import (
    HASHED_FIELDS,
    ChainStatus,
    chain_keys,
    chain_verify,
    event_hash_compute,
)
from compliance.models import AccessEvent
from vault.keys import keyring

pytestmark = pytest.mark.django_db

TABLE = AccessEvent._meta.db_table
CURRENT = "current:test-secret-current-0123456789abcdef0123456789"
PREVIOUS = "previous:test-secret-previous-0123456789abcdef012345678"
NEXT = "next:test-secret-next-0123456789abcdef0123456789abcdef"


def sql(statement: str, params: list[object]) -> None:
    """Tamper with the log the way someone with database access would: plain SQL."""
    with connection.cursor() as cursor:
        cursor.execute(statement.replace("TABLE", connection.ops.quote_name(TABLE)), params)


def verify_command(*args: str) -> tuple[int, str]:
    """Run audit_verify; return its exit code and its one line of output."""
    out = io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue().strip()


def test_an_empty_log_verifies():
    report = chain_verify()

    assert (report.status, report.count, report.head_seq) == (ChainStatus.OK, 0, 0)


def test_an_honest_chain_verifies_with_count_and_head(record):
    last = record(5)

    report = chain_verify(chunk_size=2)
    code, line = verify_command()

    assert report.ok
    assert (report.count, report.head_seq, report.head_hash) == (5, 5, last.hash)
    assert code == 0
    assert line.startswith(f"Access log OK: 5 events, chain head seq 5 hash {last.hash}.")


def test_every_column_but_the_primary_key_and_the_hash_is_covered():
    columns = {field.attname for field in AccessEvent._meta.concrete_fields}

    assert set(HASHED_FIELDS) == columns - {"id", "hash"}


def test_changing_any_covered_field_changes_the_hash(record):
    event = record()
    key = chain_keys(keyring())[event.chain_key_id]
    fields = {name: getattr(event, name) for name in HASHED_FIELDS}
    changed = {
        "seq": 7,
        "prev_hash": "1" * 64,
        "chain_key_id": "ffffffffffffffff",
        "when": event.when + timedelta(microseconds=1),
        "actor_id": 42,
        "actor_username": "mallory",
        "action": "upload",
        "document_id": uuid.uuid4(),
        "document_title": "Other",
        "stored_name": "documents/other",
        "outcome": "denied",
        "reason": "other",
        "staff_read": True,
        "client_ip": "192.0.2.1",
        "user_agent": "curl/8",
        "key_id": "fedcba9876543210",
        "bytes_served": 1,
        "duration_ms": 1.5,
        "request_id": "other",
    }

    assert event_hash_compute(fields, key) == event.hash
    assert set(changed) == set(HASHED_FIELDS)
    for name, value in changed.items():
        assert event_hash_compute({**fields, name: value}, key) != event.hash, name


def test_an_edited_event_is_the_first_broken_link(record):
    record(5)
    sql("UPDATE TABLE SET reason = %s WHERE seq = %s", ["nothing to see", 3])

    report = chain_verify()
    code, line = verify_command()

    assert (report.status, report.broken_seq, report.count) == (ChainStatus.BROKEN, 3, 2)
    assert "changed after it was written" in report.problem
    assert code == 1
    assert line.startswith("Access log BROKEN at seq 3:")


def test_a_deleted_event_is_reported_as_a_gap(record):
    record(5)
    sql("DELETE FROM TABLE WHERE seq = %s", [3])

    report = chain_verify()
    code, line = verify_command()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, 3)
    assert "event 3 is missing" in report.problem
    assert code == 1 and "BROKEN at seq 3" in line


def test_an_inserted_event_with_a_forged_hash_is_caught(record):
    head = record(5)
    sql(
        'INSERT INTO TABLE (seq, "when", actor_username, action, document_title, stored_name, '
        "outcome, reason, staff_read, user_agent, key_id, request_id, chain_key_id, prev_hash, "
        "hash) VALUES (%s, %s, '', 'download', '', '', 'allowed', '', %s, '', '', '', %s, %s, %s)",
        [6, head.when, False, head.chain_key_id, head.hash, "ab" * 32],
    )

    report = chain_verify()
    code, _ = verify_command()

    assert (report.status, report.broken_seq, report.count) == (ChainStatus.BROKEN, 6, 5)
    assert code == 1


def test_an_event_relinked_to_skip_a_deleted_one_is_caught(record):
    record(5)
    second = AccessEvent.objects.get(seq=2)
    sql("DELETE FROM TABLE WHERE seq = %s", [3])
    sql("UPDATE TABLE SET seq = %s, prev_hash = %s WHERE seq = %s", [3, second.hash, 4])

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, 3)


def test_an_event_before_the_first_is_caught(record):
    first = record()
    sql("UPDATE TABLE SET seq = %s WHERE seq = %s", [0, 1])

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, 0)
    assert first.seq == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [("client_ip", "not-an-address"), ("duration_ms", "fast"), ("document_id", "not-a-uuid")],
)
def test_a_malformed_value_is_a_broken_link_not_a_crash(record, column, value):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's column types refuse these values already.")
    record(4)
    sql(f"UPDATE TABLE SET {column} = %s WHERE seq = %s", [value, 3])  # noqa: S608 (test input)

    report = chain_verify()

    assert (report.status, report.broken_seq, report.count) == (ChainStatus.BROKEN, 3, 2)
    assert "malformed" in report.problem


def test_truncation_is_caught_only_against_a_published_head(record):
    head = record(5)
    sql("DELETE FROM TABLE WHERE seq = %s", [5])

    plain = chain_verify()
    against_head = chain_verify(expected_head=(5, head.hash))
    code, line = verify_command("--head", f"5:{head.hash}")

    assert plain.ok and plain.head_seq == 4
    assert (against_head.status, against_head.broken_seq) == (ChainStatus.BROKEN, 5)
    assert "ends at seq 4" in against_head.problem
    assert code == 1 and "BROKEN at seq 5" in line


def test_a_published_head_that_matches_verifies(record):
    head = record(3)
    record(2)

    code, line = verify_command("--head", f"3:{head.hash}")

    assert code == 0 and "5 events" in line


def test_a_malformed_head_is_refused():
    code, line = verify_command("--head", "3:nothex")

    assert code == 1 and "SEQ:HASH" in line


def test_events_verify_across_a_key_rotation(settings, record):
    record(3)
    old_chain_key = keyring().primary.key_id_hex
    settings.VAULT_KEYS = f"{NEXT},{CURRENT},{PREVIOUS}"
    record(3)
    new_chain_key = keyring().primary.key_id_hex

    report = chain_verify()

    assert new_chain_key != old_chain_key
    assert (
        list(AccessEvent.objects.order_by("seq").values_list("chain_key_id", flat=True))
        == [old_chain_key] * 3 + [new_chain_key] * 3
    )
    assert report.ok and report.count == 6


def test_a_retired_key_leaves_its_events_unverifiable_not_valid(settings, record):
    record(3)
    old_chain_key = keyring().primary.key_id_hex
    settings.VAULT_KEYS = f"{NEXT},{CURRENT}"
    record(2)
    settings.VAULT_KEYS = NEXT
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [old_chain_key]

    report = chain_verify()
    code, line = verify_command()

    assert report.status is ChainStatus.UNVERIFIABLE
    assert (report.unverifiable_count, report.first_unverifiable_seq) == (3, 1)
    assert report.missing_key_ids == (old_chain_key,)
    assert report.count == 5 and report.head_seq == 5
    assert code == 2 and "cannot verify 3 of 5 events" in line


def test_a_break_after_unverifiable_events_is_still_found(settings, record):
    record(2)
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [keyring().primary.key_id_hex]
    settings.VAULT_KEYS = f"{NEXT},{CURRENT}"
    record(3)
    settings.VAULT_KEYS = NEXT
    sql("UPDATE TABLE SET reason = %s WHERE seq = %s", ["edited", 4])

    report = chain_verify()

    assert (report.status, report.broken_seq, report.unverifiable_count) == (
        ChainStatus.BROKEN,
        4,
        2,
    )


def test_an_unknown_chain_key_is_a_forgery_not_an_excuse(settings, record):
    """Naming a made-up key must not turn an edited event into an unverifiable one."""
    record(3)
    sql("UPDATE TABLE SET reason = %s, chain_key_id = %s WHERE seq = %s", ["x", "f" * 16, 2])

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, 2)
    assert "neither configured" in report.problem


def test_a_retired_key_after_a_configured_one_is_a_forgery(settings, record):
    record(2)
    retired = keyring().primary.key_id_hex
    settings.VAULT_KEYS = f"{NEXT},{CURRENT}"
    record(2)
    settings.VAULT_KEYS = NEXT
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [retired]
    record(1)
    sql("UPDATE TABLE SET reason = %s, chain_key_id = %s WHERE seq = %s", ["x", retired, 5])

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, 5)


def test_a_hash_that_is_not_hex_is_a_forgery(record):
    record(2)
    sql("UPDATE TABLE SET hash = %s WHERE seq = %s", ["x", 2])

    assert (chain_verify().status, chain_verify().broken_seq) == (ChainStatus.BROKEN, 2)


# Rows written outside the application: a verdict naming the row, never a traceback ----------------


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ("0001-01-01 00:00:00+01:00", "before year 1"),  # year 0 in UTC
        ("12026-01-01 00:00:00+00:00", "not a date"),  # after year 9999
    ],
)
@pytest.mark.parametrize("chunk_size", [2000, 7])
def test_a_time_python_cannot_hold_is_a_broken_link_at_its_seq(record, stored, problem, chunk_size):
    record(60)
    sql('UPDATE TABLE SET "when" = %s WHERE seq = %s', [stored, 50])

    report = chain_verify(chunk_size=chunk_size)
    code, line = verify_command("--chunk-size", str(chunk_size))

    assert (report.status, report.broken_seq, report.count) == (ChainStatus.BROKEN, 50, 49)
    assert "malformed" in report.problem
    if connection.vendor == "postgresql":
        assert problem in report.problem
    else:
        assert "year" in report.problem or "not a date" in report.problem
    assert code == 1 and line.startswith("Access log BROKEN at seq 50:")


def test_an_impossible_date_is_a_broken_link_at_its_seq(record):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL refuses to store an impossible date.")
    record(60)
    sql('UPDATE TABLE SET "when" = %s WHERE seq = %s', ["2026-02-30 10:00:00", 50])

    report = chain_verify()
    code, line = verify_command()

    assert (report.status, report.broken_seq, report.count) == (ChainStatus.BROKEN, 50, 49)
    assert code == 1 and "BROKEN at seq 50" in line


def test_a_seq_that_is_not_a_number_is_a_broken_link(record):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's column types refuse this value already.")
    record(3)
    sql("UPDATE TABLE SET seq = %s WHERE seq = %s", ["three", 3])

    report = chain_verify()

    assert (report.status, report.broken_seq, report.count) == (ChainStatus.BROKEN, 3, 2)
    assert "not a number" in report.problem
