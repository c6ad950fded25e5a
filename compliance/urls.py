from django.urls import include, path

from . import keys_views, scan_views, views

app_name = "compliance"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("activity.svg", views.activity_chart, name="activity_chart"),
    path("chain/verify/", views.chain_verify_now, name="chain_verify"),
    path("access-log/", views.AccessLogView.as_view(), name="access_log"),
    path("access-log/export.csv", views.access_log_export, name="access_log_export"),
    path("access-log/<int:seq>/", views.event_detail, name="event_detail"),
    path("scans/", include(scan_views.urlpatterns)),
    path("keys/", include(keys_views.urlpatterns)),
    path("retention/", include("compliance.retention_views")),
]
