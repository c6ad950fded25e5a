"""Download latency, first byte and worker memory over HTTP: the vault's view against two baselines.

gunicorn (2 sync workers, 127.0.0.1, free ports) serves the product's URLs plus bench-only
baselines (bench.settings, bench.urls). A bounded, sequential raw-socket client fetches, per size,
the same plaintext five ways, interleaved in every repetition:

- plain: `FileResponse` of the plaintext file, no login (sendfile);
- plain+login: the same behind `login_required`: the floor the targets are judged against (issue
  9: "against plain behind the same login");
- ours: `/documents/<uuid>/download/` as a member of the document's company (session, permission
  query, chained access-log insert, decryption, MIME sniff, streamed response);
- ours, read-ahead on / ours, no read-ahead (diagnostic): ours on a server where the download
  view's read-ahead thread is turned the other way from its default (BENCH_READ_AHEAD_FLIP, read
  by bench/urls.py; the default is VAULT_READ_AHEAD's, which the fixtures report), to show what
  the thread buys;
  (runs before 2026-11-29 had "ours, glibc default" here: config.wsgi's malloc tuning off);
- case study: its view (PBKDF2 per request, whole-file Fernet decrypt, libmagic over it all), on a
  server of its own so that its huge buffers leave the other workers' allocator state alone.

Latency is connect to last body byte; first byte is connect to the first body byte; worker CPU
and page faults come from /proc between requests. Worker memory is the growth of the serving
worker's VmHWM (reset to its RSS just before) over one download of the large file, after warm-up.
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    MIB,
    PYTHON,
    ROOT,
    PartResult,
    SummaryRow,
    Table,
    bench_env,
    children_pids,
    cpu_seconds,
    free_port,
    median,
    minor_faults,
    peak_reset,
    proc_status,
    process_state,
    progress,
    random_file_write,
    ratio_text,
    rotated,
    size_label,
    spread,
)

# The diagnostic server runs the download view's read-ahead thread the other way from the product's
# default (VAULT_READ_AHEAD, vault/downloads.py); its column is named once that default is known.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
OURS_KEPT = "ours, read-ahead flipped"
VARIANTS = ("plain", "plain+login", "ours", OURS_KEPT, "case study")
# Three servers, so that no variant changes the allocator state of another's workers: the case
# study's whole-file buffers raise glibc's trim and mmap thresholds in the worker that served them,
# which would spare later downloads there the page faults a worker serving only ours pays.
SERVER_GROUPS: dict[str, dict[str, str]] = {
    "main": {},
    # bench/urls.py turns the download view's read-ahead thread the other way in this server.
    "kept": {"BENCH_READ_AHEAD_FLIP": "1"},
    "case": {},
}
VARIANT_GROUP = {
    "plain": "main",
    "plain+login": "main",
    "ours": "main",
    OURS_KEPT: "kept",
    "case study": "case",
}
PAIRS = {
    "ours": ("ours", "plain"),
    "case study": ("case study", "plain"),
    "ours/login": ("ours", "plain+login"),
    "kept": (OURS_KEPT, "plain"),
}
TARGET_RATIO = {10_000: 1.3, 1_000_000: 1.2, 10_000_000: 1.2, 100_000_000: 1.1}
TARGET_FIRST_BYTE_MS = 10.0
TARGET_MEMORY_MIB = 32
SOCKET_TIMEOUT = 120.0
READY_ATTEMPTS = 15  # minutes: other engineers may still be writing the download view
RECEIVE_BUFFER = bytearray(MIB)


@dataclass(frozen=True)
class Plan:
    """Sizes, repetitions and budgets of one run."""

    sizes: tuple[int, ...]
    reps: dict[int, int]
    memory_size: int
    budget_per_size: float
    ready_attempts: int


FULL = Plan(
    sizes=(10_000, 1_000_000, 10_000_000, 100_000_000),
    reps={10_000: 120, 1_000_000: 80, 10_000_000: 40, 100_000_000: 15},
    memory_size=1_000_000_000,
    budget_per_size=120.0,
    ready_attempts=READY_ATTEMPTS,
)
QUICK = Plan(
    sizes=(10_000, 1_000_000, 10_000_000),
    reps={10_000: 8, 1_000_000: 6, 10_000_000: 3},
    memory_size=50_000_000,
    budget_per_size=20.0,
    ready_attempts=1,
)


@dataclass(frozen=True)
class Fetch:
    """One response as the client saw it."""

    status: int
    length: int
    first_byte: float
    total: float
    sha256: str = ""


def fetch(port: int, path: str, cookie: str, check: bool = False) -> Fetch:
    """GET `path` over a new connection; time the first and last body bytes (hash them if asked)."""
    cookie_line = f"Cookie: {cookie}\r\n" if cookie else ""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie_line}"
        "User-Agent: docvault-bench\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    digest = hashlib.sha256() if check else None
    buffer = RECEIVE_BUFFER
    view = memoryview(buffer)
    started = time.perf_counter()
    deadline = time.monotonic() + SOCKET_TIMEOUT
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(request)
        head = bytearray()
        while True:
            # At most 64 KiB while looking for the headers: what follows is body.
            got = sock.recv_into(buffer, 65536)
            if not got:
                raise ConnectionError(f"{path}: connection closed inside the headers")
            head += view[:got]
            if (end := head.find(b"\r\n\r\n")) >= 0:
                break
            if len(head) > 65536 or time.monotonic() > deadline:
                raise ConnectionError(f"{path}: no end of headers")
        now = time.perf_counter()
        lines = bytes(head[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = int(headers["content-length"]) if "content-length" in headers else None
        body = head[end + 4 :]
        received = len(body)
        first_byte = now - started if received else None
        if digest is not None:
            digest.update(body)
        while expected is None or received < expected:
            got = sock.recv_into(buffer)
            if not got:
                break
            if first_byte is None:
                first_byte = time.perf_counter() - started
            received += got
            if digest is not None:
                digest.update(view[:got])
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: slower than {SOCKET_TIMEOUT:.0f} s")
        total = time.perf_counter() - started
    return Fetch(
        status,
        received,
        first_byte if first_byte is not None else total,
        total,
        digest.hexdigest() if digest is not None else "",
    )


# Fixtures, in a child process with the server's environment -------------------------------------


def fixtures_main(spec_path: str) -> None:
    """Create the member, session and documents the spec names; print what the client needs."""
    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user_model, login
    from django.core.files import File
    from django.core.management import call_command
    from django.http import HttpRequest

    from bench.baseline_views import encrypt_file, get_fernet_key
    from vault import downloads
    from vault.models import Company, Document, Membership

    spec = json.loads(Path(spec_path).read_text())
    call_command("migrate", interactive=False, verbosity=0)
    company = Company.objects.create(name="Bench Co")
    user = get_user_model().objects.create_user("bench-member", "member@example.com", None)
    Membership.objects.create(user=user, company=company)
    # The real login() on a bare request, its session saved to the database like any other.
    request = HttpRequest()
    # The configured engine (hashed keys): the cookie carries the raw key, the row its hash.
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.save()
    cookie = f"{settings.SESSION_COOKIE_NAME}={request.session.session_key}"

    fernet_key = get_fernet_key(settings.ENCRYPTION_SECRET)
    case_folder = Path(settings.MEDIA_ROOT) / "casestudy"
    case_folder.mkdir(exist_ok=True)
    files = {}
    for item in spec["files"]:
        plain_path = Path(spec["plain_root"]) / item["plain"]
        document = Document(
            company=company,
            title=f"Bench {item['label']}",
            original_filename=f"report-{item['label'].replace(' ', '')}.pdf",
            uploaded_by=user,
        )
        # The real path: the file bound to its document, its metadata read from what was written.
        with plain_path.open("rb") as plaintext:
            document.file.save("upload", File(plaintext))
        case_name = None
        if item["case_study"]:
            case_name = f"casestudy/{item['plain']}.fernet"
            (case_folder / f"{item['plain']}.fernet").write_bytes(
                encrypt_file(plain_path.read_bytes(), fernet_key)
            )
        files[str(item["size"])] = {"ours": str(document.pk), "case": case_name}
    # From how many bytes the download view reads ahead by default here (0: never); the
    # diagnostic column runs the other way.
    enabled = getattr(downloads, "read_ahead_enabled", lambda: False)()
    read_ahead = downloads.READ_AHEAD_MIN_BYTES if enabled else 0
    print(json.dumps({"cookie": cookie, "files": files, "read_ahead": read_ahead}))


# The servers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running gunicorn: its port and master process id."""

    port: int
    pid: int

    def workers(self) -> list[int]:
        """Return the worker process ids."""
        return children_pids(self.pid)


