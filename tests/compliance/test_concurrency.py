"""Several processes appending at once: no fork, no gap, on SQLite and on PostgreSQL."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

WORKERS = 4
EVENTS_PER_WORKER = 50
TIMEOUT = 120


def _environment(database_url: str, media_root: Path) -> dict[str, str]:
    # A storage of its own: the published chain heads belong to this database's log only.
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(media_root),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _worker(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(["-m", "tests.compliance.chain_worker", *args], env)


def appends_race(database_url: str, barrier: Path) -> dict[str, str]:
    """Migrate a fresh database, let the workers append all at once; return their environment."""
    env = _environment(database_url, barrier.parent / "media")
    migrated = _run(["manage.py", "migrate", "--noinput", "-v", "0"], env)
    assert migrated.returncode == 0, migrated.stderr
    barrier.mkdir()
    worker_command = [sys.executable, "-m", "tests.compliance.chain_worker", "append"]
    workers = [
        subprocess.Popen(
            [*worker_command, str(worker), str(EVENTS_PER_WORKER), str(barrier)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(list(barrier.glob("ready-*"))) < WORKERS:
            crashed = [worker for worker in workers if worker.poll() not in (None, 0)]
            assert not crashed, crashed[0].communicate()[1]
            assert time.monotonic() < deadline, "the workers never got ready"
            time.sleep(0.01)
        (barrier / "go").touch()
        for worker in workers:
            _, stderr = worker.communicate(timeout=TIMEOUT)
            assert worker.returncode == 0, stderr
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return env


def assert_one_unbroken_chain(env: dict[str, str]) -> None:
    """Check that every event of every worker is in one chain, seq 1..N, and that it verifies."""
    total = WORKERS * EVENTS_PER_WORKER
    summary = _worker(["summary"], env)
    verify = _run(["manage.py", "audit_verify"], env)

    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout) == {
        "count": total,
        "first": 1,
        "last": total,
        "distinct": total,
        "per_worker": {f"worker-{worker}": EVENTS_PER_WORKER for worker in range(WORKERS)},
    }
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith(f"Access log OK: {total} events, chain head seq {total} hash ")


def assert_tampering_is_caught(env: dict[str, str], seq: int) -> None:
    """Edit one event with SQL; the command must name it and exit non-zero."""
    tampered = _worker(["tamper", str(seq)], env)
    verify = _run(["manage.py", "audit_verify"], env)

    assert tampered.returncode == 0, tampered.stderr
    assert verify.returncode == 1
    assert f"Access log BROKEN at seq {seq}:" in verify.stderr


def test_concurrent_appends_on_sqlite(tmp_path):
    env = appends_race(f"sqlite:///{tmp_path / 'chain.sqlite3'}", tmp_path / "barrier")

    assert_one_unbroken_chain(env)
    assert_tampering_is_caught(env, 117)


@pytest.mark.postgres
def test_concurrent_appends_on_postgres(postgres_server, tmp_path):
    env = appends_race(postgres_server.database_create("chain_race"), tmp_path / "barrier")

    assert_one_unbroken_chain(env)
    assert_tampering_is_caught(env, 117)
