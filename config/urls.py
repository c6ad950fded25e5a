"""Top-level URL configuration. No URL serves MEDIA_ROOT directly: the vault's views do."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    # Before compliance/: the reports app depends on compliance, never the other way.
    path("compliance/reports/", include("reports.urls")),
    path("compliance/", include("compliance.urls")),
    path("", include("vault.urls")),
]