def settle(workers: list[int], limit: float = 0.5) -> tuple[float, int]:
    """Wait (at most `limit` s) until every worker sleeps; return their CPU seconds and page faults.

    A worker finishes a request after the client has its last byte (closing the response and
    the database connection): waiting for it charges that work to the right request.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(process_state(pid) in ("S", "?") for pid in workers):
            break
        time.sleep(0.0002)
    return sum(cpu_seconds(pid) for pid in workers), sum(minor_faults(pid) for pid in workers)


@contextmanager
def gunicorn_serving(env: dict[str, str], log_path: Path, probe: str) -> Iterator[Server]:
    """Run gunicorn (2 sync workers) on a free loopback port until the block ends."""
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "gunicorn",
        "--workers=2",
        "--worker-class=sync",
        f"--bind=127.0.0.1:{port}",
        "--timeout=300",
        "--no-control-socket",
        "--log-level=warning",
        f"--chdir={ROOT}",
        "config.wsgi:application",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        server = Server(port, process.pid)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log_path.read_text()[-3000:]}")
            try:
                if fetch(port, probe, "").status == 200 and len(server.workers()) == 2:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready in 60 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# Measuring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryProbe:
    """One large download with the workers' peak resident set reset before it."""

    variant: str
    size: int
    growth_mib: float
    rss_before_mib: float
    seconds: float
    reset: bool
    verified: bool


