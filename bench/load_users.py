"""The locust users of the load test (`bench/load.py` runs `locust --headless -f` on this file).

Every user is a signed-in member of the bench company (its own session cookie). Each task takes a
ticket from one counter shared by the process, so the run makes exactly the planned number of
requests; a watcher quits the runner once every ticket's response is in. Every request carries its
own X-Request-ID, so the check afterwards can find the one access event it must have left. What
each request got (status, bytes, latency) is written to a JSON-lines file when locust quits.
"""

import itertools
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, events, task
from locust.exception import StopUser

SPEC = json.loads(Path(os.environ["LOAD_SPEC"]).read_text())
TOTAL = int(SPEC["requests"])
RUN = SPEC["run"]
_tickets = itertools.count()
_records: list[dict[str, Any]] = []
_users = itertools.count()
_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_UPLOAD_BODY = Path(SPEC["upload_path"]).read_bytes()


def _ticket() -> int:
    number = next(_tickets)
    if number >= TOTAL:
        raise StopUser
    return number


class Member(HttpUser):
    """A member who downloads whole documents, reads ranges of the large one, uploads, and asks
    for another company's document (refused)."""

    wait_time = staticmethod(lambda: 0.0)

    def on_start(self) -> None:
        self.index = next(_users)
        session = SPEC["sessions"][self.index % len(SPEC["sessions"])]
        self.client.cookies.set(session["name"], session["value"])
        self.rng = random.Random(self.index)
        # The upload form's CSRF token (and cookie): setup, not counted among the requests.
        page = self.client.get(
            "/documents/upload/",
            headers={"X-Request-ID": f"{RUN}-setup-{self.index}"},
            name="setup: upload form",
        )
        found = _CSRF_FIELD.search(page.text)
        if page.status_code != 200 or found is None:
            raise RuntimeError(f"upload form: status {page.status_code}, no CSRF token")
        self.csrf = found.group(1)

    def _record(self, kind: str, number: int, expected: int, length: int, send: Any) -> None:
        request_id = f"{RUN}-{number}"
        started = time.perf_counter()
        error = ""
        try:
            response = send({"X-Request-ID": request_id})
            status, received = response.status_code, len(response.content)
        except Exception as exc:  # a dropped connection is an error of this request
            status, received, error = 0, 0, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        if not error and status != expected:
            error = f"status {status}, expected {expected}"
        elif not error and length >= 0 and received != length:
            error = f"{received} bytes, expected {length}"
        _records.append(
            {
                "id": request_id,
                "kind": kind,
                "status": status,
                "bytes": received,
                "ms": seconds * 1000,
                "error": error,
                "end": time.time(),
            }
        )

    @task(5)
    def download(self) -> None:
        number = _ticket()
        document = self.rng.choice(SPEC["documents"])
        self._record(
            "download",
            number,
            200,
            document["size"],
            lambda headers: self.client.get(
                f"/documents/{document['id']}/download/", headers=headers, name="download"
            ),
        )

    @task(3)
    def range_read(self) -> None:
        number = _ticket()
        document = SPEC["documents"][-1]
        length = min(SPEC["range_length"], document["size"])
        first = self.rng.randrange(0, document["size"] - length + 1)
        self._record(
            "range",
            number,
            206,
            length,
            lambda headers: self.client.get(
                f"/documents/{document['id']}/download/",
                headers={**headers, "Range": f"bytes={first}-{first + length - 1}"},
                name="range",
            ),
        )

    @task(1)
    def refused(self) -> None:
        number = _ticket()
        self._record(
            "refused",
            number,
            404,
            -1,
            lambda headers: self.client.get(
                f"/documents/{SPEC['foreign']}/download/", headers=headers, name="refused"
            ),
        )

    @task(2)
    def upload(self) -> None:
        number = _ticket()
        self._record(
            "upload",
            number,
            302,
            -1,
            lambda headers: self.client.post(
                "/documents/upload/",
                data={
                    "csrfmiddlewaretoken": self.csrf,
                    "company": SPEC["company"],
                    "title": f"Load upload {number}",
                },
                files={"file": (f"load-{number}.pdf", _UPLOAD_BODY, "application/pdf")},
                headers=headers,
                allow_redirects=False,
                name="upload",
            ),
        )


def _watch(environment: Any) -> None:
    """Quit once every ticket has its response (or the time limit of the command line ends it)."""
    while len(_records) < TOTAL:
        gevent.sleep(0.05)
    environment.runner.quit()


@events.test_start.add_listener
def _started(environment: Any, **kwargs: Any) -> None:
    gevent.spawn(_watch, environment)


@events.quitting.add_listener
def _write(environment: Any, **kwargs: Any) -> None:
    with open(SPEC["records_path"], "w") as out:
        for record in _records:
            out.write(json.dumps(record) + "\n")
