"""Peak memory growth of encrypting and decrypting a large file through EncryptedStorage.

Each operation runs in a fresh subprocess (`python -m bench.memory child ...`): Django set up on a
throwaway SQLite database (migrated, since every save and open is recorded in the access log) and
a temporary MEDIA_ROOT, keys derived, then VmHWM reset to the current resident set (Linux
clear_refs) and read before and after the one operation:

- encrypt: `default_storage.save()` of a plaintext file on disk (streams `File.chunks()`);
- decrypt: `default_storage.open()` and every plaintext segment through `segments()`, hashed
  to prove the round trip.
"""

import gc
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from .common import (
    MIB,
    PartResult,
    SummaryRow,
    Table,
    bench_env,
    child_json,
    peak_reset,
    proc_status,
    progress,
    random_file_write,
    size_label,
)

TARGET_MIB = 16
CHILD_TIMEOUT = 600


def child_main(operation: str, argument: str) -> None:
    """Run one operation in this fresh process and print its memory growth as JSON."""
    import django

    django.setup()
    from django.core.files import File
    from django.core.files.storage import default_storage
    from django.core.management import call_command

    from vault.keys import keyring

    call_command("migrate", interactive=False, verbosity=0)
    keyring()
    gc.collect()
    reset = peak_reset()
    before = proc_status()
    started = time.perf_counter()
    result: dict[str, object] = {}
    if operation == "encrypt":
        with open(argument, "rb") as plaintext:
            result["name"] = default_storage.save("documents/bench/plaintext.bin", File(plaintext))
    elif operation == "decrypt":
        digest = hashlib.sha256()
        with default_storage.open(argument) as decrypted:
            for segment in decrypted.segments():
                digest.update(segment)
        result["sha256"] = digest.hexdigest()
    else:
        raise SystemExit(f"unknown operation {operation!r}")
    seconds = time.perf_counter() - started
    after = proc_status()
    result.update(
        seconds=seconds,
        reset=reset,
        rss_before_kib=before["VmRSS"],
        hwm_before_kib=before["VmHWM"],
        hwm_after_kib=after["VmHWM"],
    )
    print(json.dumps(result))


def run(quick: bool) -> PartResult:
    """Measure the storage's peak memory growth at 1 GB (quick: 64 MB) and return the table."""
    size = 64_000_000 if quick else 1_000_000_000
    table = Table(
        f"Storage memory: peak growth (VmHWM) through EncryptedStorage at {size_label(size)}"
        + (" (QUICK smoke run, not for quoting)" if quick else ""),
        ["operation", "size", "peak growth MiB", "target MiB", "time s", "MB/s", "verdict"],
    )
    summary: list[SummaryRow] = []
    with tempfile.TemporaryDirectory(prefix="docvault-bench-memory-") as folder:
        tmp = Path(folder)
        env = bench_env(tmp, "config.settings")
        plaintext = tmp / "plaintext.bin"
        progress(f"memory: writing {size_label(size)} of random plaintext")
        expected = random_file_write(plaintext, size)
        progress("memory: encrypting through the storage in a fresh process")
        encrypted = child_json(
            "memory", ["child", "encrypt", str(plaintext)], env, timeout=CHILD_TIMEOUT
        )
        plaintext.unlink()
        progress("memory: decrypting through the storage in a fresh process")
        decrypted = child_json(
            "memory", ["child", "decrypt", str(encrypted["name"])], env, timeout=CHILD_TIMEOUT
        )
        if decrypted["sha256"] != expected:
            raise RuntimeError("memory: the decrypted plaintext differs from the original")
        for operation, result in (("encrypt (save)", encrypted), ("decrypt (open)", decrypted)):
            growth = (int(result["hwm_after_kib"]) - int(result["hwm_before_kib"])) * 1024 / MIB
            seconds = float(result["seconds"])
            met = growth <= TARGET_MIB
            summary.append(
                SummaryRow(
                    "memory",
                    f"peak memory growth, {operation} of {size_label(size)} through the storage",
                    f"<= {TARGET_MIB} MiB",
                    f"+{growth:.1f} MiB",
                    "n/a (quick)" if quick else ("met" if met else "MISSED"),
                )
            )
            table.rows.append(
                [
                    operation,
                    size_label(size),
                    f"{growth:.1f}",
                    f"<= {TARGET_MIB}",
                    f"{seconds:.1f}",
                    f"{size / seconds / 1e6:,.0f}",
                    "n/a (quick)" if quick else ("met" if met else "MISSED"),
                ]
            )
        method = (
            "VmHWM reset to the current RSS (clear_refs) just before the operation"
            if encrypted["reset"] and decrypted["reset"]
            else "VmHWM before/after (clear_refs unavailable: an earlier peak may hide growth)"
        )
        table.notes.append(
            f"Fresh process per operation, after Django setup, migrate and key derivation; {method}. "
            f"Resident set before: {int(encrypted['rss_before_kib']) / 1024:.0f} MiB (encrypt), "
            f"{int(decrypted['rss_before_kib']) / 1024:.0f} MiB (decrypt). Time includes the "
            "save's fsync and, for decrypt, SHA-256 of the plaintext (the round-trip check)."
        )
    return PartResult([table], summary)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        child_main(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python -m bench.memory child encrypt|decrypt ARGUMENT")
