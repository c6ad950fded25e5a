"""The load test: locust (headless) against gunicorn, 4 workers, on PostgreSQL and the S3 bucket.

Everything runs on 127.0.0.1 and is thrown away afterwards: a PostgreSQL server
(tests/postgres.py), a SeaweedFS S3 server (tests/seaweed.py), gunicorn with the production config
(config/gunicorn.py: gthread workers) and locust as a subprocess. Several signed-in members download
whole documents, read ranges of the largest one and upload new ones, for a fixed number of requests
(bounded in time too). Then a child process with the server's settings checks that every request
left exactly one access event, matched by the X-Request-ID each request sent, of the right action
and outcome, and that `audit_verify` passes.

`python -m bench load` runs the full plan; tests/test_load.py runs a small one.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    PYTHON,
    ROOT,
    SummaryRow,
    Table,
    bench_env,
    free_port,
    progress,
    random_file_write,
    size_label,
)

# What each kind of request must leave in the access log.
EXPECTED_EVENT = {
    "download": ("download", "allowed"),
    "range": ("range", "allowed"),
    "upload": ("upload", "allowed"),
    "refused": ("download", "denied"),
}


@dataclass(frozen=True)
class LoadPlan:
    """How much load: requests, concurrent users, gunicorn workers, sizes, and the time bound."""

    requests: int
    users: int
    workers: int = 4
    document_sizes: tuple[int, ...] = (10_000, 200_000, 2_000_000)
    upload_size: int = 100_000
    range_length: int = 64 * 1024
    time_limit: int = 300
    sessions: int = 4


FULL = LoadPlan(requests=3000, users=16)
QUICK = LoadPlan(requests=200, users=8, time_limit=120)
# What tests/test_load.py runs: a few hundred requests, well under a minute on this machine.
SMALL = LoadPlan(requests=300, users=8, time_limit=90)


@dataclass
class LoadResult:
    """What a run measured and what the check found."""

    plan: LoadPlan
    records: list[dict[str, Any]]
    seconds: float
    # What a later check needs: the server's environment, the records file, the run's id prefix.
    env: dict[str, str] = field(default_factory=dict, repr=False)
    records_path: Path | None = None
    run: str = ""
    events_checked: int = 0
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    verify_ok: bool = False
    verify_summary: str = ""

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Return the requests that did not get the expected answer."""
        return [record for record in self.records if record["error"]]

    @property
    def throughput(self) -> float:
        """Return completed requests per second over the measured span."""
        return len(self.records) / self.seconds if self.seconds > 0 else float("nan")

    def problems(self) -> list[str]:
        """Return every failed expectation in words; empty when the run is clean."""
        found = []
        if len(self.records) != self.plan.requests:
            found.append(f"{len(self.records)} requests completed of {self.plan.requests}")
        if self.errors:
            sample = "; ".join(f"{r['kind']} {r['id']}: {r['error']}" for r in self.errors[:5])
            found.append(f"{len(self.errors)} errors ({sample})")
        for name in ("missing", "duplicated", "wrong", "unexpected"):
            items = getattr(self, name)
            if items:
                found.append(f"{len(items)} {name} events ({', '.join(items[:5])})")
        if not self.verify_ok:
            found.append(f"audit_verify failed: {self.verify_summary}")
        return found


