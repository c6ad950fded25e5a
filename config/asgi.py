"""No ASGI entry point: Docvault runs under WSGI (gunicorn config.wsgi).

Under ASGI, Django 5.2 spools every request body larger than FILE_UPLOAD_MAX_MEMORY_SIZE to a
temporary file before any upload handler runs (plaintext on disk), and buffers synchronous streaming
responses whole (a 1 GB download held in memory). Both break the vault's guarantees, so starting an
ASGI server on this project fails with this explanation instead of serving.
"""

from django.core.exceptions import ImproperlyConfigured

raise ImproperlyConfigured(
    "Docvault runs under WSGI only (gunicorn config.wsgi): under ASGI, Django writes uploaded "
    "plaintext to temporary files and buffers downloads whole."
)
