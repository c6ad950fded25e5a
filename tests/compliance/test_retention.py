"""Retention: audit_prune removes old events behind a checkpoint; a legal hold blocks it."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from compliance.access_log import chain_verify
from compliance.models import AccessEvent, AppendOnlyError, ChainCheckpoint, ChainStatus, LegalHold
from compliance.retention import (
    PruneRefused,
    access_log_prune,
    legal_hold_current,
    legal_hold_set,
    retention_days,
)
from vault.access import Action, Outcome
from vault.keys import keyring

pytestmark = pytest.mark.django_db

TABLE = AccessEvent._meta.db_table
CHECKPOINTS = ChainCheckpoint._meta.db_table
KEY_A = "current:test-secret-current-0123456789abcdef0123456789"
KEY_B = "b:test-secret-key-b-0123456789abcdef0123456789abcdef"


def sql(statement: str, params: list[object]) -> None:
    """Tamper the way someone with database access would: plain SQL."""
    quote = connection.ops.quote_name
    statement = statement.replace("CHECKPOINTS", quote(CHECKPOINTS)).replace("TABLE", quote(TABLE))
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def command(name: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command(name, *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue().strip()


def seqs() -> list[int]:
    return list(AccessEvent.objects.order_by("seq").values_list("seq", flat=True))


@pytest.fixture
def old_and_new(record):
    """Events 1..N recorded, then a moment, then newer events; return (N, the moment)."""
    old = record(4)
    moment = timezone.now()
    record(3)
    return old.seq, moment


def prune_at(moment, **options):
    """Prune as if run exactly one retention after `moment`: events before it are old."""
    return access_log_prune(now=moment + timedelta(days=retention_days()), **options)


def test_the_retention_is_two_years_by_default():
    assert retention_days() == 730


def test_the_retention_setting_must_be_a_day_or_more(settings):
    settings.ACCESS_LOG_RETENTION_DAYS = 0

    with pytest.raises(ValueError, match="ACCESS_LOG_RETENTION_DAYS"):
        retention_days()


def test_prune_removes_old_events_behind_a_checkpoint_and_records_it(old_and_new, officer):
    cut, moment = old_and_new
    before = seqs()
    cut_hash = AccessEvent.objects.get(seq=cut).hash

    result = prune_at(moment, user=officer, via="dashboard")

    checkpoint = ChainCheckpoint.objects.get()
    prune_event = AccessEvent.objects.get(seq=checkpoint.event_seq)
    assert seqs() == [seq for seq in before if seq > cut] + [prune_event.seq]
    assert (checkpoint.first_seq, checkpoint.last_seq, checkpoint.count) == (1, cut, cut)
    assert checkpoint.chain_hash == cut_hash
    assert (checkpoint.requested_by, checkpoint.requested_by_username, checkpoint.via) == (
        officer,
        "officer",
        "dashboard",
    )
    assert (prune_event.action, prune_event.outcome) == (Action.PRUNE, Outcome.ALLOWED)
    assert prune_event.actor_username == "officer"
    assert f"Pruned events 1-{cut} ({cut} events)" in prune_event.reason
    assert result.summary().startswith(f"Pruned events 1-{cut} ({cut} events) older than 730 days")


def test_verification_continues_from_the_checkpoint_and_says_so(old_and_new):
    cut, moment = old_and_new
    prune_at(moment)
    checkpoint = ChainCheckpoint.objects.get()

    code, line = command("audit_verify")

    assert code == 0, line
    assert line.startswith(f"Access log OK: {len(seqs()) - 1} events")
    assert (
        f"Events 1-{cut} pruned on {checkpoint.when:%Y-%m-%d} under checkpoint "
        f"#{checkpoint.pk}, verified from {cut + 1}."
    ) in line


def test_a_second_prune_continues_from_the_first(old_and_new, record):
    _cut, moment = old_and_new
    prune_at(moment, operator="ops", via="command")
    later = timezone.now()
    record(2)

    prune_at(later)

    first, second = ChainCheckpoint.objects.order_by("last_seq")
    assert second.first_seq == first.last_seq + 1
    assert (first.requested_by, first.requested_by_username, first.via) == (None, "ops", "command")
    assert chain_verify().ok and chain_verify().pruned.last_seq == second.last_seq


def test_a_dry_run_changes_nothing(old_and_new):
    cut, moment = old_and_new
    before = seqs()

    result = prune_at(moment, dry_run=True)

    assert seqs() == before and not ChainCheckpoint.objects.exists()
    assert result.summary().startswith(f"Dry run: would prune events 1-{cut} ({cut} events)")


def test_nothing_older_than_the_retention_prunes_nothing(record):
    record(3)
    before = seqs()

    code, line = command("audit_prune")

    assert code == 0 and line.startswith("Nothing to prune: no access event is older than 730")
    assert seqs() == before and not ChainCheckpoint.objects.exists()


def test_the_command_dry_run_says_what_it_would_do(record):
    record(2)

    code, line = command("audit_prune", "--dry-run")

    assert code == 0 and line.startswith("Nothing to prune")


def test_a_broken_log_is_not_pruned(old_and_new):
    _cut, moment = old_and_new
    sql("UPDATE TABLE SET reason = %s WHERE seq = %s", ["edited", 2])
    before = seqs()

    with pytest.raises(PruneRefused, match="must verify OK first"):
        prune_at(moment)

    refusal = AccessEvent.objects.order_by("-seq").first()
    assert seqs() == [*before, refusal.seq] and not ChainCheckpoint.objects.exists()
    assert (refusal.action, refusal.outcome) == (Action.PRUNE, Outcome.FAILED)


# The only way out: every other delete is still refused ------------------------------------------


def test_the_append_only_guards_still_refuse_every_other_delete(old_and_new):
    prune_at(old_and_new[1])

    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.filter(seq__lte=20).delete()
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.order_by("seq").first().delete()


# Published heads and the pruned range -------------------------------------------------------------


def test_a_published_head_inside_the_pruned_range_does_not_fail(old_and_new):
    cut, moment = old_and_new
    command("audit_verify")  # publishes a head at seq 8, before the prune
    old_head = AccessEvent.objects.get(seq=cut - 1)
    prune_at(moment)

    code, line = command("audit_verify")
    pinned, pinned_line = command("audit_verify", "--head", f"{old_head.seq}:{old_head.hash}")

    assert code == 0, line
    assert pinned == 0 and f"head seq {old_head.seq} lies in the pruned range" in pinned_line


def test_a_wrong_head_at_the_cut_is_broken(old_and_new):
    cut, moment = old_and_new
    prune_at(moment)

    code, line = command("audit_verify", "--head", f"{cut}:{'ab' * 32}")

    assert code == 1 and "checkpoint" in line


# Tampering with the cut --------------------------------------------------------------------------


def test_a_deleted_checkpoint_is_broken(old_and_new):
    cut, moment = old_and_new
    prune_at(moment)
    sql("DELETE FROM CHECKPOINTS", [])

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, 1)
    assert f"events 1-{cut} are missing" in report.problem


def test_more_events_cut_behind_a_forged_checkpoint_are_broken(old_and_new):
    cut, moment = old_and_new
    prune_at(moment)
    following = AccessEvent.objects.get(seq=cut + 1)
    sql("DELETE FROM TABLE WHERE seq = %s", [cut + 1])
    sql(
        "UPDATE CHECKPOINTS SET last_seq = %s, count = %s, chain_hash = %s",
        [cut + 1, cut + 1, following.hash],
    )

    report = chain_verify()

    assert report.status is ChainStatus.BROKEN
    assert "prune event" in report.problem and "forged" in report.problem


def test_an_edited_checkpoint_hash_is_broken(old_and_new):
    prune_at(old_and_new[1])
    sql("UPDATE CHECKPOINTS SET chain_hash = %s", ["cd" * 32])

    assert chain_verify().status is ChainStatus.BROKEN


def test_events_cut_after_a_prune_are_broken(old_and_new):
    cut, moment = old_and_new
    prune_at(moment)
    sql("DELETE FROM TABLE WHERE seq = %s", [cut + 2])

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, cut + 2)


def test_a_prune_survives_the_retirement_of_its_key(settings, old_and_new, record):
    cut, moment = old_and_new
    prune_at(moment)  # checkpoint and prune event under A
    key_a = keyring().primary.key_id_hex
    settings.VAULT_KEYS = f"{KEY_B},{KEY_A}"
    assert command("audit_seal")[0] == 0
    record(1)
    settings.VAULT_KEYS = KEY_B
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [key_a]

    code, line = command("audit_verify")

    assert code == 0, line
    assert f"verified from {cut + 1}" in line and "verified through the seals" in line


# The legal hold ------------------------------------------------------------------------------------


def test_a_legal_hold_blocks_pruning_naming_who_and_why(old_and_new, officer):
    _cut, moment = old_and_new
    legal_hold_set(True, user=officer, reason="Litigation Acme v. Globex, case 42")
    before = seqs()

    with pytest.raises(PruneRefused) as refused:
        prune_at(moment)
    code, line = command("audit_prune")

    refusal = AccessEvent.objects.order_by("-seq").first()
    assert "legal hold on, set by officer" in str(refused.value)
    assert "Litigation Acme v. Globex, case 42" in str(refused.value)
    assert code == 1 and "legal hold on, set by officer" in line
    assert not ChainCheckpoint.objects.exists() and set(before) <= set(seqs())
    assert (refusal.action, refusal.outcome) == (Action.PRUNE, Outcome.DENIED)


def test_lifting_the_hold_allows_pruning_again(old_and_new, officer):
    cut, moment = old_and_new
    legal_hold_set(True, user=officer, reason="Audit by the regulator")
    legal_hold_set(False, user=officer, reason="Audit closed")

    result = prune_at(moment)

    assert result.count == cut and ChainCheckpoint.objects.count() == 1


def test_a_dry_run_under_a_hold_says_it_would_be_refused(old_and_new, officer):
    legal_hold_set(True, user=officer, reason="Subpoena 7")

    result = prune_at(old_and_new[1], dry_run=True)

    assert "Refused now: legal hold on, set by officer" in result.summary()


def test_a_hold_change_is_recorded_with_who_when_and_why(officer, rf):
    request = rf.post("/compliance/retention/", REMOTE_ADDR="192.0.2.7")

    hold = legal_hold_set(True, user=officer, reason="  Litigation\nhold  ", request=request)

    event = AccessEvent.objects.get(seq=hold.event_seq)
    assert legal_hold_current() == hold and hold.on
    assert (hold.set_by, hold.reason) == (officer, "Litigation hold")
    assert (event.action, event.outcome, event.actor_username) == (
        Action.LEGAL_HOLD,
        Outcome.ALLOWED,
        "officer",
    )
    assert event.reason == "on: Litigation hold" and event.client_ip == "192.0.2.7"
    assert event.when == hold.when


def test_a_hold_change_needs_a_reason(officer):
    with pytest.raises(ValueError, match="reason is required"):
        legal_hold_set(True, user=officer, reason="   ")

    assert not LegalHold.objects.exists()
    assert not AccessEvent.objects.filter(action=Action.LEGAL_HOLD).exists()


def test_no_hold_was_ever_set(db):
    assert legal_hold_current() is None


# The retention page -------------------------------------------------------------------------------

RETENTION_URL = "/compliance/retention/"


@pytest.fixture
def compliance_officer(db):
    """A staff user in the "Compliance officers" group (compliance.view_dashboard)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user("carol", "carol@example.com", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance officers"))
    return user


def test_an_officer_sees_the_retention_the_hold_and_the_checkpoints(
    client, compliance_officer, old_and_new
):
    prune_at(old_and_new[1], user=compliance_officer)
    legal_hold_set(True, user=compliance_officer, reason="Litigation Acme v. Globex")
    client.force_login(compliance_officer)

    response = client.get(RETENTION_URL)

    body = response.content.decode()
    assert response.status_code == 200
    assert "730 days" in body and "Litigation Acme v. Globex" in body
    assert f"#1\u2013#{old_and_new[0]}" in body and 'id="hold-submit"' in body


def test_an_officer_switches_the_hold_and_it_is_recorded(client, compliance_officer):
    client.force_login(compliance_officer)

    response = client.post(RETENTION_URL, {"on": "on", "reason": "Subpoena 12"})

    hold = legal_hold_current()
    event = AccessEvent.objects.get(seq=hold.event_seq)
    assert response.status_code == 302 and response["Location"] == RETENTION_URL
    assert (hold.on, hold.set_by, hold.reason) == (True, compliance_officer, "Subpoena 12")
    assert (event.action, event.actor_username, event.client_ip) == (
        Action.LEGAL_HOLD,
        "carol",
        "127.0.0.1",
    )


def test_a_hold_change_without_a_reason_is_refused_and_changes_nothing(client, compliance_officer):
    client.force_login(compliance_officer)

    response = client.post(RETENTION_URL, {"on": "on", "reason": ""})

    assert response.status_code == 400 and b"invalid-feedback" in response.content
    assert legal_hold_current() is None


def test_staff_without_the_permission_cannot_switch_the_hold_and_is_recorded(client, officer):
    client.force_login(officer)

    response = client.post(RETENTION_URL, {"on": "on", "reason": "I want to"})

    refusal = AccessEvent.objects.order_by("-seq").first()
    assert response.status_code == 403 and legal_hold_current() is None
    assert (refusal.action, refusal.outcome, refusal.actor_username) == (
        Action.COMPLIANCE_VIEW,
        Outcome.DENIED,
        "officer",
    )
    assert refusal.reason.endswith(RETENTION_URL)


def test_a_member_is_refused_the_page(client, alice):
    client.force_login(alice)

    assert client.get(RETENTION_URL).status_code == 403


def test_anonymous_goes_to_the_login_page(client, db):
    response = client.get(RETENTION_URL)

    assert response.status_code == 302 and "login" in response["Location"]
    assert legal_hold_current() is None
