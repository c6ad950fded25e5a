"""Docvault files are Google Tink AES-GCM-HKDF streaming ciphertexts: Tink reads ours, we read Tink's.

Tink (a pinned test-only dependency) is the reference implementation; it sees the Docvault header
(37 bytes in v2, document ID included; 21 in v1) as the associated data and the rest of the file as
its ciphertext. No Django needed.
"""

import io
import os
import struct

import pytest
import tink
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from vault.fileformat import (
    HEADER_SIZE,
    NO_DOCUMENT,
    DecryptingReader,
    DecryptionError,
    classify,
    encrypt,
    header_size,
)

KEY = os.urandom(32)
KEY_ID = bytes.fromhex("00112233445566ff")
DOCUMENT = bytes.fromhex("3f2a9c1e5b7d4e0f8a6b1c2d3e4f5a6b")
OTHER_DOCUMENT = bytes.fromhex("3f2a9c1e5b7d4e0f8a6b1c2d3e4f5a6c")
MIB = 1 << 20
# Plaintext sizes around the 1 MiB segment boundaries, up to four segments.
SIZES_1MIB = [0, 1, MIB - 56, MIB - 55, (MIB - 56) + 2 * (MIB - 16), 3_500_000]
SIZES_1KIB = [0, 968, 969, 968 + 1008, 10_000]


@pytest.fixture(autouse=True)
def media_root():
    """Shadow the suite-wide media fixture, which needs pytest-django: this module needs nothing."""


def tink_streaming_aead(key: bytes, segment_size: int) -> streaming_aead.StreamingAead:
    """Return Tink's AES-GCM-HKDF streaming primitive for a raw 32-byte key (AES256_GCM_HKDF)."""
    streaming_aead.register()
    key_proto = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0,
        key_value=key,
        params=aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
            ciphertext_segment_size=segment_size,
            derived_key_size=32,
            hkdf_hash_type=common_pb2.SHA256,
        ),
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
                    value=key_proto.SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


class KeptBytesIO(io.BytesIO):
    """A BytesIO that keeps its content when Tink closes it."""

    content = b""

    def close(self) -> None:
        self.content = self.getvalue()
        super().close()


class Unseekable(io.BytesIO):
    """A stream read front to back only, like a pipe."""

    def seekable(self) -> bool:
        return False


def tink_encrypt(plaintext: bytes, associated_data: bytes, segment_size: int) -> bytes:
    target = KeptBytesIO()
    primitive = tink_streaming_aead(KEY, segment_size)
    with primitive.new_encrypting_stream(target, associated_data) as stream:
        stream.write(plaintext)
    return target.content


def tink_decrypt(ciphertext: bytes, associated_data: bytes, segment_size: int) -> bytes:
    primitive = tink_streaming_aead(KEY, segment_size)
    with primitive.new_decrypting_stream(io.BytesIO(ciphertext), associated_data) as stream:
        return stream.read()


def docvault_header(
    segment_size: int, version: int = 2, document_id: bytes = DOCUMENT, key_id: bytes = KEY_ID
) -> bytes:
    """Return a Docvault header written out by hand from docs/FILE_FORMAT.md."""
    fixed = b"\x89DVLT\r\n\x1a" + bytes([version]) + key_id + segment_size.to_bytes(4, "big")
    return fixed if version == 1 else fixed + document_id


def ours_encrypt(plaintext: bytes, segment_size: int, version: int) -> bytes:
    if version == 1:
        pieces = encrypt(plaintext, KEY, KEY_ID, segment_size=segment_size, _version=1)
    else:
        pieces = encrypt(plaintext, KEY, KEY_ID, document_id=DOCUMENT, segment_size=segment_size)
    return b"".join(pieces)


CASES = [(size, MIB) for size in SIZES_1MIB] + [(size, 1024) for size in SIZES_1KIB]
VERSIONS = pytest.mark.parametrize("version", [2, 1])


