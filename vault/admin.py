"""Admin pages for companies, memberships, documents and grants.

Uploads through the admin go through the same encrypting upload handler (FILE_UPLOAD_HANDLERS) and
the same `vault.documents.document_store()` as the portal. The stored file is never linked by its media path:
the admin links to the permission-checked, recorded download view instead.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from .documents import document_remove, document_store, grant_remove, grant_save
from .models import Company, Document, Grant, Membership
from .uploads import upload_error


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "member_count", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> Any:
        """Count the members in the list's one query."""
        return super().get_queryset(request).annotate(members=Count("memberships"))

    @admin.display(description="Members", ordering="members")
    def member_count(self, company: Company) -> int:
        """Return how many users belong to the company."""
        return company.members


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "company", "role"]
    list_filter = ["role", "company"]
    search_fields = ["user__username", "user__email", "company__name"]
    autocomplete_fields = ["user", "company"]
    list_select_related = ["user", "company"]


class DocumentAddForm(forms.ModelForm):
    """A new document: the file is stored encrypted, its metadata filled in from the upload."""

    title = forms.CharField(max_length=200, required=False, help_text="Empty: the file name.")

    class Meta:
        model = Document
        fields = ["company", "title", "file"]

    def clean_file(self) -> Any:
        """Return the upload; refuse one the upload handler refused (too large)."""
        upload = self.cleaned_data.get("file")
        error = upload_error(upload)
        if error:
            raise forms.ValidationError(error, code="too_large")
        return upload


class GrantInline(admin.TabularInline):
    model = Grant
    fk_name = "document"
    extra = 0
    fields = ["company", "expires_at", "granted_by", "granted_at"]
    readonly_fields = ["granted_by", "granted_at"]
    autocomplete_fields = ["company"]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "company",
        "original_filename",
        "size_display",
        "mime_type",
        "key_id",
        "uploaded_by",
        "uploaded_at",
    ]
    list_filter = ["company", "mime_type", "key_id"]
    search_fields = ["title", "original_filename", "company__name"]
    list_select_related = ["company", "uploaded_by"]
    date_hierarchy = "uploaded_at"
    autocomplete_fields = ["company"]
    # No "View on site", and never a link to the stored name under the media root.
    view_on_site = False
    readonly_fields = [
        "download",
        "original_filename",
        "size_display",
        "mime_type",
        "key_id",
        "uploaded_by",
        "uploaded_at",
    ]
    inlines = [GrantInline]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        """Return the add form (with the file) for a new document; the file is fixed afterwards."""
        if obj is None:
            kwargs["form"] = DocumentAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Return the upload fields for a new document, the metadata for an existing one."""
        if obj is None:
            return ["company", "title", "file"]
        return ["title", "company", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Return the fixed fields of a saved document: moving it would change its readers unseen."""
        return ["company", *self.readonly_fields] if obj is not None else []

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        """Return the grants inline for an existing document only."""
        return self.inlines if obj is not None else []

    @admin.display(description="Size", ordering="size")
    def size_display(self, document: Document) -> str:
        """Return the plaintext size, human readable."""
        return filesizeformat(document.size)

    @admin.display(description="File")
    def download(self, document: Document) -> str:
        """Return a link to the recorded download view (never the media path)."""
        url = reverse("vault:document_download", args=[document.pk])
        return format_html('<a href="{}">Download (recorded)</a>', url)

    def save_model(self, request: HttpRequest, obj: Document, form: Any, change: bool) -> None:
        """Store a new upload encrypted, recorded as an upload by this user."""
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.uploaded_by = request.user
        document_store(obj, form.cleaned_data["file"], user=request.user, request=request)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Save grants through `grant_save` / `grant_remove`, so each share is recorded."""
        if formset.model is not Grant:
            super().save_formset(request, form, formset, change)
            return
        grants = formset.save(commit=False)
        for grant in formset.deleted_objects:
            grant_remove(grant, user=request.user, request=request)
        for grant, changed in formset.changed_objects:
            if "company" in changed:
                # Moving a grant to another company: a revocation, then a new share.
                previous = Grant.objects.select_related("company").get(pk=grant.pk)
                grant_remove(previous, user=request.user, request=request)
        for grant in grants:
            grant_save(
                grant.document, grant.company, grant.expires_at, user=request.user, request=request
            )

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        """Delete the document and, once committed, its encrypted file; record it."""
        document_remove(obj, user=request.user, request=request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        """Delete each document as `delete_model` does."""
        for document in queryset:
            document_remove(document, user=request.user, request=request)


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = ["document", "company", "granted_by", "granted_at", "expires_at", "is_live"]
    list_filter = ["company"]
    search_fields = ["document__title", "company__name"]
    autocomplete_fields = ["document", "company"]
    list_select_related = ["document", "company", "granted_by"]
    readonly_fields = ["granted_by", "granted_at"]

    @admin.display(boolean=True, description="Live")
    def is_live(self, grant: Grant) -> bool:
        """Return whether the grant still gives access."""
        return grant.is_live

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Return the fixed fields: a saved grant changes its expiry only."""
        if obj is None:
            return self.readonly_fields
        return ["document", "company", *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: Grant, form: Any, change: bool) -> None:
        """Save through `grant_save`, so the share is recorded."""
        saved = grant_save(
            obj.document, obj.company, obj.expires_at, user=request.user, request=request
        )
        obj.pk, obj.granted_by = saved.pk, saved.granted_by

    def delete_model(self, request: HttpRequest, obj: Grant) -> None:
        """Delete through `grant_remove`, so the revocation is recorded."""
        grant_remove(obj, user=request.user, request=request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Grant]) -> None:
        """Delete each grant as `delete_model` does."""
        for grant in queryset.select_related("document", "company"):
            grant_remove(grant, user=request.user, request=request)
