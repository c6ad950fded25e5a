"""The retention page: the retention, the last prune checkpoints and the legal hold switch.

Included by the lead under /compliance/retention/ (module-level `urlpatterns`). Behind
`officer_required` like every dashboard page; a change of the hold is recorded by legal_hold_set().
"""

import logging

from django import forms
from django.contrib import messages
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods

from vault.access import RecordError

from .permissions import officer_required
from .retention import legal_hold_set, retention_overview

logger = logging.getLogger(__name__)

UNAVAILABLE = "The change could not be recorded in the access log, so it was not made."


class LegalHoldForm(forms.Form):
    """Switch the legal hold on or off, saying why."""

    on = forms.TypedChoiceField(
        choices=[("on", "On: block pruning"), ("off", "Off: allow pruning")],
        coerce=lambda value: value == "on",
        widget=forms.RadioSelect,
        label="Legal hold",
    )
    reason = forms.CharField(
        max_length=400,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="The matter, case or request the hold is for (or why it ends). Recorded.",
    )


@officer_required
@require_http_methods(["GET", "HEAD", "POST"])
def retention(request: HttpRequest) -> HttpResponse:
    """Show the retention, the checkpoints and the hold; POST switches the hold."""
    form = LegalHoldForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            hold = legal_hold_set(
                form.cleaned_data["on"],
                user=request.user,
                reason=form.cleaned_data["reason"],
                request=request,
            )
        except (RecordError, DatabaseError):
            logger.exception("A legal hold change could not be recorded")
            return render(request, "vault/unavailable.html", {"message": UNAVAILABLE}, status=503)
        messages.success(request, f"Legal hold {'on' if hold.on else 'off'}: {hold.reason}")
        return redirect(request.path)
    context = {**retention_overview(), "form": form}
    return render(
        request,
        "compliance/retention.html",
        context,
        status=400 if form.is_bound else 200,
    )


urlpatterns = [path("", retention, name="retention")]
