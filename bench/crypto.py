"""Encrypt and decrypt throughput of the v1 format against raw AES-256-GCM and the case study's Fernet.

Four variants, interleaved in every repetition, over the same in-memory plaintext:

- raw: the floor. AESGCM over the same 1 MiB segments (1,048,560 plaintext bytes each), one
  counter nonce per segment, no header, no HKDF, no framing; ciphertext pieces are discarded.
- raw+read (diagnostic): the floor plus what any file-object reader pays, each segment's input
  taken from a BytesIO by read(n) (a fresh copy of up to 1 MiB) before AES-GCM.
- v1: `vault.fileformat.encrypt` (pieces consumed, not joined) and `DecryptingReader` over a
  BytesIO of the whole file, read through `segments()`.
- Fernet: the case study, `Fernet(key).encrypt(data)` / `.decrypt(token)`, whole file in memory.

A second table decrypts one 1 MB file at a time, each variant alone in a fresh process, as a
web worker does per request: there the cost of fresh 1 MiB buffers (page faults once glibc has
trimmed the heap between files) shows, which the interleaved loop above can hide.
"""

import io
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault import fileformat

from .common import (
    PYTHON,
    ROOT,
    PartResult,
    SummaryRow,
    Table,
    median,
    progress,
    ratio_text,
    rotated,
    size_label,
    spread,
)

