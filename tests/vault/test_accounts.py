"""Logins throttled, and logins, lockouts, password changes, memberships and read-any recorded."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse

from compliance.access_log import chain_verify
from compliance.models import AccessEvent
from vault.models import Membership

pytestmark = pytest.mark.django_db

PASSWORD = "cast-password-not-secret"
WRONG = "not-the-password"
ACCOUNT_ACTIONS = [
    "login",
    "login-failed",
    "lockout",
    "password-change",
    "membership-add",
    "membership-remove",
    "permission-grant",
    "permission-revoke",
]


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    # Hash speed is not under test here; the default hasher costs a quarter second per attempt.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def with_password(user):
    user.set_password(PASSWORD)
    user.save()
    return user


def events(*actions, after=0):
    """Return (action, outcome, actor, reason) of the account events, oldest first."""
    rows = AccessEvent.objects.filter(action__in=actions or ACCOUNT_ACTIONS, seq__gt=after)
    rows = rows.order_by("seq")
    return list(rows.values_list("action", "outcome", "actor_username", "reason"))


def last_seq():
    return AccessEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def post_login(client, username, password, path=None, address="203.0.113.7"):
    return client.post(
        path or reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


@pytest.fixture
def read_any():
    return Permission.objects.get(content_type__app_label="vault", codename="read_any_document")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


# Throttling --------------------------------------------------------------------------------------


def test_forty_wrong_passwords_then_the_right_one_is_refused(client, alice):
    """The issue's reproduction."""
    with_password(alice)
    for _ in range(40):
        response = post_login(client, "alice", WRONG)
    assert response.status_code == 429
    response = post_login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert b"15 minutes" in response.content
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("vault:document_list")).status_code == 302


def test_a_few_wrong_passwords_then_the_right_one_logs_in(client, alice):
    with_password(alice)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert post_login(client, "alice", WRONG).status_code == 200
    assert post_login(client, "alice", PASSWORD).status_code == 302
    assert client.get(reverse("vault:document_list")).status_code == 200


def test_the_address_alone_locks_another_account(client, alice, bob):
    with_password(alice)
    with_password(bob)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        post_login(client, "alice", WRONG)
    response = post_login(client, "bob", PASSWORD)
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    # Bob from elsewhere is not locked: only that address and alice's account are.
    assert post_login(client, "bob", PASSWORD, address="198.51.100.9").status_code == 302


def test_the_account_alone_locks_from_any_address(client, alice):
    with_password(alice)
    for number in range(settings.AXES_FAILURE_LIMIT):
        post_login(client, "alice", WRONG, address=f"198.51.100.{number + 1}")
    assert post_login(client, "alice", PASSWORD, address="192.0.2.200").status_code == 429


def test_the_admin_login_shows_the_lockout_page(client, admin):
    with_password(admin)
    path = reverse("admin:login")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        post_login(client, "admin", WRONG, path=path)
    response = post_login(client, "admin", PASSWORD, path=path)
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert client.get(reverse("admin:index")).status_code == 302


def test_the_throttled_address_is_the_access_logs(client, alice, settings):
    settings.ACCESS_LOG_PROXY_COUNT = 1
    with_password(alice)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            reverse("login"),
            {"username": "nobody", "password": WRONG},
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR="203.0.113.50",
        )
    # Same proxy, another client: not locked; the locked client behind it is.
    ok = client.post(
        reverse("login"),
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.51",
    )
    assert ok.status_code == 302
    client.post(reverse("logout"))
    refused = client.post(
        reverse("login"),
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.50",
    )
    assert refused.status_code == 429
    logins = AccessEvent.objects.filter(action__in=["login", "login-failed", "lockout"])
    assert set(logins.values_list("client_ip", flat=True)) == {
        "203.0.113.50",
        "203.0.113.51",
    }


# Logins in the access log ------------------------------------------------------------------------


