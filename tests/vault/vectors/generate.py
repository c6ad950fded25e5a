"""Regenerate the fixed vectors v2.json, v1.json and fernet.json next to this file.

    python tests/vault/vectors/generate.py [v2.json] [v1.json] [fernet.json]   (default: all)

v2.json and v1.json are deterministic: keys, document IDs, salts, nonce prefixes and plaintexts are
derived from fixed labels, so regenerating rewrites the same bytes. Every vector is checked before
it is written against a naive one-shot implementation of the construction (below, independent of
the streaming code) and against Google Tink (a test-only dependency). v1 files are written by the
module's compatibility writer (`_version=1`); Docvault itself writes v2 only.

fernet.json holds tokens made by the case study's exact code, `Fernet(key).encrypt(data)`, whose IV
and timestamp are random: regenerating changes the tokens, and any of them is a valid vector.
Not a test module (pytest collects test_*.py only).
"""

import base64
import hashlib
import io
import json
import struct
import sys
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from vault import fileformat  # noqa: E402  (after the path set-up above)

# (name, plaintext size, segment size)
V1_CASES = [
    ("empty", 0, 1 << 20),
    ("short", 14, 1 << 20),
    ("fills the first segment exactly", 1024 - 56, 1024),
    ("two full segments", (1024 - 56) + (1024 - 16), 1024),
    ("three segments, short last", 2500, 1024),
]
# (name, plaintext size, segment size, bound to a document): unbound files have a zero document ID
V2_CASES = [
    ("empty, unbound", 0, 1 << 20, False),
    ("empty, bound", 0, 1 << 20, True),
    ("short, unbound", 14, 1 << 20, False),
    ("short, bound", 14, 1 << 20, True),
    ("fills the first segment exactly", 1024 - 56, 1024, True),
    ("two full segments", (1024 - 56) + (1024 - 16), 1024, True),
    ("three segments, short last", 2500, 1024, True),
]
CASE_STUDY_SECRET = "case-study-encryption-secret-for-vectors-only"
CASE_STUDY_SALT = "stable-salt-from-settings"
CASE_STUDY_ITERATIONS = 100_000
FERNET_PLAINTEXTS = [b"", b"%PDF-1.4 legacy document\n", None]  # None: about 3 KB


def fixed_bytes(label: str, size: int) -> bytes:
    """Return `size` reproducible bytes for `label`."""
    return hashlib.shake_256(b"docvault test vector/" + label.encode()).digest(size)


def reference_header(key_id: bytes, segment_size: int, document_id: bytes | None) -> bytes:
    """Return the Docvault header: v1 without a document ID, v2 with one."""
    version = b"\x01" if document_id is None else b"\x02"
    header = b"\x89DVLT\r\n\x1a" + version + key_id + struct.pack(">I", segment_size)
    return header if document_id is None else header + document_id


def reference_encrypt(
    plaintext: bytes,
    key: bytes,
    key_id: bytes,
    segment_size: int,
    salt: bytes,
    prefix: bytes,
    document_id: bytes | None = None,
) -> bytes:
    """Encrypt in one shot, straight from the format description: the check on the writer."""
    header = reference_header(key_id, segment_size, document_id)
    aead = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=header).derive(key))
    first, later = segment_size - 56, segment_size - 16
    segments = [plaintext[:first]]
    rest = plaintext[first:]
    while rest:
        segments.append(rest[:later])
        rest = rest[later:]
    out = [header, bytes([40]), salt, prefix]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        out.append(aead.encrypt(prefix + struct.pack(">IB", index, last), segment, None))
    return b"".join(out)


def tink_decrypt(ciphertext: bytes, key: bytes, segment_size: int) -> bytes:
    """Decrypt a v1 or v2 file with Tink, the Docvault header as associated data."""
    from tests.vault.test_tink_interop import tink_streaming_aead

    primitive = tink_streaming_aead(key, segment_size)
    size = fileformat.header_size(ciphertext[8])
    header, stream = ciphertext[:size], ciphertext[size:]
    with primitive.new_decrypting_stream(io.BytesIO(stream), header) as plaintext:
        return plaintext.read()


