"""The access-log browser on a big log: filtered, sorted pages through Django's test client.

A child process (`python -m bench.dashboard child FOLDER EVENTS`) builds, once, a SQLite database
of EVENTS access events (1,000,000; quick: 100,000) in bench/out/ (kept between runs): 20
companies, 200 members, 2,000 documents, a year of events with valid chain hashes computed by
compliance.access_log's own functions and inserted with plain SQL in large transactions (a bench
fast path: the recorder appends one event per transaction). Then, as an officer, it renders
access-log pages (filters, sorts, deep pages), the overview and a filtered CSV export through the
test client, interleaved over several repetitions, and prints the medians as JSON.
"""

import json
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from .common import ROOT, PartResult, SummaryRow, Table, bench_env, child_json, progress

TARGET_MS = 300.0
CHILD_TIMEOUT = 3600
FORMAT = "dashboard-bench-v1"
COMPANIES = 20
MEMBERS_PER_COMPANY = 10
DOCUMENTS_PER_COMPANY = 100
# (action, weight): mostly reads, as in use.
ACTIONS = [
    ("download", 70),
    ("view", 10),
    ("range", 6),
    ("upload", 6),
    ("share", 3),
    ("unshare", 1),
    ("delete", 1),
    ("login", 3),
]
OUTCOMES = [("allowed", 95), ("denied", 4), ("failed", 1)]
OLD_KEY_ID = "00c0ffee00c0ffee"  # a retired key some old documents still name


def _weighted(rng: random.Random, pairs: list[tuple[str, int]], count: int) -> list[str]:
    names, weights = zip(*pairs, strict=True)
    return rng.choices(names, weights=weights, k=count)


