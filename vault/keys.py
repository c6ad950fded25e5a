"""The key ring: versioned master keys from settings, derived once per process.

Each secret goes through PBKDF2-HMAC-SHA256 (salt VAULT_KDF_SALT, VAULT_KDF_ITERATIONS rounds) into a
32-byte master key. Url-safe base64 encoded, that master key is exactly the case study's Fernet key, so
its files keep decrypting. Everything new uses sub-keys derived from the master key with HKDF-SHA256 and
one label per purpose, so no key serves two purposes (the legacy Fernet key aside).
"""

import base64
import re
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.views.decorators.debug import sensitive_variables

KEY_SETTINGS = frozenset(
    {"VAULT_KEYS", "ENCRYPTION_SECRET", "VAULT_KDF_SALT", "VAULT_KDF_ITERATIONS"}
)
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
MIN_SECRET_LENGTH = 32
MIN_ITERATIONS = 100_000
DEFAULT_ITERATIONS = 600_000

# One HKDF label per purpose. Changing a label changes every key derived with it.
PURPOSE_KEY_ID = "key-id"
PURPOSE_FILE = "file-v1"
PURPOSE_AUDIT_CHAIN = "audit-chain"
PURPOSE_CHAIN_HEAD = "audit-chain-head"

NO_KEY_MESSAGE = (
    "Encryption key not configured: set VAULT_KEYS='label:secret' (or ENCRYPTION_SECRET) and "
    "VAULT_KDF_SALT in the environment; `python manage.py vault_keygen` prints a fresh key."
)


class SecretKey(bytes):
    """Key bytes that never show in a repr: tracebacks, error reports and logs get a placeholder."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<secret key>"

    __str__ = __repr__


@dataclass(frozen=True)
class KeyEntry:
    """One `label:secret` entry of the configuration, before derivation."""

    label: str
    secret: str

    def __repr__(self) -> str:
        return f"KeyEntry(label={self.label!r}, secret=<hidden>)"


class VaultKey:
    """One version of the master key: a label, a public key ID and the sub-keys derived from it."""

    __slots__ = ("_master", "key_id", "label")

    def __init__(self, label: str, master: bytes) -> None:
        if len(master) != 32:
            raise ValueError("A master key is 32 bytes.")
        self.label = label
        self._master = SecretKey(master)
        # A fingerprint, public by design: plain bytes, so that it shows where it is logged.
        self.key_id = bytes(self.subkey(PURPOSE_KEY_ID, length=8))

    def __repr__(self) -> str:
        return f"<VaultKey {self.label} {self.key_id.hex()}>"

    @property
    def key_id_hex(self) -> str:
        """Return the key ID as 16 hex characters, as the dashboard and reports show it."""
        return self.key_id.hex()

    @property
    def fernet_key(self) -> bytes:
        """Return the case study's Fernet key (only to read its legacy files)."""
        return SecretKey(base64.urlsafe_b64encode(self._master))

    def subkey(self, purpose: str, length: int = 32) -> bytes:
        """Return the sub-key for one purpose, HKDF-SHA256 with a label of its own."""
        return SecretKey(
            HKDF(
                algorithm=hashes.SHA256(),
                length=length,
                salt=None,
                info=b"docvault/" + purpose.encode("ascii"),
            ).derive(self._master)
        )


class KeyRing:
    """The configured key versions: the first one encrypts, every one decrypts."""

    def __init__(self, keys: list[VaultKey], iterations: int) -> None:
        if not keys:
            raise ImproperlyConfigured(NO_KEY_MESSAGE)
        self.keys = keys
        self.iterations = iterations
        self._by_id = {key.key_id: key for key in keys}
        self.file_keys = {key.key_id: key.subkey(PURPOSE_FILE) for key in keys}
        self.fernet_keys = [key.fernet_key for key in keys]

    def __repr__(self) -> str:
        return f"<KeyRing {', '.join(repr(key) for key in self.keys)}>"

    @property
    def primary(self) -> VaultKey:
        """Return the key that encrypts new files."""
        return self.keys[0]

    def get(self, key_id: bytes) -> VaultKey | None:
        """Return the key with this ID, or None."""
        return self._by_id.get(key_id)