def v1_vectors() -> dict:
    vectors = []
    for name, size, segment_size in V1_CASES:
        key = fixed_bytes(name + "/key", 32)
        key_id = fixed_bytes(name + "/key id", 8)
        salt = fixed_bytes(name + "/salt", 32)
        prefix = fixed_bytes(name + "/nonce prefix", 7)
        plaintext = fixed_bytes(name + "/plaintext", size)
        randoms = iter([salt, prefix])
        ciphertext = b"".join(
            fileformat.encrypt(
                plaintext,
                key,
                key_id,
                segment_size=segment_size,
                _random=lambda n, randoms=randoms: next(randoms),
                _version=1,
            )
        )
        assert ciphertext == reference_encrypt(plaintext, key, key_id, segment_size, salt, prefix)
        assert tink_decrypt(ciphertext, key, segment_size) == plaintext
        vectors.append(
            {
                "name": name,
                "key_hex": key.hex(),
                "key_id_hex": key_id.hex(),
                "segment_size": segment_size,
                "salt_hex": salt.hex(),
                "nonce_prefix_hex": prefix.hex(),
                "plaintext_hex": plaintext.hex(),
                "ciphertext_hex": ciphertext.hex(),
            }
        )
    return {
        "description": "Docvault v1 files (docs/FILE_FORMAT.md). The salt and nonce prefix are "
        "the random values the writer drew, in that order.",
        "generator": "tests/vault/vectors/generate.py",
        "cases": vectors,
    }


def v2_vectors() -> dict:
    vectors = []
    for name, size, segment_size, bound in V2_CASES:
        label = "v2/" + name
        key = fixed_bytes(label + "/key", 32)
        key_id = fixed_bytes(label + "/key id", 8)
        document_id = fixed_bytes(label + "/document id", 16) if bound else bytes(16)
        salt = fixed_bytes(label + "/salt", 32)
        prefix = fixed_bytes(label + "/nonce prefix", 7)
        plaintext = fixed_bytes(label + "/plaintext", size)
        randoms = iter([salt, prefix])
        ciphertext = b"".join(
            fileformat.encrypt(
                plaintext,
                key,
                key_id,
                document_id=document_id,
                segment_size=segment_size,
                _random=lambda n, randoms=randoms: next(randoms),
            )
        )
        expected = reference_encrypt(
            plaintext, key, key_id, segment_size, salt, prefix, document_id
        )
        assert ciphertext == expected
        assert tink_decrypt(ciphertext, key, segment_size) == plaintext
        vectors.append(
            {
                "name": name,
                "key_hex": key.hex(),
                "key_id_hex": key_id.hex(),
                "document_id_hex": document_id.hex(),
                "segment_size": segment_size,
                "salt_hex": salt.hex(),
                "nonce_prefix_hex": prefix.hex(),
                "plaintext_hex": plaintext.hex(),
                "ciphertext_hex": ciphertext.hex(),
            }
        )
    return {
        "description": "Docvault v2 files (docs/FILE_FORMAT.md): the v1 layout with the 16-byte "
        "document ID after the segment size, all zero for a file bound to no document. The salt "
        "and nonce prefix are the random values the writer drew, in that order.",
        "generator": "tests/vault/vectors/generate.py",
        "cases": vectors,
    }


def fernet_vectors() -> dict:
    # The case study's code, verbatim in substance: PBKDF2 of the secret, base64, Fernet.
    fernet_key = base64.urlsafe_b64encode(
        PBKDF2HMAC(
            algorithm=hashes.SHA256(),
            length=32,
            salt=CASE_STUDY_SALT.encode(),
            iterations=CASE_STUDY_ITERATIONS,
        ).derive(CASE_STUDY_SECRET.encode())
    )
    cases = []
    for data in FERNET_PLAINTEXTS:
        if data is None:
            data = fixed_bytes("legacy/3k", 3000)
        token = Fernet(fernet_key).encrypt(data)
        cases.append(
            {
                "secret": CASE_STUDY_SECRET,
                "salt": CASE_STUDY_SALT,
                "iterations": CASE_STUDY_ITERATIONS,
                "fernet_key": fernet_key.decode(),
                "plaintext_hex": data.hex(),
                "token": token.decode(),
            }
        )
    return {
        "description": "Legacy files: raw Fernet tokens written by the case study, "
        "Fernet(urlsafe_b64encode(PBKDF2HMAC(SHA256, 32, salt, iterations).derive(secret)))"
        ".encrypt(data).",
        "generator": "tests/vault/vectors/generate.py",
        "cases": cases,
    }


def main() -> None:
    only = set(sys.argv[1:])  # e.g. "v2.json": leave the others (the Fernet tokens) as they are
    for name, build in (
        ("v2.json", v2_vectors),
        ("v1.json", v1_vectors),
        ("fernet.json", fernet_vectors),
    ):
        if only and name not in only:
            continue
        content = build()
        (HERE / name).write_text(json.dumps(content, indent=2) + "\n")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