def test_logins_failures_and_lockouts_are_recorded_never_the_password(client, alice):
    with_password(alice)
    post_login(client, "alice", PASSWORD)
    client.post(reverse("logout"))
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        post_login(client, "alice", WRONG)
    recorded = events("login", "login-failed", "lockout")
    assert recorded[0] == ("login", "allowed", "alice", "alice logged in at /accounts/login/")
    failures = [row for row in recorded if row[0] == "login-failed"]
    assert len(failures) == settings.AXES_FAILURE_LIMIT - 1
    assert failures[0] == ("login-failed", "denied", "", "failed login as alice")
    lockouts = [row for row in recorded if row[0] == "lockout"]
    # The attempt that reached the limit, then the one refused while locked out: one event each.
    assert len(lockouts) == 2
    assert lockouts[0][3].startswith("login as alice refused: locked out after 5 failed logins")
    assert len(recorded) == 1 + settings.AXES_FAILURE_LIMIT + 1
    logins = AccessEvent.objects.filter(action__in=["login", "login-failed", "lockout"])
    assert set(logins.values_list("client_ip", flat=True)) == {"203.0.113.7"}
    everything = str(list(AccessEvent.objects.values_list()))
    assert WRONG not in everything and PASSWORD not in everything
    assert chain_verify().ok


def test_an_admin_login_is_recorded_as_such(client, admin):
    with_password(admin)
    assert post_login(client, "admin", PASSWORD, path=reverse("admin:login")).status_code == 302
    assert events("login") == [("login", "allowed", "admin", "admin logged in at /admin/login/")]


# Password changes --------------------------------------------------------------------------------


def test_a_password_change_in_the_admin_is_recorded(admin_client, alice):
    url = reverse("admin:auth_user_password_change", args=[alice.pk])
    response = admin_client.post(
        url, {"password1": "a-new-long-password-42", "password2": "a-new-long-password-42"}
    )
    assert response.status_code == 302
    assert events("password-change") == [
        ("password-change", "allowed", "admin", "password of alice changed")
    ]


def test_a_refused_password_change_in_the_admin_is_not_recorded(admin_client, alice):
    url = reverse("admin:auth_user_password_change", args=[alice.pk])
    response = admin_client.post(
        url, {"password1": "a-new-long-password-42", "password2": "another-password-42"}
    )
    assert response.status_code == 200
    assert events("password-change") == []


def test_a_users_own_password_change_is_recorded(client, alice):
    with_password(alice)
    post_login(client, "alice", PASSWORD)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-password-42",
            "new_password2": "a-new-long-password-42",
        },
    )
    assert response.status_code == 302
    assert events("password-change")[-1] == (
        "password-change",
        "allowed",
        "alice",
        "password of alice changed",
    )


