"""The product's URLs plus the two baselines the download benchmark compares against."""

import os

from django.urls import include, path

from vault import downloads

from . import baseline_views

if os.environ.get("BENCH_NO_READ_AHEAD"):
    # The diagnostic server of `python -m bench http`: every segment decrypted in the serving
    # thread, to measure what the read-ahead buys against it, side by side.
    downloads.READ_AHEAD_MIN_BYTES = 1 << 62

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
