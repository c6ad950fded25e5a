"""`make run`'s first-run setup: scripts/dev_env.py adds a development report signer once."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dev_env.py"


def dev_env(target: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_a_new_env_gets_keys_and_a_signer_and_a_second_run_changes_nothing(tmp_path):
    target = tmp_path / ".env"

    dev_env(target)
    first = target.read_text()
    dev_env(target)

    folder = tmp_path / "var" / "report-signing"
    assert target.read_text() == first
    assert "VAULT_KEYS=dev:" in first
    assert f"REPORT_SIGNING_P12={folder / 'signing.p12'}" in first
    assert f"REPORT_SIGNING_P12_PASSPHRASE_FILE={folder / 'signing.passphrase'}" in first
    assert f"REPORT_TRUST_ROOTS={folder / 'ca.pem'}" in first
    assert (folder / "signing.p12").stat().st_mode & 0o777 == 0o600
    assert target.stat().st_mode & 0o777 == 0o600


def test_an_older_env_keeps_its_keys_and_gains_a_signer(tmp_path):
    target = tmp_path / ".env"
    target.write_text("VAULT_KEYS=dev:keep-this-key\nVAULT_KDF_SALT=keep")

    output = dev_env(target)

    text = target.read_text()
    assert text.startswith("VAULT_KEYS=dev:keep-this-key\nVAULT_KDF_SALT=keep\n")
    assert "REPORT_SIGNING_P12=" in text and "certutil -A" in output


def test_a_configured_signer_is_left_alone(tmp_path):
    target = tmp_path / ".env"
    target.write_text("VAULT_KEYS=dev:k\nREPORT_SIGNING_P12=/etc/docvault/org.p12\n")

    dev_env(target)

    assert target.read_text() == "VAULT_KEYS=dev:k\nREPORT_SIGNING_P12=/etc/docvault/org.p12\n"
    assert not (tmp_path / "var").exists()
