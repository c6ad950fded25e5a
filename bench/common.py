"""What every benchmark shares: statistics, tables, the throwaway environment, machine facts."""

import datetime
import hashlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = ROOT / "bench" / "RESULTS.md"
PYTHON = sys.executable
KIB = 1 << 10
MIB = 1 << 20
# Bench-only secrets for throwaway databases and media folders; they protect nothing.
BENCH_VAULT_SECRET = "bench-only-not-a-secret-0123456789abcdef0123456789abcdef"  # noqa: S105
CASE_STUDY_SECRET = "bench-only-case-study-secret-0123456789abcdef0123456789"  # noqa: S105
BENCH_KDF_ITERATIONS = "100000"
# Plaintexts open like a PDF, as most documents do, so that libmagic answers as it would in use.
PLAINTEXT_HEAD = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


@dataclass
class Table:
    """One result table: a title, rows of text, and notes (the verdicts) printed under it."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """Return the table as Markdown, readable as plain text too."""
        widths = [len(header) for header in self.headers]
        for row in self.rows:
            widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(self.headers)]
        out.append("| " + " | ".join("-" * width for width in widths) + " |")
        out.extend(line(row) for row in self.rows)
        if self.notes:
            out.append("")
            out.extend(f"- {note}" for note in self.notes)
        return "\n".join(out) + "\n"


@dataclass(frozen=True)
class SummaryRow:
    """One line of the summary table that opens RESULTS.md: a benchmark's headline against its target."""

    part: str  # the `python -m bench` part that measured it: crypto, http, load, chain, ...
    measure: str
    target: str
    result: str
    verdict: str  # met, MISSED, no target, n/a (quick)

    def cells(self, date: str) -> list[str]:
        """Return the row's cells, with the date of the run that measured it."""
        return [self.part, self.measure, self.target, self.result, self.verdict, date]


@dataclass
class PartResult:
    """What one benchmark part returns: its tables, and its rows of the summary."""

    tables: list[Table]
    summary: list[SummaryRow] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    """Return the median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """Return the interquartile range as a percentage of the median, a noise gauge."""
    if len(values) < 4:
        return "n/a"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{100 * (q3 - q1) / statistics.median(values):.0f}%"


def rotated(items: Sequence[str], turn: int) -> list[str]:
    """Return `items` rotated by `turn`, so that no variant always runs first."""
    turn %= len(items)
    return [*items[turn:], *items[:turn]]


def size_label(size: int) -> str:
    """Return a decimal size label: 10 KB, 1 MB, 1 GB."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


def ratio_text(value: float) -> str:
    """Return a ratio as text, 2 decimals."""
    return "n/a" if value != value else f"{value:.2f}x"


def random_file_write(path: Path, size: int, chunk: int = MIB) -> str:
    """Write `size` random bytes (opening like a PDF) in chunks; return their SHA-256 hex."""
    digest = hashlib.sha256()
    with open(path, "wb") as target:
        head = PLAINTEXT_HEAD[:size]
        target.write(head)
        digest.update(head)
        left = size - len(head)
        while left > 0:
            data = os.urandom(min(chunk, left))
            target.write(data)
            digest.update(data)
            left -= len(data)
    return digest.hexdigest()


def bench_env(folder: Path, settings_module: str) -> dict[str, str]:
    """Return the environment of a throwaway Docvault under `folder`, as tests/testenv.py sets it."""
    media = folder / "media"
    media.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        DOCVAULT_ENV_FILE="",
        DJANGO_SETTINGS_MODULE=settings_module,
        DJANGO_SECRET_KEY="bench-only-not-secret-" + "x" * 40,
        VAULT_KEYS=f"bench:{BENCH_VAULT_SECRET}",
        VAULT_KDF_SALT="bench-salt",
        VAULT_KDF_ITERATIONS=BENCH_KDF_ITERATIONS,
        ENCRYPTION_SECRET=CASE_STUDY_SECRET,
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        MEDIA_ROOT=str(media),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_DEBUG="",
        PYTHONPATH=str(ROOT),
    )
    return env


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """Return the Vm* lines of /proc/<pid>/status in KiB (VmHWM is the peak resident set)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {name: int(kib) for name, kib in re.findall(r"^(Vm\w+):\s+(\d+) kB", status, re.M)}


def peak_reset(pid: int | str = "self") -> bool:
    """Reset VmHWM to the current resident set (Linux clear_refs 5); return whether it worked."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pid: int | str = "self") -> float:
    """Return the CPU time a process has run so far, in seconds (schedstat, nanosecond precision)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int | str = "self") -> int:
    """Return how many minor page faults (fresh pages touched) a process has taken so far."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
    except (OSError, ValueError, IndexError):
        return 0