def percentile(values: list[float], point: float) -> float:
    """Return the `point` percentile (0-100) of the values, interpolated; NaN for none."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(point) - 1]


# Child processes with the server's settings ------------------------------------------------------


def fixtures_main(spec_path: str) -> None:
    """Migrate; create the company, members, sessions and documents; print what locust needs."""
    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user_model, login
    from django.core.files import File
    from django.core.management import call_command
    from django.http import HttpRequest

    from vault.documents import document_create
    from vault.models import Company, Membership

    spec = json.loads(Path(spec_path).read_text())
    call_command("migrate", interactive=False, verbosity=0)
    company = Company.objects.create(name="Load Co")
    sessions = []
    users = []
    for number in range(spec["sessions"]):
        user = get_user_model().objects.create_user(f"load-{number}", None, None)
        Membership.objects.create(user=user, company=company)
        users.append(user)
        # The real login() on a bare request, saved by the configured (hashed) session engine.
        request = HttpRequest()
        request.session = import_module(settings.SESSION_ENGINE).SessionStore()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session.save()
        sessions.append(
            {"name": settings.SESSION_COOKIE_NAME, "value": request.session.session_key}
        )
    documents = []
    for item in spec["documents"]:
        with open(item["path"], "rb") as plaintext:
            document = document_create(
                company=company,
                content=File(plaintext, name=f"load-{item['size']}.pdf"),
                uploaded_by=users[0],
                title=f"Load {size_label(item['size'])}",
            )
        documents.append({"id": str(document.pk), "size": item["size"]})
    # A document of another company: the members must be refused it (404, recorded as denied).
    other = Company.objects.create(name="Other Co")
    owner = get_user_model().objects.create_user("load-other", None, None)
    Membership.objects.create(user=owner, company=other)
    with open(spec["documents"][0]["path"], "rb") as plaintext:
        foreign = document_create(
            company=other,
            content=File(plaintext, name="other.pdf"),
            uploaded_by=owner,
            title="Not theirs",
        )
    print(
        json.dumps(
            {
                "company": company.pk,
                "sessions": sessions,
                "documents": documents,
                "foreign": str(foreign.pk),
            }
        )
    )


def check_main(records_path: str, run: str) -> None:
    """Print, as JSON, how the access log answers the requests made and whether it verifies."""
    import django

    django.setup()
    from django.core.management import CommandError, call_command
    from django.db.models import Count

    from compliance.models import AccessEvent

    records = [json.loads(line) for line in Path(records_path).read_text().splitlines() if line]
    events: dict[str, list[tuple[str, str]]] = {}
    rows = AccessEvent.objects.filter(request_id__startswith=f"{run}-").values_list(
        "request_id", "action", "outcome"
    )
    for request_id, action, outcome in rows.iterator():
        events.setdefault(request_id, []).append((action, outcome))
    missing, duplicated, wrong = [], [], []
    for record in records:
        found = events.get(record["id"], [])
        if not found:
            missing.append(record["id"])
        elif len(found) > 1:
            duplicated.append(record["id"])
        elif not record["error"] and found[0] != EXPECTED_EVENT[record["kind"]]:
            wrong.append(f"{record['id']}={found[0][0]}/{found[0][1]}")
    made = {record["id"] for record in records}
    # Setup requests (the upload form) record nothing; any other event of this run is unexplained.
    unexpected = sorted(request_id for request_id in events if request_id not in made)
    try:
        call_command("audit_verify", stdout=open(os.devnull, "w"))  # noqa: SIM115
        verify_ok, summary = True, "passed"
    except CommandError as exc:
        verify_ok, summary = False, str(exc)
    total = AccessEvent.objects.aggregate(count=Count("id"))["count"]
    print(
        json.dumps(
            {
                "checked": len(records),
                "missing": missing,
                "duplicated": duplicated,
                "wrong": wrong,
                "unexpected": unexpected,
                "verify_ok": verify_ok,
                "verify_summary": summary,
                "events_total": total,
            }
        )
    )


# The servers -------------------------------------------------------------------------------------


def _child(command: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, "-m", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def gunicorn_production(env: dict[str, str], workers: int, log_path: Path) -> Iterator[int]:
    """Run gunicorn with config/gunicorn.py (gthread) and `workers` workers; yield its port."""
    port = free_port()
    env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_ACCESS_LOG": str(log_path.with_suffix(".access.log")),
        "GUNICORN_LOG_LEVEL": "warning",
    }
    command = [PYTHON, "-m", "gunicorn", "--config", "config/gunicorn.py", "--no-control-socket"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log_path.read_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{port}/accounts/login/"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready in 60 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def load_env(folder: Path, database_url: str, s3: Any) -> dict[str, str]:
    """Return the server's environment: the bench settings on PostgreSQL and the bucket, plain HTTP."""
    env = bench_env(folder, "config.settings")
    env.update(
        DATABASE_URL=database_url,
        VAULT_INNER_STORAGE_BACKEND="storages.backends.s3.S3Storage",
        AWS_STORAGE_BUCKET_NAME=s3.bucket,
        AWS_S3_ENDPOINT_URL=s3.endpoint_url,
        AWS_S3_REGION_NAME=s3.region,
        AWS_ACCESS_KEY_ID=s3.access_key,
        AWS_SECRET_ACCESS_KEY=s3.secret_key,
        # Loopback HTTP: cookies without the Secure flag, or the client would never send them back.
        DJANGO_SECURE_COOKIES="0",
    )
    return env


