"""The fixed cast and shared fixtures for every test."""

import pytest


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Give every test an empty media folder of its own."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def no_recorder():
    """Unregister the access recorder for the test (the vault must then refuse to decrypt)."""
    from vault import access

    saved = access._recorder
    access.recorder_register(None)
    yield
    access.recorder_register(saved)


# The fixed cast: alice and bob at Acme, charlie at Globex (refused), an officer, an admin --------


def _cast_user(username, company=None, **fields):
    from django.contrib.auth import get_user_model

    from vault.models import Membership

    # No usable password: hashing one costs a quarter of a second per user, and tests log in with
    # client.force_login(). A test of the login form sets one itself.
    user = get_user_model().objects.create_user(username, f"{username}@example.com", **fields)
    if company is not None:
        Membership.objects.create(user=user, company=company)
    return user


@pytest.fixture
def acme(db):
    """The company of alice and bob."""
    from vault.models import Company

    return Company.objects.create(name="Acme")


@pytest.fixture
def globex(db):
    """Charlie's company: refused everything of Acme's unless a grant says otherwise."""
    from vault.models import Company

    return Company.objects.create(name="Globex")


@pytest.fixture
def alice(acme):
    """A member of Acme."""
    return _cast_user("alice", acme)


@pytest.fixture
def bob(acme):
    """Another member of Acme."""
    return _cast_user("bob", acme)


@pytest.fixture
def charlie(globex):
    """A member of Globex: must be refused Acme's documents."""
    return _cast_user("charlie", globex)


@pytest.fixture
def officer(db):
    """A compliance officer: staff, no company, holding the read-any-document permission."""
    from django.contrib.auth.models import Permission

    user = _cast_user("officer", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="vault", codename="read_any_document")
    )
    return user


@pytest.fixture
def admin(db):
    """A superuser, no company."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("admin", "admin@example.com", None)


# A throwaway PostgreSQL server ------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server():
    """Start a throwaway PostgreSQL server for the session; a test needing it fails if it cannot."""
    from tests.postgres import postgres_start

    with postgres_start() as server:
        yield server


# A throwaway SeaweedFS S3 server, and the vault's inner storage on its bucket -------------------


@pytest.fixture(scope="session")
def s3_server():
    """Start SeaweedFS's S3 server for the session; skip, saying why, where `weed` cannot run."""
    from tests.seaweed import SeaweedUnavailable, seaweed_start, weed_path

    try:
        weed_path()
    except SeaweedUnavailable as exc:
        pytest.skip(f"SeaweedFS unavailable: {exc}")
    with seaweed_start() as server:
        yield server


@pytest.fixture
def s3_storage(s3_server, settings):
    """Put the vault's ciphertext on a fresh key prefix of the bucket; return the inner storage."""
    from django.core.files.storage import default_storage

    settings.VAULT_INNER_STORAGE = s3_server.inner_storage_setting()
    return default_storage.inner


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def inner_storage(request, settings):
    """Run the test on the local media folder and on the bucket; return the inner storage.

    `isinstance(inner_storage, FileSystemStorage)` tells which. Rewrite ciphertext through it
    (`inner_storage.delete(name); inner_storage.save(name, ContentFile(data))`) on either.
    """
    from django.core.files.storage import default_storage

    if request.param == "s3":
        return request.getfixturevalue("s3_storage")
    settings.VAULT_INNER_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {},
    }
    return default_storage.inner