def memory_probe(
    server: Server, variant: str, size: int, get: Callable[[], Fetch], sha256: str
) -> MemoryProbe:
    """Download once and return the largest VmHWM growth among the workers (the serving one)."""
    workers = server.workers()
    reset = all([peak_reset(pid) for pid in workers])
    before = {pid: proc_status(pid) for pid in workers}
    result = get()
    after = {pid: proc_status(pid) for pid in workers if pid in server.workers()}
    if result.status != 200 or result.length != size:
        raise RuntimeError(
            f"{variant} {size_label(size)}: status {result.status}, {result.length} B"
        )
    serving = max(after, key=lambda pid: after[pid]["VmHWM"] - before[pid]["VmHWM"])
    return MemoryProbe(
        variant,
        size,
        (after[serving]["VmHWM"] - before[serving]["VmHWM"]) / 1024,
        before[serving]["VmRSS"] / 1024,
        result.total,
        reset,
        result.sha256 == sha256,
    )


def _status(port: int, path: str, cookie: str) -> int:
    """Return the status of one GET, or 0 if the server did not answer."""
    try:
        return fetch(port, path, cookie).status
    except OSError:
        return 0


@dataclass(frozen=True)
class Setup:
    """What the client needs: URLs per variant and size, the session cookie, the digests."""

    fixtures: dict[str, Any]
    cookie: str
    digests: dict[int, str]

    def url(self, variant: str, size: int) -> str:
        """Return the path that serves this size in this variant."""
        entry = self.fixtures["files"][str(size)]
        if variant == "plain":
            return f"/bench/plain/plain-{size}.bin"
        if variant == "plain+login":
            return f"/bench/plain-login/plain-{size}.bin"
        if variant in ("ours", OURS_KEPT):
            return f"/documents/{entry['ours']}/download/"
        return f"/bench/case-study/{entry['case']}"


