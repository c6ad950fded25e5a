"""Rotation throughput against a plain read-and-write copy of the same files, in one run.

One fresh subprocess (`python -m bench.rotation child COUNT SIZE ROUNDS`) per file size: Django
on a throwaway SQLite database and MEDIA_ROOT with two keys, COUNT documents of SIZE bytes
uploaded through the real storing path, then ROUNDS rounds, each timing side by side:

- copy: every stored file read and written beside itself as the rotation writes (temporary file,
  fsync, rename over, folder fsync), one at a time, without decryption, encryption or database;
- rotation: `storage_rotate()` to the other key (the primary swaps every time), which reads
  every file's header, decrypts, re-encrypts, swaps the file, records one event and updates the
  row; with 1 worker and with the command's default of 4.

Target (issue 7): rotation throughput at least half of the copy's (ratio >= 0.5).
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .common import (
    PartResult,
    SummaryRow,
    Table,
    bench_env,
    child_json,
    median,
    progress,
    ratio_text,
    size_label,
)

TARGET_RATIO = 0.5
WORKERS = (1, 4)  # storage_rotate(workers=...): one file at a time, and the command's default
CHILD_TIMEOUT = 900
KEY_A = "bench-a:bench-only-rotation-key-a-0123456789abcdef0123456789"
KEY_B = "bench-b:bench-only-rotation-key-b-0123456789abcdef0123456789"


def child_main(count: int, size: int, rounds: int) -> None:
    """Upload COUNT files of SIZE bytes, time ROUNDS of copy and rotation; print JSON."""
    import django

    django.setup()
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.test import override_settings

    from vault.atomic import atomic_write
    from vault.documents import document_create
    from vault.keys import keyring
    from vault.models import Company
    from vault.rotation import Status, storage_rotate

    call_command("migrate", interactive=False, verbosity=0)
    company = Company.objects.create(name="Bench")
    data = b"%PDF-1.7\n" + os.urandom(max(0, size - 9))
    for number in range(count):
        document_create(
            company=company, content=ContentFile(data, name=f"{number}.pdf"), uploaded_by=None
        )
    inner = default_storage.inner
    names = [
        os.path.join(folder, name)
        for folder, _, files in os.walk(inner.location)
        for name in files
        if not name.startswith(".")
    ]
    seconds: dict[str, list[float]] = {"copy": []}
    ratios: dict[str, list[float]] = {}
    order = [f"{KEY_A},{KEY_B}", f"{KEY_B},{KEY_A}"]
    turn = 0
    for _ in range(rounds):
        for workers in WORKERS:
            started = time.perf_counter()
            for path in names:
                with open(path, "rb") as source, atomic_write(path, replace=True) as target:
                    while piece := source.read(1 << 20):
                        target.write(piece)
            copied = time.perf_counter() - started
            turn += 1
            with override_settings(VAULT_KEYS=order[turn % 2]):
                keyring()  # derived once per process in use, not per run: keep it out of the time
                started = time.perf_counter()
                report = storage_rotate(workers=workers)
                rotated = time.perf_counter() - started
            if report.counts[Status.REWRITTEN] != count:
                raise SystemExit(f"rotation rewrote {report.counts[Status.REWRITTEN]} of {count}")
            seconds["copy"].append(copied)
            seconds.setdefault(str(workers), []).append(rotated)
            ratios.setdefault(str(workers), []).append(copied / rotated)
    print(json.dumps({"seconds": seconds, "ratios": ratios}))


def run(quick: bool) -> PartResult:
    """Measure rotation against a plain copy at a few file sizes; return the table and summary."""
    cases = [(200, 10_000), (50, 1_000_000), (5, 20_000_000)]
    rounds = 5
    if quick:
        cases, rounds = [(40, 10_000), (10, 1_000_000)], 2
    table = Table(
        "Rotation throughput vs a plain read-and-write copy of the same files"
        + (" (QUICK smoke run, not for quoting)" if quick else ""),
        [
            "files",
            "size",
            "workers",
            "copy MB/s",
            "rotation MB/s",
            "rotation/copy",
            "target",
            "verdict",
        ],
    )
    worst = float("inf")
    for count, size in cases:
        progress(f"rotation: {count} files of {size_label(size)}, {rounds} rounds")
        with tempfile.TemporaryDirectory(prefix="docvault-bench-rotation-") as folder:
            env = bench_env(Path(folder), "config.settings")
            env["VAULT_KEYS"] = f"{KEY_A},{KEY_B}"
            result = child_json(
                "rotation",
                ["child", str(count), str(size), str(rounds)],
                env,
                timeout=CHILD_TIMEOUT,
            )
        volume = count * size / 1e6
        copy_rate = volume / median(result["seconds"]["copy"])
        for workers in WORKERS:
            ratio = median(result["ratios"][str(workers)])
            if workers == max(WORKERS):
                worst = min(worst, ratio)
            table.rows.append(
                [
                    str(count),
                    size_label(size),
                    str(workers),
                    f"{copy_rate:,.1f}",
                    f"{volume / median(result['seconds'][str(workers)]):,.1f}",
                    ratio_text(ratio),
                    f">= {TARGET_RATIO:.2f}x",
                    _verdict(ratio, workers, quick),
                ]
            )
    table.notes.append(
        f"Medians of {rounds} rounds; each round copies then rotates, for each worker count, in "
        "one process; the ratio is the median of per-round ratios (copy time / rotation time). "
        "MB = 10^6 plaintext bytes. Both write each file durably the same way (temporary file, "
        "fsync, rename, folder fsync), the copy one file at a time; rotation also decrypts, "
        "re-encrypts, records one access event and updates the row per file. `vault_rotate` runs "
        f"{max(WORKERS)} workers by default (the verdict line); 1 worker is shown for comparison."
    )
    if not quick:
        verdict = "MET" if worst >= TARGET_RATIO else "MISSED"
        table.notes.append(
            f"Target rotation >= {TARGET_RATIO:.0%} of the copy's throughput: {verdict} "
            f"(worst case {worst:.2f}x)."
        )
    summary = SummaryRow(
        "rotation",
        f"vault_rotate ({max(WORKERS)} workers) / a durable plain copy, worst of "
        + ", ".join(size_label(size) for _, size in cases),
        f">= {TARGET_RATIO:.2f}x",
        ratio_text(worst),
        "n/a (quick)" if quick else ("met" if worst >= TARGET_RATIO else "MISSED"),
    )
    return PartResult([table], [summary])


def _verdict(ratio: float, workers: int, quick: bool) -> str:
    if quick:
        return "n/a (quick)"
    if workers != max(WORKERS):
        return "comparison"  # the target is the command's, which runs max(WORKERS) by default
    return "met" if ratio >= TARGET_RATIO else "MISSED"


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        child_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit("usage: python -m bench.rotation child COUNT SIZE ROUNDS")
