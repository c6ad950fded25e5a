"""`python -m bench.s3_memory [MB]`: peak memory of saving and reading a large file on the bucket.

Starts a throwaway SeaweedFS server (tests/seaweed.py), then, in a fresh process on a temporary
SQLite database, saves MB megabytes (200 by default) through the vault's storage onto the bucket,
reads them back whole, and reads one Range. It prints the growth of the peak RSS over the process's
size before each step, and the bytes fetched by the ranged read. Not a test: nothing here is timed.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys, threading, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.core.files import File
from django.core.files.storage import default_storage
from vault.access import Action, access_context

size = int(sys.argv[1]) * 1024 * 1024
piece = os.urandom(1024 * 1024)

class Source(File):
    def __init__(self):
        super().__init__(None, "upload")
    def chunks(self, chunk_size=None):
        for _ in range(size // len(piece)):
            yield piece
    def seekable(self):
        return False

def rss_now():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

class Peak:
    # The highest RSS a sampler thread sees while the block runs, over the RSS before it.
    def __enter__(self):
        self.before = self.peak = rss_now()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self
    def _sample(self):
        while self.running:
            self.peak = max(self.peak, rss_now())
            time.sleep(0.005)
    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_now())
        self.growth = self.peak - self.before

inner = default_storage.inner
gets = []
inner.connection.meta.client.meta.events.register(
    "after-call.s3.GetObject", lambda parsed, **kw: gets.append(parsed["ContentLength"])
)
result = {}
with Peak() as saving:
    name = default_storage.save("documents/big", Source())
result["save_peak_growth"] = saving.growth
read = 0
with Peak() as reading, access_context(action=Action.DOWNLOAD), default_storage.open(name) as decrypted:
    for chunk in decrypted.chunks():
        read += len(chunk)
result["read_peak_growth"] = reading.growth
result["read_bytes"] = read
result["read_gets"] = len(gets)
gets.clear()
with access_context(action=Action.RANGE), default_storage.open(name) as decrypted:
    decrypted.seek(size // 2)
    decrypted.read(100)
result["range_fetched"] = sum(gets)
result["object_size"] = inner.size(name)
print(json.dumps(result))
"""


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print its table."""
    sys.path.insert(0, str(ROOT))
    from tests.seaweed import seaweed_start

    megabytes = int((argv or sys.argv[1:] or ["200"])[0])
    with seaweed_start() as server, tempfile.TemporaryDirectory() as tmp:
        options = server.storage_options(location="bench")
        env = {
            **os.environ,
            "DOCVAULT_ENV_FILE": "",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": "bench-only-" + "x" * 50,
            "VAULT_KEYS": "bench:" + "k" * 40,
            "VAULT_KDF_SALT": "bench",
            "VAULT_KDF_ITERATIONS": "100000",
            "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
            "VAULT_INNER_STORAGE_BACKEND": "storages.backends.s3.S3Storage",
            "AWS_STORAGE_BUCKET_NAME": options["bucket_name"],
            "AWS_S3_ENDPOINT_URL": options["endpoint_url"],
            "AWS_S3_REGION_NAME": options["region_name"],
            "AWS_ACCESS_KEY_ID": options["access_key"],
            "AWS_SECRET_ACCESS_KEY": options["secret_key"],
        }
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(megabytes)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    mib = 1024 * 1024
    print(f"| {megabytes} MB on the bucket | value |\n| --- | --- |")
    print(f"| save: peak RSS growth | {result['save_peak_growth'] / mib:.1f} MiB |")
    print(f"| read whole: peak RSS growth | {result['read_peak_growth'] / mib:.1f} MiB |")
    print(f"| read whole: GETs | {result['read_gets']} |")
    print(
        f"| one 100-byte Range: bytes fetched | {result['range_fetched']:,} "
        f"of {result['object_size']:,} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
