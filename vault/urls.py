from django.urls import path

from . import downloads, views

app_name = "vault"

urlpatterns = [
    path("", views.document_list, name="document_list"),
    path("documents/upload/", views.document_upload, name="document_upload"),
    path("documents/<uuid:pk>/", views.document_detail, name="document_detail"),
    path("documents/<uuid:pk>/share/", views.document_share, name="document_share"),
    path(
        "documents/<uuid:pk>/grants/<int:grant_id>/revoke/",
        views.grant_revoke,
        name="grant_revoke",
    ),
    path("documents/<uuid:pk>/delete/", views.document_delete, name="document_delete"),
    path("documents/<uuid:pk>/download/", downloads.document_download, name="document_download"),
    # The case study's path-based route, kept so that existing links keep working.
    path("vault/<path:path>", downloads.serve, name="serve"),
]
