"""Settings of the benchmark server: the product's settings, plus the bench-only baseline URLs."""

from config.settings import *  # noqa: F403
from config.settings import env

ROOT_URLCONF = "bench.urls"
# Where the plain FileResponse baseline finds its plaintext files (outside MEDIA_ROOT).
BENCH_PLAIN_ROOT = env("BENCH_PLAIN_ROOT") or ""
