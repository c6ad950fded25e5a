"""Sessions: the database holds only hashes of session keys; idle timeouts and a total lifetime."""

import time

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.urls import reverse

from vault.accounts import LOGIN_AT_KEY, SEEN_AT_KEY
from vault.sessions import SessionStore, session_key_hash

pytestmark = pytest.mark.django_db

PASSWORD = "cast-password-not-secret"


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    # Hash speed is not under test here; the default hasher costs a quarter second per login.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def form_login(client, user, path=None):
    user.set_password(PASSWORD)
    user.save()
    response = client.post(
        path or reverse("login"), {"username": user.get_username(), "password": PASSWORD}
    )
    assert response.status_code == 302, response.content
    return client.cookies[settings.SESSION_COOKIE_NAME].value


# The store ---------------------------------------------------------------------------------------


def test_a_form_login_stores_no_cookie_value_in_the_database(client, alice):
    cookie = form_login(client, alice)
    rows = list(Session.objects.values_list("session_key", "session_data"))
    assert rows
    assert all(cookie not in key and cookie not in data for key, data in rows)
    assert Session.objects.filter(session_key=session_key_hash(cookie)).exists()
    assert client.get(reverse("vault:document_list")).status_code == 200


def test_a_session_key_read_from_the_database_is_no_cookie(client, officer):
    """The issue's attack: replaying officer's django_session row as a cookie."""
    form_login(client, officer)
    (stolen,) = Session.objects.values_list("session_key", flat=True)
    attacker = client.__class__()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = stolen
    response = attacker.get(reverse("vault:document_list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    # The real cookie still works.
    assert client.get(reverse("vault:document_list")).status_code == 200


def test_logout_deletes_the_row(client, alice):
    cookie = form_login(client, alice)
    assert Session.objects.filter(session_key=session_key_hash(cookie)).exists()
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert not Session.objects.filter(session_key=session_key_hash(cookie)).exists()
    assert client.get(reverse("vault:document_list")).status_code == 302


def test_login_cycles_the_key_and_drops_the_old_row(client, alice):
    client.get(reverse("login"))  # no session yet: the login page stores nothing
    store = SessionStore()
    store["before"] = "login"
    store.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    cookie = form_login(client, alice)
    assert cookie != store.session_key
    assert not Session.objects.filter(session_key=session_key_hash(store.session_key)).exists()
    assert SessionStore(cookie)["before"] == "login"


def test_every_operation_of_the_store_uses_the_hash(db):
    store = SessionStore()
    assert store.session_key is None
    store.create()
    key = store.session_key
    assert len(key) == 32
    assert store.exists(key)
    assert not store.exists(session_key_hash(key))
    assert not Session.objects.filter(session_key=key).exists()

    store["answer"] = 42
    store.save()
    loaded = SessionStore(key)
    assert loaded["answer"] == 42
    assert SessionStore(session_key_hash(key)).load() == {}

    loaded.cycle_key()
    new_key = loaded.session_key
    assert new_key != key
    assert not store.exists(key)
    assert SessionStore(new_key)["answer"] == 42
    assert Session.objects.get(session_key=session_key_hash(new_key))

    SessionStore().delete(new_key)
    assert not store.exists(new_key)
    assert not Session.objects.exists()


def test_clear_expired_removes_only_expired_rows(db):
    live, old = SessionStore(), SessionStore()
    live.create()
    old.set_expiry(-10)
    old.create()
    assert Session.objects.count() == 2
    SessionStore.clear_expired()
    assert list(Session.objects.values_list("session_key", flat=True)) == [
        session_key_hash(live.session_key)
    ]


def test_async_operations_use_the_hash(transactional_db):
    from asgiref.sync import async_to_sync

    async def scenario():
        store = SessionStore()
        await store.acreate()
        key = store.session_key
        await store.aset("answer", 7)
        await store.asave()
        assert await store.aexists(key)
        assert not await store.aexists(session_key_hash(key))
        assert await SessionStore(key).aget("answer") == 7
        await store.acycle_key()
        assert not await store.aexists(key)
        await store.adelete()
        return key

    key = async_to_sync(scenario)()
    assert not Session.objects.filter(session_key=key).exists()
    assert not Session.objects.exists()


# Timeouts ----------------------------------------------------------------------------------------


def age(client, seconds, key=SEEN_AT_KEY):
    """Move one of the session's recorded times `seconds` into the past, through the store."""
    store = SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
    store[key] = time.time() - seconds
    store.save()


def follow_home(client):
    return client.get(reverse("vault:document_list"), follow=True)


def test_staff_idle_for_the_staff_timeout_are_logged_out_with_a_message(client, officer):
    cookie = form_login(client, officer)
    age(client, settings.SESSION_IDLE_TIMEOUT_STAFF + 5)
    response = follow_home(client)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert b"Your session has ended after 15 minutes without activity" in response.content
    assert not response.context["user"].is_authenticated
    assert not Session.objects.filter(session_key=session_key_hash(cookie)).exists()


def test_staff_active_within_the_timeout_stay_logged_in(client, officer):
    form_login(client, officer)
    age(client, settings.SESSION_IDLE_TIMEOUT_STAFF - 60)
    assert client.get(reverse("vault:document_list")).status_code == 200
    # The request counted as activity: the clock starts again.
    store = SessionStore(client.cookies[settings.SESSION_COOKIE_NAME].value)
    assert time.time() - store[SEEN_AT_KEY] < 5


def test_members_keep_a_working_day(client, alice):
    form_login(client, alice)
    age(client, settings.SESSION_IDLE_TIMEOUT_STAFF + 60)
    assert client.get(reverse("vault:document_list")).status_code == 200
    age(client, settings.SESSION_IDLE_TIMEOUT + 5)
    response = follow_home(client)
    assert b"Your session has ended after 8 hours without activity" in response.content
    assert not response.context["user"].is_authenticated


def test_the_total_lifetime_ends_even_an_active_session(client, alice):
    form_login(client, alice)
    age(client, settings.SESSION_MAX_LIFETIME - 60, key=LOGIN_AT_KEY)
    assert client.get(reverse("vault:document_list")).status_code == 200
    age(client, settings.SESSION_MAX_LIFETIME + 1, key=LOGIN_AT_KEY)
    response = follow_home(client)
    assert b"sessions last at most 12 hours" in response.content
    assert not response.context["user"].is_authenticated


def test_the_admin_ends_an_idle_staff_session_too(client, admin):
    form_login(client, admin, reverse("admin:login"))
    assert client.get(reverse("admin:index")).status_code == 200
    age(client, settings.SESSION_IDLE_TIMEOUT_STAFF + 5)
    response = client.get(reverse("admin:index"), follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("admin:login"))
    assert b"Your session has ended after 15 minutes without activity" in response.content


def test_timeouts_come_from_settings(client, alice, settings):
    settings.SESSION_IDLE_TIMEOUT = 120
    form_login(client, alice)
    age(client, 90)
    assert client.get(reverse("vault:document_list")).status_code == 200
    age(client, 121)
    response = follow_home(client)
    assert b"after 2 minutes without activity" in response.content
