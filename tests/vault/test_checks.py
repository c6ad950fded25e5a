import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from vault.checks import vault_keys_check


def ids(settings, **values):
    for name, value in {"VAULT_KEYS": None, "ENCRYPTION_SECRET": None, **values}.items():
        setattr(settings, name, value)
    return sorted(message.id for message in vault_keys_check())


def test_good_configuration_passes(settings):
    assert ids(settings, VAULT_KEYS="a:" + "a" * 40) == []


def test_no_key_is_an_error(settings):
    assert ids(settings) == ["vault.E001"]


@pytest.mark.parametrize("value", ["nolabel", "a:" + "x" * 40 + ",a:" + "y" * 40])
def test_unparseable_or_duplicate_is_an_error(settings, value):
    assert ids(settings, VAULT_KEYS=value) == ["vault.E002"]


def test_weak_secret_is_a_warning(settings):
    assert ids(settings, VAULT_KEYS="a:short") == ["vault.W001"]


def test_few_iterations_is_a_warning(settings):
    assert ids(settings, VAULT_KEYS="a:" + "a" * 40, VAULT_KDF_ITERATIONS="1000") == ["vault.W002"]


def test_bad_iterations_is_an_error(settings):
    assert ids(settings, VAULT_KEYS="a:" + "a" * 40, VAULT_KDF_ITERATIONS="x") == ["vault.E004"]


def test_missing_salt_is_an_error(settings):
    assert ids(settings, VAULT_KEYS="a:" + "a" * 40, VAULT_KDF_SALT="") == ["vault.E003"]


def test_check_command_fails_without_key_and_never_prints_secrets(settings, capsys):
    settings.VAULT_KEYS = "a:tiny-secret"
    call_command("check")  # a warning does not fail
    assert "tiny-secret" not in capsys.readouterr().err
    settings.VAULT_KEYS = None
    settings.ENCRYPTION_SECRET = None
    with pytest.raises(SystemCheckError, match=r"vault\.E001"):
        call_command("check")