def process_state(pid: int) -> str:
    """Return a process's state letter: R running, S sleeping, D waiting on I/O, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def children_pids(pid: int) -> list[int]:
    """Return the ids of a process's children."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        text = ""
    found = [int(child) for child in text.split()]
    if found:
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name is in parentheses and may hold spaces: the ppid follows the last ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def child_json(
    module: str,
    arguments: Sequence[str],
    env: dict[str, str],
    *,
    timeout: float = 3600,
    capture_stderr: bool = True,
) -> Any:
    """Run `python -m bench.MODULE ARGUMENTS...` in a fresh process; return its last line as JSON.

    A child that fails raises RuntimeError with the end of its stderr (or, with
    `capture_stderr=False`, lets its stderr, its progress lines, through to ours as it runs).
    """
    done = subprocess.run(
        [PYTHON, "-m", f"bench.{module}", *arguments],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture_stderr else None,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        detail = done.stderr[-3000:] if capture_stderr else "see its stderr above"
        raise RuntimeError(f"bench.{module} {' '.join(arguments[:2])} failed:\n{detail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def git_commit() -> str:
    """Return the short commit and whether the tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=normal", "--", "."],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git unavailable)"
    name = commit.stdout.strip() if commit.returncode == 0 else "none (no commit yet)"
    if dirty.returncode == 0:
        paths = [line[3:] for line in dirty.stdout.splitlines() if line.strip()]
        if any(not path.startswith("bench/") for path in paths):
            name += ", with uncommitted changes outside bench/"
        if any(path.startswith("bench/") for path in paths):
            name += "; bench/ itself has uncommitted changes"
    return name


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> list[str]:
    """Return the facts a result needs beside it: date, CPU, cores, versions, commit, load."""
    cpu = "unknown"
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        openssl = backend.openssl_version_text()
    except Exception:  # an informative fact only
        openssl = "unknown"
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"CPU: {cpu}; cores: {os.cpu_count()} (usable {usable})",
        f"Python {platform.python_version()}; cryptography {_version('cryptography')} "
        f"({openssl}); Django {_version('Django')}; gunicorn {_version('gunicorn')}",
        f"Kernel {platform.release()}; load average at start {load}",
        f"Git commit: {git_commit()}",
    ]


SUMMARY_START = (
    "<!-- summary: rewritten by every full `python -m bench` run; do not edit by hand -->"
)
SUMMARY_END = "<!-- /summary -->"
SUMMARY_HEADERS = ["part", "measure", "target", "result", "verdict", "measured"]
# The order of the parts in the summary; parts not named here follow, alphabetically.
SUMMARY_ORDER = (
    "crypto",
    "memory",
    "http",
    "scan",
    "rotation",
    "dashboard",
    "report",
    "load",
    "chain",
)
RESULTS_HEADER = """# Benchmark results

Rerun everything with `make bench` (`python -m bench all`; one part: `python -m bench PART`).
The summary below holds one row per headline figure of every benchmark part; a full run of a part
rewrites that part's rows (quick runs never do) and every run appends its full tables at the end of
this file, newest last. Ratios and medians come from variants interleaved in one run on a shared,
noisy machine: quote ratios, not absolute numbers, and runs marked quick not at all.
"""


def _summary_parse(text: str) -> tuple[list[str], dict[str, list[list[str]]]]:
    """Return the facts and the rows by part of the summary block in `text` (none if absent)."""
    if SUMMARY_START not in text or SUMMARY_END not in text:
        return [], {}
    block = text.split(SUMMARY_START, 1)[1].split(SUMMARY_END, 1)[0]
    facts, rows = [], {}
    for line in block.splitlines():
        if line.startswith("- "):
            facts.append(line[2:])
        elif line.startswith("| ") and not line.startswith("| ---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            if len(cells) == len(SUMMARY_HEADERS) and cells != SUMMARY_HEADERS:
                rows.setdefault(cells[0], []).append(cells)
    return facts, rows


def summary_markdown(facts: list[str], rows: dict[str, list[list[str]]]) -> str:
    """Return the summary block: machine facts of the last full run, then one table."""
    order = {part: index for index, part in enumerate(SUMMARY_ORDER)}
    parts = sorted(rows, key=lambda part: (order.get(part, len(order)), part))
    table = Table(
        "Summary: every benchmark against its target",
        SUMMARY_HEADERS,
        [row for part in parts for row in rows[part]],
    )
    lines = [SUMMARY_START, "", *[f"- {fact}" for fact in facts], "", table.markdown(), SUMMARY_END]
    return "\n".join(lines)


def results_append(
    command: str,
    facts: list[str],
    tables: list[Table],
    seconds: float,
    summary: list[SummaryRow] | None = None,
) -> None:
    """Append one run (facts and tables) to bench/RESULTS.md; rewrite its parts' summary rows."""
    text = RESULTS_PATH.read_text() if RESULTS_PATH.exists() else RESULTS_HEADER
    if summary:
        _, rows = _summary_parse(text)
        date = facts[0].removeprefix("Date: ").split(" ")[0]
        for part in {row.part for row in summary}:
            rows[part] = [row.cells(date) for row in summary if row.part == part]
        block = summary_markdown(
            [f"Last updated: {facts[0].removeprefix('Date: ')}, by `{command}`", *facts[1:]], rows
        )
        if SUMMARY_START in text and SUMMARY_END in text:
            before, rest = text.split(SUMMARY_START, 1)
            text = before + block + rest.split(SUMMARY_END, 1)[1]
        else:
            head, sep, rest = text.partition("\n## ")
            text = head.rstrip("\n") + "\n\n" + block + "\n" + (sep + rest if sep else "")
    lines = [f"\n## Run of {facts[0].removeprefix('Date: ')}: `{command}`\n"]
    lines.extend(f"- {fact}" for fact in facts[1:])
    lines.append(f"- Wall time: {seconds:.0f} s\n")
    lines.extend(table.markdown() for table in tables)
    RESULTS_PATH.write_text(text.rstrip("\n") + "\n" + "\n".join(lines))


def progress(message: str) -> None:
    """Print a progress line on stderr, so that the tables alone go to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
