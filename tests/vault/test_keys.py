import json
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.views.debug import SafeExceptionReporterFilter

from vault import keys

VECTORS = Path(__file__).parent / "vectors"
CASE_STUDY = {"VAULT_KDF_SALT": "stable-salt-from-settings", "VAULT_KDF_ITERATIONS": "100000"}


def configure(settings, **values):
    for name, value in {"VAULT_KEYS": None, "ENCRYPTION_SECRET": None, **values}.items():
        setattr(settings, name, value)


def test_first_entry_is_primary_and_all_decrypt(settings):
    configure(settings, VAULT_KEYS="new:" + "n" * 40 + ",old:" + "o" * 40)
    ring = keys.keyring()
    assert [key.label for key in ring.keys] == ["new", "old"]
    assert ring.primary.label == "new"
    assert set(ring.file_keys) == {key.key_id for key in ring.keys}
    assert ring.get(ring.keys[1].key_id) is ring.keys[1]
    assert ring.get(b"\x00" * 8) is None


def test_encryption_secret_alone_is_the_default_key(settings):
    configure(settings, ENCRYPTION_SECRET="s" * 40)
    assert [key.label for key in keys.keyring().keys] == ["default"]


def test_vault_keys_wins_over_encryption_secret(settings):
    configure(settings, VAULT_KEYS="main:" + "m" * 40, ENCRYPTION_SECRET="s" * 40)
    assert [key.label for key in keys.keyring().keys] == ["main"]


def test_case_study_fernet_key_is_reproduced(settings):
    """The PBKDF2 output, base64 encoded, is the case study's Fernet key: its files decrypt."""
    vectors = json.loads((VECTORS / "fernet.json").read_text())
    case = vectors["cases"][0]
    configure(
        settings,
        ENCRYPTION_SECRET=case["secret"],
        VAULT_KDF_SALT=case["salt"],
        VAULT_KDF_ITERATIONS=str(case["iterations"]),
    )
    key = keys.keyring().primary
    assert key.fernet_key == case["fernet_key"].encode()
    assert Fernet(key.fernet_key).decrypt(case["token"].encode()) == bytes.fromhex(
        case["plaintext_hex"]
    )


def test_derived_keys_are_distinct_per_purpose_and_version(settings):
    configure(settings, VAULT_KEYS="a:" + "a" * 40 + ",b:" + "b" * 40)
    a, b = keys.keyring().keys
    derived = [
        a.subkey(keys.PURPOSE_FILE),
        a.subkey(keys.PURPOSE_AUDIT_CHAIN),
        a.subkey(keys.PURPOSE_CHAIN_HEAD),
        b.subkey(keys.PURPOSE_FILE),
        a.fernet_key,
    ]
    assert len(set(derived)) == len(derived)
    assert a.key_id != b.key_id
    assert len(a.key_id_hex) == 16


def test_key_id_depends_on_salt_and_iterations(settings):
    configure(settings, VAULT_KEYS="a:" + "a" * 40)
    first = keys.keyring().primary.key_id
    settings.VAULT_KDF_SALT = "another-salt"
    assert keys.keyring().primary.key_id != first


def test_derived_once_per_process_and_thread_safe(settings):
    configure(settings, VAULT_KEYS="a:" + "a" * 40)
    rings = []
    threads = [threading.Thread(target=lambda: rings.append(keys.keyring())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(ring) for ring in rings}) == 1
    assert keys.keyring() is rings[0]


def test_secret_never_in_repr(settings):
    secret = "very-secret-value-" + "z" * 30
    configure(settings, VAULT_KEYS=f"a:{secret}")
    ring = keys.keyring()
    assert secret not in repr(ring)
    assert secret not in repr(ring.primary)
    assert secret not in repr(keys.keys_parse(f"a:{secret}"))