@sensitive_variables("vault_keys", "secret", "label_secret", "entries")
def keys_parse(vault_keys: str | None, encryption_secret: str | None = None) -> list[KeyEntry]:
    """Return the configured key entries; raise ValueError for a malformed one."""
    if not vault_keys or not vault_keys.strip():
        if encryption_secret:
            return [KeyEntry("default", encryption_secret)]
        return []
    entries: list[KeyEntry] = []
    for position, label_secret in enumerate(vault_keys.split(","), start=1):
        label, sep, secret = label_secret.strip().partition(":")
        if not sep or not secret:
            raise ValueError(f"VAULT_KEYS entry {position} is not 'label:secret'.")
        if not LABEL_PATTERN.match(label):
            # The label is not echoed: a comma inside a secret would make a fragment of it one.
            raise ValueError(
                f"VAULT_KEYS entry {position} has an invalid label: use 1-32 letters, digits, "
                "'.', '_' or '-' (and no comma inside a secret)."
            )
        if any(entry.label == label for entry in entries):
            raise ValueError(f"VAULT_KEYS entry {position} repeats a label.")
        entries.append(KeyEntry(label, secret))
    return entries


@sensitive_variables("entries")
def duplicate_secrets(entries: list[KeyEntry]) -> list[tuple[str, str]]:
    """Return the label pairs whose secrets are equal (they would derive one and the same key)."""
    first_label: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        if entry.secret in first_label:
            pairs.append((first_label[entry.secret], entry.label))
        else:
            first_label[entry.secret] = entry.label
    return pairs


def duplicate_secret_message(first: str, second: str) -> str:
    """Return the error for two labels sharing one secret (the key ring and vault.E005 say it)."""
    return f"Keys {first!r} and {second!r} have the same secret: one key ID, one key, under two labels."


def iterations_parse(value: object) -> int:
    """Return VAULT_KDF_ITERATIONS as a positive int; raise ValueError otherwise."""
    try:
        iterations = int(str(value))
    except (TypeError, ValueError):
        raise ValueError(f"VAULT_KDF_ITERATIONS must be a whole number, not {value!r}.") from None
    if iterations < 1:
        raise ValueError("VAULT_KDF_ITERATIONS must be positive.")
    return iterations


@sensitive_variables("secret")
def master_key_derive(secret: str, salt: str, iterations: int) -> bytes:
    """Return the 32-byte PBKDF2-HMAC-SHA256 master key of one secret."""
    return SecretKey(
        PBKDF2HMAC(
            algorithm=hashes.SHA256(), length=32, salt=salt.encode(), iterations=iterations
        ).derive(secret.encode())
    )


@sensitive_variables("entries")
def keyring_build() -> KeyRing:
    """Return a key ring derived from the current settings; raise ImproperlyConfigured if unusable."""
    try:
        entries = keys_parse(
            getattr(settings, "VAULT_KEYS", None), getattr(settings, "ENCRYPTION_SECRET", None)
        )
        iterations = iterations_parse(getattr(settings, "VAULT_KDF_ITERATIONS", DEFAULT_ITERATIONS))
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    if not entries:
        raise ImproperlyConfigured(NO_KEY_MESSAGE)
    duplicates = duplicate_secrets(entries)
    if duplicates:
        # Two labels, one key: a lookup by key ID would silently pick one of them.
        first, second = duplicates[0]
        raise ImproperlyConfigured(duplicate_secret_message(first, second))
    salt = getattr(settings, "VAULT_KDF_SALT", None)
    if not salt:
        raise ImproperlyConfigured("VAULT_KDF_SALT is not set: the key derivation needs a salt.")
    return KeyRing(
        [
            VaultKey(entry.label, master_key_derive(entry.secret, salt, iterations))
            for entry in entries
        ],
        iterations,
    )


_keyring: KeyRing | None = None
_keyring_lock = threading.Lock()


def keyring() -> KeyRing:
    """Return the process's key ring, derived on first use (PBKDF2 runs once, never per request)."""
    global _keyring
    ring = _keyring
    if ring is None:
        with _keyring_lock:
            if _keyring is None:
                _keyring = keyring_build()
            ring = _keyring
    return ring


def keyring_reset() -> None:
    """Forget the derived keys, so the next use derives them from the settings again."""
    global _keyring
    with _keyring_lock:
        _keyring = None


@receiver(setting_changed)
def _keyring_reset_on_change(*, setting: str, **kwargs: object) -> None:
    if setting in KEY_SETTINGS:
        keyring_reset()
