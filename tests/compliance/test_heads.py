"""Published chain heads: a cut tail or a deleted log is caught without a head kept by hand."""

import io
import os
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from compliance import heads
from compliance.access_log import chain_check_run
from compliance.models import AccessEvent, ChainCheck, ChainStatus
from vault.access import Action, Outcome

pytestmark = pytest.mark.django_db

TABLE = AccessEvent._meta.db_table


def sql(statement: str, params: list[object]) -> None:
    """Tamper with the log the way someone with database access would: plain SQL."""
    with connection.cursor() as cursor:
        cursor.execute(statement.replace("TABLE", connection.ops.quote_name(TABLE)), params)


def command(name: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command(name, *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue().strip()


@pytest.fixture
def heads_file(media_root):
    return media_root / heads.HEADS_NAME


def test_a_verification_publishes_its_head_in_plain_authenticated_lines(record, heads_file):
    last = record(3)

    code, line = command("audit_verify")

    lines = heads_file.read_text("ascii").splitlines()
    assert code == 0 and "No head published yet" in line
    assert len(lines) == 1 and lines[0].startswith(f"docvault-chain-head-v1 3 {last.hash} ")
    assert heads.chain_head_latest().pair == (3, last.hash)


def test_a_cut_tail_is_broken_against_the_published_head(record):
    record(5)
    command("audit_verify")
    sql("DELETE FROM TABLE WHERE seq >= %s", [4])

    code, line = command("audit_verify")

    assert code == 1
    assert line.startswith("Access log BROKEN at seq 4:") and "ends at seq 3" in line


def test_a_deleted_log_is_broken_against_the_published_head(record):
    record(5)
    command("audit_verify")
    sql("DELETE FROM TABLE", [])

    code, line = command("audit_verify")

    assert code == 1 and "the log ends at seq 0, before the published head seq 5" in line


def test_without_the_published_head_a_cut_tail_goes_unnoticed(record):
    record(5)
    command("audit_verify")
    sql("DELETE FROM TABLE WHERE seq >= %s", [5])

    code, line = command("audit_verify", "--no-published-head")

    assert code == 0 and "4 events" in line


def test_events_after_the_published_head_verify(record):
    record(2)
    command("audit_verify")
    record(3)

    code, line = command("audit_verify")

    # 2 events, the first verification's event, 3 more.
    assert code == 0 and "6 events" in line and "Checked against head seq 2" in line


def test_an_edited_heads_line_breaks_the_check(record, heads_file):
    record(5)
    command("audit_verify")
    heads_file.write_text(heads_file.read_text("ascii").replace(" 5 ", " 9 ", 1), "ascii")

    code, line = command("audit_verify")

    assert code == 1 and "line 1 of _docvault/chain-heads.log does not authenticate" in line


def test_a_forged_heads_line_under_an_unknown_key_breaks_the_check(record, heads_file):
    record(2)
    command("audit_verify")
    text = heads_file.read_text("ascii").strip()
    forged = text.rsplit(" ", 2)[0] + " " + "f" * 16 + " " + "0" * 64
    heads_file.write_text(text + "\n" + forged + "\n", "ascii")

    code, line = command("audit_verify")

    assert code == 1 and "line 2" in line and "neither configured nor retired" in line


def test_a_torn_last_line_is_ignored(record, heads_file):
    last = record(2)
    command("audit_verify")
    with heads_file.open("a", encoding="ascii") as handle:
        handle.write("docvault-chain-head-v1 9")

    assert heads.chain_head_latest().pair == (2, last.hash)


def test_a_check_is_stored_and_recorded_as_an_access_event(record, officer):
    record(2)
    before = AccessEvent.objects.count()  # officer's read-any grant is an event too

    check = chain_check_run(user=officer, via="dashboard")

    event = AccessEvent.objects.order_by("-seq").first()
    assert check == ChainCheck.objects.latest()
    assert (check.status, check.count, check.head_seq, check.via) == (
        ChainStatus.OK,
        before,
        before,
        "dashboard",
    )
    assert check.published and check.requested_by == officer
    assert check.requested_by_username == "officer"
    assert (event.seq, event.action, event.outcome) == (
        before + 1,
        Action.CHAIN_VERIFY,
        Outcome.ALLOWED,
    )
    assert event.actor == officer and event.reason.startswith(f"Access log OK: {before} events")


def test_a_broken_check_is_stored_as_broken_and_recorded_as_failed(record):
    record(4)
    sql("UPDATE TABLE SET reason = %s WHERE seq = %s", ["edited", 2])

    check = chain_check_run(operator="ops")

    event = AccessEvent.objects.order_by("-seq").first()
    assert (check.status, check.broken_seq, check.published) == (ChainStatus.BROKEN, 2, False)
    assert (event.action, event.outcome, event.actor_username) == (
        Action.CHAIN_VERIFY,
        Outcome.FAILED,
        "ops",
    )


def test_audit_publish_head_pins_the_current_head(record, heads_file):
    assert command("audit_publish_head") == (0, "The access log is empty: no head to publish.")
    last = record(3)

    code, line = command("audit_publish_head")

    assert code == 0 and f"seq 3 hash {last.hash}" in line
    assert heads.chain_head_latest().pair == (3, last.hash)


def test_the_recorder_publishes_when_the_last_head_is_a_day_old(record, heads_file):
    record(1)
    heads.chain_head_publish_current()
    two_days_ago = time.time() - 2 * 86400
    os.utime(heads_file, (two_days_ago, two_days_ago))
    heads.chain_head_schedule_reset()

    last = record(1)

    assert heads.chain_head_latest().pair == (2, last.hash)
    assert len(heads_file.read_text("ascii").splitlines()) == 2


def test_the_recorder_leaves_a_recent_head_alone(record, heads_file):
    record(1)
    heads.chain_head_publish_current()
    heads.chain_head_schedule_reset()

    record(1)

    assert heads.chain_head_latest().seq == 1


def test_the_recorder_never_starts_a_heads_file(record, heads_file):
    heads.chain_head_schedule_reset()

    record(2)

    assert not heads_file.exists()


def test_heads_append_in_a_storage_that_cannot_append(settings, record):
    settings.VAULT_INNER_STORAGE = {
        "BACKEND": "django.core.files.storage.InMemoryStorage",
        "OPTIONS": {},
    }
    storage = heads.heads_storage()
    first = record(1)
    heads.chain_head_publish(1, first.hash, storage=storage)
    last = record(1)

    heads.chain_head_publish(2, last.hash, storage=storage)

    with storage.open(heads.HEADS_NAME, "rb") as handle:
        assert len(handle.read().splitlines()) == 2
    assert heads.chain_head_latest(storage=storage).pair == (2, last.hash)


def test_checks_show_read_only_in_the_admin(client, admin, record):
    record(1)
    check = chain_check_run(operator="ops")
    client.force_login(admin)

    listing = client.get("/admin/compliance/chaincheck/")
    change = client.post(f"/admin/compliance/chaincheck/{check.pk}/change/", {"status": "ok"})

    assert listing.status_code == 200 and "ops" in listing.content.decode()
    assert change.status_code == 403
    assert ChainCheck.objects.get().summary == check.summary


# Publication by the recorder when the heads file is due ------------------------------------------

HOUR = 3600


def heads_lines(heads_file):
    return heads_file.read_text("ascii").splitlines()


def age(path, seconds):
    """Make the heads file look `seconds` old, as if nothing had published since."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def due_check(settings):
    """An interval of an hour; the recorder looks at the heads file's age on its next append."""
    settings.ACCESS_LOG_HEAD_PUBLISH_INTERVAL = HOUR
    heads.chain_head_schedule_reset()
    yield
    heads.chain_head_schedule_reset()


@pytest.fixture
def published(due_check, record, heads_file):
    """The heads file (in this test's own media folder) holding one head; return its event."""
    first = record(1)
    heads.chain_head_publish(first.seq, first.hash)
    return first


def test_a_head_older_than_the_interval_is_published_again(published, record, heads_file):
    last = record(1)
    age(heads_file, HOUR + 60)
    heads.chain_head_schedule_reset()

    assert heads.chain_head_publish_if_due(last.seq, last.hash) is True

    lines = heads_lines(heads_file)
    assert len(lines) == 2 and lines[1].startswith(
        f"docvault-chain-head-v1 {last.seq} {last.hash} "
    )
    assert heads.chain_head_latest().pair == (last.seq, last.hash)


def test_the_recorder_publishes_the_head_of_its_append_when_due(published, record, heads_file):
    age(heads_file, HOUR + 60)
    heads.chain_head_schedule_reset()

    last = record(1)

    assert heads.chain_head_latest().pair == (last.seq, last.hash)
    assert len(heads_lines(heads_file)) == 2


def test_a_head_younger_than_the_interval_is_not_published(published, record, heads_file):
    before = heads_file.read_bytes()
    last = record(1)
    age(heads_file, HOUR - 60)
    heads.chain_head_schedule_reset()

    assert heads.chain_head_publish_if_due(last.seq, last.hash) is False

    assert heads_file.read_bytes() == before
    assert heads.chain_head_latest().pair == (published.seq, published.hash)


def test_the_file_age_is_looked_at_once_an_hour(published, record, heads_file):
    last = record(1)
    heads.chain_head_schedule_reset()
    assert heads.chain_head_publish_if_due(last.seq, last.hash) is False  # young: looked, not due
    age(heads_file, HOUR + 60)

    assert heads.chain_head_publish_if_due(last.seq, last.hash) is False  # due, not looked at yet
    heads.chain_head_schedule_reset()
    assert heads.chain_head_publish_if_due(last.seq, last.hash) is True


def test_an_interval_of_zero_never_publishes(settings, published, record, heads_file):
    settings.ACCESS_LOG_HEAD_PUBLISH_INTERVAL = 0
    before = heads_file.read_bytes()
    last = record(1)
    age(heads_file, 365 * 24 * HOUR)
    heads.chain_head_schedule_reset()

    assert heads.chain_head_publish_if_due(last.seq, last.hash) is False

    assert heads_file.read_bytes() == before


def test_without_a_heads_file_nothing_is_published_and_nothing_is_wrong(
    due_check, record, heads_file, caplog
):
    last = record(1)
    heads.chain_head_schedule_reset()

    assert heads.chain_head_publish_if_due(last.seq, last.hash) is False

    assert not heads_file.exists()
    assert heads.chain_head_latest() is None
    assert [entry for entry in caplog.records if entry.name == "compliance.heads"] == []


def test_a_storage_error_is_logged_and_the_append_still_succeeds(
    due_check, record, heads_file, caplog
):
    # A folder where the heads file should be: it exists and has an age, but cannot be appended to.
    heads_file.mkdir(parents=True)
    age(heads_file, HOUR + 60)
    heads.chain_head_schedule_reset()

    last = record(1)

    assert AccessEvent.objects.filter(seq=last.seq).exists()
    [logged] = [entry for entry in caplog.records if entry.name == "compliance.heads"]
    assert logged.getMessage() == f"The chain head could not be published to {heads.HEADS_NAME}."
    assert isinstance(logged.exc_info[1], IsADirectoryError)
    heads.chain_head_schedule_reset()
    assert heads.chain_head_publish_if_due(last.seq, last.hash) is False
