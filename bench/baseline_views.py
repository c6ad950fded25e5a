"""Bench-only baselines for the download benchmark; served only by bench.settings, never by the product.

- `plain_download`: a plain `FileResponse` of a plaintext file, no login (gunicorn sends it with
  sendfile): the floor.
- `plain_login_download`: the same behind `login_required` (session and user lookups), to tell the
  cost of Django's authentication from the vault's own.
- `FetchCompanyDocumentsView`: the case study's view as published: PBKDF2 key derivation on every
  request, the whole Fernet token read and decrypted in memory, libmagic over the whole plaintext.
"""

import base64
import os
import re
from pathlib import Path

import magic
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import SuspiciousFileOperation
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.views import View

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


def plain_download(request: HttpRequest, name: str) -> FileResponse:
    """Serve a plaintext file of the bench's plain folder as it is."""
    if not _PLAIN_NAME.fullmatch(name) or not settings.BENCH_PLAIN_ROOT:
        raise Http404
    try:
        handle = open(Path(settings.BENCH_PLAIN_ROOT) / name, "rb")  # noqa: SIM115 (FileResponse closes it)
    except FileNotFoundError:
        raise Http404 from None
    return FileResponse(handle, content_type="application/octet-stream")


@login_required
def plain_login_download(request: HttpRequest, name: str) -> FileResponse:
    """Serve a plaintext file like `plain_download`, to a logged-in user only."""
    return plain_download(request, name)


# The case study, as published (its salt and iteration count included) -------------------------


def get_fernet_key(master_secret: str) -> bytes:
    """Derive a Fernet key from the master secret via PBKDF2."""
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"stable-salt-from-settings",
        iterations=100_000,
    )
    return base64.urlsafe_b64encode(kdf.derive(master_secret.encode()))


def encrypt_file(file_bytes: bytes, key: bytes) -> bytes:
    """Encrypt raw file bytes with Fernet."""
    return Fernet(key).encrypt(file_bytes)


class FetchCompanyDocumentsView(LoginRequiredMixin, View):
    """The case study's download view; MEDIA_ROOT made a str, since ours is a Path."""

    def get(self, request: HttpRequest, path: str) -> HttpResponse:
        """Decrypt the whole file in memory, sniff its type, and return it."""
        media_root = str(settings.MEDIA_ROOT)
        full_path = os.path.normpath(os.path.join(media_root, path))

        # Path traversal protection (as published: it accepts sibling folders; bench only)
        if not full_path.startswith(media_root):
            raise SuspiciousFileOperation("Invalid path.")

        try:
            key = get_fernet_key(settings.ENCRYPTION_SECRET)
        except AttributeError:
            if request.user.is_staff:
                return HttpResponse("Encryption key not configured.", status=503)
            return HttpResponse("Please try again later.", status=503)

        with open(full_path, "rb") as handle:
            encrypted = handle.read()
        decrypted = Fernet(key).decrypt(encrypted)

        # Sniff MIME from decrypted content, not extension
        mime = magic.from_buffer(decrypted, mime=True)
        return HttpResponse(decrypted, content_type=mime)
