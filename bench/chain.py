"""Chain append throughput: 8 writer processes appending to the chained access log on PostgreSQL.

A throwaway PostgreSQL server (tests/postgres.py, 127.0.0.1, fsync off as in the tests),
migrated once. Each writer is a fresh process with Django set up that appends a fixed number of
events through the registered recorder (`vault.access.access_record`, i.e.
`compliance.access_log.access_event_record`: the advisory lock, the head read, the HMAC, the
insert, the commit), all starting together. Throughput = all events / (last writer's end - first
writer's start). Then `chain_verify` walks the whole chain: no fork, no gap.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import (
    PYTHON,
    ROOT,
    PartResult,
    SummaryRow,
    Table,
    bench_env,
    child_json,
    median,
    progress,
)

WRITERS = 8
TARGET_PER_SECOND = 1000


def writer_main(count: int, start_at: float) -> None:
    """Append `count` events, starting at wall-clock `start_at`; print start, end and latencies."""
    import django

    django.setup()
    from django.db import connection

    from vault.access import Access, AccessContext, Action, Outcome, access_record

    connection.ensure_connection()
    context = AccessContext(action=Action.OPEN, extra={"operator": f"bench-writer-{os.getpid()}"})
    access = Access(Outcome.ALLOWED, context, stored_name="bench/chain", reason="bench append")
    access_record(access)  # warm: keys derived, statements built, connection open
    while time.time() < start_at:
        time.sleep(0.001)
    latencies = []
    started = time.time()
    for _ in range(count):
        before = time.perf_counter()
        access_record(access)
        latencies.append(time.perf_counter() - before)
    ended = time.time()
    print(json.dumps({"start": started, "end": ended, "latencies": latencies}))


def verify_main() -> None:
    """Print the verification of the whole chain and the event count, as JSON."""
    import django

    django.setup()
    from compliance.access_log import chain_verify
    from compliance.models import ChainStatus

    report = chain_verify()
    print(
        json.dumps(
            {
                "ok": report.status == ChainStatus.OK,
                "count": report.count,
                "summary": str(getattr(report, "problem", "") or report.status),
            }
        )
    )


def _writers(env: dict[str, str], writers: int, count: int) -> dict:
    """Run `writers` processes of `count` appends each, together; return the throughput figures."""
    start_at = time.time() + 4.0  # every writer set up and warm by then
    processes = [
        subprocess.Popen(
            [PYTHON, "-m", "bench.chain", "writer", str(count), repr(start_at)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(writers)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        if process.returncode != 0:
            raise RuntimeError(f"chain writer failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    first = min(result["start"] for result in results)
    last = max(result["end"] for result in results)
    latencies = sorted(value for result in results for value in result["latencies"])
    return {
        "events": writers * count,
        "seconds": last - first,
        "rate": writers * count / (last - first),
        "p50_ms": 1000 * median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def run(quick: bool) -> PartResult:
    """Measure appends per second with 8 writers (and 1 for reference) on PostgreSQL."""
    from tests.postgres import postgres_start

    count = 100 if quick else 1000
    suffix = " (QUICK smoke run, not for quoting)" if quick else ""
    table = Table(
        f"Chain appends on PostgreSQL: events per second, {count} appends per writer" + suffix,
        ["writers", "events", "seconds", "events/s", "append p50 ms", "append p99 ms"],
    )
    rows = {}
    with tempfile.TemporaryDirectory(prefix="docvault-bench-chain-") as folder:
        env = bench_env(Path(folder), "config.settings")
        with postgres_start() as server:
            env["DATABASE_URL"] = server.database_create("docvault_chain")
            subprocess.run(
                [PYTHON, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
                cwd=ROOT,
                env=env,
                check=True,
                timeout=300,
            )
            for writers in (1, WRITERS):
                progress(f"chain: {writers} writer(s) x {count} appends")
                rows[writers] = _writers(env, writers, count)
            check = child_json("chain", ["verify"], env, timeout=300)
    for writers, figures in rows.items():
        table.rows.append(
            [
                str(writers),
                str(figures["events"]),
                f"{figures['seconds']:.2f}",
                f"{figures['rate']:,.0f}",
                f"{figures['p50_ms']:.2f}",
                f"{figures['p99_ms']:.2f}",
            ]
        )
    eight = rows[WRITERS]
    table.notes.append(
        "Each writer is its own process (Django set up, one connection, warm) appending through "
        "the registered recorder, all starting together; events/s = all events / (last end - "
        "first start). PostgreSQL is the tests' throwaway server (fsync off): a commit costs no "
        "disk flush here; on a durable server each append also waits for its WAL flush inside "
        "the lock (see docs/ACCESS_LOG.md)."
    )
    table.notes.append(
        f"Whole chain verified afterwards (chain_verify): "
        f"{'OK' if check['ok'] else 'BROKEN: ' + check['summary']}, {check['count']} events."
    )
    met = eight["rate"] >= TARGET_PER_SECOND and check["ok"]
    verdict = "n/a (quick)" if quick else ("met" if met else "MISSED")
    table.notes.append(
        f"Target >= {TARGET_PER_SECOND:,} events/s with {WRITERS} writers: {verdict} "
        f"({eight['rate']:,.0f}/s)."
    )
    summary = [
        SummaryRow(
            "chain",
            f"access-log appends/s, {WRITERS} writer processes, PostgreSQL",
            f">= {TARGET_PER_SECOND:,}/s, chain verifies",
            f"{eight['rate']:,.0f}/s (1 writer: {rows[1]['rate']:,.0f}/s); "
            f"p99 append {eight['p99_ms']:.1f} ms; chain {'OK' if check['ok'] else 'BROKEN'}",
            verdict,
        )
    ]
    return PartResult([table], summary)


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer_main(int(sys.argv[2]), float(sys.argv[3]))
    elif sys.argv[1] == "verify":
        verify_main()
    else:
        raise SystemExit("usage: python -m bench.chain writer COUNT START | verify")
