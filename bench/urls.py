"""The product's URLs plus the two baselines the download benchmark compares against."""

import os

from django.conf import settings
from django.urls import include, path

from vault import downloads

from . import baseline_views

if os.environ.get("BENCH_READ_AHEAD_FLIP"):
    # The diagnostic server of `python -m bench http`: the download view's read-ahead turned the
    # other way from its default here (VAULT_READ_AHEAD on where it is off, and off where it is
    # on), to measure what it buys, side by side.
    settings.VAULT_READ_AHEAD = "off" if downloads.read_ahead_enabled() else "on"

urlpatterns = [
    path("bench/plain/<str:name>", baseline_views.plain_download, name="bench_plain"),
    path(
        "bench/plain-login/<str:name>",
        baseline_views.plain_login_download,
        name="bench_plain_login",
    ),
    path(
        "bench/case-study/<path:path>",
        baseline_views.FetchCompanyDocumentsView.as_view(),
        name="bench_case_study",
    ),
    path("", include("config.urls")),
]