def test_key_settings_are_hidden_on_error_pages(settings):
    cleansed = SafeExceptionReporterFilter().get_safe_settings()
    for name in ("VAULT_KEYS", "ENCRYPTION_SECRET", "SECRET_KEY"):
        assert cleansed[name] == SafeExceptionReporterFilter.cleansed_substitute


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nolabel", "not 'label:secret'"),
        ("a:", "not 'label:secret'"),
        ("bad label:" + "x" * 40, "invalid label"),
        ("a:" + "x" * 40 + ",a:" + "y" * 40, "repeats a label"),
    ],
)
def test_malformed_keys_are_refused_with_a_clear_message(settings, value, message):
    configure(settings, VAULT_KEYS=value)
    with pytest.raises(ImproperlyConfigured, match=message) as error:
        keys.keyring()
    assert "x" * 40 not in str(error.value)


def test_no_key_says_what_to_set(settings):
    configure(settings)
    with pytest.raises(ImproperlyConfigured, match="set VAULT_KEYS"):
        keys.keyring()


def test_missing_salt_is_refused(settings):
    configure(settings, VAULT_KEYS="a:" + "a" * 40, VAULT_KDF_SALT="")
    with pytest.raises(ImproperlyConfigured, match="VAULT_KDF_SALT"):
        keys.keyring()


def test_iterations_must_be_a_number(settings):
    configure(settings, VAULT_KEYS="a:" + "a" * 40, VAULT_KDF_ITERATIONS="many")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        keys.keyring()


def test_secret_never_in_a_debug_error_report(settings, rf):
    """A failure inside key handling renders no secret, in the traceback's variables either."""
    import sys

    from django.views.debug import ExceptionReporter

    # Fails after the entries are parsed, so the frame holds them when the report is made.
    configure(settings, VAULT_KEYS="good:traceback-secret-" + "q" * 30, VAULT_KDF_SALT="")
    try:
        keys.keyring()
    except ImproperlyConfigured:
        report = ExceptionReporter(rf.get("/"), *sys.exc_info())
        text, html = report.get_traceback_text(), report.get_traceback_html()
    secret = "traceback-secret-" + "q" * 30  # not a local of this frame until now
    assert "keyring_build" in text  # the frames are there, their secrets are not
    assert "entries" in html
    assert secret not in text
    assert secret not in html


def test_derived_keys_never_show_in_a_debug_error_report(settings, rf, media_root):
    """An error inside a save or an open shows its frames, not the file keys they hold."""
    import sys

    from django.core.files.base import File
    from django.core.files.storage import default_storage
    from django.utils.html import escape
    from django.views.debug import ExceptionReporter

    class Failing(File):
        def chunks(self, chunk_size=None):
            yield b"x" * 10
            raise OSError("disk went away")

    reports = []
    try:
        default_storage.save("d/x", Failing(None, "x"))
    except OSError:
        reports.append(ExceptionReporter(rf.get("/"), *sys.exc_info()).get_traceback_html())
    (media_root / "short").write_bytes(b"\x89DVLT\r\n\x1a\x01" + keys.keyring().primary.key_id)
    with pytest.raises(Exception) as error:
        default_storage.open("short")
    reports.append(
        ExceptionReporter(rf.get("/"), error.type, error.value, error.tb).get_traceback_html()
    )
    ring = keys.keyring()
    for report in reports:
        assert "file_key" in report or "keys" in report  # the frames are there
        for key in [*ring.file_keys.values(), *ring.fernet_keys]:
            assert escape(repr(bytes(key))) not in report
            assert key.hex() not in report


def test_one_secret_under_two_labels_is_refused_not_merged(settings):
    configure(settings, VAULT_KEYS="a:" + "s" * 40 + ",b:" + "s" * 40)
    with pytest.raises(
        ImproperlyConfigured, match="Keys 'a' and 'b' have the same secret"
    ) as raised:
        keys.keyring()
    assert "s" * 40 not in str(raised.value)


def test_duplicate_secrets_are_named_by_label():
    entries = keys.keys_parse("a:" + "s" * 40 + ",b:" + "t" * 40 + ",c:" + "s" * 40)
    assert keys.duplicate_secrets(entries) == [("a", "c")]