@VERSIONS
@pytest.mark.parametrize(("size", "segment_size"), CASES)
def test_tink_decrypts_our_files(size, segment_size, version):
    plaintext = os.urandom(size)
    ours = ours_encrypt(plaintext, segment_size, version)
    header, stream = ours[: header_size(version)], ours[header_size(version) :]
    assert header == docvault_header(segment_size, version)
    assert tink_decrypt(stream, header, segment_size) == plaintext


@VERSIONS
@pytest.mark.parametrize(("size", "segment_size"), CASES)
def test_we_decrypt_tinks_files(size, segment_size, version):
    plaintext = os.urandom(size)
    header = docvault_header(segment_size, version)
    theirs = header + tink_encrypt(plaintext, header, segment_size)
    with DecryptingReader(io.BytesIO(theirs), {KEY_ID: KEY}) as reader:
        assert reader.version == version
        assert reader.document_id == (DOCUMENT if version == 2 else None)
        assert reader.size == size
        assert reader.read() == plaintext
    with DecryptingReader(Unseekable(theirs), {KEY_ID: KEY}) as reader:
        assert b"".join(reader.segments()) == plaintext


def test_an_unbound_v2_file_is_tinks_too():
    ours = b"".join(encrypt(b"vault_encrypt output", KEY, KEY_ID, segment_size=1024))
    header = docvault_header(1024, document_id=NO_DOCUMENT)
    assert ours[:HEADER_SIZE] == header
    assert tink_decrypt(ours[HEADER_SIZE:], header, 1024) == b"vault_encrypt output"


@pytest.mark.parametrize(
    "other_header",
    [
        docvault_header(1024, document_id=OTHER_DOCUMENT),  # one bit of the document ID
        docvault_header(1024, document_id=NO_DOCUMENT),
        docvault_header(1024, key_id=bytes(8)),
        docvault_header(1024, version=1),  # the binding stripped
    ],
)
def test_tink_also_binds_the_docvault_header(other_header):
    ours = ours_encrypt(b"bound to its header", 1024, 2)
    with pytest.raises(tink.TinkError):
        tink_decrypt(ours[HEADER_SIZE:], other_header, 1024)


@pytest.mark.parametrize(
    "relabelled",
    [
        docvault_header(1024)[:-1] + b"\x6c",  # the last document ID byte changed
        docvault_header(1024, document_id=NO_DOCUMENT),
        docvault_header(1025),  # a different segment size claimed
    ],
)
def test_a_tink_file_under_another_header_is_rejected(relabelled):
    plaintext = os.urandom(5000)
    sealed_for = docvault_header(1024)
    theirs = relabelled + tink_encrypt(plaintext, sealed_for, 1024)
    with pytest.raises(DecryptionError), DecryptingReader(io.BytesIO(theirs), {KEY_ID: KEY}) as r:
        r.read()


def test_a_tink_v1_file_relabelled_as_bound_v2_is_rejected():
    v1_header = docvault_header(1024, version=1)
    theirs = v1_header + tink_encrypt(os.urandom(3000), v1_header, 1024)
    bound = docvault_header(1024) + theirs[len(v1_header) :]
    assert classify(bound).document_id == DOCUMENT
    with pytest.raises(DecryptionError), DecryptingReader(io.BytesIO(bound), {KEY_ID: KEY}) as r:
        r.read()


@VERSIONS
def test_an_empty_last_segment_is_accepted_like_tink_does(version):
    # Our writer marks a full last segment as last; another writer may add an empty one instead.
    header, salt, prefix = docvault_header(1024, version), os.urandom(32), os.urandom(7)
    segment_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=header).derive(KEY)
    plaintexts = [os.urandom(1024 - 56), os.urandom(1024 - 16), b""]
    segments = [
        AESGCM(segment_key).encrypt(prefix + struct.pack(">IB", index, index == 2), part, None)
        for index, part in enumerate(plaintexts)
    ]
    file = header + bytes([40]) + salt + prefix + b"".join(segments)
    assert tink_decrypt(file[len(header) :], header, 1024) == b"".join(plaintexts)
    with DecryptingReader(io.BytesIO(file), {KEY_ID: KEY}) as reader:
        assert reader.size == 1024 - 56 + 1024 - 16
        assert reader.read() == b"".join(plaintexts)
