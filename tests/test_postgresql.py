"""The same suites again on PostgreSQL: the raw SQL of the hot paths must hold on both databases."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Everything that touches the database; the file format and key tests do not.
SUITES = [
    "tests/vault/test_models.py",
    "tests/vault/test_storage.py",
    "tests/vault/test_views.py",
    "tests/vault/test_downloads.py",
    "tests/vault/test_paths.py",
    "tests/vault/test_uploads.py",
    "tests/vault/test_admin.py",
    "tests/vault/test_cli.py",
    "tests/vault/test_seed_demo.py",
    "tests/vault/test_sessions.py",
    "tests/vault/test_accounts.py",
    "tests/compliance",
    "tests/reports/test_build.py",
]


@pytest.mark.postgres
def test_database_suites_pass_on_postgresql(postgres_server):
    env = {**os.environ, "DATABASE_URL": postgres_server.url("docvault")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            # The browser and bucket tests exercise no database difference: run once, on SQLite.
            "not postgres and not browser and not s3",
            *SUITES,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary
    # The SQLite-only test skips there: proof that the run used PostgreSQL.
    assert "skipped" in summary
