"""Companies, their members, their documents, and the grants that share a document with another company."""

import uuid
import weakref
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import connections, models, router
from django.db.models import Exists, OuterRef, Q
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from .access import access_context, access_context_current
from .fileformat import DecryptionError
from .storage import StoredFile

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


class DocumentFieldFile(FieldFile):
    """A document's file: written bound to its document, opened only as that document's file."""

    def save(self, name: str, content: File, save: bool = True) -> None:
        """Store `content` encrypted for this document; fill the columns from the file as written.

        Every path that stores a document's file comes here: the upload views, the admin, an ORM
        `document.file.save(...)`, a `Document(file=ContentFile(...))` saved.
        """
        name = self.field.generate_filename(self.instance, name)
        document_save = getattr(self.storage, "document_save", None)
        if document_save is None:
            raise TypeError("A document's file needs the vault's EncryptedStorage.")
        # The upload event names the document, and so its title, whoever stores the file.
        with access_context(**self._context_fields()):
            stored = document_save(
                name, content, self.instance.pk, max_length=self.field.max_length
            )
        self.name = stored.name
        setattr(self.instance, self.field.attname, self.name)
        self._committed = True
        document_metadata_set(self.instance, stored)
        if save:
            self.instance.save()

    save.alters_data = True

    def _file_get(self) -> Any:
        if getattr(self, "_file", None) is None:
            self._require_file()
            with access_context(bound_document=self.instance, **self._context_fields()):
                self._file = self.storage.open(self.name, "rb")
        return self._file

    def _context_fields(self) -> dict[str, Any]:
        """Name the document in the access context, unless the caller named one already."""
        return {} if access_context_current().document is not None else {"document": self.instance}

    file = property(_file_get, FieldFile._set_file, FieldFile._del_file)

    def open(self, mode: str = "rb") -> "DocumentFieldFile":
        """Open the file for reading; a file written for another document is refused."""
        self._require_file()
        if getattr(self, "_file", None) is None:
            self._file_get()
        else:
            self.file.open(mode)
        return self

    open.alters_data = True


class DocumentFileField(models.FileField):
    """The file of a document, stored encrypted and bound to it (see DocumentFieldFile)."""

    attr_class = DocumentFieldFile


def document_metadata_set(document: "Document", stored: StoredFile) -> None:
    """Fill the document's derived columns from its stored file: the one place that does.

    Raise DecryptionError for a file written for another document.
    """
    if stored.document_id is not None and stored.document_id != document.pk:
        raise DecryptionError("the stored file was written for another document")
    document.size = stored.size
    document.mime_type = stored.mime_type
    document.key_id = stored.key_id
    document.file_id = stored.file_id


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
    # Derived from the stored file by document_metadata_set(), never typed in.
    size = models.PositiveBigIntegerField(
        default=0, editable=False, help_text="Plaintext size in bytes."
    )
    mime_type = models.CharField(max_length=100, blank=True, editable=False)
    key_id = models.CharField(
        max_length=16, blank=True, editable=False, help_text="Key ID the file is encrypted with."
    )
    file_id = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        help_text="ID of the encrypted file (its public random salt): binds a v1 file to this row.",
    )
    file = DocumentFileField(upload_to="documents/%Y/%m/", max_length=255, unique=True)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        ordering = ["-uploaded_at"]
        permissions = [("read_any_document", "Can read any document (recorded as a staff read)")]

    def __str__(self) -> str:
        return self.title

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save the row; a new file is stored first, so that its derived columns are saved too."""
        # FileField.pre_save would store it only after the columns before it were read.
        if self.file and not self.file._committed:
            self.file.save(self.file.name, self.file.file, save=False)
        super().save(*args, **kwargs)


class Grant(models.Model):
    """A document shared with another company, optionally until a date."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="grants")
    # Deleting a company must not end its shares unrecorded: unshare first (each one is logged).
    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="grants")
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


# The download path's permission check, as one statement: building the equivalent ORM query costs
# about 1 ms per request (expression resolution), ten times what the database needs to answer it.
# Its row is read through a plain cursor: raw() maps its columns afresh on every query (0.2 ms a
# download); the columns are the model's, in order, converted by Django's own converters.
_READABLE_SQL = """
SELECT {columns} FROM {document} d
WHERE d.{column} = %s AND (
    d.company_id IN (SELECT m.company_id FROM {membership} m WHERE m.user_id = %s)
    OR EXISTS (
        SELECT 1 FROM {grant} g
        WHERE g.document_id = d.id
          AND (g.expires_at IS NULL OR g.expires_at > %s)
          AND g.company_id IN (SELECT m.company_id FROM {membership} m WHERE m.user_id = %s)
    )
)
"""


# Per database connection (each thread has its own): converters are bound to its operations.
_readable_queries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _readable_query(connection: Any, column: str) -> tuple[str, list[tuple[int, list, Any]]]:
    """Return the permission check's SQL by `column` and the converters of its row's columns."""
    cached = _readable_queries.setdefault(connection, {})
    if column not in cached:
        quote = connection.ops.quote_name
        fields = Document._meta.concrete_fields
        sql = _READABLE_SQL.format(
            columns=", ".join(f"d.{quote(field.column)}" for field in fields),
            document=quote(Document._meta.db_table),
            column=quote(column),
            membership=quote(Membership._meta.db_table),
            grant=quote(Grant._meta.db_table),
        )
        converters = []
        for index, field in enumerate(fields):
            expression = field.get_col(Document._meta.db_table)
            functions = connection.ops.get_db_converters(expression)
            functions += expression.get_db_converters(connection)
            if functions:
                converters.append((index, functions, expression))
        cached[column] = (sql, converters)
    return cached[column]


def document_get_for_reader(user: object, **lookup: object) -> tuple[Document, bool]:
    """Return the document the user may read and whether it is a staff read; raise DoesNotExist.

    `lookup` is one field: `pk`/`id` or `file` (the stored name). Readers are the members of the
    document's company and of companies holding a live grant; staff with the read-any permission
    read everything, recorded as staff reads.
    """
    ((name, value),) = lookup.items()
    field = Document._meta.pk if name == "pk" else Document._meta.get_field(name)
    if not getattr(user, "is_authenticated", False):
        raise Document.DoesNotExist("No readable document matches.")
    connection = connections[router.db_for_read(Document)]
    sql, converters = _readable_query(connection, field.column)
    now = Grant._meta.get_field("expires_at").get_db_prep_value(timezone.now(), connection)
    params = [field.get_db_prep_value(field.to_python(value), connection), user.pk, now, user.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is not None:
        values = list(row)
        for index, functions, expression in converters:
            for convert in functions:
                values[index] = convert(values[index], expression, connection)
        return Document.from_db(connection.alias, None, values), False
    if user.is_staff and user.has_perm(READ_ANY_PERMISSION):
        return Document.objects.get(**lookup), True
    raise Document.DoesNotExist("No readable document matches.")
