"""Who may use the compliance dashboard: staff holding `compliance.view_dashboard`.

The "Compliance officers" group (created by migration 0004) holds the permission; putting a staff
user in it opens the dashboard. Every refusal is recorded in the access log (compliance-view,
denied): anonymous visitors go on to the login page, everyone else gets a 403 page.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from vault.access import Action, refusal_record

DASHBOARD_PERMISSION = "compliance.view_dashboard"
OFFICERS_GROUP = "Compliance officers"


def dashboard_refusal_reason(user: Any) -> str:
    """Return why this user may not use the dashboard, or "" if they may."""
    if not getattr(user, "is_authenticated", False):
        return "not logged in"
    if not user.is_active:
        return "inactive account"
    if not user.is_staff:
        return "not staff"
    if not user.has_perm(DASHBOARD_PERMISSION):
        return f"lacks the {DASHBOARD_PERMISSION} permission"
    return ""


def dashboard_allowed(user: Any) -> bool:
    """Return whether this user may use the dashboard."""
    return not dashboard_refusal_reason(user)


def officer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Let compliance officers through; record everyone else, then log in (anonymous) or 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reason = dashboard_refusal_reason(request.user)
        if not reason:
            return view(request, *args, **kwargs)
        refusal_record(request, Action.COMPLIANCE_VIEW, f"{reason}: {request.path}")
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        context = {"reason": reason, "group": OFFICERS_GROUP}
        return render(request, "compliance/forbidden.html", context, status=403)

    return wrapper
