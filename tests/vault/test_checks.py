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


def test_weak_secret_is_a_warning_with_debug_on(settings):
    settings.DEBUG = True
    assert ids(settings, VAULT_KEYS="a:short") == ["vault.W001"]


def test_weak_secret_is_an_error_with_debug_off(settings):
    settings.DEBUG = False
    assert ids(settings, VAULT_KEYS="a:short") == ["vault.E006"]


def test_a_secret_of_the_minimum_length_is_not_weak(settings):
    settings.DEBUG = False
    assert ids(settings, VAULT_KEYS="a:" + "x" * 32) == []


def test_one_secret_under_two_labels_is_an_error(settings):
    secret = "s" * 40
    assert ids(settings, VAULT_KEYS=f"a:{secret},b:{secret}") == ["vault.E005"]


def test_distinct_secrets_under_two_labels_pass(settings):
    assert ids(settings, VAULT_KEYS=f"a:{'s' * 40},b:{'t' * 40}") == []


def test_check_command_fails_on_a_duplicate_or_a_weak_secret_in_production(settings, capsys):
    settings.DEBUG = False
    settings.VAULT_KEYS = f"a:{'s' * 40},b:{'s' * 40}"
    with pytest.raises(SystemCheckError, match=r"vault\.E005"):
        call_command("check")
    settings.VAULT_KEYS = "a:tiny-secret"
    with pytest.raises(SystemCheckError, match=r"vault\.E006") as raised:
        call_command("check")
    assert "tiny-secret" not in str(raised.value) + capsys.readouterr().err
    settings.DEBUG = True
    call_command("check")  # a warning does not fail


def test_few_iterations_is_a_warning(settings):
    assert ids(settings, VAULT_KEYS="a:" + "a" * 40, VAULT_KDF_ITERATIONS="1000") == ["vault.W002"]


def test_bad_iterations_is_an_error(settings):
    assert ids(settings, VAULT_KEYS="a:" + "a" * 40, VAULT_KDF_ITERATIONS="x") == ["vault.E004"]


def test_missing_salt_is_an_error(settings):
    assert ids(settings, VAULT_KEYS="a:" + "a" * 40, VAULT_KDF_SALT="") == ["vault.E003"]


def test_check_command_fails_without_key_and_never_prints_secrets(settings, capsys):
    settings.DEBUG = True
    settings.VAULT_KEYS = "a:tiny-secret"
    call_command("check")  # a warning does not fail
    assert "tiny-secret" not in capsys.readouterr().err
    settings.VAULT_KEYS = None
    settings.ENCRYPTION_SECRET = None
    with pytest.raises(SystemCheckError, match=r"vault\.E001"):
        call_command("check")
