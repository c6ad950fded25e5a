"""The access log as CSV: the columns of the dashboard's export and of the signed reports'
attachment, and the cell rule of the export (the report's writer quotes its free-text columns with
the same formula characters, per column for speed)."""

from datetime import datetime

CSV_COLUMNS = (
    "seq",
    "when",
    "actor_id",
    "actor_username",
    "action",
    "outcome",
    "reason",
    "staff_read",
    "document_id",
    "document_title",
    "stored_name",
    "client_ip",
    "user_agent",
    "key_id",
    "bytes_served",
    "duration_ms",
    "request_id",
    "chain_key_id",
    "prev_hash",
    "hash",
)
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_START = frozenset("=+-@\t\r")


def csv_cell(value: object) -> str:
    """Return a value as CSV text a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text and text[0] in FORMULA_START else text