SEGMENT_PLAINTEXT = fileformat.SEGMENT_SIZE - 16
VARIANTS = ("raw", "raw+read", "v1", "fernet")
OPERATIONS = ("encrypt", "decrypt")
TARGET_RAW_SHARE = 0.70
TARGET_FERNET_SPEEDUP = 10.0
PER_FILE_SIZE = 1_000_000
# glibc keeps freed memory below these instead of trimming it: the diagnostic variant's setting.
MALLOC_KEEP = {"MALLOC_MMAP_THRESHOLD_": str(16 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
PER_FILE_VARIANTS = {
    "raw AES-GCM": ("raw", {}),
    "raw+read": ("raw+read", {}),
    "v1": ("v1", {}),
    "v1, glibc heap not trimmed (diagnostic)": ("v1", MALLOC_KEEP),
}


def raw_encrypt(aead: AESGCM, data: bytes) -> list[bytes]:
    """Return AES-GCM ciphertexts of the 1 MiB segments of `data`, one counter nonce each."""
    view = memoryview(data)
    return [
        aead.encrypt(struct.pack(">8xI", index), view[start : start + SEGMENT_PLAINTEXT], None)
        for index, start in enumerate(range(0, max(len(data), 1), SEGMENT_PLAINTEXT))
    ]


def _workloads(size: int) -> dict[tuple[str, str], Callable[[], None]]:
    """Return one zero-argument job per (variant, operation), its inputs prepared and checked."""
    data = os.urandom(size)
    key, key_id = os.urandom(32), os.urandom(fileformat.KEY_ID_SIZE)
    keys = {key_id: key}
    fernet_key = Fernet.generate_key()

    raw_aead = AESGCM(key)
    raw_pieces = raw_encrypt(raw_aead, data)
    # Offset 1: BytesIO hands back its whole buffer uncopied, which no file does.
    raw_file = b"\0" + b"".join(raw_pieces)
    padded = b"\0" + data
    raw_sizes = [len(piece) for piece in raw_pieces]
    v1_file = b"".join(fileformat.encrypt(data, key, key_id))
    token = Fernet(fernet_key).encrypt(data)

    # Every variant must give the plaintext back before it is timed.
    raw_back = b"".join(
        raw_aead.decrypt(struct.pack(">8xI", i), piece, None) for i, piece in enumerate(raw_pieces)
    )
    with fileformat.DecryptingReader(io.BytesIO(v1_file), keys) as reader:
        v1_back = b"".join(reader.segments())
    if not raw_back == v1_back == Fernet(fernet_key).decrypt(token) == data:
        raise RuntimeError("crypto: a variant does not give the plaintext back")

    def raw_enc() -> None:
        aead = AESGCM(key)
        view = memoryview(data)
        for index, start in enumerate(range(0, size, SEGMENT_PLAINTEXT)):
            aead.encrypt(struct.pack(">8xI", index), view[start : start + SEGMENT_PLAINTEXT], None)

    def raw_dec() -> None:
        aead = AESGCM(key)
        for index, piece in enumerate(raw_pieces):
            aead.decrypt(struct.pack(">8xI", index), piece, None)

    def read_enc() -> None:
        aead = AESGCM(key)
        source = io.BytesIO(padded)
        source.seek(1)
        index = 0
        while piece := source.read(SEGMENT_PLAINTEXT):
            aead.encrypt(struct.pack(">8xI", index), piece, None)
            index += 1

    def read_dec() -> None:
        aead = AESGCM(key)
        source = io.BytesIO(raw_file)
        source.seek(1)
        for index, piece_size in enumerate(raw_sizes):
            aead.decrypt(struct.pack(">8xI", index), source.read(piece_size), None)

    def v1_enc() -> None:
        for _piece in fileformat.encrypt(data, key, key_id):
            pass

    def v1_dec() -> None:
        with fileformat.DecryptingReader(io.BytesIO(v1_file), keys) as reader:
            for _piece in reader.segments():
                pass

    def fernet_enc() -> None:
        Fernet(fernet_key).encrypt(data)

    def fernet_dec() -> None:
        Fernet(fernet_key).decrypt(token)

    return {
        ("raw", "encrypt"): raw_enc,
        ("raw", "decrypt"): raw_dec,
        ("raw+read", "encrypt"): read_enc,
        ("raw+read", "decrypt"): read_dec,
        ("v1", "encrypt"): v1_enc,
        ("v1", "decrypt"): v1_dec,
        ("fernet", "encrypt"): fernet_enc,
        ("fernet", "decrypt"): fernet_dec,
    }


def measure(size: int, reps: int, inner: int, budget: float) -> dict[tuple[str, str], list[float]]:
    """Return MB/s samples per (variant, operation), all interleaved in every repetition."""
    jobs = _workloads(size)
    samples: dict[tuple[str, str], list[float]] = {job: [] for job in jobs}
    for job in jobs.values():  # warm-up: allocator, caches, lazy imports
        job()
    deadline = time.monotonic() + budget
    for rep in range(reps):
        if rep >= 3 and time.monotonic() > deadline:
            progress(f"crypto {size_label(size)}: time budget spent after {rep} repetitions")
            break
        for variant in rotated(VARIANTS, rep):
            for operation in rotated(OPERATIONS, rep):
                job = jobs[variant, operation]
                started = time.perf_counter()
                for _ in range(inner):
                    job()
                elapsed = time.perf_counter() - started
                samples[variant, operation].append(size * inner / elapsed / 1e6)
    return samples


def per_file_child(variant: str, files: int) -> None:
    """Decrypt one 1 MB file `files` times in this fresh process; print the median microseconds."""
    # Only this variant's inputs are made: larger buffers freed earlier would raise glibc's
    # thresholds and hide what a worker that serves one file at a time pays.
    key, key_id = os.urandom(32), os.urandom(fileformat.KEY_ID_SIZE)
    data = os.urandom(PER_FILE_SIZE)
    if variant == "v1":
        v1_file = b"".join(fileformat.encrypt(data, key, key_id))
        keys = {key_id: key}

        def job() -> None:
            with fileformat.DecryptingReader(io.BytesIO(v1_file), keys) as reader:
                for _piece in reader.segments():
                    pass

    else:
        (piece,) = raw_encrypt(AESGCM(key), data)
        nonce = struct.pack(">8xI", 0)

        # Read from offset 1: BytesIO hands back its whole buffer uncopied, which no file does.
        padded = b"\0" + piece

        def job() -> None:
            if variant == "raw":
                source = piece
            else:
                stream = io.BytesIO(padded)
                stream.seek(1)
                source = stream.read(len(piece))
            AESGCM(key).decrypt(nonce, source, None)

    del data
    times = []
    for _ in range(files):
        started = time.perf_counter()
        job()
        times.append((time.perf_counter() - started) * 1e6)
    print(json.dumps({"median_us": median(times[files // 10 :])}))


def per_file(rounds: int, files: int) -> Table:
    """Return the per-file decryption cost of a 1 MB file, each variant alone in a fresh process."""
    results: dict[str, list[float]] = {name: [] for name in PER_FILE_VARIANTS}
    for turn in range(rounds):
        for name in rotated(list(PER_FILE_VARIANTS), turn):
            variant, extra_env = PER_FILE_VARIANTS[name]
            done = subprocess.run(
                [PYTHON, "-m", "bench.crypto", "child", variant, str(files)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **extra_env},
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1])["median_us"])
    raw = median(results["raw AES-GCM"])
    table = Table(
        f"Decrypting one {size_label(PER_FILE_SIZE)} file at a time, each variant alone in a "
        "fresh process (what a web worker pays per request)",
        ["variant", "us per file", "MB/s", "vs raw AES-GCM"],
    )
    for name, samples in results.items():
        cost = median(samples)
        table.rows.append(
            [name, f"{cost:,.0f}", f"{PER_FILE_SIZE / cost:,.0f}", f"{100 * raw / cost:.0f}%"]
        )
    table.notes.append(
        f"Median over {files} files per process (first tenth dropped), median of {rounds} "
        "processes per variant, variants alternating. The diagnostic row runs v1 with "
        + ", ".join(f"{k}={v}" for k, v in MALLOC_KEEP.items())
        + ": the gap between it and v1 is the cost of fresh 1 MiB buffers (page faults) per file."
    )
    return table


def paired_ratio(
    samples: dict[tuple[str, str], list[float]], operation: str, baseline: str
) -> float:
    """Return the median over repetitions of v1's throughput over `baseline`'s in that repetition."""
    pairs = zip(samples["v1", operation], samples[baseline, operation], strict=True)
    return median([v1 / other for v1, other in pairs])


def run(quick: bool) -> PartResult:
    """Measure throughput at 1 MB and 100 MB (quick: 1 MB and 8 MB) and return the table."""
    plan = [(1_000_000, 5, 8), (8_000_000, 3, 1)] if quick else [(1_000_000, 31, 16)]
    if not quick:
        plan.append((100_000_000, 9, 1))
    table = Table(
        "Crypto throughput: v1 vs raw AES-256-GCM (floor) vs the case study's Fernet"
        + (" (QUICK smoke run, not for quoting)" if quick else ""),
        [
            "size",
            "operation",
            "raw AES-GCM MB/s",
            "raw+read MB/s",
            "v1 MB/s",
            "Fernet MB/s",
            "v1/raw",
            "v1/(raw+read)",
            "v1/Fernet",
            "reps",
            "v1 spread",
        ],
    )
    worst_raw, worst_fernet = float("inf"), float("inf")
    worst_by_operation = dict.fromkeys(OPERATIONS, float("inf"))
    for size, reps, inner in plan:
        progress(f"crypto: {size_label(size)}, {reps} interleaved repetitions")
        samples = measure(size, reps, inner, budget=60.0)
        for operation in OPERATIONS:
            raw, read, v1, fernet = (median(samples[variant, operation]) for variant in VARIANTS)
            v1_raw = paired_ratio(samples, operation, "raw")
            v1_read = paired_ratio(samples, operation, "raw+read")
            v1_fernet = paired_ratio(samples, operation, "fernet")
            worst_raw = min(worst_raw, v1_raw)
            worst_by_operation[operation] = min(worst_by_operation[operation], v1_raw)
            worst_fernet = min(worst_fernet, v1_fernet)
            table.rows.append(
                [
                    size_label(size),
                    operation,
                    f"{raw:,.0f}",
                    f"{read:,.0f}",
                    f"{v1:,.0f}",
                    f"{fernet:,.0f}",
                    f"{100 * v1_raw:.0f}%",
                    f"{100 * v1_read:.0f}%",
                    ratio_text(v1_fernet),
                    str(len(samples["v1", operation])),
                    spread(samples["v1", operation]),
                ]
            )
    table.notes.append(
        "MB = 10^6 bytes; medians of interleaved repetitions (1 MB: each repetition runs the "
        "file several times); ratios are medians of per-repetition ratios (variants measured "
        "side by side in the same repetition), so they need not equal the ratio of the medians; "
        "spread = interquartile range / median of the v1 samples."
    )
    if quick:
        table.notes.append("Quick run: targets are judged on the full run only.")
    else:
        table.notes.append(
            f"Target v1 >= {TARGET_RAW_SHARE:.0%} of raw AES-GCM: "
            + ("MET" if worst_raw >= TARGET_RAW_SHARE else "MISSED")
            + f" (worst case {worst_raw:.0%})."
        )
        table.notes.append(
            f"Target v1 >= {TARGET_FERNET_SPEEDUP:.0f}x Fernet: "
            + ("MET" if worst_fernet >= TARGET_FERNET_SPEEDUP else "MISSED")
            + f" (worst case {worst_fernet:.1f}x)."
        )
    progress("crypto: one file at a time, each variant in fresh processes")
    sizes = " and ".join(size_label(size) for size, _, _ in plan)

    def verdict(met: bool) -> str:
        return "n/a (quick)" if quick else ("met" if met else "MISSED")

    summary = [
        SummaryRow(
            "crypto",
            f"v1 {operation} throughput / raw AES-256-GCM, worst of {sizes}",
            f">= {TARGET_RAW_SHARE:.0%}",
            f"{worst_by_operation[operation]:.0%}",
            verdict(worst_by_operation[operation] >= TARGET_RAW_SHARE),
        )
        for operation in OPERATIONS
    ]
    summary.append(
        SummaryRow(
            "crypto",
            f"v1 / the case study's Fernet, worst of {sizes}",
            f">= {TARGET_FERNET_SPEEDUP:.0f}x",
            ratio_text(worst_fernet),
            verdict(worst_fernet >= TARGET_FERNET_SPEEDUP),
        )
    )
    per_file_table = per_file(rounds=2 if quick else 5, files=50 if quick else 200)
    return PartResult([table, per_file_table], summary)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        per_file_child(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit("usage: python -m bench.crypto child raw|raw+read|v1 FILES")
