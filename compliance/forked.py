"""Run a read-only function of the database in a forked process while the caller goes on.

A signed report walks the whole access log (about 27 s for a million events, bench/RESULTS.md)
and, independently, streams the period's CSV and lays out the PDF. On two cores the walk can run
beside the rest: a forked child inherits the settings, the keys and the loaded code at no cost,
opens its own database connection, and sends its result back through a pipe.

A child sees the database through its own connection, so it is used only when that connection
sees what the caller's sees: never inside a transaction (uncommitted rows, a test's), never on an
in-memory SQLite database (private to this process). A fork is also used only where it is safe and
pays: a single-threaded process (another thread could hold a lock the child would inherit locked)
with two usable cores or more. Everywhere else the function runs in this process, when its result
is asked for: the same function, the same result.
"""

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from django.db import connections

from vault.downloads import usable_cores

T = TypeVar("T")

# The parent's database connections, held in the child and never closed: closing or finalising
# them would end the parent's session (PostgreSQL's terminate message) or its SQLite locks. The
# child leaves through os._exit(), which runs no finaliser.
_inherited: list[Any] = []


def fork_usable(using: str) -> bool:
    """Return whether a forked child would see the database as this process does, safely."""
    connection = connections[using]
    return (
        hasattr(os, "fork")
        and threading.active_count() == 1
        and usable_cores() >= 2
        and not connection.in_atomic_block
        and connection.get_autocommit()
        and not (connection.vendor == "sqlite" and connection.is_in_memory_db())
    )


@contextmanager
def forked(function: Callable[[], T], *, using: str) -> Iterator[Callable[[], T]]:
    """Start `function` in a forked child where fork_usable(); yield what returns its result.

    Calling what is yielded waits for the child and returns its result, or raises what it raised;
    without a child it runs `function` here. Leaving the block ends a child still running.
    """
    if not fork_usable(using):
        yield function
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_child_main, args=(function, sender), name="docvault-forked", daemon=True
    )
    try:
        child.start()
    except OSError:
        # No process to be had (memory, process limits): the same function, here.
        receiver.close()
        sender.close()
        yield function
        return
    sender.close()
    outcome: list[Any] = []

    def result() -> T:
        if not outcome:
            try:
                outcome.append(receiver.recv())
            except EOFError:
                child.join()
                outcome.append(
                    (
                        "error",
                        RuntimeError(
                            f"The background process ended without a result (exit code "
                            f"{child.exitcode})."
                        ),
                    )
                )
        kind, value = outcome[0]
        if kind == "error":
            raise value
        return value

    try:
        yield result
    finally:
        receiver.close()
        if child.is_alive():
            # SIGKILL: the child inherited the parent's handlers (a server worker's SIGTERM
            # handler would not stop it); it holds nothing that needs a clean shutdown.
            child.kill()
        child.join()


def _child_main(function: Callable[[], Any], sender: Connection) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _inherited.append(connection.connection)
            connection.connection = None
    try:
        message: tuple[str, Any] = ("result", function())
    except Exception as exc:  # sent to the parent, which raises it
        message = ("error", exc)
    finally:
        connections.close_all()
    try:
        sender.send(message)
    except Exception as exc:  # a result or an exception that does not pickle
        sender.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    sender.close()