def test_the_changepassword_command_records_the_operator(alice, monkeypatch):
    import getpass

    from vault.management.commands._cli import operator

    answers = iter(["a-new-long-password-42", "a-new-long-password-42"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    call_command("changepassword", "alice")
    (event,) = events("password-change")
    assert event[3] == "password of alice changed"
    assert event[2] == operator()  # who ran the command, not whose password it was


def test_an_orm_password_change_is_recorded_and_rolls_back_with_it(alice):
    with_password(alice)
    assert [row[3] for row in events("password-change")] == ["password of alice changed"]
    with pytest.raises(RuntimeError), transaction.atomic():
        alice.set_password("rolled-back-password-42")
        alice.save()
        assert len(events("password-change")) == 2
        raise RuntimeError("roll back")
    assert len(events("password-change")) == 1
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_a_new_account_with_a_password_says_so(db):
    # As the admin's add-user form does (create_user() stores a hash without the hook).
    dora = get_user_model()(username="dora")
    dora.set_password(PASSWORD)
    dora.save()
    assert [row[3] for row in events("password-change")] == ["password of dora set (new account)"]


# Memberships -------------------------------------------------------------------------------------


def test_a_membership_added_in_the_admin_is_recorded(admin_client, charlie, acme):
    response = admin_client.post(
        reverse("admin:vault_membership_add"),
        {"user": charlie.pk, "company": acme.pk, "role": "member"},
    )
    assert response.status_code == 302
    assert events("membership-add")[-1] == (
        "membership-add",
        "allowed",
        "admin",
        "membership of charlie in Acme added",
    )


def test_a_refused_membership_in_the_admin_is_not_recorded(admin_client, alice, acme):
    before = events("membership-add")
    response = admin_client.post(
        reverse("admin:vault_membership_add"),
        {"user": alice.pk, "company": acme.pk, "role": "member"},  # exists already
    )
    assert response.status_code == 200
    assert events("membership-add") == before


def test_a_membership_removed_in_the_admin_is_recorded(admin_client, bob):
    membership = Membership.objects.get(user=bob)
    response = admin_client.post(
        reverse("admin:vault_membership_delete", args=[membership.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert events("membership-remove") == [
        ("membership-remove", "allowed", "admin", "membership of bob in Acme removed")
    ]


def test_moving_a_membership_in_the_admin_is_a_removal_and_an_addition(admin_client, bob, globex):
    membership = Membership.objects.get(user=bob)
    response = admin_client.post(
        reverse("admin:vault_membership_change", args=[membership.pk]),
        {"user": bob.pk, "company": globex.pk, "role": "member"},
    )
    assert response.status_code == 302
    assert [row[3] for row in events("membership-add", "membership-remove")][-2:] == [
        "membership of bob in Acme removed",
        "membership of bob in Globex added",
    ]


def test_a_role_change_is_not_a_membership_change(bob):
    before = events()
    membership = Membership.objects.get(user=bob)
    membership.role = Membership.Role.MANAGER
    membership.save()
    assert events() == before


def test_orm_memberships_are_recorded_and_roll_back_with_the_change(charlie, acme):
    membership = Membership.objects.create(user=charlie, company=acme)
    pk = membership.pk
    assert events("membership-add")[-1][3] == "membership of charlie in Acme added"
    assert events("membership-add")[-1][2]  # the OS user
    with pytest.raises(RuntimeError), transaction.atomic():
        membership.delete()
        assert events("membership-remove")
        raise RuntimeError("roll back")
    assert events("membership-remove") == []
    membership = Membership.objects.get(pk=pk)
    membership.delete()
    assert [row[3] for row in events("membership-remove")] == [
        "membership of charlie in Acme removed"
    ]


def test_a_membership_that_cannot_be_recorded_is_not_made(charlie, acme, monkeypatch):
    from vault import access

    def broken(access_):
        raise RuntimeError("log unavailable")

    monkeypatch.setattr(access, "_recorder", broken)
    with pytest.raises(access.RecordError), transaction.atomic():
        Membership.objects.create(user=charlie, company=acme)
    assert not Membership.objects.filter(user=charlie, company=acme).exists()


# The read-any permission -------------------------------------------------------------------------


def test_read_any_granted_and_revoked_directly_through_the_orm(bob, read_any):
    bob.user_permissions.add(read_any)
    bob.user_permissions.add(read_any)  # already held: nothing changes, nothing recorded
    bob.user_permissions.remove(read_any)
    bob.user_permissions.remove(read_any)
    assert [row[:1] + row[3:] for row in events("permission-grant", "permission-revoke")] == [
        ("permission-grant", "read-any granted to bob directly"),
        ("permission-revoke", "read-any revoked from bob directly"),
    ]


def test_other_permissions_are_not_recorded(bob):
    other = Permission.objects.get(content_type__app_label="vault", codename="view_document")
    bob.user_permissions.add(other)
    bob.user_permissions.clear()
    assert events("permission-grant", "permission-revoke") == []


def test_read_any_from_the_permissions_side_and_by_clear(alice, bob, read_any):
    read_any.user_set.add(alice, bob)
    read_any.user_set.clear()
    assert [row[3] for row in events("permission-grant", "permission-revoke")] == [
        "read-any granted to alice directly",
        "read-any granted to bob directly",
        "read-any revoked from alice directly",
        "read-any revoked from bob directly",
    ]


def test_read_any_through_a_group(alice, bob, read_any):
    officers = Group.objects.create(name="Compliance officers")
    officers.user_set.add(alice)
    assert events("permission-grant") == []  # the group carries nothing yet
    officers.permissions.add(read_any)
    bob.groups.add(officers)
    bob.groups.remove(officers)
    officers.permissions.remove(read_any)
    assert [row[3] for row in events("permission-grant", "permission-revoke")] == [
        "read-any granted to alice via group Compliance officers",
        "read-any granted to bob via group Compliance officers",
        "read-any revoked from bob via group Compliance officers",
        "read-any revoked from alice via group Compliance officers",
    ]


def test_deleting_a_group_revokes_read_any_recorded(alice, read_any):
    officers = Group.objects.create(name="Compliance officers")
    officers.permissions.add(read_any)
    officers.user_set.add(alice)
    officers.delete()
    assert events("permission-revoke") == [
        (
            "permission-revoke",
            "allowed",
            events("permission-revoke")[0][2],
            "read-any revoked from alice via group Compliance officers (group deleted)",
        )
    ]


def test_a_rolled_back_grant_leaves_no_record(bob, read_any):
    with pytest.raises(RuntimeError), transaction.atomic():
        bob.user_permissions.add(read_any)
        assert events("permission-grant")
        raise RuntimeError("roll back")
    assert events("permission-grant") == []
    assert not bob.user_permissions.exists()


def test_read_any_granted_in_the_admin_user_form(admin_client, bob, read_any):
    mark = last_seq()
    url = reverse("admin:auth_user_change", args=[bob.pk])
    form = {
        "username": "bob",
        "email": "bob@example.com",
        "is_active": "on",
        "is_staff": "on",
        "user_permissions": [read_any.pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    assert admin_client.post(url, form).status_code == 302
    del form["user_permissions"]
    assert admin_client.post(url, form).status_code == 302
    assert events("permission-grant", "permission-revoke", after=mark) == [
        ("permission-grant", "allowed", "admin", "read-any granted to bob directly"),
        ("permission-revoke", "allowed", "admin", "read-any revoked from bob directly"),
    ]


def test_a_refused_admin_user_form_grants_nothing(admin_client, bob, read_any):
    mark = last_seq()
    url = reverse("admin:auth_user_change", args=[bob.pk])
    response = admin_client.post(url, {"username": "", "user_permissions": [read_any.pk]})
    assert response.status_code == 200
    assert events("permission-grant", after=mark) == []
    assert not bob.user_permissions.exists()


def test_read_any_granted_to_a_group_in_the_admin(admin_client, alice, read_any):
    officers = Group.objects.create(name="Compliance officers")
    alice.groups.add(officers)
    mark = last_seq()
    response = admin_client.post(
        reverse("admin:auth_group_change", args=[officers.pk]),
        {"name": "Compliance officers", "permissions": [read_any.pk]},
    )
    assert response.status_code == 302
    assert events("permission-grant", after=mark) == [
        (
            "permission-grant",
            "allowed",
            "admin",
            "read-any granted to alice via group Compliance officers",
        )
    ]


def test_staff_and_superuser_flags_that_change_read_any_are_recorded(bob, read_any):
    bob.user_permissions.add(read_any)  # not staff: the permission is recorded, not yet usable
    bob.is_staff = True
    bob.save()
    bob.is_active = False
    bob.save()
    root = get_user_model().objects.create_superuser("root", "root@example.com", None)
    root.is_superuser = False
    root.save()
    assert [row[3] for row in events("permission-grant", "permission-revoke")] == [
        "read-any granted to bob directly",
        "read-any granted to bob: is_staff set",
        "read-any revoked from bob: is_active cleared",
        "read-any granted to root: new account, is_active set, is_staff set, is_superuser set",
        "read-any revoked from root: is_superuser cleared",
    ]


def test_staff_flags_without_read_any_are_not_recorded(bob, charlie):
    bob.is_staff = True
    bob.save()
    charlie.last_login = None
    charlie.save(update_fields=["last_login"])
    assert events("permission-grant", "permission-revoke") == []


def test_making_a_holder_staff_in_the_admin_is_recorded(admin_client, bob, read_any):
    bob.user_permissions.add(read_any)
    form = {
        "username": "bob",
        "email": "bob@example.com",
        "is_active": "on",
        "is_staff": "on",
        "user_permissions": [read_any.pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    assert (
        admin_client.post(reverse("admin:auth_user_change", args=[bob.pk]), form).status_code == 302
    )
    assert events("permission-grant")[-1] == (
        "permission-grant",
        "allowed",
        "admin",
        "read-any granted to bob: is_staff set",
    )
