"""Database sessions that keep only a hash of each session key (`SESSION_ENGINE = "vault.sessions"`).

The cookie carries the raw key; `django_session.session_key` holds `session_key_hash(key)`. Someone
who reads the database (a stolen backup, an SQL injection) sees only hashes, and a hash sent back as
a cookie is hashed again and matches nothing. Keys are 32 random characters, so an unkeyed hash is
enough: there is nothing to guess. The column is 40 characters wide (Django's own migration), so the
hash is SHA-256 cut to 30 bytes (240 bits), url-safe base64: exactly 40 characters.
"""

import base64
import hashlib
from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session

# Domain separation: not the same digest as anything else computed over the key (django-axes, say).
_HASH_LABEL = b"docvault/session-key\x00"


def session_key_hash(session_key: str) -> str:
    """Return the 40-character form of a session key that the database stores."""
    digest = hashlib.sha256(_HASH_LABEL + session_key.encode()).digest()[:30]
    return base64.urlsafe_b64encode(digest).decode("ascii")


class SessionStore(DatabaseSessionStore):
    """Django's database session store, with every row looked up and written by the key's hash."""

    def _get_session_from_db(self) -> Session | None:
        return self._with_hashed_key(super()._get_session_from_db)

    async def _aget_session_from_db(self) -> Session | None:
        raw = self._session_key
        if raw is None:
            return None
        self._session_key = session_key_hash(raw)
        try:
            session = await super()._aget_session_from_db()
        finally:
            # The parent sets the key to None when no row matches; keep that, else restore it.
            if self._session_key is not None:
                self._session_key = raw
        return session

    def _with_hashed_key(self, lookup: Any) -> Session | None:
        # The parent queries by self.session_key and clears it when no row matches.
        raw = self._session_key
        if raw is None:
            return None
        self._session_key = session_key_hash(raw)
        try:
            session = lookup()
        finally:
            if self._session_key is not None:
                self._session_key = raw
        return session

    def exists(self, session_key: str) -> bool:
        """Return whether a row exists for this (raw) session key."""
        return super().exists(session_key_hash(session_key))

    async def aexists(self, session_key: str) -> bool:
        """Return whether a row exists for this (raw) session key."""
        return await super().aexists(session_key_hash(session_key))

    def create_model_instance(self, data: dict[str, Any]) -> Session:
        """Return the row to save: the session's data under the hash of its key."""
        session = super().create_model_instance(data)
        session.session_key = session_key_hash(session.session_key)
        return session

    async def acreate_model_instance(self, data: dict[str, Any]) -> Session:
        """Return the row to save: the session's data under the hash of its key."""
        session = await super().acreate_model_instance(data)
        session.session_key = session_key_hash(session.session_key)
        return session

    def delete(self, session_key: str | None = None) -> None:
        """Delete the row of this (raw) session key, or of the current session."""
        if session_key is None:
            session_key = self.session_key
        if session_key is None:
            return
        super().delete(session_key_hash(session_key))

    async def adelete(self, session_key: str | None = None) -> None:
        """Delete the row of this (raw) session key, or of the current session."""
        if session_key is None:
            session_key = self.session_key
        if session_key is None:
            return
        await super().adelete(session_key_hash(session_key))
