"""Companies, their members, their documents, and the grants that share a document with another company."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

READ_ANY_PERMISSION = "vault.read_any_document"


class Company(models.Model):
    """An organisation on the marketplace."""

    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "companies"

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place in a company."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MANAGER = "manager", "Manager"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "company"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.company} ({self.role})"


class DocumentQuerySet(models.QuerySet):
    def readable_by(self, user: object) -> "DocumentQuerySet":
        """Return the documents this user may read as a company member or through a live grant."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        member_of = Membership.objects.filter(user=user)
        shared = Grant.objects.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()),
            document=OuterRef("pk"),
            company__in=member_of.values("company"),
        )
        return self.filter(
            Q(company__in=member_of.values("company")) | Q(Exists(shared)),
        )


class Document(models.Model):
    """A confidential document; its file is stored encrypted by the default storage."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="documents")
    title = models.CharField(max_length=200)
    original_filename = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="uploaded_documents",
    )
    uploaded_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    size = models.PositiveBigIntegerField(default=0, help_text="Plaintext size in bytes.")
    mime_type = models.CharField(max_length=100, blank=True)
    key_id = models.CharField(
        max_length=16, blank=True, help_text="Key ID the file is encrypted with."
    )
    file = models.FileField(upload_to="documents/%Y/%m/", max_length=255, unique=True)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        ordering = ["-uploaded_at"]
        permissions = [("read_any_document", "Can read any document (recorded as a staff read)")]

    def __str__(self) -> str:
        return self.title


class Grant(models.Model):
    """A document shared with another company, optionally until a date."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="grants")
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="grants")
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    granted_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["document", "company"], name="grant_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.document} -> {self.company}"

    @property
    def is_live(self) -> bool:
        """Return whether the grant still gives access."""
        return self.expires_at is None or self.expires_at > timezone.now()


def document_get_for_reader(user: object, **lookup: object) -> tuple[Document, bool]:
    """Return the document the user may read and whether it is a staff read; raise DoesNotExist."""
    document = Document.objects.readable_by(user).filter(**lookup).first()
    if document is not None:
        return document, False
    if getattr(user, "is_authenticated", False) and user.has_perm(READ_ANY_PERMISSION):
        return Document.objects.get(**lookup), True
    raise Document.DoesNotExist("No readable document matches.")
