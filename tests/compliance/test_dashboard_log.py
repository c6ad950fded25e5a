"""The access-log browser: filters, sorts, pages without counting, index use, detail, CSV export."""

import csv
import io
import re
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compliance.access_log import access_event_record
from compliance.export import CSV_COLUMNS, csv_cell
from compliance.models import AccessEvent
from compliance.tables import AccessEventTable
from reports.build import events_csv_chunks, period_make
from tests.compliance import dashboard
from tests.helpers import document_events, response_close
from vault.access import Access, AccessContext, Action, Outcome
from vault.keys import keyring

pytestmark = pytest.mark.django_db
compliance_officer = dashboard.compliance_officer
uploaded = dashboard.uploaded

LOG = reverse("compliance:access_log")
EXPORT = reverse("compliance:access_log_export")


@pytest.fixture
def history(uploaded, alice, bob, charlie, officer):
    """A varied log: uploads (3), reads, a staff read, refusals, a failure, from several IPs."""
    valuation, nda, checklist = uploaded["valuation"], uploaded["nda"], uploaded["checklist"]
    dashboard.access_add(bob, document=valuation, ip="192.0.2.20")
    dashboard.access_add(charlie, document=valuation, outcome=Outcome.DENIED, reason="not a reader")
    dashboard.access_add(charlie, document=nda, outcome=Outcome.DENIED, reason="not a reader")
    dashboard.access_add(officer, document=nda, staff_read=True, ip="198.51.100.5")
    dashboard.access_add(
        bob, document=checklist, outcome=Outcome.FAILED, reason="authentication failed"
    )
    dashboard.access_add(
        alice, action=Action.SHARE, document=valuation, reason="shared with Globex"
    )
    dashboard.access_add(charlie, document=checklist, key_id=keyring().keys[1].key_id_hex)
    return uploaded


def page(client, user, query=""):
    client.force_login(user)
    response = client.get(f"{LOG}?{query}" if query else LOG)
    assert response.status_code == 200
    return response


def rows(response):
    return [row.record for row in response.context["table"].paginated_rows]


def export(client, user, query=""):
    client.force_login(user)
    response = client.get(f"{EXPORT}?{query}" if query else EXPORT)
    assert response.status_code == 200
    assert response.streaming
    content = b"".join(response.streaming_content).decode()
    response_close(response)
    return response, list(csv.reader(io.StringIO(content)))


def test_the_log_lists_every_event_newest_first(client, compliance_officer, history):
    listed = rows(page(client, compliance_officer))
    # The history's 10 events, and the account events of the cast and carol's login among them.
    head = AccessEvent.objects.latest("seq").seq
    assert [event.seq for event in listed] == list(range(head, 0, -1))
    assert document_events().count() == 10


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=charlie", lambda e: e.actor_username == "charlie"),
        ("action=share", lambda e: e.action == "share"),
        ("outcome=denied", lambda e: e.outcome == "denied"),
        ("outcome=failed", lambda e: e.outcome == "failed"),
        ("ip=198.51.100.5", lambda e: e.client_ip == "198.51.100.5"),
        ("staff=only", lambda e: e.staff_read),
        ("staff=exclude", lambda e: not e.staff_read),
        (
            "actor=charlie&outcome=denied",
            lambda e: (e.actor_username, e.outcome) == ("charlie", "denied"),
        ),
    ],
)
def test_each_filter_lists_exactly_its_events(client, compliance_officer, history, query, expected):
    listed = rows(page(client, compliance_officer, query))
    wanted = [e for e in AccessEvent.objects.order_by("-seq") if expected(e)]
    assert listed == wanted
    assert 0 < len(wanted) < AccessEvent.objects.count()


def test_filter_by_document_company_and_key(client, compliance_officer, history, globex):
    nda = history["nda"]
    listed = rows(page(client, compliance_officer, f"document={nda.pk}"))
    assert {e.document_id for e in listed} == {nda.pk} and len(listed) == 3
    listed = rows(page(client, compliance_officer, f"company={globex.pk}"))
    assert {e.document_id for e in listed} == {history["checklist"].pk} and len(listed) == 3
    old_key = keyring().keys[1].key_id_hex
    listed = rows(page(client, compliance_officer, f"key={old_key.upper()}"))
    assert [e.key_id for e in listed] == [old_key]


def test_filter_by_period(client, compliance_officer, history):
    today = timezone.localdate()
    listed = rows(page(client, compliance_officer, f"when_after={today}&when_before={today}"))
    assert listed == list(AccessEvent.objects.order_by("-seq"))
    assert document_events().count() == 10
    assert rows(page(client, compliance_officer, f"when_after={today + timedelta(days=1)}")) == []
    assert rows(page(client, compliance_officer, f"when_before={today - timedelta(days=1)}")) == []


