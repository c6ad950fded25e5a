"""The reports pages, included under /compliance/reports/ by config/urls.py."""

from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("", views.report_list, name="report_list"),
    path("generate/", views.report_create, name="report_create"),
    path("verify/", views.report_verify_page, name="report_verify"),
    path("<uuid:pk>/download/", views.report_download, name="report_download"),
]