def load_check(result: LoadResult, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return what the access log says of `records` (default: the run's own), in a child process."""
    path = result.records_path
    if path is None:
        raise ValueError("the run has no records file")
    if records is not None:
        path = path.with_name("records-checked.jsonl")
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return _child(["bench.load", "check", str(path), result.run], result.env, 300)


def load_run(plan: LoadPlan, folder: Path, postgres: Any, s3: Any) -> LoadResult:
    """Run gunicorn on the given servers, then locust; check the access log; return it all."""
    run = f"load-{uuid.uuid4().hex[:8]}"
    inputs = []
    for size in plan.document_sizes:
        path = folder / f"plain-{size}.bin"
        random_file_write(path, size)
        inputs.append({"size": size, "path": str(path)})
    upload_path = folder / "upload.bin"
    random_file_write(upload_path, plan.upload_size)

    progress("load: migrating and creating the fixtures")
    env = load_env(folder, postgres.database_create(run.replace("-", "_")), s3)
    spec_path = folder / "fixtures.json"
    spec_path.write_text(json.dumps({"sessions": plan.sessions, "documents": inputs}))
    fixtures = _child(["bench.load", "fixtures", str(spec_path)], env, 300)
    records_path = folder / "records.jsonl"
    locust_spec = folder / "locust.json"
    locust_spec.write_text(
        json.dumps(
            {
                **fixtures,
                "run": run,
                "requests": plan.requests,
                "range_length": plan.range_length,
                "upload_path": str(upload_path),
                "records_path": str(records_path),
            }
        )
    )
    with gunicorn_production(env, plan.workers, folder / "gunicorn.log") as port:
        progress(
            f"load: {plan.requests} requests by {plan.users} users, "
            f"gunicorn {plan.workers} workers on 127.0.0.1:{port}"
        )
        command = [
            PYTHON,
            "-m",
            "locust",
            "--headless",
            "--locustfile",
            str(ROOT / "bench" / "load_users.py"),
            "--host",
            f"http://127.0.0.1:{port}",
            "--users",
            str(plan.users),
            "--spawn-rate",
            str(plan.users),
            "--run-time",
            f"{plan.time_limit}s",
            "--stop-timeout",
            "30",
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--exit-code-on-error",
            "0",
        ]
        started = time.time()
        done = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, "LOAD_SPEC": str(locust_spec), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=plan.time_limit + 90,
            check=False,
        )
        if done.returncode != 0 or not records_path.exists():
            raise RuntimeError(f"locust failed ({done.returncode}):\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in records_path.read_text().splitlines() if line]
    # The span from the first request's start to the last response.
    first = min((r["end"] - r["ms"] / 1000 for r in records), default=started)
    last = max((r["end"] for r in records), default=started)
    result = LoadResult(plan, records, max(last - first, 1e-9), env, records_path, run)
    progress(f"load: {len(records)} requests in {result.seconds:.1f} s; checking the log")
    check = load_check(result)
    result.events_checked = check["checked"]
    result.missing = check["missing"]
    result.duplicated = check["duplicated"]
    result.wrong = check["wrong"]
    result.unexpected = check["unexpected"]
    result.verify_ok = check["verify_ok"]
    result.verify_summary = check["verify_summary"]
    return result


# The tables --------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"


def tables(result: LoadResult, quick: bool) -> tuple[list[Table], list[SummaryRow]]:
    """Return the load test's tables and its summary rows."""
    suffix = " (QUICK smoke run, not for quoting)" if quick else ""
    plan = result.plan
    latency = Table(
        f"Load test: {plan.requests} requests, {plan.users} concurrent users, gunicorn "
        f"{plan.workers} gthread workers, PostgreSQL + SeaweedFS S3, 127.0.0.1" + suffix,
        ["kind", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"],
    )
    kinds = ("download", "range", "upload", "refused")
    for kind in (*kinds, "all"):
        chosen = [r for r in result.records if kind in ("all", r["kind"])]
        times = sorted(r["ms"] for r in chosen)
        latency.rows.append(
            [
                kind,
                str(len(chosen)),
                str(sum(1 for r in chosen if r["error"])),
                f"{len(chosen) / result.seconds:.1f}",
                _ms(percentile(times, 50)),
                _ms(percentile(times, 90)),
                _ms(percentile(times, 99)),
                _ms(times[-1] if times else float("nan")),
            ]
        )
    sizes = ", ".join(size_label(size) for size in plan.document_sizes)
    latency.notes.append(
        f"Each user (session of one of {plan.sessions} members) loops without pause over: download "
        f"a whole document ({sizes}; weight 5), read a {plan.range_length // 1024} KiB range of the "
        f"largest (weight 3), upload a {size_label(plan.upload_size)} file (weight 2), ask for another "
        "company's document (weight 1: 404, recorded as denied). Latency is "
        "request sent to last body byte as the client saw it; req/s over the span from the first "
        "request to the last response. All processes share the machine's cores with the client."
    )
    problems = result.problems()
    events = Table(
        "Load test: one access event per request, and the chain" + suffix,
        [
            "requests checked",
            "missing",
            "duplicated",
            "wrong action",
            "unexplained",
            "audit_verify",
        ],
        [
            [
                str(result.events_checked),
                str(len(result.missing)),
                str(len(result.duplicated)),
                str(len(result.wrong)),
                str(len(result.unexpected)),
                "passed" if result.verify_ok else f"FAILED: {result.verify_summary}",
            ]
        ],
    )
    verdict = "met" if not problems else "MISSED"
    events.notes.append(
        "Matched by the X-Request-ID each request sent (vault.access.request_id_get keeps it). "
        f"Target 0 errors, 0 missing or duplicate events: {verdict}"
        + (f" ({'; '.join(problems)})" if problems else "")
        + "."
    )
    all_times = sorted(r["ms"] for r in result.records)
    summary = [
        SummaryRow(
            "load",
            f"{plan.requests} requests, {plan.users} users, 4 workers, PostgreSQL + S3",
            "0 errors, 0 missing/duplicate events, audit_verify passes",
            f"{len(result.errors)} errors, {len(result.missing)} missing, "
            f"{len(result.duplicated)} duplicate; {result.throughput:.0f} req/s, "
            f"p50 {_ms(percentile(all_times, 50))} ms, p99 {_ms(percentile(all_times, 99))} ms",
            verdict,
        )
    ]
    return [latency, events], summary


def run(quick: bool) -> tuple[list[Table], list[SummaryRow]]:
    """Run the load test (QUICK when asked) and return its tables and summary rows."""
    plan = QUICK if quick else FULL
    from tests.postgres import postgres_start
    from tests.seaweed import seaweed_start

    with (
        tempfile.TemporaryDirectory(prefix="docvault-bench-load-") as folder,
        postgres_start() as postgres,
        seaweed_start() as s3,
    ):
        result = load_run(plan, Path(folder), postgres, s3)
    return tables(result, quick)


if __name__ == "__main__":
    if sys.argv[1] == "fixtures":
        fixtures_main(sys.argv[2])
    elif sys.argv[1] == "check":
        check_main(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python -m bench.load fixtures SPEC | check RECORDS RUN")
