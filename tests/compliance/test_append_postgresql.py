"""PostgreSQL's durable append: two round trips under the lock, committed at once, nothing left behind.

An append outside any transaction takes compliance.access_log._append_postgresql (its own BEGIN and
COMMIT); tests/test_postgresql.py runs this file on PostgreSQL, where SQLite skips it.
"""

import psycopg
import pytest
from django.db import OperationalError, connection

from compliance.access_log import POSTGRES_LOCK_KEY, access_event_record, chain_verify
from compliance.models import AccessEvent, ChainStatus
from vault.access import Access, AccessContext, Action, Outcome

pytestmark = pytest.mark.django_db(transaction=True)
IDLE = psycopg.pq.TransactionStatus.IDLE


@pytest.fixture(autouse=True)
def on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's append path (tests/test_postgresql.py runs this file there).")


def _access(number: int) -> Access:
    context = AccessContext(action=Action.DOWNLOAD, extra={"operator": "tester"})
    return Access(Outcome.ALLOWED, context, reason=f"event {number}")


def _other_connection() -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    )


def test_an_append_is_committed_before_it_returns():
    event = access_event_record(_access(1))
    assert connection.connection.info.transaction_status == IDLE
    with _other_connection() as other:
        table = AccessEvent._meta.db_table
        row = other.execute(
            f"SELECT seq, hash FROM {table} WHERE id = %s",  # noqa: S608 (the model's table)
            [event.pk],
        ).fetchone()
    assert row == (event.seq, event.hash)


def test_a_failed_append_rolls_back_and_the_next_one_chains_on():
    first = access_event_record(_access(1))
    with _other_connection() as other:
        # Another session holds the chain's lock; this one gives up waiting after 100 ms.
        other.execute("SELECT pg_advisory_lock(%s)", [POSTGRES_LOCK_KEY])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '100ms'")
        try:
            with pytest.raises(OperationalError):
                access_event_record(_access(2))
            # Rolled back: no transaction left open, nothing written.
            assert connection.connection.info.transaction_status == IDLE
            assert AccessEvent.objects.count() == 1
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
            other.execute("SELECT pg_advisory_unlock(%s)", [POSTGRES_LOCK_KEY])
    second = access_event_record(_access(3))
    assert (second.seq, second.prev_hash) == (first.seq + 1, first.hash)
    assert chain_verify().status == ChainStatus.OK