@pytest.mark.parametrize("query", ["ip=not-an-ip", "key=xyz", "document=123", "when_after=soon"])
def test_an_invalid_filter_says_so_and_lists_nothing(client, compliance_officer, history, query):
    response = page(client, compliance_officer, query)
    assert rows(response) == []
    assert b"alert-danger" in response.content
    client.force_login(compliance_officer)
    refused = client.get(f"{EXPORT}?{query}")
    assert refused.status_code == 400 and b"Invalid filter" in refused.content


@pytest.mark.parametrize(
    ("sort", "key"),
    [
        ("when", lambda e: e.seq),
        ("-when", lambda e: -e.seq),
        ("actor", lambda e: (e.actor_username, e.seq)),
        ("-actor", lambda e: (_desc(e.actor_username), -e.seq)),
        ("action", lambda e: (e.action, e.seq)),
        ("outcome", lambda e: (e.outcome, e.seq)),
        ("-outcome", lambda e: (_desc(e.outcome), -e.seq)),
    ],
)
def test_each_sort_orders_the_rows(client, compliance_officer, history, sort, key):
    listed = rows(page(client, compliance_officer, f"sort={sort}"))
    assert listed == sorted(AccessEvent.objects.all(), key=key)


def _desc(text):
    return [-ord(char) for char in text] + [1]


def test_pages_never_count_the_table(client, compliance_officer, history, settings):
    client.force_login(compliance_officer)
    # The allowed events, account events included, fill a full page and a partial second one.
    allowed = [e.seq for e in AccessEvent.objects.filter(outcome="allowed").order_by("-seq")]
    assert 0 < len(allowed) < AccessEvent.objects.count()
    settings.DASHBOARD_PAGE_SIZE = size = len(allowed) // 2 + 1
    with CaptureQueriesContext(connection) as queries:
        first = client.get(f"{LOG}?outcome=allowed")
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert [e.seq for e in rows(first)] == allowed[:size]
    assert b"page=2" in first.content
    second = client.get(f"{LOG}?outcome=allowed&page=2")
    assert [e.seq for e in rows(second)] == allowed[size:] != []
    assert b"page=3" not in second.content


# Every offered sort and every filter is an index range scan (SQLite's query plan) ----------------

# Each query and the index (or indexes: the planner may pick either) that must serve it.
PLAN_QUERIES = [
    *(
        (f"sort={sign}{sort}", index)
        for sort, index in (
            ("when", "when"),
            ("actor", "username_when"),
            ("action", "action_when"),
            ("outcome", "outcome_when"),
        )
        for sign in ("", "-")
    ),
    ("actor=charlie", "username_when"),
    ("action=download", "action_when"),
    ("outcome=denied", "outcome_when"),
    ("ip=192.0.2.10", "ip_when"),
    ("staff=only", "staff_when"),
    ("when_after=2026-01-01", "when"),
    ("DOCUMENT", "document_when"),
    ("COMPANY", "document_when"),
    ("KEY", "key_when"),
    ("actor=charlie&outcome=denied", "username_when|outcome_when"),
]


