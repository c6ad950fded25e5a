"""The site's URLs plus the scan pages under /compliance/scans/, as the dashboard includes them."""

from django.urls import include, path

from compliance import scan_views
from config.urls import urlpatterns as site_urlpatterns

urlpatterns = [
    path("compliance/scans/", include((scan_views.urlpatterns, "compliance"))),
    *site_urlpatterns,
]
