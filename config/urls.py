"""Top-level URL configuration. No URL serves MEDIA_ROOT directly: the vault's views do."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("compliance/", include("compliance.urls")),
    path("", include("vault.urls")),
]
