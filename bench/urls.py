"""The product's URLs plus the two baselines the download benchmark compares against."""

from django.urls import include, path

from . import baseline_views

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
