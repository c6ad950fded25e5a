"""config.settings reads the environment, a .env file and NAME_FILE secrets, in that order."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({name: str(getattr(settings, name)) for name in "
    "['VAULT_KEYS', 'VAULT_KDF_SALT', 'DEBUG', 'MEDIA_ROOT', 'DATABASES', 'VAULT_READ_AHEAD']}))"
)


def settings_with(env: dict[str, str]) -> dict[str, str]:
    """Return some settings as a fresh process sees them with exactly this environment."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("VAULT_", "DJANGO_", "DOCVAULT_", "DATABASE_", "MEDIA_"))
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def test_dotenv_file_is_read_and_real_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nexport VAULT_KEYS='dotenv:" + "d" * 40 + '\'\nVAULT_KDF_SALT="from-dotenv"\n'
    )
    seen = settings_with({"DOCVAULT_ENV_FILE": str(dotenv), "VAULT_KDF_SALT": "from-env"})
    assert seen["VAULT_KEYS"] == "dotenv:" + "d" * 40
    assert seen["VAULT_KDF_SALT"] == "from-env"


def test_secrets_can_come_from_files(tmp_path):
    secret = tmp_path / "vault_keys"
    secret.write_text("filed:" + "f" * 40 + "\n")
    seen = settings_with({"DOCVAULT_ENV_FILE": "", "VAULT_KEYS_FILE": str(secret)})
    assert seen["VAULT_KEYS"] == "filed:" + "f" * 40


def test_unreadable_secret_file_is_a_clear_error(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as error:
        settings_with({"DOCVAULT_ENV_FILE": "", "VAULT_KEYS_FILE": str(tmp_path / "missing")})
    assert "VAULT_KEYS_FILE=" in error.value.stderr
    assert "cannot be read" in error.value.stderr


def test_defaults_are_sqlite_media_folder_and_debug_off(tmp_path):
    seen = settings_with({"DOCVAULT_ENV_FILE": ""})
    assert seen["DEBUG"] == "False"
    assert seen["MEDIA_ROOT"] == str(ROOT / "media")
    assert "sqlite3" in seen["DATABASES"]
    assert settings_with({"DOCVAULT_ENV_FILE": "", "DJANGO_DEBUG": "1"})["DEBUG"] == "True"


def test_read_ahead_is_auto_unless_forced_on_or_off():
    assert settings_with({"DOCVAULT_ENV_FILE": ""})["VAULT_READ_AHEAD"] == "auto"
    seen = settings_with({"DOCVAULT_ENV_FILE": "", "VAULT_READ_AHEAD": " Off "})
    assert seen["VAULT_READ_AHEAD"] == "off"
    with pytest.raises(subprocess.CalledProcessError) as error:
        settings_with({"DOCVAULT_ENV_FILE": "", "VAULT_READ_AHEAD": "sometimes"})
    assert "VAULT_READ_AHEAD must be auto, on or off." in error.value.stderr


def test_database_url_selects_postgresql():
    seen = settings_with({"DOCVAULT_ENV_FILE": "", "DATABASE_URL": "postgres://u:p@127.0.0.1:5/db"})
    assert "postgresql" in seen["DATABASES"]


def test_asgi_refuses_to_start_with_the_reason():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="WSGI only"):
        import config.asgi  # noqa: F401
