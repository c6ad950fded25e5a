"""The load test, scaled down: locust against gunicorn (4 workers) on PostgreSQL and the bucket.

bench/load.py runs it in full (`python -m bench load`); here a few hundred requests must all get
their expected answer and leave exactly one access event each, and the chain must verify. Marked
`load` (and `postgres`, `s3`): `-m "not load"` leaves it out.
"""

import pytest

pytestmark = [pytest.mark.load, pytest.mark.postgres, pytest.mark.s3]


@pytest.fixture(scope="module")
def load_result(postgres_server, s3_server, tmp_path_factory):
    from bench.load import SMALL, load_run

    return load_run(SMALL, tmp_path_factory.mktemp("load"), postgres_server, s3_server)


def test_every_request_gets_its_answer_and_exactly_one_event(load_result):
    assert load_result.problems() == []
    assert len(load_result.records) == load_result.plan.requests
    kinds = {record["kind"] for record in load_result.records}
    assert kinds == {"download", "range", "upload", "refused"}
    assert load_result.events_checked == load_result.plan.requests
    assert load_result.verify_ok, load_result.verify_summary


def test_the_refused_requests_were_refused_and_recorded_as_denied(load_result):
    refused = [record for record in load_result.records if record["kind"] == "refused"]
    assert refused
    assert all(record["status"] == 404 and not record["error"] for record in refused)


def test_the_check_notices_a_missing_and_a_duplicate_event(load_result):
    """The refused twin of the check: a request without its event, or with two, is reported."""
    import subprocess
    import sys

    from bench.common import ROOT
    from bench.load import load_check

    records = load_result.records
    twice = next(record["id"] for record in records if record["kind"] == "download")
    # A second event with the same request id, appended through the real recorder.
    record_again = (
        "import django; django.setup()\n"
        "from django.http import HttpRequest\n"
        "from vault.access import Access, AccessContext, Action, Outcome, access_record\n"
        "request = HttpRequest()\n"
        f"request.META['HTTP_X_REQUEST_ID'] = {twice!r}\n"
        "access_record(Access(Outcome.ALLOWED, AccessContext(action=Action.OPEN, request=request)))\n"
    )
    subprocess.run(
        [sys.executable, "-c", record_again], cwd=ROOT, env=load_result.env, check=True, timeout=120
    )
    ghost = {**records[0], "id": f"{load_result.run}-never-sent"}
    check = load_check(load_result, [*records, ghost])
    assert check["missing"] == [ghost["id"]]
    assert check["duplicated"] == [twice]
    assert check["verify_ok"], check["verify_summary"]
