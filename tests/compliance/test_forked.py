"""A read-only function of the database in a forked process: where it forks, and what comes back.

The fork path needs a single-threaded process and a database a second connection sees as this one
does: `manage.py shell` checks it in a fresh process, on a SQLite file or (in the PostgreSQL rerun)
a new PostgreSQL database. In the test process itself the function runs here: its SQLite database
lives in memory, and a session may hold other threads.
"""

import errno
import multiprocessing
import os
import signal
import threading
import time
import uuid

import psycopg
import pytest
from django.db import connection, transaction
from psycopg import sql

from compliance.access_log import access_event_record, chain_verify
from compliance.forked import fork_usable, forked
from compliance.models import AccessEvent, ChainStatus
from tests.helpers import manage
from vault.access import Access, AccessContext, Action, Outcome
from vault.downloads import usable_cores


def _record(count: int) -> None:
    context = AccessContext(action=Action.DOWNLOAD, extra={"operator": "tester"})
    for number in range(count):
        access_event_record(Access(Outcome.ALLOWED, context, reason=f"event {number}"))


def _walk_with_pid() -> tuple[int, ChainStatus, int]:
    report = chain_verify(using="default")
    return os.getpid(), report.status, report.count


def fork_checks() -> None:
    """Check the fork path on the current database (it must be one a fork can use); raise if not."""
    assert fork_usable("default"), f"no second process: threads {threading.enumerate()}"
    transaction.set_autocommit(False)  # a transaction opened by hand: its rows are this one's
    try:
        assert not fork_usable("default")
    finally:
        transaction.set_autocommit(True)
    _record(3)
    with forked(_walk_with_pid, using="default") as result:
        pid, status, count = result()
    assert pid != os.getpid()
    assert (status, count) == (ChainStatus.OK, 3)
    # The child left this process's connection alone: it still works.
    assert AccessEvent.objects.count() == 3
    _record(1)

    with pytest.raises(ZeroDivisionError), forked(lambda: 1 / 0, using="default") as failing:
        failing()

    with forked(lambda: time.sleep(600), using="default"):
        [child] = multiprocessing.active_children()
    # Leaving the block without asking for the result kills the child, and reaps it.
    assert child.exitcode == -signal.SIGKILL

    dying = forked(lambda: os._exit(3), using="default")
    with dying as result, pytest.raises(RuntimeError, match=r"without a result \(exit code 3\)"):
        result()
    assert chain_verify().count == 4

    real_fork = os.fork

    def fork_refused() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    os.fork = fork_refused  # the system refuses a process: the function runs here
    try:
        with forked(_walk_with_pid, using="default") as result:
            assert result() == (os.getpid(), ChainStatus.OK, 4)
    finally:
        os.fork = real_fork


@pytest.mark.django_db
def test_inside_a_transaction_the_function_runs_here():
    _record(2)
    assert connection.in_atomic_block and not fork_usable("default")

    with forked(_walk_with_pid, using="default") as result:
        # Here, and it sees this transaction's rows, which a second connection would not.
        assert result() == (os.getpid(), ChainStatus.OK, 2)


@pytest.mark.django_db(transaction=True)
def test_a_second_thread_keeps_the_function_here():
    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    thread.start()
    try:
        assert not fork_usable("default")
        with forked(os.getpid, using="default") as result:
            assert result() == os.getpid()
    finally:
        done.set()
        thread.join()


@pytest.mark.django_db(transaction=True)
def test_on_an_in_memory_sqlite_database_the_function_runs_here():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    assert connection.is_in_memory_db() and not fork_usable("default")


@pytest.fixture
def fresh_database(tmp_path):
    """The DATABASE_URL of an empty database of the suite's engine: a SQLite file, or a new
    database on the suite's PostgreSQL server (dropped afterwards)."""
    if connection.vendor != "postgresql":
        yield f"sqlite:///{tmp_path / 'db.sqlite3'}"
        return
    server = connection.settings_dict
    name = f"forked_{uuid.uuid4().hex[:12]}"
    options = {"host": server["HOST"], "port": server["PORT"], "user": server["USER"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **options) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"postgres://{server['USER']}@{server['HOST']}:{server['PORT']}/{name}"
    with psycopg.connect(dbname="postgres", autocommit=True, **options) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_in_a_single_threaded_process_the_function_runs_in_a_child(tmp_path, fresh_database):
    """In `manage.py shell`, as in `audit_report`: the test process itself runs other threads
    (a live server, a pool), so the checks run in a fresh one, on a database of this engine."""
    if usable_cores() < 2:
        pytest.skip("one usable core: the function always runs here")
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database,
        "MEDIA_ROOT": str(tmp_path),
        "DOCVAULT_ENV_FILE": "",
    }

    migrated = manage(env, "migrate", "--verbosity", "0")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    checks = "from tests.compliance.test_forked import fork_checks; fork_checks(); print('checked')"
    done = manage(env, "shell", "--no-imports", "-c", checks)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "checked"