def events_table_plan(sql: str) -> tuple[str, str]:
    """Return SQLite's plan of `sql`: the one line that reads the events table, and the whole plan."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        plan = [row[-1] for row in cursor.fetchall()]
    table = AccessEvent._meta.db_table
    [line] = [line for line in plan if re.match(rf"(SCAN|SEARCH) (TABLE )?{table}\b", line)]
    return line, "\n".join(plan)


@pytest.mark.parametrize(("query", "index"), PLAN_QUERIES)
def test_the_page_query_is_served_by_an_index(
    client, compliance_officer, history, acme, query, index
):
    if connection.vendor != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    query = {
        "DOCUMENT": f"document={history['nda'].pk}",
        "COMPANY": f"company={acme.pk}",
        "KEY": f"key={keyring().primary.key_id_hex}",
    }.get(query, query)
    client.force_login(compliance_officer)
    with CaptureQueriesContext(connection) as queries:
        client.get(f"{LOG}?{query}")
    table = AccessEvent._meta.db_table
    [sql] = [q["sql"] for q in queries if f'FROM "{table}"' in q["sql"] and "LIMIT" in q["sql"]]
    line, text = events_table_plan(sql)
    # Named, so that a dropped index fails here even when the planner falls back to another one.
    assert re.fullmatch(
        rf"(SCAN|SEARCH) (TABLE )?\S+ USING (COVERING )?INDEX compliance_ae_({index})\b.*", line
    ), text
    # A company's events are the union of its documents' index ranges, sorted once: the one
    # filter that sorts (only the company's events, never the table).
    if not query.startswith("company="):
        assert "TEMP B-TREE" not in text, text


def test_every_orderable_column_is_in_the_plan_test():
    orderable = {column.name for column in AccessEventTable([]).columns if column.orderable}
    assert orderable == {"when", "actor", "action", "outcome"}


# Event detail ------------------------------------------------------------------------------------


def test_event_detail_shows_every_field_and_its_neighbours(client, compliance_officer, history):
    event = AccessEvent.objects.get(
        actor_username="charlie", document=history["valuation"].pk, outcome="denied"
    )
    client.force_login(compliance_officer)
    response = client.get(reverse("compliance:event_detail", args=[event.seq]))
    content = response.content.decode()
    for value in (
        event.actor_username,
        event.reason,
        event.hash,
        event.prev_hash,
        event.key_id,
        str(event.document_id),
        event.document_title,
        event.client_ip,
        event.request_id,
        event.chain_key_id,
        event.stored_name,
        "Denied",
    ):
        assert value in content, value
    assert reverse("compliance:event_detail", args=[event.seq - 1]) in content
    assert reverse("compliance:event_detail", args=[event.seq + 1]) in content
    assert f"{LOG}?actor=charlie" in content


def test_an_unknown_event_is_404(client, compliance_officer, history):
    client.force_login(compliance_officer)
    assert client.get(reverse("compliance:event_detail", args=[999])).status_code == 404


# CSV export --------------------------------------------------------------------------------------


def test_the_export_holds_exactly_the_filtered_events_and_is_recorded(
    client, compliance_officer, history
):
    response, lines = export(client, compliance_officer, "actor=charlie&outcome=denied")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="access-log-\d{8}-\d{6}\.csv"', response["Content-Disposition"]
    )
    assert response["Cache-Control"] == "private, no-store"
    header, *data = lines
    assert header == list(CSV_COLUMNS)
    expected = AccessEvent.objects.filter(actor_username="charlie", outcome="denied").order_by(
        "seq"
    )
    refused = document_events().filter(reason="not a reader").order_by("seq")
    assert [int(line[0]) for line in data] == [e.seq for e in expected] == [e.seq for e in refused]
    assert len(data) == 2
    first = dict(zip(header, data[0], strict=True))
    event = expected[0]
    assert first["hash"] == event.hash and first["document_id"] == str(event.document_id)
    assert first["when"] == event.when.isoformat() and first["client_ip"] == event.client_ip
    record = AccessEvent.objects.latest("seq")
    assert (record.action, record.outcome, record.actor_username) == (
        "log-export",
        "allowed",
        "carol",
    )
    assert record.reason == "2 rows; filter: actor=charlie, outcome=denied"
    # Recorded right after carol's login, before the rows were read, and not part of the export.
    login = AccessEvent.objects.get(action="login", actor_username="carol")
    assert record.seq == login.seq + 1


def test_an_unfiltered_export_holds_the_whole_log(client, compliance_officer, history):
    _, lines = export(client, compliance_officer)
    record = AccessEvent.objects.latest("seq")
    assert record.action == "log-export"
    # Every event before the export's own record: the history's 10 and the account events.
    assert [int(line[0]) for line in lines[1:]] == list(range(1, record.seq))
    assert document_events().filter(seq__lt=record.seq).count() == 10
    assert record.reason == f"{record.seq - 1} rows; filter: no filter"


def test_the_export_link_carries_the_filters(client, compliance_officer, history):
    content = page(client, compliance_officer, "outcome=denied&sort=actor&page=1").content.decode()
    assert f'href="{EXPORT}?outcome=denied"' in content


def test_exported_cells_never_run_as_formulas(client, compliance_officer, alice, uploaded):
    dashboard.access_add(
        alice, document=uploaded["nda"], reason='=HYPERLINK("http://evil.example","x")'
    )
    dashboard.access_add(alice, reason="+1+2")
    dashboard.access_add(alice, reason="@SUM(A1)")
    dashboard.access_add(alice, reason="-3")
    _, lines = export(client, compliance_officer, "actor=alice&action=download")
    reasons = [dict(zip(lines[0], line, strict=True))["reason"] for line in lines[1:]]
    assert reasons == ['\'=HYPERLINK("http://evil.example","x")', "'+1+2", "'@SUM(A1)", "'-3"]


def test_the_reports_attachment_is_the_export_byte_for_byte(client, compliance_officer, history):
    # Next to the history: text a spreadsheet would run and text csv must quote, an IPv6 client,
    # a command's event (no actor, document or address) and a measured duration.
    alice = history["nda"].uploaded_by
    dashboard.access_add(alice, document=history["nda"], reason='=cmd|"/c calc"!A1, x')
    dashboard.access_add(alice, reason='-3,5 "quoted"', ip="2001:db8::7")
    context = AccessContext(
        action=Action.CLI_DECRYPT, extra={"operator": "root", "started": time.perf_counter()}
    )
    access_event_record(Access(Outcome.ALLOWED, context, key_id=keyring().primary.key_id_hex))
    client.force_login(compliance_officer)  # recorded (login) before both read the log
    now = timezone.now()
    period = period_make(now - timedelta(days=1), now + timedelta(seconds=1))

    attachment = b"".join(events_csv_chunks(period, chunk_rows=3))
    response = client.get(EXPORT)
    exported = b"".join(response.streaming_content)
    response_close(response)

    assert attachment == exported
    lines = list(csv.reader(io.StringIO(attachment.decode())))
    assert len(lines) == 1 + AccessEvent.objects.filter(seq__lte=period.head_seq).count()
    assert '\'=cmd|"/c calc"!A1, x' in [line[CSV_COLUMNS.index("reason")] for line in lines]
    assert b'"\'-3,5 ""quoted"""' in attachment


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1", "'=1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("a=1", "a=1"),
        (None, ""),
        (12, "12"),
        (False, "False"),
    ],
)
def test_csv_cell(value, cell):
    assert csv_cell(value) == cell


