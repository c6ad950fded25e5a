"""Key retirement: after rotation, a seal and removal of the old key, every event still verifies."""

import io

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from compliance.access_log import chain_verify, link_digest_next
from compliance.models import AccessEvent, ChainStatus
from vault.access import Action, access_context
from vault.keys import keyring
from vault.models import Document

pytestmark = pytest.mark.django_db

TABLE = AccessEvent._meta.db_table
# A is the test environment's primary key: the cast's account events are made under it.
KEY_A = "current:test-secret-current-0123456789abcdef0123456789"
KEY_B = "b:test-secret-key-b-0123456789abcdef0123456789abcdef"
PLAINTEXT = b"Board minutes, confidential.\n" * 40


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


def events_by_key() -> list[tuple[int, str, str]]:
    return list(AccessEvent.objects.order_by("seq").values_list("seq", "chain_key_id", "action"))


@pytest.fixture
def retired_log(settings, client, acme, alice):
    """Events under key A (upload, downloads), rotation to B, a seal, events under B, A retired."""
    settings.VAULT_KEYS = KEY_A
    key_a = keyring().primary.key_id_hex
    document = Document(company=acme, title="Minutes", original_filename="m.txt", uploaded_by=alice)
    with access_context(action=Action.UPLOAD, user=alice, document=document):
        document.file.save("upload", ContentFile(PLAINTEXT))
    client.force_login(alice)
    for _ in range(3):
        assert client.get(reverse("vault:document_download", args=[document.pk])).status_code == 200
    assert command("audit_verify")[0] == 0  # starts the heads file, under A

    settings.VAULT_KEYS = f"{KEY_B},{KEY_A}"  # rotation: B primary, A decrypt-only
    key_b = keyring().primary.key_id_hex
    assert client.get(reverse("vault:document_download", args=[document.pk])).status_code == 200
    code, sealed = command("audit_seal")
    assert code == 0, sealed
    for _ in range(2):
        assert client.get(reverse("vault:document_download", args=[document.pk])).status_code == 200

    settings.VAULT_KEYS = KEY_B  # retirement
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [key_a]
    return key_a, key_b, sealed


def test_every_event_verifies_after_the_old_key_is_retired(retired_log):
    key_a, key_b, sealed = retired_log
    keys = [key for _, key, _ in events_by_key()]
    seal_seq = next(seq for seq, _, action in events_by_key() if action == Action.CHAIN_SEAL)

    report = chain_verify()
    code, line = command("audit_verify")

    assert key_a in keys and key_b in keys and key_a != key_b
    assert f"Sealed events through seq {seal_seq - 1} with the seal at seq {seal_seq}" in sealed
    assert report.ok and report.count == len(keys)
    assert report.sealed_count == keys.count(key_a)
    assert code == 0, line
    assert line.startswith(f"Access log OK: {len(keys)} events")
    assert f"{keys.count(key_a)} events under retired chain keys verified through the seals" in line


def test_without_a_seal_the_retired_keys_events_cannot_be_verified(settings, record):
    settings.VAULT_KEYS = KEY_A
    key_a = keyring().primary.key_id_hex
    record(3)
    settings.VAULT_KEYS = f"{KEY_B},{KEY_A}"
    record(2)
    settings.VAULT_KEYS = KEY_B
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [key_a]

    report = chain_verify()

    assert report.status is ChainStatus.UNVERIFIABLE
    assert (report.unverifiable_count, report.sealed_count) == (3, 0)


def test_verification_seals_by_itself_after_a_rotation(settings, record):
    settings.VAULT_KEYS = KEY_A
    record(2)
    settings.VAULT_KEYS = f"{KEY_B},{KEY_A}"
    record(1)

    code, line = command("audit_verify")
    again, second = command("audit_verify")

    actions = [action for _, _, action in events_by_key()]
    assert code == 0 and "Sealed events through seq 3 with the seal at seq 4" in line
    assert again == 0 and "Sealed" not in second
    assert actions.count(Action.CHAIN_SEAL) == 1


def test_a_seal_is_not_made_over_a_broken_log(settings, record):
    settings.VAULT_KEYS = KEY_A
    record(3)
    settings.VAULT_KEYS = f"{KEY_B},{KEY_A}"
    sql("UPDATE TABLE SET reason = %s WHERE seq = %s", ["edited", 2])

    code, line = command("audit_seal")

    assert code == 1 and "Nothing sealed" in line and "BROKEN at seq 2" in line
    assert Action.CHAIN_SEAL not in [action for _, _, action in events_by_key()]


# The tampering twins: after retirement, someone with the database alone --------------------------


def test_an_old_event_edited_after_retirement_is_broken(retired_log):
    sql("UPDATE TABLE SET reason = %s WHERE seq = %s", ["nothing happened", 2])

    report = chain_verify()
    code, line = command("audit_verify")

    assert report.status is ChainStatus.BROKEN and report.broken_seq == 1
    assert "do not hash to what the seal" in report.problem
    assert code == 1 and line.startswith("Access log BROKEN at seq 1:")