def build(events: int) -> None:
    """Create the companies, users, documents and `events` chained access events."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, transaction

    from compliance import access_log
    from compliance.models import GENESIS_HASH, AccessEvent
    from vault.keys import keyring
    from vault.models import Company, Document, Membership

    rng = random.Random(20261129)
    user_model = get_user_model()
    companies = Company.objects.bulk_create(
        Company(name=f"Company {number:02d}") for number in range(COMPANIES)
    )
    members = user_model.objects.bulk_create(
        user_model(username=f"user{number:04d}")
        for number in range(COMPANIES * MEMBERS_PER_COMPANY)
    )
    Membership.objects.bulk_create(
        Membership(user=user, company=companies[number // MEMBERS_PER_COMPANY])
        for number, user in enumerate(members)
    )
    officer = user_model.objects.create_user("officer", is_staff=True)
    officer.groups.add(Group.objects.get(name="Compliance officers"))
    ring = keyring()
    key_id = ring.primary.key_id_hex
    documents = Document.objects.bulk_create(
        Document(
            company=companies[number // DOCUMENTS_PER_COMPANY],
            title=f"Document {number:05d}",
            original_filename=f"document-{number:05d}.pdf",
            uploaded_by=members[number // DOCUMENTS_PER_COMPANY * MEMBERS_PER_COMPANY],
            size=rng.randrange(10_000, 5_000_000),
            mime_type="application/pdf",
            key_id=OLD_KEY_ID if number % 10 == 0 else key_id,
            file=f"documents/bench/{uuid.UUID(int=number).hex}",
        )
        for number in range(COMPANIES * DOCUMENTS_PER_COMPANY)
    )
    chain_key = access_log.chain_keys(ring)[key_id]
    ips = [
        f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(500)
    ]
    actions = _weighted(rng, ACTIONS, events)
    outcomes = _weighted(rng, OUTCOMES, events)

    fields = [f for f in AccessEvent._meta.concrete_fields if not f.primary_key]
    table = connection.ops.quote_name(AccessEvent._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608
    from django.utils import timezone

    start = timezone.now() - timedelta(days=365)
    step = timedelta(days=365) / events
    prev_hash = GENESIS_HASH
    batch: list[list[Any]] = []
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous=OFF")
    for number in range(events):
        seq = number + 1
        staff = rng.random() < 0.01
        actor = officer if staff else members[rng.randrange(len(members))]
        document = documents[rng.randrange(len(documents))]
        outcome = outcomes[number]
        values: dict[str, Any] = {
            "seq": seq,
            "prev_hash": prev_hash,
            "chain_key_id": key_id,
            "when": start + step * number,
            "actor_id": actor.pk,
            "actor_username": actor.username,
            "action": actions[number],
            "document_id": document.pk,
            "document_title": document.title,
            "stored_name": document.file.name,
            "outcome": outcome,
            "reason": "not a reader" if outcome == "denied" else "",
            "staff_read": staff,
            "client_ip": ips[rng.randrange(len(ips))],
            "user_agent": "Mozilla/5.0 (bench)",
            "key_id": document.key_id,
            "bytes_served": document.size if actions[number] == "download" else None,
            "duration_ms": round(rng.uniform(1, 40), 3),
            "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        }
        values["hash"] = prev_hash = access_log.event_hash_compute(values, chain_key)
        row = dict(values)
        row["when"] = values["when"].strftime("%Y-%m-%d %H:%M:%S.%f")
        row["document_id"] = document.pk.hex
        batch.append([row[field.attname] for field in fields])
        if len(batch) == 50_000 or seq == events:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(insert, batch)
            batch.clear()
            progress(f"dashboard: {seq:,} of {events:,} events written")
    # The chain as written verifies like any other (spot check: the last event's own hash).
    last = AccessEvent.objects.order_by("-seq").values(*access_log.HASHED_FIELDS, "hash").first()
    assert last is not None and access_log.event_hash_compute(last, chain_key) == last["hash"]


def scenarios(events: int) -> list[tuple[str, str]]:
    """Return (label, URL) of the pages measured."""
    from compliance.models import AccessEvent
    from vault.models import Company, Document

    company = Company.objects.order_by("name")[7]
    ip = AccessEvent.objects.order_by("seq").values_list("client_ip", flat=True)[500]
    document = Document.objects.order_by("title")[1234]
    year_ago = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 200 * 86400))
    month_end = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 170 * 86400))
    log = "/compliance/access-log/"
    return [
        ("newest first, page 1", log),
        ("refusals, newest first", f"{log}?outcome=denied"),
        ("one actor, by action", f"{log}?actor=user0042&sort=action"),
        ("one company, newest first", f"{log}?company={company.pk}"),
        ("one document", f"{log}?document={document.pk}"),
        (
            "downloads allowed, by actor, page 20",
            f"{log}?action=download&outcome=allowed&sort=actor&page=20",
        ),
        ("staff reads only", f"{log}?staff=only"),
        ("one IP, oldest first", f"{log}?ip={ip}&sort=when"),
        ("retired key ID", f"{log}?key={OLD_KEY_ID}&sort=-outcome"),
        (
            "one month, by outcome",
            f"{log}?when_after={year_ago}&when_before={month_end}&sort=-outcome",
        ),
        ("failures, by actor desc", f"{log}?outcome=failed&sort=-actor"),
        ("page 1000, newest first", f"{log}?page=1000"),
        ("overview (30 days, chart separately)", "/compliance/"),
        ("activity chart (SVG)", "/compliance/activity.svg"),
    ]


def child_main(folder: str, events: int) -> None:
    """Build the log if needed, measure every page and print the medians as JSON."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from compliance.models import AccessEvent

    marker = Path(folder) / "built.json"
    call_command("migrate", interactive=False, verbosity=0)
    built = json.loads(marker.read_text()) if marker.exists() else {}
    if built != {"format": FORMAT, "events": events}:
        progress(f"dashboard: building a log of {events:,} events (once; kept in {folder})")
        started = time.perf_counter()
        build(events)
        marker.write_text(json.dumps({"format": FORMAT, "events": events}))
        progress(f"dashboard: built in {time.perf_counter() - started:.0f} s")
    total = AccessEvent.objects.count()
    from django.contrib.auth import get_user_model

    client = Client(SERVER_NAME="localhost")
    client.force_login(get_user_model().objects.get(username="officer"))
    pages = scenarios(events)
    samples: dict[str, list[float]] = {label: [] for label, _ in pages}
    rows: dict[str, int] = {}
    repetitions = 7
    for repetition in range(repetitions + 1):
        for label, url in pages:
            started = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}")
            if repetition:  # the first round warms caches and the connection
                samples[label].append(elapsed)
            if url.startswith("/compliance/access-log/"):
                rows[label] = response.content.count(b"<tr data-seq=")
    # A filtered export, streamed to the end (recorded like any export).
    started = time.perf_counter()
    response = client.get("/compliance/access-log/export.csv?outcome=failed")
    exported = sum(chunk.count(b"\n") for chunk in response.streaming_content) - 1
    export_ms = (time.perf_counter() - started) * 1000
    print(
        json.dumps(
            {
                "events": total,
                "pages": [
                    {
                        "label": label,
                        "url": url,
                        "median_ms": statistics.median(samples[label]),
                        "max_ms": max(samples[label]),
                        "rows": rows.get(label),
                    }
                    for label, url in pages
                ],
                "repetitions": repetitions,
                "export_rows": exported,
                "export_ms": export_ms,
            }
        )
    )


