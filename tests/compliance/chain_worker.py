"""A separate process of the concurrency tests, run against the DATABASE_URL it is given.

    python -m tests.compliance.chain_worker append WORKER COUNT BARRIER_DIR
    python -m tests.compliance.chain_worker summary
    python -m tests.compliance.chain_worker tamper SEQ

`append` signals readiness with a file in BARRIER_DIR, waits for the `go` file there so that every
worker starts appending at the same moment, then records COUNT events one by one.
"""

import json
import os
import sys
import time
from pathlib import Path

BARRIER_TIMEOUT = 60


def append(worker: int, count: int, barrier: Path) -> None:
    """Record `count` events as worker `worker`, starting together with the other workers."""
    from compliance.access_log import access_event_record
    from vault.access import Access, AccessContext, Action, Outcome

    context = AccessContext(action=Action.DOWNLOAD, extra={"operator": f"worker-{worker}"})
    (barrier / f"ready-{worker}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("The go signal never came.")
        time.sleep(0.005)
    for number in range(count):
        access_event_record(
            Access(Outcome.ALLOWED, context, reason=f"worker {worker} event {number}")
        )


def summary() -> None:
    """Print the shape of the log as JSON: count, seq range, distinct events, events per worker."""
    from django.db.models import Count, Max, Min

    from compliance.models import AccessEvent

    totals = AccessEvent.objects.aggregate(
        count=Count("id"),
        first=Min("seq"),
        last=Max("seq"),
        distinct=Count("reason", distinct=True),
    )
    per_worker = dict(
        AccessEvent.objects.order_by()
        .values_list("actor_username")
        .annotate(Count("id"))
        .values_list("actor_username", "id__count")
    )
    print(json.dumps({**totals, "per_worker": per_worker}))


def tamper(seq: int) -> None:
    """Edit one event with plain SQL, as someone with write access to the database could."""
    from django.db import connection

    from compliance.models import AccessEvent

    table = connection.ops.quote_name(AccessEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET reason = %s WHERE seq = %s", ["edited", seq])  # noqa: S608


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    command, *args = argv
    if command == "append":
        append(int(args[0]), int(args[1]), Path(args[2]))
    elif command == "summary":
        summary()
    elif command == "tamper":
        tamper(int(args[0]))
    else:
        raise SystemExit(f"Unknown command {command!r}.")


if __name__ == "__main__":
    main(sys.argv[1:])
