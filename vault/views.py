"""The end-user document portal: my documents, upload, detail, share, unshare, delete.

Readers of a document are exactly `Document.objects.readable_by()` plus staff holding the read-any
permission (`document_get_for_reader`); only members of the owning company may change it. Everyone
else gets the same 404 as for a document that does not exist, so existence never leaks, and every
refusal to change a document is recorded. The download views live in `vault.downloads`, the
persistence they share with the admin and the commands in `vault.documents`.
"""

import logging
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from .access import Action, RecordError, refusal_record
from .documents import document_create, document_remove, grant_remove, grant_save
from .forms import ShareForm, UploadForm
from .http import unavailable_response
from .middleware import accepts_uploads
from .models import Document, Grant, Membership, document_get_for_reader
from .uploads import EncryptingUploadHandler, UploadRejected

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
NOT_FOUND = "No such document."
UNAVAILABLE = "The action could not be recorded in the access log, so it was not carried out."


# Lookups -----------------------------------------------------------------------------------------


def _document_for_reader(request: HttpRequest, pk: uuid.UUID) -> tuple[Document, bool]:
    """Return the document and whether this is a staff read; record a refusal, then 404."""
    try:
        return document_get_for_reader(request.user, pk=pk)
    except Document.DoesNotExist:
        # A second query, on the refusal path only, so the log says which document was probed.
        wanted = Document.objects.filter(pk=pk).first()
        reason = "not a reader" if wanted is not None else "no such document"
        refusal_record(request, Action.VIEW, reason, document=wanted)
        raise Http404(NOT_FOUND) from None


def _document_for_member(request: HttpRequest, pk: uuid.UUID, action: str) -> Document:
    """Return the document if the user is a member of its company; record a refusal, then 404."""
    member = Membership.objects.filter(user=request.user, company=OuterRef("company"))
    document = (
        Document.objects.select_related("company")
        .annotate(is_member=Exists(member))
        .filter(pk=pk)
        .first()
    )
    if document is None:
        raise Http404(NOT_FOUND)
    if not document.is_member:
        # The same 404 as a missing document, so nothing leaks; the log says who tried what.
        refusal_record(
            request,
            action,
            "not a member of the owning company",
            document=document,
            stored_name=document.file.name or "",
        )
        raise Http404(NOT_FOUND)
    return document


# Views -------------------------------------------------------------------------------------------


@login_required
def document_list(request: HttpRequest) -> HttpResponse:
    """List the user's company's documents and those shared with the user's companies."""
    own = Membership.objects.filter(user=request.user, company=OuterRef("company"))
    documents = (
        Document.objects.readable_by(request.user)
        .select_related("company", "uploaded_by")
        .annotate(is_own=Exists(own))
    )
    page = Paginator(documents, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request, "vault/document_list.html", {"page": page, "documents": page.object_list}
    )


@accepts_uploads
@csrf_exempt
@login_required
def document_upload(request: HttpRequest) -> HttpResponse:
    """Upload a document, encrypted while it is received."""
    # Before anything reads request.POST (the CSRF check would): uploads never reach the disk
    # in plaintext, whatever FILE_UPLOAD_HANDLERS says. Hence csrf_exempt here, csrf_protect next.
    request.upload_handlers = [EncryptingUploadHandler(request)]
    return _document_upload(request)


@csrf_protect
def _document_upload(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES, user=request.user)
        if form.is_valid():
            try:
                document = document_create(
                    company=form.cleaned_data["company"],
                    content=form.cleaned_data["file"],
                    uploaded_by=request.user,
                    title=form.cleaned_data["title"],
                    request=request,
                )
            except RecordError:
                logger.exception("An upload could not be recorded")
                return unavailable_response(request, UNAVAILABLE)
            except UploadRejected as exc:
                form.add_error("file", str(exc))
            else:
                messages.success(request, f"“{document.title}” was uploaded and encrypted.")
                return redirect("vault:document_detail", pk=document.pk)
    else:
        form = UploadForm(user=request.user)
    is_member = form.fields["company"].queryset.exists()
    return render(request, "vault/document_upload.html", {"form": form, "is_member": is_member})


@login_required
def document_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Show a document's metadata, its download link and, to its company, who it is shared with."""
    document, staff_read = _document_for_reader(request, pk)
    return _detail_render(request, document, staff_read)


def _detail_render(
    request: HttpRequest,
    document: Document,
    staff_read: bool,
    share_form: ShareForm | None = None,
    status: int = 200,
) -> HttpResponse:
    is_member = Membership.objects.filter(user=request.user, company=document.company_id).exists()
    # A company the document is shared with does not learn who else received it.
    grants = None
    if is_member or staff_read:
        grants = document.grants.select_related("company", "granted_by").order_by("company__name")
    if is_member and share_form is None:
        share_form = ShareForm(document=document)
    context = {
        "document": document,
        "staff_read": staff_read,
        "is_member": is_member,
        "grants": grants,
        "share_form": share_form if is_member else None,
    }
    return render(request, "vault/document_detail.html", context, status=status)


@login_required
@require_POST
def document_share(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Share the document with another company, optionally until a date (members only)."""
    document = _document_for_member(request, pk, Action.SHARE)
    form = ShareForm(request.POST, document=document)
    if not form.is_valid():
        return _detail_render(request, document, False, share_form=form, status=400)
    company = form.cleaned_data["company"]
    try:
        grant_save(document, company, form.expires_at, user=request.user, request=request)
    except RecordError:
        logger.exception("A share could not be recorded (document %s)", document.pk)
        return unavailable_response(request, UNAVAILABLE)
    messages.success(request, f"Shared with {company}.")
    return redirect("vault:document_detail", pk=document.pk)


@login_required
@require_POST
def grant_revoke(request: HttpRequest, pk: uuid.UUID, grant_id: int) -> HttpResponse:
    """Stop sharing the document with one company (members only)."""
    document = _document_for_member(request, pk, Action.UNSHARE)
    grant = get_object_or_404(
        Grant.objects.select_related("company"), pk=grant_id, document=document
    )
    try:
        grant_remove(grant, user=request.user, request=request)
    except RecordError:
        logger.exception("An unshare could not be recorded (document %s)", document.pk)
        return unavailable_response(request, UNAVAILABLE)
    messages.success(request, f"No longer shared with {grant.company}.")
    return redirect("vault:document_detail", pk=document.pk)


@login_required
@require_http_methods(["GET", "POST"])
def document_delete(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Ask for confirmation (GET), then delete the document and its encrypted file (POST)."""
    document = _document_for_member(request, pk, Action.DELETE)
    if request.method == "POST":
        title = document.title
        try:
            document_remove(document, user=request.user, request=request)
        except RecordError:
            logger.exception("A deletion could not be recorded (document %s)", document.pk)
            return unavailable_response(request, UNAVAILABLE)
        messages.success(request, f"“{title}” was deleted.")
        return redirect("vault:document_list")
    return render(request, "vault/document_confirm_delete.html", {"document": document})