def run(quick: bool) -> PartResult:
    """Measure access-log pages on a 1,000,000-event log (quick: 100,000); return table and summary."""
    events = 100_000 if quick else 1_000_000
    folder = ROOT / "bench" / "out" / f"dashboard-{events}"
    folder.mkdir(parents=True, exist_ok=True)
    env = bench_env(folder, "config.settings")
    progress(f"dashboard: measuring pages on a {events:,}-event log")
    result = child_json(
        "dashboard",
        ["child", str(folder), str(events)],
        env,
        timeout=CHILD_TIMEOUT,
        capture_stderr=False,
    )
    table = Table(
        f"Access-log pages on a {result['events']:,}-event log (Django test client, SQLite)"
        + (" (QUICK smoke run, not for quoting)" if quick else ""),
        ["page", "rows", "median ms", "max ms", "median / 300 ms", "verdict"],
    )
    worst = 0.0
    for page in result["pages"]:
        is_log = page["url"].startswith("/compliance/access-log/")
        if is_log:
            worst = max(worst, page["median_ms"])
        table.rows.append(
            [
                page["label"],
                "" if page["rows"] is None else str(page["rows"]),
                f"{page['median_ms']:.1f}",
                f"{page['max_ms']:.1f}",
                f"{page['median_ms'] / TARGET_MS:.2f}",
                ("met" if page["median_ms"] < TARGET_MS else "MISSED") if is_log else "(info)",
            ]
        )
    table.notes.append(
        f"Median of {result['repetitions']} interleaved rounds after a warm-up round; full "
        "request through middleware, session, filter, table and template; 50 rows a page "
        "(LazyPaginator: no COUNT). Target: every access-log page under "
        f"{TARGET_MS:.0f} ms: {'MET' if worst < TARGET_MS else 'MISSED'} (worst median "
        f"{worst:.1f} ms)."
    )
    table.notes.append(
        f"CSV export of the failures ({result['export_rows']:,} rows), streamed to the end: "
        f"{result['export_ms']:.0f} ms."
    )
    summary = SummaryRow(
        "dashboard",
        f"access-log pages (filters, sorts, deep pages), {result['events']:,} events, worst median",
        f"< {TARGET_MS:.0f} ms",
        f"{worst:.1f} ms",
        "n/a (quick)" if quick else ("met" if worst < TARGET_MS else "MISSED"),
    )
    return PartResult([table], [summary])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        child_main(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit("usage: python -m bench.dashboard child FOLDER EVENTS")
