"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, start, stop.

The server listens on 127.0.0.1 only, on a free port, with its socket in the same temporary
folder, fsync off (nothing in it has to survive), and trust authentication for `postgres`.
Running as root, the server runs as the `postgres` system user, as PostgreSQL insists.
"""

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
START_TIMEOUT = 30


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server."""

    port: int
    host: str = "127.0.0.1"
    user: str = SERVER_USER

    def url(self, database: str = "postgres") -> str:
        """Return the DATABASE_URL of one of the server's databases."""
        return f"postgres://{self.user}@{self.host}:{self.port}/{database}"

    def database_create(self, name: str) -> str:
        """Create an empty database and return its DATABASE_URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


def postgres_bin_dir() -> Path:
    """Return the binaries of the newest installed PostgreSQL; raise RuntimeError if there are none."""
    candidates = [Path(path) for path in glob.glob(BIN_GLOB) if Path(path, "initdb").exists()]
    if candidates:
        return max(candidates, key=lambda path: _version(path.parent.name))
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        f"No PostgreSQL server binaries (looked in {BIN_GLOB} and PATH): "
        "install the postgresql package (`make test` does it on Debian)."
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        raise RuntimeError("Running as root needs `runuser` to start PostgreSQL as postgres.")
    return ["runuser", "-u", SERVER_USER, "--", *command]


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(
        _as_server_user(command),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT + 30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:2])} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


@contextmanager
def postgres_start(attempts: int = 3) -> Iterator[PostgresServer]:
    """Start a fresh server, yield it, then stop it and delete its files; raise if it cannot start."""
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="docvault-pg-"))
    data, log = root / "data", root / "server.log"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        if os.geteuid() == 0:
            try:
                shutil.chown(root, SERVER_USER, SERVER_USER)
            except LookupError:
                raise RuntimeError(f"No {SERVER_USER!r} system user to run PostgreSQL.") from None
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SERVER_USER, "-A", "trust"]
        _run([*initdb, "--no-sync", "-E", "UTF8", "--no-locale"], root)
        port = 0
        for attempt in range(1, attempts + 1):
            port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
            try:
                start = ["-l", str(log), "-w", "-t", str(START_TIMEOUT), "-o", options, "start"]
                _run([*pg_ctl, *start], root)
                break
            except RuntimeError as exc:
                # Another process may have taken the port between the probe and the start.
                if attempt == attempts:
                    server_log = log.read_text(errors="replace") if log.exists() else ""
                    raise RuntimeError(f"{exc}\n{server_log[-4000:]}") from None
        try:
            yield PostgresServer(port=port)
        finally:
            try:
                _run([*pg_ctl, "-m", "fast", "-w", "stop"], root)
            except RuntimeError:
                _run([*pg_ctl, "-m", "immediate", "-w", "stop"], root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
