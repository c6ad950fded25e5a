"""The access log in the admin: searchable, filterable, and strictly read-only."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AccessEvent, ChainCheck


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows shown, never added, changed or deleted here: only their own code path writes them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AccessEvent)
class AccessEventAdmin(ReadOnlyAdmin):
    list_display = [
        "seq",
        "when",
        "actor_username",
        "action",
        "outcome",
        "document_title",
        "staff_read",
        "client_ip",
        "key_id",
    ]
    list_filter = ["outcome", "action", "staff_read", "when"]
    search_fields = ["actor_username", "document_title", "stored_name", "reason", "=request_id"]
    date_hierarchy = "when"
    ordering = ["-seq"]
    # A COUNT(*) over the whole log on every page is what makes big admin lists slow.
    show_full_result_count = False
    list_per_page = 50


@admin.register(ChainCheck)
class ChainCheckAdmin(ReadOnlyAdmin):
    """Past verifications of the chain, read-only: they are written by chain_check_run()."""

    list_display = [
        "when",
        "status",
        "count",
        "head_seq",
        "published",
        "via",
        "requested_by_username",
    ]
    list_filter = ["status", "via"]
    ordering = ["-when"]
