"""Template helpers shared by the portal and the dashboard."""

from typing import Any

from django import template

from compliance.permissions import dashboard_allowed

register = template.Library()


@register.filter
def can_use_dashboard(user: Any) -> bool:
    """Return whether the navigation offers this user the compliance dashboard."""
    return dashboard_allowed(user)