def test_the_log_is_refused_to_members_and_recorded(client, alice, history):
    client.force_login(alice)
    assert client.get(EXPORT).status_code == 403
    event = AccessEvent.objects.latest("seq")
    assert (event.action, event.outcome, event.reason) == (
        "compliance-view",
        "denied",
        f"not staff: {EXPORT}",
    )
    assert not AccessEvent.objects.filter(action="log-export").exists()


# A filter that matches most of the log, sorted by another column: the sort's index is walked -----

STEERED = [
    "outcome=allowed&sort=actor",
    "action=download&sort=-outcome",
    "staff=exclude&sort=action",
    "actor=charlie&sort=-outcome",
    "ip=192.0.2.10&sort=-actor",
    "TODAY&sort=actor",
    "COMPANY&sort=outcome",
]


def _plan_and_rows(client, query):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{LOG}?{query}")
    table = AccessEvent._meta.db_table
    [sql] = [q["sql"] for q in queries if f'FROM "{table}"' in q["sql"] and "LIMIT 51" in q["sql"]]
    _, plan = events_table_plan(sql)
    return sql, plan, rows(response)


@pytest.mark.parametrize("query", STEERED)
def test_a_broad_filter_sorted_by_another_column_walks_the_sort_index(
    client, compliance_officer, history, acme, settings, query
):
    if connection.vendor != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    query = query.replace("TODAY", f"when_after={timezone.localdate()}").replace(
        "COMPANY", f"company={acme.pk}"
    )
    client.force_login(compliance_officer)
    settings.DASHBOARD_SORT_IN_MEMORY_MAX = 10_000
    sorted_sql, _, sorted_rows = _plan_and_rows(client, query)
    settings.DASHBOARD_SORT_IN_MEMORY_MAX = 2
    walked_sql, walked_plan, walked_rows = _plan_and_rows(client, query)
    assert walked_rows == sorted_rows and len(walked_rows) > 2
    assert "TEMP B-TREE" not in walked_plan, walked_plan
    # Below the limit the filters use their indexes; above it, unindexed copies of their columns.
    assert '+"compliance_accessevent"' not in sorted_sql
    assert '+"compliance_accessevent"' in walked_sql


def test_applied_filters_are_listed_with_a_link_that_removes_each(
    client, compliance_officer, history
):
    today = timezone.localdate()
    response = page(client, compliance_officer, f"outcome=denied&actor=charlie&when_after={today}")
    active = {item["label"]: item for item in response.context["active_filters"]}
    assert active["Outcome"]["value"] == "Denied" and active["Actor"]["value"] == "charlie"
    assert active["Period"]["value"] == f"{today:%Y-%m-%d} to …"
    assert active["Outcome"]["remove_url"] == f"{LOG}?actor=charlie&when_after={today}"
    assert active["Period"]["remove_url"] == f"{LOG}?outcome=denied&actor=charlie"
    content = response.content.decode()
    assert 'id="active-filters"' in content and "Denied" in content
