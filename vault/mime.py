"""What a plaintext is, read by libmagic from its first bytes, never from its filename."""

import logging

import magic

logger = logging.getLogger(__name__)

# Enough for libmagic to tell PDF, images, OOXML (DOCX needs about 2 KB) and text apart.
SNIFF_BYTES = 8192
UNKNOWN = "application/octet-stream"


def mime_sniff(head: bytes) -> str:
    """Return the MIME type libmagic finds in the first plaintext bytes (octet-stream if none)."""
    try:
        mime = magic.from_buffer(bytes(head), mime=True)
    except magic.MagicException:
        logger.warning("python-magic could not classify a file", exc_info=True)
        return UNKNOWN
    if not mime or mime.endswith("x-empty"):
        return UNKNOWN
    return mime
