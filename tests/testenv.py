"""Pytest plugin loaded before Django: a fixed test environment, independent of any `.env`."""

import os
import tempfile

# Real environment variables still win, so CI can point DATABASE_URL elsewhere.
os.environ["DOCVAULT_ENV_FILE"] = ""
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-not-secret-" + "x" * 40)
os.environ.setdefault(
    "VAULT_KEYS",
    "current:test-secret-current-0123456789abcdef0123456789,"
    "previous:test-secret-previous-0123456789abcdef012345678",
)
os.environ.setdefault("VAULT_KDF_SALT", "test-salt")
os.environ.setdefault("VAULT_KDF_ITERATIONS", "100000")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="docvault-test-media-"))
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
