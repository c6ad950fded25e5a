"""The site's URLs, with the scan pages in the `compliance` namespace under /compliance/scans/.

For the tests of the scan pages until compliance/urls.py (the dashboard) includes them itself; then
this module and the tests' `urls` marker can go.
"""

from django.urls import include, path

from compliance import scan_views
from config.urls import urlpatterns as site_urlpatterns

try:
    from compliance.urls import urlpatterns as dashboard_urlpatterns
except ModuleNotFoundError:  # the dashboard's pages are not on this branch
    dashboard_urlpatterns = []

compliance_urlpatterns = [
    *(pattern for pattern in dashboard_urlpatterns if str(pattern.pattern) != "scans/"),
    path("scans/", include(scan_views.urlpatterns)),
]

urlpatterns = [
    path("compliance/", include((compliance_urlpatterns, "compliance"))),
    *site_urlpatterns,
]
