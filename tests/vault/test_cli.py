import io
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from compliance.models import AccessEvent
from vault import fileformat
from vault.keys import keyring

pytestmark = pytest.mark.django_db

MARKER = b"DISASTER-RECOVERY-PLAINTEXT"


class Pipe(io.RawIOBase):
    """A non-seekable byte stream, like a shell pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._data.readinto(buffer)


class Stdio:
    def __init__(self, data: bytes = b"") -> None:
        self.buffer = io.BufferedReader(Pipe(data)) if data else io.BytesIO()


def test_encrypt_then_decrypt_round_trip(tmp_path):
    data = MARKER * 50_000
    (tmp_path / "plain").write_bytes(data)
    call_command("vault_encrypt", str(tmp_path / "plain"), str(tmp_path / "enc"))
    encrypted = (tmp_path / "enc").read_bytes()
    assert MARKER not in encrypted
    assert fileformat.classify(encrypted[:64]).key_id == keyring().primary.key_id
    call_command("vault_decrypt", str(tmp_path / "enc"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == "0o600"


def test_decrypt_is_recorded_with_the_operator(tmp_path):
    (tmp_path / "plain").write_bytes(MARKER)
    call_command("vault_encrypt", str(tmp_path / "plain"), str(tmp_path / "enc"))
    call_command("vault_decrypt", str(tmp_path / "enc"), str(tmp_path / "out"))
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome) == ("cli-decrypt", "allowed")
    assert event.stored_name == str(tmp_path / "enc")
    assert event.key_id == keyring().primary.key_id_hex


def test_decrypt_reads_the_case_study_fernet_files(tmp_path):
    token = Fernet(keyring().primary.fernet_key).encrypt(MARKER)
    (tmp_path / "legacy").write_bytes(token)
    call_command("vault_decrypt", str(tmp_path / "legacy"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == MARKER


def test_stdin_to_stdout(tmp_path, monkeypatch):
    data = MARKER * 100_000
    ciphertext = b"".join(
        fileformat.encrypt(
            [data], keyring().file_keys[keyring().primary.key_id], keyring().primary.key_id
        )
    )
    monkeypatch.setattr(sys, "stdin", Stdio(ciphertext))
    out = Stdio()
    monkeypatch.setattr(sys, "stdout", out)
    call_command("vault_decrypt", "-", "-")
    assert out.buffer.getvalue() == data


def test_encrypt_from_stdin(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", Stdio(MARKER))
    call_command("vault_encrypt", "-", str(tmp_path / "enc"))
    call_command("vault_decrypt", str(tmp_path / "enc"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == MARKER


@pytest.mark.parametrize("where", [10, 200_000, -3])
def test_tampered_input_fails_and_leaves_no_plaintext(tmp_path, where):
    (tmp_path / "plain").write_bytes(MARKER * 20_000)
    call_command("vault_encrypt", str(tmp_path / "plain"), str(tmp_path / "enc"))
    ciphertext = bytearray((tmp_path / "enc").read_bytes())
    ciphertext[where] ^= 0x40
    (tmp_path / "enc").write_bytes(bytes(ciphertext))
    with pytest.raises(CommandError, match="Decryption failed"):
        call_command("vault_decrypt", str(tmp_path / "enc"), str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["enc", "plain"]
    assert AccessEvent.objects.latest("seq").outcome == "failed"


def test_truncated_input_fails_and_leaves_no_plaintext(tmp_path):
    (tmp_path / "plain").write_bytes(MARKER * 100_000)
    call_command("vault_encrypt", str(tmp_path / "plain"), str(tmp_path / "enc"))
    (tmp_path / "enc").write_bytes((tmp_path / "enc").read_bytes()[: 1 << 20])
    with pytest.raises(CommandError, match="Decryption failed"):
        call_command("vault_decrypt", str(tmp_path / "enc"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_plaintext_input_is_refused(tmp_path):
    (tmp_path / "plain").write_bytes(MARKER)
    with pytest.raises(CommandError, match="not a Docvault or Fernet file"):
        call_command("vault_decrypt", str(tmp_path / "plain"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("vault_decrypt", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_existing_destination_is_never_overwritten(tmp_path):
    (tmp_path / "plain").write_bytes(MARKER)
    (tmp_path / "enc").write_bytes(b"keep me")
    with pytest.raises(CommandError, match="exists already"):
        call_command("vault_encrypt", str(tmp_path / "plain"), str(tmp_path / "enc"))
    assert (tmp_path / "enc").read_bytes() == b"keep me"


def test_no_key_is_a_clear_error(settings, tmp_path):
    (tmp_path / "plain").write_bytes(MARKER)
    settings.VAULT_KEYS = None
    settings.ENCRYPTION_SECRET = None
    with pytest.raises(CommandError, match="Encryption key not configured"):
        call_command("vault_encrypt", str(tmp_path / "plain"), str(tmp_path / "enc"))
    assert not (tmp_path / "enc").exists()


def test_keygen_prints_a_fresh_256_bit_entry(capsys):
    call_command("vault_keygen", "--label", "k2027")
    first = capsys.readouterr()
    call_command("vault_keygen", "--label", "k2027")
    second = capsys.readouterr()
    label, secret = first.out.strip().split(":", 1)
    assert label == "k2027"
    assert len(secret) >= 43  # 32 random bytes, url-safe base64
    assert first.out != second.out
    assert "VAULT_KEYS=<the line above>" in first.err
    assert secret not in first.err