def test_an_old_event_edited_with_its_links_recomputed_is_broken(retired_log):
    """The unkeyed links can be recomputed by anyone: the seal's key is what pins them."""
    key_a = retired_log[0]
    sql("UPDATE TABLE SET actor_username = %s WHERE seq = %s", ["mallory", 3])

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, 1)
    assert key_a in report.problem


def test_a_forged_seal_is_broken(retired_log):
    seal_seq = next(seq for seq, _, action in events_by_key() if action == Action.CHAIN_SEAL)
    sql(
        "UPDATE TABLE SET reason = %s WHERE seq = %s",
        [f"Sealed the chain through seq {seal_seq - 1}: link digest {'0' * 64}.", seal_seq],
    )

    report = chain_verify()
    code, _ = command("audit_verify")

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, seal_seq)
    assert "does not match its hash" in report.problem
    assert code == 1


def test_a_seal_claimed_under_the_retired_key_proves_nothing(retired_log):
    """Relabelling the real seal as made under A leaves the old events (and it) unproven."""
    key_a = retired_log[0]
    seal_seq = next(seq for seq, _, action in events_by_key() if action == Action.CHAIN_SEAL)
    sql("UPDATE TABLE SET chain_key_id = %s WHERE seq = %s", [key_a, seal_seq])

    report = chain_verify()

    assert report.status is ChainStatus.BROKEN


def test_cut_events_are_broken(retired_log):
    sql("DELETE FROM TABLE WHERE seq = %s", [2])

    report = chain_verify()
    code, _ = command("audit_verify")

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, 2)
    assert "missing" in report.problem and code == 1


def test_a_cut_tail_is_broken_against_the_head_published_under_the_new_key(retired_log):
    code, _ = command("audit_verify")
    last = AccessEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    sql("DELETE FROM TABLE WHERE seq >= %s", [last - 1])

    code, line = command("audit_verify")

    assert code == 1 and f"ends at seq {last - 2}" in line


def test_a_deleted_seal_is_broken(retired_log):
    seal_seq = next(seq for seq, _, action in events_by_key() if action == Action.CHAIN_SEAL)
    sql("DELETE FROM TABLE WHERE seq = %s", [seal_seq])

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, seal_seq)


def test_an_event_forged_under_the_retired_key_after_the_seal_is_broken(retired_log):
    key_a = retired_log[0]
    last = AccessEvent.objects.order_by("-seq").first()
    sql(
        "UPDATE TABLE SET reason = %s, chain_key_id = %s WHERE seq = %s",
        ["forged", key_a, last.seq],
    )

    report = chain_verify()

    assert (report.status, report.broken_seq) == (ChainStatus.BROKEN, last.seq)
    assert "no seal covers it" in report.problem


def test_the_link_digest_covers_content_and_hash():
    digest = link_digest_next("0" * 64, b"{}", "a" * 64)

    assert digest != link_digest_next("0" * 64, b"{ }", "a" * 64)
    assert digest != link_digest_next("0" * 64, b"{}", "b" * 64)
    assert digest != link_digest_next("1" * 64, b"{}", "a" * 64)


KEY_C = "c:test-secret-key-c-0123456789abcdef0123456789abcdef"


def test_two_rotations_with_both_old_keys_retired_verify(settings, record):
    settings.VAULT_KEYS = KEY_A
    key_a = keyring().primary.key_id_hex
    record(2)
    settings.VAULT_KEYS = f"{KEY_B},{KEY_A}"
    key_b = keyring().primary.key_id_hex
    assert command("audit_verify")[0] == 0  # seals under B
    record(2)
    settings.VAULT_KEYS = f"{KEY_C},{KEY_B}"
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [key_a]
    assert command("audit_seal")[0] == 0  # seals under C, over A (through B's seal) and B
    record(1)
    settings.VAULT_KEYS = KEY_C
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [key_a, key_b]

    code, line = command("audit_verify")

    assert code == 0, line
    old = [seq for seq, key, _ in events_by_key() if key in (key_a, key_b)]
    assert chain_verify().sealed_count == len(old) == 6


def test_a_key_retired_without_a_seal_is_sealed_by_adding_it_back(settings, record):
    settings.VAULT_KEYS = KEY_A
    key_a = keyring().primary.key_id_hex
    record(2)
    settings.VAULT_KEYS = KEY_B
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [key_a]
    record(1)
    assert command("audit_seal")[0] == 1  # cannot verify: nothing to seal over
    settings.VAULT_KEYS = f"{KEY_B},{KEY_A}"
    settings.ACCESS_LOG_RETIRED_KEY_IDS = []
    assert command("audit_seal")[0] == 0
    settings.VAULT_KEYS = KEY_B
    settings.ACCESS_LOG_RETIRED_KEY_IDS = [key_a]

    code, line = command("audit_verify")

    assert code == 0, line