def run(quick: bool) -> PartResult:
    """Measure download latency, first byte, worker CPU and worker memory; return their tables."""
    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="docvault-bench-http-") as folder:
        tmp = Path(folder)
        plain_root = tmp / "plain"
        plain_root.mkdir()
        env = bench_env(tmp, "bench.settings")
        env["BENCH_PLAIN_ROOT"] = str(plain_root)
        digests: dict[int, str] = {}
        items = []
        for size in (*plan.sizes, plan.memory_size):
            progress(f"http: writing {size_label(size)} of random plaintext")
            name = f"plain-{size}.bin"
            digests[size] = random_file_write(plain_root / name, size)
            items.append(
                {
                    "size": size,
                    "label": size_label(size),
                    "plain": name,
                    "case_study": size in plan.sizes,
                }
            )
        spec_path = tmp / "spec.json"
        spec_path.write_text(json.dumps({"plain_root": str(plain_root), "files": items}))
        progress("http: creating the member, session and documents through the real storage")
        done = subprocess.run(
            [PYTHON, "-m", "bench.downloads", "fixtures", str(spec_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"http fixtures failed:\n{done.stderr[-3000:]}")
        fixtures = json.loads(done.stdout.strip().splitlines()[-1])
        setup = Setup(fixtures, fixtures["cookie"], digests)

        probe = setup.url("plain", plan.sizes[0])
        for attempt in range(plan.ready_attempts):
            with ExitStack() as stack:
                servers = {
                    group: stack.enter_context(
                        gunicorn_serving({**env, **extra}, tmp / f"gunicorn-{group}.log", probe)
                    )
                    for group, extra in SERVER_GROUPS.items()
                }
                main = servers["main"]
                status = _status(main.port, setup.url("ours", plan.sizes[0]), setup.cookie)
                if status == 200 or attempt == plan.ready_attempts - 1:
                    return _measure(servers, plan, setup, status)
            progress(f"http: the download view answers {status}; retrying in 60 s")
            time.sleep(60)
    raise AssertionError("unreachable")


def _measure(servers: dict[str, Server], plan: Plan, setup: Setup, ours_status: int) -> PartResult:
    """Verify, warm up, probe memory, then time every size with the variants interleaved."""
    ours_ready = ours_status == 200
    variants = [v for v in VARIANTS if ours_ready or v not in ("ours", OURS_KEPT)]
    cookie = setup.cookie

    def get(variant: str, size: int, check: bool = False) -> Fetch:
        server = servers[VARIANT_GROUP[variant]]
        return fetch(server.port, setup.url(variant, size), cookie, check=check)

    progress("http: verifying every download and warming the workers up")
    for size in plan.sizes:
        for variant in variants:
            result = get(variant, size, check=True)
            if result.status != 200 or result.sha256 != setup.digests[size]:
                raise RuntimeError(
                    f"{variant} {size_label(size)}: status {result.status}, wrong or short body"
                )
    for _ in range(6):
        for variant in variants:
            get(variant, plan.sizes[0])

    probes: list[MemoryProbe] = []
    for variant in ("ours", "plain"):
        if variant in variants:
            progress(
                f"http: worker memory over one {size_label(plan.memory_size)} {variant} download"
            )
            probes.append(
                memory_probe(
                    servers[VARIANT_GROUP[variant]],
                    variant,
                    plan.memory_size,
                    lambda v=variant: get(v, plan.memory_size, check=True),
                    setup.digests[plan.memory_size],
                )
            )

    totals: dict[tuple[str, int], list[float]] = {}
    firsts: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    faults: dict[tuple[str, int], list[float]] = {}
    # Per repetition, each variant over its baseline measured in the same round: paired ratios
    # drift less with the machine's load than a ratio of medians.
    paired: dict[tuple[str, int], list[float]] = {}
    failures: dict[str, int] = dict.fromkeys(variants, 0)
    workers = {group: server.workers() for group, server in servers.items()}
    every_worker = [pid for pids in workers.values() for pid in pids]
    for size in plan.sizes:
        reps = plan.reps[size]
        progress(f"http: {size_label(size)}, {reps} interleaved repetitions of {len(variants)}")
        deadline = time.monotonic() + plan.budget_per_size
        for rep in range(reps):
            if rep >= 3 and time.monotonic() > deadline:
                progress(f"http: {size_label(size)}: time budget spent after {rep} repetitions")
                break
            round_totals: dict[str, float] = {}
            for variant in rotated(variants, rep):
                cpu_before, faults_before = settle(every_worker)
                result = get(variant, size)
                cpu_after, faults_after = settle(every_worker)
                if result.status != 200 or result.length != size:
                    failures[variant] += 1
                    continue
                round_totals[variant] = result.total
                totals.setdefault((variant, size), []).append(result.total * 1000)
                firsts.setdefault((variant, size), []).append(result.first_byte * 1000)
                cpus.setdefault((variant, size), []).append((cpu_after - cpu_before) * 1000)
                faults.setdefault((variant, size), []).append(faults_after - faults_before)
            for key, (variant, baseline) in PAIRS.items():
                if variant in round_totals and baseline in round_totals:
                    paired.setdefault((key, size), []).append(
                        round_totals[variant] / round_totals[baseline]
                    )
        if {group: server.workers() for group, server in servers.items()} != workers:
            raise RuntimeError("a gunicorn worker was replaced during the measurement")

    largest = max(plan.sizes)
    progress(f"http: worker memory over one {size_label(largest)} case-study download")
    probes.append(
        memory_probe(
            servers["case"],
            "case study",
            largest,
            lambda: get("case study", largest, check=True),
            setup.digests[largest],
        )
    )
    return _tables(
        plan,
        totals,
        firsts,
        cpus,
        faults,
        paired,
        failures,
        probes,
        ours_ready,
        ours_status,
        int(setup.fixtures.get("read_ahead") or 0),
    )


def _tables(
    plan: Plan,
    totals: dict[tuple[str, int], list[float]],
    firsts: dict[tuple[str, int], list[float]],
    cpus: dict[tuple[str, int], list[float]],
    faults: dict[tuple[str, int], list[float]],
    paired: dict[tuple[str, int], list[float]],
    failures: dict[str, int],
    probes: list[MemoryProbe],
    ours_ready: bool,
    ours_status: int,
    read_ahead: int,
) -> PartResult:
    """Return the latency, first-byte, CPU and memory tables with their verdicts, and the summary."""
    quick = plan is QUICK
    suffix = " (QUICK smoke run, not for quoting)" if quick else ""
    kept = "ours, no read-ahead" if read_ahead else "ours, read-ahead on"
    names = [kept if variant == OURS_KEPT else variant for variant in VARIANTS]

    def med(samples: dict[tuple[str, int], list[float]], variant: str, size: int) -> float:
        return median(samples.get((variant, size), []))

    latency = Table(
        "HTTP download latency, median ms (gunicorn, 2 sync workers, 127.0.0.1)" + suffix,
        [
            "size",
            *[f"{name} ms" for name in names],
            "ours/plain+login",
            "ours/plain",
            "case study/plain",
            f"{kept}/plain",
            "target ours/plain+login",
            "verdict",
            "reps",
            "ours spread",
        ],
    )
    first_byte = Table(
        "HTTP first body byte, median ms" + suffix,
        ["size", *[f"{name} ms" for name in names], "target ours", "verdict"],
    )
    cpu = Table(
        "HTTP worker CPU per request, median ms (diagnostic: where the time goes)" + suffix,
        [
            "size",
            *[f"{name} CPU ms" for name in names],
            "ours - plain+login CPU ms",
            "ours wall - CPU ms",
            "ours page faults",
            f"{kept} page faults",
        ],
    )
    misses: list[str] = []
    summary: list[SummaryRow] = []
    worst_first = 0.0
    for size in plan.sizes:
        ours_ratio = median(paired.get(("ours/login", size), []))
        plain_ratio = median(paired.get(("ours", size), []))
        case_ratio = median(paired.get(("case study", size), []))
        target = TARGET_RATIO.get(size)
        if target is None or quick:
            verdict = "n/a (quick)" if quick else "no target"
        elif ours_ratio != ours_ratio:
            verdict = "NOT MEASURED"
        else:
            verdict = "met" if ours_ratio <= target else "MISSED"
        if verdict == "MISSED":
            misses.append(f"{size_label(size)} at {ours_ratio:.2f}x (target {target}x)")
        latency.rows.append(
            [
                size_label(size),
                *[f"{med(totals, variant, size):.2f}" for variant in VARIANTS],
                ratio_text(ours_ratio),
                ratio_text(plain_ratio),
                ratio_text(case_ratio),
                ratio_text(median(paired.get(("kept", size), []))),
                f"<= {target}x" if target else "-",
                verdict,
                str(len(totals.get(("plain", size), []))),
                spread(totals.get(("ours", size), [])),
            ]
        )
        summary.append(
            SummaryRow(
                "http",
                f"download latency / plain FileResponse behind login, {size_label(size)}",
                f"<= {target}x" if target else "-",
                f"{ratio_text(ours_ratio)} (/plain without login {ratio_text(plain_ratio)}; "
                f"{kept.removeprefix('ours, ')}/plain "
                f"{ratio_text(median(paired.get(('kept', size), [])))})",
                verdict,
            )
        )
        ours_first = med(firsts, "ours", size)
        worst_first = max(worst_first, ours_first)
        if quick:
            first_verdict = "n/a (quick)"
        elif ours_first != ours_first:
            first_verdict = "NOT MEASURED"
        else:
            first_verdict = "met" if ours_first < TARGET_FIRST_BYTE_MS else "MISSED"
        first_byte.rows.append(
            [
                size_label(size),
                *[f"{med(firsts, variant, size):.2f}" for variant in VARIANTS],
                f"< {TARGET_FIRST_BYTE_MS:.0f}",
                first_verdict,
            ]
        )
        cpu.rows.append(
            [
                size_label(size),
                *[f"{med(cpus, variant, size):.2f}" for variant in VARIANTS],
                f"{med(cpus, 'ours', size) - med(cpus, 'plain+login', size):.2f}",
                f"{med(totals, 'ours', size) - med(cpus, 'ours', size):.2f}",
                f"{med(faults, 'ours', size):.0f}",
                f"{med(faults, OURS_KEPT, size):.0f}",
            ]
        )

    latency.notes.append(
        "Each repetition fetches every variant once, in rotating order, over a new connection "
        "(gunicorn's sync workers close it); latency is connect to last body byte. plain = "
        "FileResponse without login (sendfile); plain+login = the same behind login_required; "
        "ours = /documents/<uuid>/download/ as a company member; case study = its view. "
        "Targets are judged against plain+login, as issue 9 states them (before 2026-12-08 04:00 "
        "UTC against plain: the two pay the same session and user lookups, since "
        "PrivatePagesMiddleware reads is_authenticated on every response). Three gunicorn servers "
        "(2 sync workers each, one request in flight at a time): plain, plain+login and ours "
        "share one; the case study has its own, so that its whole-file buffers cannot change "
        f"the allocator state of the workers serving ours; '{kept}' (diagnostic) is ours "
        "on a server of its own with the read-ahead thread turned the other way from ours ("
        + ", ".join(f"{k}={v}" for k, v in SERVER_GROUPS["kept"].items())
        + f"; {_CORES} usable cores, VAULT_READ_AHEAD "
        + (os.environ.get("VAULT_READ_AHEAD") or "auto")
        + ": ours "
        + (
            f"reads ahead from {read_ahead >> 20} MiB). "
            if read_ahead
            else "decrypts in the serving thread only). "
        )
        + "Ratios are medians of per-repetition ratios (each variant over plain in the same "
        "round), so they need not equal the ratio of the medians shown."
    )
    if not ours_ready:
        latency.notes.append(
            f"The download view answered {ours_status} for a member: ours NOT MEASURED; the "
            "harness was verified against the plain and case-study variants only."
        )
    if any(failures.values()):
        latency.notes.append(f"Failed requests (left out): {failures}.")
    if not quick and ours_ready:
        latency.notes.append(
            "Targets: " + ("all MET." if not misses else "MISSED at " + "; ".join(misses) + ".")
        )

    memory = Table(
        "HTTP worker memory: peak growth of the serving gunicorn worker over one download" + suffix,
        [
            "variant",
            "size",
            "worker peak growth MiB",
            "worker RSS before MiB",
            "download s",
            "body verified",
            "target",
            "verdict",
        ],
    )
    for probe in probes:
        is_target = probe.variant == "ours"
        if not is_target:
            verdict = "reference"
        elif quick:
            verdict = "n/a (quick)"
        else:
            verdict = "met" if probe.growth_mib <= TARGET_MEMORY_MIB else "MISSED"
        if is_target:
            summary.append(
                SummaryRow(
                    "http",
                    f"worker memory growth over one {size_label(probe.size)} download",
                    f"<= {TARGET_MEMORY_MIB} MiB",
                    f"+{probe.growth_mib:.1f} MiB",
                    verdict,
                )
            )
        memory.rows.append(
            [
                probe.variant,
                size_label(probe.size),
                f"{probe.growth_mib:.1f}",
                f"{probe.rss_before_mib:.0f}",
                f"{probe.seconds:.2f}",
                "yes (SHA-256)" if probe.verified else "NO",
                f"<= {TARGET_MEMORY_MIB} MiB" if is_target else "-",
                verdict,
            ]
        )
    reset = all(probe.reset for probe in probes)
    memory.notes.append(
        "Workers warmed up first (every size of ours and plain); "
        + (
            "each worker's VmHWM reset to its RSS (clear_refs) just before the download"
            if reset
            else "VmHWM read before and after (clear_refs unavailable)"
        )
        + "; growth = VmHWM after - before of the worker that grew most (the one serving). The "
        "client hashes the body (SHA-256) while receiving."
    )
    cpu.notes.append(
        "CPU time every worker ran per request (/proc/<pid>/schedstat), read once the workers "
        "sleep again, so work done after the last byte (closing the response and the database "
        "connection) counts too. Wall minus CPU is time spent waiting (disk syncs, the network, "
        "other processes on this shared machine). Page faults: minor faults the workers took "
        "per request (fresh 4 KiB pages touched), median. A read-ahead thread's CPU time is "
        "missed by these per-thread counters once it has ended: compare the two read-ahead "
        "variants by wall time, not by this column."
    )
    first_verdict = (
        "n/a (quick)" if quick else ("met" if worst_first < TARGET_FIRST_BYTE_MS else "MISSED")
    )
    summary.insert(
        len(plan.sizes),
        SummaryRow(
            "http",
            "first body byte, worst size",
            f"< {TARGET_FIRST_BYTE_MS:.0f} ms",
            f"{worst_first:.1f} ms",
            first_verdict,
        ),
    )
    return PartResult([latency, first_byte, cpu, memory], summary)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "fixtures":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
        fixtures_main(sys.argv[2])
    else:
        raise SystemExit("usage: python -m bench.downloads fixtures SPEC.json")
