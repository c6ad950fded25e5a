"""Forms of the document portal: upload and share."""

import datetime
from typing import Any

from django import forms
from django.utils import timezone

from .models import Company, Document
from .uploads import upload_error


class UploadForm(forms.Form):
    """A new document: the file, its title and the company it belongs to."""

    file = forms.FileField(required=False)
    title = forms.CharField(
        max_length=200, required=False, help_text="Leave empty to use the file name."
    )
    company = forms.ModelChoiceField(queryset=Company.objects.none(), empty_label=None)

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["company"].queryset = Company.objects.filter(memberships__user=user)

    def clean_file(self) -> Any:
        """Return the upload; refuse a missing one, or one the upload handler refused."""
        upload = self.cleaned_data.get("file")
        # Not `required=True`: a refused upload arrives as a file, and deserves its own message.
        error = upload_error(upload)
        if error:
            raise forms.ValidationError(error, code="too_large")
        if not upload:
            raise forms.ValidationError("Choose a file to upload.", code="required")
        return upload


class ShareForm(forms.Form):
    """Share a document with another company, optionally until a date (inclusive)."""

    company = forms.ModelChoiceField(
        queryset=Company.objects.none(), empty_label="Choose a company"
    )
    expires_on = forms.DateField(
        required=False,
        label="Shared until",
        help_text="Optional. The last day the company can read the document.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args: Any, document: Document, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["company"].queryset = Company.objects.exclude(pk=document.company_id)

    def clean_expires_on(self) -> datetime.date | None:
        """Return the date; refuse one already past."""
        expires_on = self.cleaned_data.get("expires_on")
        if expires_on is not None and expires_on < timezone.localdate():
            raise forms.ValidationError("The date is in the past.", code="past")
        return expires_on

    @property
    def expires_at(self) -> datetime.datetime | None:
        """Return the end of the chosen day in the current time zone, or None for no expiry."""
        expires_on = self.cleaned_data.get("expires_on")
        if expires_on is None:
            return None
        return timezone.make_aware(datetime.datetime.combine(expires_on, datetime.time.max))
