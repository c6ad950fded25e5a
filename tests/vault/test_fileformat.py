"""The v2 and v1 file formats and the legacy Fernet reader: real primitives, fixed vectors, properties.

Pure pytest, no Django: `pytest tests/vault/test_fileformat.py -p no:django` runs it alone.
"""

import base64
import io
import itertools
import json
import os
import random
import tracemalloc
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault import fileformat
from vault.fileformat import (
    CLASSIFY_BYTES,
    CURRENT_VERSION,
    DOCUMENT_ID_SIZE,
    HEADER_SIZE,
    LEGACY_MAX_SIZE,
    NO_DOCUMENT,
    PREAMBLE_SIZE,
    Classification,
    DecryptingReader,
    DecryptionError,
    EncryptingReader,
    Encryptor,
    Kind,
    classify,
    decrypt_open,
    encrypt,
    header_size,
    legacy_open,
    plaintext_size,
    preamble_size,
)

VECTORS = Path(__file__).parent / "vectors"
KEY = bytes(range(32))
KEY_ID = bytes.fromhex("0011aabbccddeeff")
OTHER_KEY = bytes(range(100, 132))
OTHER_KEY_ID = bytes.fromhex("1122334455667788")
KEYS = {KEY_ID: KEY, OTHER_KEY_ID: OTHER_KEY}
DOCUMENT = uuid.UUID("6f1c2e4a-93b7-4d2e-8a51-0c7e9f3b2d14").bytes
OTHER_DOCUMENT = uuid.UUID("0b5d7a19-2c44-4f6e-9e13-7a8c1d2e3f40").bytes
V1_HEADER = 21  # header_size(1)
V1_PREAMBLE = 61
S = 1024  # small segments: many segments for little data
FIRST = S - 56  # plaintext bytes in the first segment
LATER = S - 16  # plaintext bytes in every later segment
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def media_root():
    """Shadow the suite-wide media fixture, which needs pytest-django: this module needs nothing."""


def data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def seal(plaintext: bytes, segment_size: int = S, **kwargs) -> bytes:
    """Encrypt to the current version, for DOCUMENT unless another document_id is given."""
    kwargs.setdefault("document_id", DOCUMENT)
    return b"".join(encrypt(plaintext, KEY, KEY_ID, segment_size=segment_size, **kwargs))


def seal_v1(plaintext: bytes, segment_size: int = S, **kwargs) -> bytes:
    """Encrypt to v1, as files written before the document binding are."""
    return b"".join(
        encrypt(plaintext, KEY, KEY_ID, segment_size=segment_size, _version=1, **kwargs)
    )


SEALERS = {1: seal_v1, 2: seal}


def fixed_random(*values: bytes):
    """Return a `_random` that hands out `values` in order (salt, then nonce prefix)."""
    pending = list(values)

    def take(size: int) -> bytes:
        value = pending.pop(0)
        assert len(value) == size
        return value

    return take


class Pipe(io.RawIOBase):
    """A non-seekable stream, like stdin or a socket, that returns short reads."""

    def __init__(self, content: bytes, step: int = 700) -> None:
        super().__init__()
        self._source = io.BytesIO(content)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._source.read(min(len(buffer), self._step))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class CountingFile(io.BytesIO):
    """A seekable file that records which byte ranges were read from it."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.reads: list[tuple[int, int]] = []

    def read(self, size: int | None = -1) -> bytes:
        start = self.tell()
        chunk = super().read(size)
        self.reads.append((start, len(chunk)))
        return chunk


def decrypt_seekable(ciphertext: bytes, keys=KEYS) -> bytes:
    with DecryptingReader(io.BytesIO(ciphertext), keys) as reader:
        return reader.read()


def decrypt_sequential(ciphertext: bytes, keys=KEYS) -> bytes:
    with DecryptingReader(Pipe(ciphertext), keys) as reader:
        return reader.read()


def decrypt_streamed(ciphertext: bytes, keys=KEYS) -> bytes:
    with DecryptingReader(io.BytesIO(ciphertext), keys) as reader:
        return b"".join(reader.segments())


def decrypt_read_ahead(ciphertext: bytes, keys=KEYS) -> bytes:
    with DecryptingReader(io.BytesIO(ciphertext), keys) as reader:
        return b"".join(reader.segments(read_ahead=2))


DECRYPTERS = [decrypt_seekable, decrypt_sequential, decrypt_streamed, decrypt_read_ahead]


def assert_rejected(ciphertext: bytes, plaintext: bytes = b"", keys=KEYS) -> None:
    """Assert that every way of reading fails, and that nothing but authentic bytes came out."""
    for decrypt in DECRYPTERS:
        with pytest.raises(DecryptionError):
            decrypt(ciphertext, keys)
    for source, ahead in (
        (io.BytesIO(ciphertext), 0),
        (Pipe(ciphertext), 0),
        (io.BytesIO(ciphertext), 2),
    ):
        released = []
        with pytest.raises(DecryptionError), DecryptingReader(source, keys) as reader:
            for piece in reader.segments(read_ahead=ahead):
                released.append(bytes(piece))
        assert plaintext.startswith(b"".join(released))


def segment_spans(
    ciphertext: bytes, segment_size: int = S, version: int = CURRENT_VERSION
) -> list[tuple[int, int]]:
    """Return the (start, end) offsets of each ciphertext segment."""
    spans, start = [], preamble_size(version)
    while start < len(ciphertext):
        end = min(header_size(version) + (len(spans) + 1) * segment_size, len(ciphertext))
        spans.append((start, end))
        start = end
    return spans


def flip(ciphertext: bytes, offset: int, mask: int = 0x01) -> bytes:
    changed = bytearray(ciphertext)
    changed[offset] ^= mask
    return bytes(changed)


# Round trips ---------------------------------------------------------------------------------

BOUNDARY_SIZES = sorted(
    {0, 1, 2}
    | {FIRST + k * LATER + d for k in range(4) for d in (-1, 0, 1)}
    | {FIRST + 10 * LATER + 123}
)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
@pytest.mark.parametrize("decrypt", DECRYPTERS)
@pytest.mark.parametrize("version", [1, 2])
def test_round_trip_at_segment_boundaries(size, decrypt, version):
    plaintext = data(size, size)
    ciphertext = SEALERS[version](plaintext)
    segments = 1 if size <= FIRST else 2 + (size - FIRST - 1) // LATER
    assert len(ciphertext) == preamble_size(version) + size + 16 * segments
    assert plaintext_size(len(ciphertext), S, version=version) == size
    assert decrypt(ciphertext) == plaintext


def test_sizes_per_version():
    assert (header_size(1), preamble_size(1)) == (V1_HEADER, V1_PREAMBLE) == (21, 61)
    assert (header_size(2), preamble_size(2)) == (HEADER_SIZE, PREAMBLE_SIZE) == (37, 77)
    assert CURRENT_VERSION == 2 and DOCUMENT_ID_SIZE == len(NO_DOCUMENT) == 16
    assert not any(NO_DOCUMENT)
    for version in (0, 3, "2", None, True):
        with pytest.raises(ValueError):
            header_size(version)
        with pytest.raises(ValueError):
            plaintext_size(1000, S, version=version)


@pytest.mark.parametrize(("version", "total"), [(1, 21 + 40 + 16), (2, 37 + 40 + 16)])
def test_an_empty_plaintext_is_one_empty_segment(version, total):
    ciphertext = SEALERS[version](b"", segment_size=fileformat.SEGMENT_SIZE)
    assert len(ciphertext) == total
    assert decrypt_seekable(ciphertext) == b""
    assert decrypt_sequential(ciphertext) == b""


@pytest.mark.parametrize(
    "size",
    [
        (1 << 20) - 56,  # exactly fills the first 1 MiB segment: one segment, marked last
        (1 << 20) - 55,  # one byte into a second segment
        (1 << 20) - 56 + (1 << 20) - 16,  # exactly two full segments
        (1 << 20) * 2 + 12345,  # three segments
    ],
)
def test_round_trip_at_the_real_segment_size(size):
    plaintext = os.urandom(size)
    ciphertext = b"".join(encrypt(io.BytesIO(plaintext), KEY, KEY_ID))
    assert plaintext_size(len(ciphertext)) == size
    assert decrypt_seekable(ciphertext) == plaintext
    assert decrypt_sequential(ciphertext) == plaintext


@FAST
@given(
    size=st.integers(0, 6000),
    seed=st.integers(0, 2**32),
    segment_size=st.integers(1024, 1300),
    cuts=st.lists(st.integers(0, 6000), max_size=12),
    document_id=st.binary(min_size=16, max_size=16),
)
def test_any_chunking_gives_the_same_ciphertext(size, seed, segment_size, cuts, document_id):
    plaintext = data(size, seed)
    salt, prefix = data(32, seed + 1), data(7, seed + 2)
    bounds = sorted({0, size, *(cut % (size + 1) for cut in cuts)})
    chunks = [plaintext[a:b] for a, b in itertools.pairwise(bounds)]
    options = {"document_id": document_id, "segment_size": segment_size}

    def sealed(source) -> bytes:
        pieces = encrypt(source, KEY, KEY_ID, **options, _random=fixed_random(salt, prefix))
        return b"".join(pieces)

    expected = sealed(plaintext)
    assert sealed(iter(chunks)) == expected
    assert sealed(Pipe(plaintext, step=max(1, size // 3))) == expected
    assert sealed([bytearray(chunk) for chunk in chunks]) == expected
    assert sealed(io.BytesIO(plaintext)) == expected
    pushed = Encryptor(KEY, KEY_ID, **options, _random=fixed_random(salt, prefix))
    assert b"".join([*(pushed.update(chunk) for chunk in chunks), pushed.finalize()]) == expected
    with DecryptingReader(io.BytesIO(expected), KEYS) as reader:
        assert (reader.version, reader.document_id) == (2, document_id)
        assert reader.size == size
        assert reader.read() == plaintext
    assert decrypt_sequential(expected) == plaintext
    assert classify(expected).document_id == document_id


def test_encrypt_yields_the_preamble_then_one_item_per_segment():
    pieces = list(encrypt(data(FIRST + 2 * LATER + 5), KEY, KEY_ID, segment_size=S))
    assert [len(piece) for piece in pieces] == [PREAMBLE_SIZE, S - 40, S, S, 5 + 16]
    assert all(type(piece) is bytes for piece in pieces)


def test_a_producer_may_reuse_its_chunk_buffer():
    plaintext = data(5000)

    def reused_buffer():
        buffer = bytearray()
        for start in range(0, len(plaintext), 300):
            buffer[:] = plaintext[start : start + 300]
            yield buffer
            buffer.clear()  # resizing fails if the encryptor still holds a view

    assert decrypt_seekable(seal(reused_buffer())) == plaintext


def test_encrypt_is_fresh_each_time():
    assert seal(b"same") != seal(b"same")


@pytest.mark.parametrize(
    ("plaintext", "key", "key_id", "segment_size", "error"),
    [
        ("text", KEY, KEY_ID, S, TypeError),
        (io.StringIO("text"), KEY, KEY_ID, S, TypeError),
        (42, KEY, KEY_ID, S, TypeError),
        (b"x", KEY[:16], KEY_ID, S, ValueError),
        (b"x", "k" * 32, KEY_ID, S, TypeError),
        (b"x", KEY, KEY_ID[:4], S, ValueError),
        (b"x", KEY, KEY_ID, 1023, ValueError),
        (b"x", KEY, KEY_ID, 2**31, ValueError),
    ],
)
def test_encrypt_rejects_misuse_at_once(plaintext, key, key_id, segment_size, error):
    with pytest.raises(error):
        encrypt(plaintext, key, key_id, segment_size=segment_size)
    with pytest.raises(error):
        EncryptingReader(plaintext, key, key_id, segment_size=segment_size)


@pytest.mark.parametrize(
    ("document_id", "error"),
    [
        (DOCUMENT[:15], ValueError),
        (DOCUMENT + b"\x00", ValueError),
        (b"", ValueError),
        (uuid.UUID(bytes=DOCUMENT), TypeError),  # the UUID's .bytes is what the format takes
        (str(uuid.UUID(bytes=DOCUMENT)), TypeError),
        (None, TypeError),
        (42, TypeError),
    ],
)
def test_a_bad_document_id_is_refused_at_once(document_id, error):
    with pytest.raises(error, match="document_id"):
        encrypt(b"x", KEY, KEY_ID, document_id=document_id)
    with pytest.raises(error, match="document_id"):
        EncryptingReader(b"x", KEY, KEY_ID, document_id=document_id)
    with pytest.raises(error, match="document_id"):
        Encryptor(KEY, KEY_ID, document_id=document_id)


@pytest.mark.parametrize("document_id", [bytearray(DOCUMENT), memoryview(DOCUMENT)])
def test_a_document_id_may_be_any_bytes_like_object(document_id):
    ciphertext = b"".join(encrypt(b"x", KEY, KEY_ID, document_id=document_id))
    with DecryptingReader(io.BytesIO(ciphertext), KEYS) as reader:
        assert type(reader.document_id) is bytes and reader.document_id == DOCUMENT


def test_only_the_current_version_is_written_except_v1_for_compatibility_tests():
    assert classify(seal(b"x")).version == CURRENT_VERSION
    with pytest.raises(ValueError, match="no document ID"):
        seal_v1(b"x", document_id=DOCUMENT)
    for version in (0, 3):
        with pytest.raises(ValueError):
            seal(b"x", _version=version)


def test_str_chunks_are_refused():
    with pytest.raises(TypeError):
        seal(iter([b"bytes", "text"]))


def test_encrypt_memory_stays_within_a_few_segments():
    total = 48 << 20
    chunk = os.urandom(64 << 10)
    tracemalloc.start()
    try:
        ciphertext_size = 0
        for piece in encrypt((chunk for _ in range(total // len(chunk))), KEY, KEY_ID):
            ciphertext_size += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plaintext_size(ciphertext_size) == total
    assert peak < 6 << 20


# EncryptingReader ----------------------------------------------------------------------------


@FAST
@given(size=st.integers(0, 5000), reads=st.lists(st.integers(-1, 3000), min_size=1))
def test_encrypting_reader_gives_the_encrypt_output(size, reads):
    plaintext = data(size)
    randoms = data(32, 1), data(7, 2)
    expected = seal(plaintext, _random=fixed_random(*randoms))
    reader = EncryptingReader(
        io.BytesIO(plaintext),
        KEY,
        KEY_ID,
        document_id=DOCUMENT,
        segment_size=S,
        _random=fixed_random(*randoms),
    )
    got = bytearray()
    for n in reads:
        piece = reader.read(n)
        assert type(piece) is bytes
        # Short only at the end: what uploads of fixed-size parts rely on.
        assert n < 0 or len(piece) == min(n, len(expected) - len(got))
        got += piece
    got += reader.read()
    assert bytes(got) == expected
    assert reader.read(10) == b""


def test_encrypting_reader_readinto_and_file_protocol():
    plaintext = data(4000)
    reader = EncryptingReader(iter([plaintext]), KEY, KEY_ID, segment_size=S)
    assert reader.readable() and not reader.seekable()
    with pytest.raises(io.UnsupportedOperation):
        reader.seek(0)
    buffer = bytearray(1500)
    got = b""
    while n := reader.readinto(buffer):
        got += buffer[:n]
    assert decrypt_seekable(got) == plaintext
    source = io.BytesIO(plaintext)
    with EncryptingReader(source, KEY, KEY_ID) as reader:
        pass
    assert not source.closed  # the plaintext is borrowed
    with pytest.raises(ValueError):
        reader.read()


def test_encrypting_reader_never_ends_cleanly_after_its_source_failed():
    def failing():
        yield data(3000)
        raise OSError("disk gone")

    reader = EncryptingReader(failing(), KEY, KEY_ID, segment_size=S)
    with pytest.raises(OSError):
        reader.read()
    with pytest.raises(ValueError):
        reader.read()


# Random access and streaming -----------------------------------------------------------------


@FAST
@given(
    size=st.integers(0, 8000),
    ops=st.lists(st.tuples(st.integers(0, 8200), st.integers(-1, 3000)), min_size=1, max_size=8),
)
def test_seek_and_read_anywhere(size, ops):
    plaintext = data(size)
    with DecryptingReader(io.BytesIO(seal(plaintext)), KEYS) as reader:
        for offset, n in ops:
            assert reader.seek(offset) == offset
            expected = plaintext[offset:] if n < 0 else plaintext[offset : offset + n]
            assert reader.read(n) == expected
            assert reader.tell() == offset + len(expected)


def test_seek_whence_and_past_the_end():
    plaintext = data(3000)
    with DecryptingReader(io.BytesIO(seal(plaintext)), KEYS) as reader:
        assert reader.seekable() and reader.readable()
        assert reader.seek(-10, io.SEEK_END) == 2990
        assert reader.read() == plaintext[-10:]
        reader.seek(100)
        assert reader.seek(50, io.SEEK_CUR) == 150
        assert reader.read(5) == plaintext[150:155]
        reader.seek(10_000)
        assert reader.read() == b""
        assert reader.read(5) == b""
        with pytest.raises(ValueError):
            reader.seek(-1)


def test_size_comes_from_the_length_without_decrypting():
    plaintext = data(FIRST + 3 * LATER + 77)
    ciphertext = seal(plaintext)
    damaged = bytearray(ciphertext)
    damaged[PREAMBLE_SIZE:] = bytes(len(damaged) - PREAMBLE_SIZE)  # every segment ruined
    reader = DecryptingReader(io.BytesIO(bytes(damaged)), KEYS)
    assert reader.size == len(plaintext) == plaintext_size(len(ciphertext), S)
    assert reader.key_id == KEY_ID and reader.segment_size == S
    with pytest.raises(DecryptionError):
        reader.read(1)


def test_only_the_needed_segments_are_read():
    plaintext = data(FIRST + 6 * LATER)
    ciphertext = seal(plaintext)
    source = CountingFile(ciphertext)
    reader = DecryptingReader(source, KEYS)
    assert source.reads == [(0, 9), (9, PREAMBLE_SIZE - 9)]  # magic and version, then the rest
    source.reads.clear()
    reader.seek(FIRST + 3 * LATER + 10)  # inside segment 4
    assert reader.read(20) == plaintext[FIRST + 3 * LATER + 10 :][:20]
    assert source.reads == [(HEADER_SIZE + 4 * S, S)]
    reader.seek(FIRST + 3 * LATER + 500)
    assert reader.read(20) == plaintext[FIRST + 3 * LATER + 500 :][:20]
    assert source.reads == [(HEADER_SIZE + 4 * S, S)]  # the decrypted segment is kept


def test_segments_start_mid_segment_then_follow_segment_boundaries():
    plaintext = data(FIRST + 4 * LATER + 300)
    with DecryptingReader(io.BytesIO(seal(plaintext)), KEYS) as reader:
        reader.seek(FIRST + 100)
        pieces = [bytes(piece) for piece in reader.segments()]
        assert reader.tell() == len(plaintext)
    assert [len(piece) for piece in pieces] == [LATER - 100, LATER, LATER, LATER, 300]
    assert b"".join(pieces) == plaintext[FIRST + 100 :]


def test_segments_hand_out_immutable_pieces_that_stay_valid():
    plaintext = data(FIRST + 5 * LATER)
    with DecryptingReader(io.BytesIO(seal(plaintext)), KEYS) as reader:
        reader.seek(7)
        pieces = list(reader.segments())
    assert all(isinstance(piece, bytes | memoryview) for piece in pieces)
    assert b"".join(pieces) == plaintext[7:]


def test_readinto_fills_the_buffer():
    plaintext = data(5000)
    reader = DecryptingReader(io.BytesIO(seal(plaintext)), KEYS)
    buffer = bytearray(3000)
    assert reader.readinto(buffer) == 3000 and buffer == plaintext[:3000]
    assert reader.readinto(buffer) == 2000 and buffer[:2000] == plaintext[3000:]
    assert reader.readinto(buffer) == 0


def test_buffered_and_line_reading_work_on_top():
    plaintext = b"".join(b"line %d\n" % n for n in range(500))
    reader = DecryptingReader(io.BytesIO(seal(plaintext)), KEYS)
    assert io.BufferedReader(reader).readlines() == plaintext.splitlines(keepends=True)


def test_decrypt_memory_stays_within_a_few_segments(tmp_path):
    path = tmp_path / "big.dv"
    with path.open("wb") as target:
        for piece in encrypt((os.urandom(1 << 20) for _ in range(48)), KEY, KEY_ID):
            target.write(piece)
    tracemalloc.start()
    try:
        with DecryptingReader(path.open("rb"), KEYS) as reader:
            total = sum(len(piece) for piece in reader.segments())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 48 << 20
    assert peak < 6 << 20


# Sequential (non-seekable) mode ----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, FIRST, FIRST + 1, FIRST + LATER, FIRST + 5 * LATER + 9])
def test_sequential_mode_round_trip(size):
    plaintext = data(size)
    reader = DecryptingReader(Pipe(seal(plaintext), step=333), KEYS)
    assert not reader.seekable()
    assert reader.size is None
    with pytest.raises(io.UnsupportedOperation):
        reader.seek(0)
    assert reader.read(10) == plaintext[:10]
    assert reader.tell() == min(10, size)
    assert b"".join(reader.segments()) == plaintext[10:]
    assert reader.read() == b""


# Tampering -------------------------------------------------------------------------------------

TAMPER_PLAINTEXT = data(FIRST + 3 * LATER + 200, 7)  # five segments, a short last one
TAMPER = {version: SEALERS[version](TAMPER_PLAINTEXT) for version in (1, 2)}
TAMPER_CIPHERTEXT = TAMPER[CURRENT_VERSION]
VERSIONS = pytest.mark.parametrize("version", [1, 2])


def tamper_offsets(version: int) -> list[int]:
    header, preamble, end = header_size(version), preamble_size(version), len(TAMPER[version])
    return [
        *range(header),  # every Docvault header byte, each document ID byte in v2
        header,  # Tink header length
        header + 1,  # salt
        preamble - 1,  # nonce prefix
        preamble,  # first ciphertext byte
        header + S - 1,  # tag of the first segment
        header + 2 * S + 500,  # middle of segment 2
        end - 17,  # last byte of the last segment's body
        end - 1,  # last tag byte
    ]


@pytest.mark.parametrize(
    ("version", "offset"), [(v, offset) for v in (1, 2) for offset in tamper_offsets(v)]
)
def test_any_flipped_byte_is_rejected(version, offset):
    assert_rejected(flip(TAMPER[version], offset), TAMPER_PLAINTEXT)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 4000),
    position=st.floats(0, 1, exclude_max=True),
    mask=st.integers(1, 255),
    version=st.sampled_from([1, 2]),
)
def test_property_any_single_byte_change_fails(size, position, mask, version):
    plaintext = data(size, size)
    ciphertext = SEALERS[version](plaintext)
    offset = int(position * len(ciphertext))
    tampered = flip(ciphertext, offset, mask)
    for decrypt in DECRYPTERS:
        with pytest.raises(DecryptionError):
            decrypt(tampered)


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(0, 3000),
    document_id=st.binary(min_size=16, max_size=16),
    index=st.integers(0, 15),
    mask=st.integers(1, 255),
)
def test_property_a_changed_document_id_fails_authentication(size, document_id, index, mask):
    plaintext = data(size, size)
    ciphertext = seal(plaintext, document_id=document_id)
    tampered = flip(ciphertext, 21 + index, mask)
    with DecryptingReader(io.BytesIO(tampered), KEYS) as reader:
        # The changed value is what the reader reports, and nothing of the file can be read.
        assert reader.document_id == flip(document_id, index, mask)
        with pytest.raises(DecryptionError) as failure:
            reader.read(1)
    assert failure.value.reason == "segment 0 failed authentication"
    assert_rejected(tampered, plaintext)


@VERSIONS
def test_every_truncation_is_rejected(version):
    plaintext = data(FIRST + 2 * LATER + 100)
    ciphertext = SEALERS[version](plaintext)
    for length in range(len(ciphertext)):
        for decrypt in (decrypt_seekable, decrypt_sequential):
            with pytest.raises(DecryptionError):
                decrypt(ciphertext[:length])


@VERSIONS
@pytest.mark.parametrize("segments_kept", [1, 2, 3])
def test_truncation_exactly_at_a_segment_boundary_is_rejected(version, segments_kept):
    # What remains is a valid-looking shorter file whose last segment is not marked last.
    truncated = TAMPER[version][: header_size(version) + segments_kept * S]
    expected_size = FIRST + (segments_kept - 1) * LATER
    assert plaintext_size(len(truncated), S, version=version) == expected_size
    assert_rejected(truncated, TAMPER_PLAINTEXT)


@VERSIONS
def test_a_dropped_segment_is_rejected(version):
    ciphertext = TAMPER[version]
    start, end = segment_spans(ciphertext, version=version)[2]
    assert_rejected(ciphertext[:start] + ciphertext[end:], TAMPER_PLAINTEXT)


@VERSIONS
def test_reordered_segments_are_rejected(version):
    ciphertext = TAMPER[version]
    spans = segment_spans(ciphertext, version=version)
    (a0, a1), (b0, b1) = spans[1], spans[2]
    swapped = ciphertext[:a0] + ciphertext[b0:b1] + ciphertext[a0:a1] + ciphertext[b1:]
    assert_rejected(swapped, TAMPER_PLAINTEXT)


@VERSIONS
@pytest.mark.parametrize("index", [0, 2, 4])
def test_a_segment_spliced_from_another_file_under_the_same_key_is_rejected(version, index):
    ciphertext = TAMPER[version]
    other = SEALERS[version](data(len(TAMPER_PLAINTEXT), 99))  # same key and length, other salt
    start, end = segment_spans(ciphertext, version=version)[index]
    spliced = ciphertext[:start] + other[start:end] + ciphertext[end:]
    assert_rejected(spliced, TAMPER_PLAINTEXT)


@VERSIONS
def test_another_files_tink_header_is_rejected(version):
    ciphertext = TAMPER[version]
    other = SEALERS[version](data(len(TAMPER_PLAINTEXT), 99))
    preamble = preamble_size(version)
    assert_rejected(other[:preamble] + ciphertext[preamble:], TAMPER_PLAINTEXT)


def header_with(
    ciphertext: bytes, *, version=None, key_id=None, segment_size=None, document_id=None
) -> bytes:
    """Return `ciphertext` with header fields overwritten in place (no byte added or removed)."""
    changed = bytearray(ciphertext)
    if version is not None:
        changed[8] = version
    if key_id is not None:
        changed[9:17] = key_id
    if segment_size is not None:
        changed[17:21] = segment_size.to_bytes(4, "big")
    if document_id is not None:
        changed[21:37] = document_id
    return bytes(changed)


HEADER_CHANGES = [
    ({"version": 3}, "unsupported format version 3"),
    ({"version": 0}, "unsupported format version 0"),
    ({"key_id": OTHER_KEY_ID}, "segment 0 failed authentication"),  # a known key, not its own
    ({"key_id": bytes(8)}, "unknown key id 0000000000000000"),
    ({"segment_size": S + 16}, None),
    ({"segment_size": 2 * S}, None),
    ({"segment_size": 16}, "bad segment size 16"),
    ({"segment_size": 2**32 - 1}, f"bad segment size {2**32 - 1}"),
]


@pytest.mark.parametrize(
    ("version", "change", "reason"),
    [
        *((2, change, reason) for change, reason in HEADER_CHANGES),
        (2, {"version": 1}, None),  # read as v1, the document ID as Tink's header: refused
        (2, {"document_id": OTHER_DOCUMENT}, "segment 0 failed authentication"),
        (2, {"document_id": NO_DOCUMENT}, "segment 0 failed authentication"),
        *((1, change, reason) for change, reason in HEADER_CHANGES),
        (1, {"version": 2}, None),  # read as v2, Tink's header as the document ID: refused
    ],
)
def test_changed_header_fields_are_rejected(version, change, reason):
    changed = header_with(TAMPER[version], **change)
    assert_rejected(changed, TAMPER_PLAINTEXT)
    if reason is not None:
        with pytest.raises(DecryptionError) as failure:
            decrypt_seekable(changed)
        assert failure.value.reason == reason


def test_a_file_relabelled_for_another_document_is_rejected():
    # What a database writer could do without the key: point a file at another document.
    relabelled = header_with(TAMPER_CIPHERTEXT, document_id=OTHER_DOCUMENT)
    with DecryptingReader(io.BytesIO(relabelled), KEYS) as reader:
        assert reader.document_id == OTHER_DOCUMENT
        with pytest.raises(DecryptionError) as failure:
            reader.read()
    assert failure.value.reason == "segment 0 failed authentication"


def test_the_document_binding_cannot_be_stripped_to_an_unbound_v1_file():
    # A v1 file carries no binding, so a v2 file must not pass for one: the header is the HKDF
    # info, and a 21-byte v1 header is not the 37-byte v2 header it was sealed under.
    v2 = TAMPER[2]
    stripped = v2[:8] + b"\x01" + v2[9:21] + v2[37:]
    assert classify(stripped).kind is Kind.V1
    with DecryptingReader(io.BytesIO(stripped), KEYS) as reader:
        assert reader.version == 1 and reader.document_id is None
        with pytest.raises(DecryptionError) as failure:
            reader.read()
    assert failure.value.reason == "segment 0 failed authentication"
    assert_rejected(stripped, TAMPER_PLAINTEXT)


@pytest.mark.parametrize("document_id", [DOCUMENT, NO_DOCUMENT])
def test_a_v1_file_cannot_be_bound_by_adding_a_document_id(document_id):
    v1 = TAMPER[1]
    bound = v1[:8] + b"\x02" + v1[9:21] + document_id + v1[21:]
    assert classify(bound).document_id == document_id
    with pytest.raises(DecryptionError) as failure:
        decrypt_seekable(bound)
    assert failure.value.reason == "segment 0 failed authentication"
    assert_rejected(bound, TAMPER_PLAINTEXT)


def test_unknown_key_id_names_the_id_and_nothing_secret():
    with pytest.raises(DecryptionError) as failure:
        DecryptingReader(io.BytesIO(TAMPER_CIPHERTEXT), {OTHER_KEY_ID: OTHER_KEY})
    assert failure.value.reason == "unknown key id 0011aabbccddeeff"
    assert str(failure.value) == "Decryption failed: unknown key id 0011aabbccddeeff"


@VERSIONS
def test_wrong_key_is_rejected_without_revealing_it(version):
    keys = {KEY_ID: OTHER_KEY}
    assert_rejected(TAMPER[version], TAMPER_PLAINTEXT, keys=keys)
    with pytest.raises(DecryptionError) as failure:
        decrypt_seekable(TAMPER[version], keys)
    assert failure.value.reason == "segment 0 failed authentication"
    message = str(failure.value) + repr(failure.value)
    assert OTHER_KEY.hex() not in message and KEY.hex() not in message


@VERSIONS
@pytest.mark.parametrize("extra", [1, 15, 16, 17, S, S + 16])
def test_appended_bytes_are_rejected(version, extra):
    assert_rejected(TAMPER[version] + data(extra, extra), TAMPER_PLAINTEXT)


@VERSIONS
def test_an_appended_empty_segment_is_rejected(version):
    # A well-formed empty segment after the real last one, under the right key and nonce.
    assert_rejected(TAMPER[version] + bytes(16), TAMPER_PLAINTEXT)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "truncated"),
        (b"\x89", "truncated"),
        (b"\x89DVLT\r\n\x1a", "truncated"),
        (b"\x89DVLT\r\n\x1a\x02", "truncated"),
        (TAMPER[1][:V1_HEADER], "truncated"),
        (TAMPER[1][:V1_PREAMBLE], "truncated"),
        (TAMPER[1][: V1_PREAMBLE + 15], "truncated"),
        (TAMPER[2][:V1_HEADER], "truncated"),  # a v2 header cut before its document ID
        (TAMPER[2][: HEADER_SIZE - 1], "truncated"),
        (TAMPER[2][:HEADER_SIZE], "truncated"),
        (TAMPER[2][:PREAMBLE_SIZE], "truncated"),
        (TAMPER[2][: PREAMBLE_SIZE + 15], "truncated"),
        (b"%PDF-1.7\n" + bytes(100), "bad magic"),
        (b"plain text, not encrypted at all\n" * 10, "bad magic"),
    ],
)
def test_empty_short_and_unencrypted_files_are_rejected(content, reason):
    assert_rejected(content)
    with pytest.raises(DecryptionError) as failure:
        decrypt_sequential(content)
    assert failure.value.reason == reason


def test_a_failed_reader_stays_failed():
    tampered = flip(TAMPER_CIPHERTEXT, HEADER_SIZE + 2 * S + 5)  # segment 2
    for source in (io.BytesIO(tampered), Pipe(tampered)):
        reader = DecryptingReader(source, KEYS)
        assert reader.read(FIRST) == TAMPER_PLAINTEXT[:FIRST]
        with pytest.raises(DecryptionError):
            reader.read(2 * LATER)
        with pytest.raises(DecryptionError):
            reader.read(1)
    reader = DecryptingReader(io.BytesIO(tampered), KEYS)
    reader.seek(FIRST + LATER)
    with pytest.raises(DecryptionError):
        reader.read(1)
    reader.seek(FIRST + 3 * LATER)  # segment 4 is intact, but this reader has seen tampering
    with pytest.raises(DecryptionError):
        reader.read(1)


def test_decryption_error_keeps_the_reason():
    error = DecryptionError("truncated")
    assert error.reason == "truncated"
    assert str(error) == "Decryption failed: truncated"


# Sizes ---------------------------------------------------------------------------------------


@VERSIONS
def test_plaintext_size_matches_real_files(version):
    for size in BOUNDARY_SIZES:
        ciphertext = SEALERS[version](data(size))
        assert plaintext_size(len(ciphertext), S, version=version) == size


def test_plaintext_size_depends_on_the_version():
    ciphertext = seal_v1(data(3000))
    assert plaintext_size(len(ciphertext), S, version=1) == 3000
    assert plaintext_size(len(ciphertext) + 16, S) == 3000  # the same file written as v2


@VERSIONS
@pytest.mark.parametrize(
    "ciphertext_size",
    [
        lambda h: 0,
        lambda h: h,
        lambda h: h + 40 + 15,  # no room for a tag
        lambda h: h + S + 1,  # a full segment, then 1 byte: not even a tag
        lambda h: h + 3 * S + 15,
        lambda h: h + (2**32 + 1) * S,  # more segments than a 32-bit index counts
    ],
)
def test_impossible_lengths_are_rejected(version, ciphertext_size):
    with pytest.raises(DecryptionError):
        plaintext_size(ciphertext_size(header_size(version)), S, version=version)


def test_plaintext_size_rejects_a_bad_segment_size():
    with pytest.raises(ValueError):
        plaintext_size(10_000, 100)


# Classification ------------------------------------------------------------------------------


def fernet_cases() -> list[dict]:
    return json.loads((VECTORS / "fernet.json").read_text())["cases"]


def test_classify_v2_gives_the_header_fields_and_file_id():
    head = TAMPER_CIPHERTEXT[:CLASSIFY_BYTES]
    with DecryptingReader(io.BytesIO(TAMPER_CIPHERTEXT), KEYS) as reader:
        found = classify(head)
        assert found == Classification(Kind.V2, KEY_ID, S, reader.file_id, 2, DOCUMENT)
    assert found.is_docvault
    # A head too short for the file ID, or for the document ID, leaves them out.
    assert classify(head[:HEADER_SIZE]) == Classification(Kind.V2, KEY_ID, S, None, 2, DOCUMENT)
    assert classify(head[:V1_HEADER]) == Classification(Kind.V2, KEY_ID, S, None, 2, None)
    assert classify(seal(b"x")).file_id != reader.file_id  # every file has its own
    default = seal(b"x", segment_size=fileformat.SEGMENT_SIZE, document_id=NO_DOCUMENT)
    assert classify(default[:CLASSIFY_BYTES]).segment_size == 1 << 20
    assert classify(default[:CLASSIFY_BYTES]).document_id == NO_DOCUMENT


def test_classify_v1_gives_the_key_id_segment_size_and_file_id():
    ciphertext = TAMPER[1]
    head = ciphertext[:CLASSIFY_BYTES]
    with DecryptingReader(io.BytesIO(ciphertext), KEYS) as reader:
        assert classify(head) == Classification(Kind.V1, KEY_ID, S, reader.file_id, 1, None)
    assert classify(head).is_docvault
    assert classify(head[:V1_HEADER]) == Classification(Kind.V1, KEY_ID, S, None, 1, None)


@pytest.mark.parametrize("index", range(3))
def test_classify_legacy_fernet(index):
    token = fernet_cases()[index]["token"].encode()
    found = classify(token[:CLASSIFY_BYTES])
    assert found == Classification(Kind.LEGACY)
    assert not found.is_docvault and found.version is None


@pytest.mark.parametrize("plaintext_size", [0, 15, 16, 31, 32, 100])
def test_classify_recognises_short_fernet_tokens_whole(plaintext_size):
    # A token shorter than CLASSIFY_BYTES is the whole file: the empty plaintext's is 100 bytes.
    token = Fernet(Fernet.generate_key()).encrypt(data(plaintext_size))
    if plaintext_size == 0:
        assert len(token) == 100 < CLASSIFY_BYTES
    assert classify(token) == Classification(Kind.LEGACY)
    assert classify(token[:CLASSIFY_BYTES]) == Classification(Kind.LEGACY)


def test_the_shortest_fernet_token_is_read_through_decrypt_open():
    key = Fernet.generate_key()
    token = Fernet(key).encrypt(b"")
    for source in (io.BytesIO(token), Pipe(token, step=7)):
        assert decrypt_open(source, KEYS, [key]).read() == b""


def test_classify_refuses_cut_or_malformed_short_fernet_tokens():
    token = Fernet(Fernet.generate_key()).encrypt(b"")  # 100 characters, "==" at the end
    assert token.endswith(b"=")
    for head in (
        token[:-1],  # a cut token is not a whole file
        token[:-4],
        token.rstrip(b"="),  # padding is always written
        token + b"\n",
        token + b"====",
        token[:96] + b"A===",
        b"gAAAAA" + b"A" * 94,  # 100 characters, but 75 bytes: no Fernet token has that size
        b"gAAAAA" + b"A" * 110 + b"!!!!",
    ):
        assert classify(head) == Classification(Kind.UNKNOWN), head


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        b"\x89PNG\r\n\x1a\n" + bytes(60),
        b"Dear customer, please find attached the report.\n",
        b"gAAAAA" + b"not base64 at all! " * 8,
        b"gAAAAABshort",  # a Fernet prefix, but far too short for a token
        b"\x89DVLT\r\n\x1a",  # the magic alone
        b"\x89DVLT\r\n\x1a\x02",  # and a version
        TAMPER_CIPHERTEXT[:20],  # one byte short of the fields both versions start with
        TAMPER[1][:20],
        header_with(TAMPER_CIPHERTEXT, version=3)[:CLASSIFY_BYTES],
        header_with(TAMPER_CIPHERTEXT, version=0)[:CLASSIFY_BYTES],
    ],
)
def test_classify_anything_else_is_unknown(head):
    found = classify(head)
    assert found == Classification(Kind.UNKNOWN)
    assert not found.is_docvault


# decrypt_open --------------------------------------------------------------------------------


@VERSIONS
@pytest.mark.parametrize("seekable", [True, False])
def test_decrypt_open_reads_v2_and_v1(seekable, version):
    plaintext = data(3000)
    ciphertext = SEALERS[version](plaintext)
    source = io.BytesIO(ciphertext) if seekable else Pipe(ciphertext, step=50)
    reader = decrypt_open(source, KEYS, [])
    assert isinstance(reader, DecryptingReader)
    assert reader.key_id == KEY_ID
    assert reader.version == version
    assert reader.document_id == (DOCUMENT if version == 2 else None)
    assert reader.read() == plaintext
    reader.close()
    assert source.closed


@VERSIONS
def test_decrypt_open_reads_the_head_once(version):
    plaintext = data(FIRST + 2 * LATER)
    source = CountingFile(SEALERS[version](plaintext))
    reader = decrypt_open(source, KEYS, [])
    # One read classifies the file and holds its preamble: nothing of it is read again.
    assert source.reads == [(0, CLASSIFY_BYTES)]
    source.reads.clear()
    assert reader.read(10) == plaintext[:10]
    assert source.reads == [(preamble_size(version), S - 40)]  # the first segment, whole


@pytest.mark.parametrize("seekable", [True, False])
def test_decrypt_open_refuses_a_legacy_file_when_told_to(seekable):
    source = CountingFile(LEGACY_TOKEN) if seekable else CountingPipe(LEGACY_TOKEN, step=100)
    with pytest.raises(DecryptionError) as failure:
        decrypt_open(source, KEYS, [LEGACY_KEY], legacy_refusal="legacy reading is off")
    assert failure.value.reason == "legacy reading is off"
    assert not source.closed
    if seekable:
        assert source.reads == [(0, CLASSIFY_BYTES)]
    else:
        assert source.consumed == CLASSIFY_BYTES


def test_a_file_written_for_another_document_reads_and_names_its_document():
    # Refusing it is the caller's check: the reader reports the authenticated document ID.
    ciphertext = seal(b"Globex revenue", document_id=OTHER_DOCUMENT)
    with decrypt_open(io.BytesIO(ciphertext), KEYS, []) as reader:
        assert reader.document_id == OTHER_DOCUMENT != DOCUMENT
        assert reader.read() == b"Globex revenue"
    unbound = b"".join(encrypt(b"vault_encrypt output", KEY, KEY_ID))
    with decrypt_open(io.BytesIO(unbound), KEYS, []) as reader:
        assert (reader.version, reader.document_id) == (2, NO_DOCUMENT)
        assert reader.read() == b"vault_encrypt output"


@pytest.mark.parametrize("seekable", [True, False])
def test_decrypt_open_reads_legacy(seekable):
    case = fernet_cases()[-1]
    token = case["token"].encode()
    source = io.BytesIO(token) if seekable else Pipe(token, step=50)
    plaintext = decrypt_open(source, KEYS, [Fernet.generate_key(), case["fernet_key"].encode()])
    assert plaintext.read() == bytes.fromhex(case["plaintext_hex"])
    assert source.closed


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a Docvault or Fernet file"),
        (b"%PDF-1.7\n" + bytes(200), "not a Docvault or Fernet file"),
        (header_with(TAMPER_CIPHERTEXT, version=3), "unsupported format version 3"),
        (header_with(TAMPER[1], version=0), "unsupported format version 0"),
    ],
)
def test_decrypt_open_refuses_other_files(content, reason):
    source = io.BytesIO(content)
    with pytest.raises(DecryptionError) as failure:
        decrypt_open(source, KEYS, [Fernet.generate_key()])
    assert failure.value.reason == reason
    assert not source.closed  # on error the caller still owns it


# The legacy size cap -------------------------------------------------------------------------


class CountingPipe(Pipe):
    """A Pipe that counts the bytes read from it."""

    consumed = 0

    def readinto(self, buffer) -> int:
        got = super().readinto(buffer)
        self.consumed += got
        return got


LEGACY_KEY = Fernet.generate_key()
LEGACY_PLAINTEXT = data(5000, 3)
LEGACY_TOKEN = Fernet(LEGACY_KEY).encrypt(LEGACY_PLAINTEXT)


def test_the_default_legacy_cap_is_256_mib():
    assert LEGACY_MAX_SIZE == 256 << 20


@pytest.mark.parametrize("max_size", [len(LEGACY_TOKEN), len(LEGACY_TOKEN) + 1, None])
def test_a_legacy_token_up_to_the_cap_is_read(max_size):
    for source in (io.BytesIO(LEGACY_TOKEN), Pipe(LEGACY_TOKEN, step=333)):
        plaintext = legacy_open(source, [LEGACY_KEY], max_size=max_size)
        assert plaintext.read() == LEGACY_PLAINTEXT
    source = io.BytesIO(LEGACY_TOKEN)
    assert decrypt_open(source, {}, [LEGACY_KEY], legacy_max_size=max_size).read() == (
        LEGACY_PLAINTEXT
    )
    assert source.closed


@pytest.mark.parametrize("max_size", [len(LEGACY_TOKEN) - 1, 1000, 0])
def test_a_legacy_token_over_the_cap_is_refused_after_reading_at_most_the_cap(max_size):
    reason = f"legacy file larger than the cap of {max_size} bytes"
    seekable = CountingFile(LEGACY_TOKEN)
    with pytest.raises(DecryptionError) as failure:
        legacy_open(seekable, [LEGACY_KEY], max_size=max_size)
    assert failure.value.reason == reason
    assert seekable.reads == []  # a file that can tell its size is not read at all
    pipe = CountingPipe(LEGACY_TOKEN, step=100)
    with pytest.raises(DecryptionError) as failure:
        legacy_open(pipe, [LEGACY_KEY], max_size=max_size)
    assert failure.value.reason == reason
    assert pipe.consumed <= max_size + 1


@pytest.mark.parametrize("seekable", [True, False])
def test_decrypt_open_applies_the_legacy_cap_and_leaves_the_file_open(seekable):
    source = CountingFile(LEGACY_TOKEN) if seekable else CountingPipe(LEGACY_TOKEN, step=100)
    with pytest.raises(DecryptionError) as failure:
        decrypt_open(source, KEYS, [LEGACY_KEY], legacy_max_size=1000)
    assert failure.value.reason == "legacy file larger than the cap of 1000 bytes"
    assert not source.closed
    if not seekable:
        assert source.consumed <= 1001


def test_the_legacy_cap_applies_from_the_current_position():
    prefix = b"not part of the token"
    source = io.BytesIO(prefix + LEGACY_TOKEN)
    source.seek(len(prefix))
    plaintext = legacy_open(source, [LEGACY_KEY], max_size=len(LEGACY_TOKEN))
    assert plaintext.read() == LEGACY_PLAINTEXT


def test_the_legacy_cap_does_not_apply_to_docvault_files():
    ciphertext = seal(data(5000))
    with decrypt_open(io.BytesIO(ciphertext), KEYS, [], legacy_max_size=0) as reader:
        assert reader.read() == data(5000)


@pytest.mark.parametrize(
    ("max_size", "error"), [(-1, ValueError), ("10", TypeError), (True, TypeError)]
)
def test_a_bad_legacy_cap_is_misuse(max_size, error):
    with pytest.raises(error):
        legacy_open(io.BytesIO(LEGACY_TOKEN), [LEGACY_KEY], max_size=max_size)


def test_a_legacy_read_without_a_cap_reads_a_large_token_whole():
    plaintext = os.urandom(3 << 20)
    token = Fernet(LEGACY_KEY).encrypt(plaintext)
    assert legacy_open(Pipe(token, step=1 << 16), [LEGACY_KEY], max_size=None).read() == plaintext


# Fixed vectors -------------------------------------------------------------------------------


def v1_cases() -> list[dict]:
    return json.loads((VECTORS / "v1.json").read_text())["cases"]


def v2_cases() -> list[dict]:
    return json.loads((VECTORS / "v2.json").read_text())["cases"]


@pytest.mark.parametrize("case", v1_cases(), ids=lambda case: case["name"])
def test_v1_vector_decrypts(case):
    key_id = bytes.fromhex(case["key_id_hex"])
    keys = {key_id: bytes.fromhex(case["key_hex"])}
    ciphertext = bytes.fromhex(case["ciphertext_hex"])
    plaintext = bytes.fromhex(case["plaintext_hex"])
    assert decrypt_seekable(ciphertext, keys) == plaintext
    assert decrypt_sequential(ciphertext, keys) == plaintext
    assert plaintext_size(len(ciphertext), case["segment_size"], version=1) == len(plaintext)
    salt = bytes.fromhex(case["salt_hex"])
    expected = Classification(Kind.V1, key_id, case["segment_size"], salt, 1, None)
    assert classify(ciphertext) == expected
    with DecryptingReader(io.BytesIO(ciphertext), keys) as reader:
        assert (reader.file_id, reader.version, reader.document_id) == (salt, 1, None)


@pytest.mark.parametrize("case", v1_cases(), ids=lambda case: case["name"])
def test_v1_vector_is_reproduced_by_the_compatibility_writer(case):
    randoms = fixed_random(bytes.fromhex(case["salt_hex"]), bytes.fromhex(case["nonce_prefix_hex"]))
    pieces = encrypt(
        bytes.fromhex(case["plaintext_hex"]),
        bytes.fromhex(case["key_hex"]),
        bytes.fromhex(case["key_id_hex"]),
        segment_size=case["segment_size"],
        _random=randoms,
        _version=1,
    )
    assert b"".join(pieces).hex() == case["ciphertext_hex"]


def test_v2_vectors_cover_bound_and_unbound_files():
    document_ids = {case["document_id_hex"] for case in v2_cases()}
    assert NO_DOCUMENT.hex() in document_ids and len(document_ids) >= 3
    assert {case["segment_size"] for case in v2_cases()} == {1024, 1 << 20}


@pytest.mark.parametrize("case", v2_cases(), ids=lambda case: case["name"])
def test_v2_vector_decrypts(case):
    key_id = bytes.fromhex(case["key_id_hex"])
    keys = {key_id: bytes.fromhex(case["key_hex"])}
    ciphertext = bytes.fromhex(case["ciphertext_hex"])
    plaintext = bytes.fromhex(case["plaintext_hex"])
    document_id = bytes.fromhex(case["document_id_hex"])
    assert decrypt_seekable(ciphertext, keys) == plaintext
    assert decrypt_sequential(ciphertext, keys) == plaintext
    assert plaintext_size(len(ciphertext), case["segment_size"]) == len(plaintext)
    salt = bytes.fromhex(case["salt_hex"])
    expected = Classification(Kind.V2, key_id, case["segment_size"], salt, 2, document_id)
    assert classify(ciphertext) == expected
    with DecryptingReader(io.BytesIO(ciphertext), keys) as reader:
        assert (reader.file_id, reader.version, reader.document_id) == (salt, 2, document_id)
    other = bytes(b ^ 0xFF for b in document_id)
    assert_rejected(header_with(ciphertext, document_id=other), plaintext, keys)


@pytest.mark.parametrize("case", v2_cases(), ids=lambda case: case["name"])
def test_v2_vector_is_reproduced_by_the_writer(case):
    randoms = fixed_random(bytes.fromhex(case["salt_hex"]), bytes.fromhex(case["nonce_prefix_hex"]))
    pieces = encrypt(
        bytes.fromhex(case["plaintext_hex"]),
        bytes.fromhex(case["key_hex"]),
        bytes.fromhex(case["key_id_hex"]),
        document_id=bytes.fromhex(case["document_id_hex"]),
        segment_size=case["segment_size"],
        _random=randoms,
    )
    assert b"".join(pieces).hex() == case["ciphertext_hex"]


def test_fernet_vectors_use_the_case_study_key_derivation():
    case = fernet_cases()[0]
    derived = PBKDF2HMAC(
        algorithm=hashes.SHA256(),
        length=32,
        salt=case["salt"].encode(),
        iterations=case["iterations"],
    ).derive(case["secret"].encode())
    assert base64.urlsafe_b64encode(derived).decode() == case["fernet_key"]
    sizes = [len(bytes.fromhex(case["plaintext_hex"])) for case in fernet_cases()]
    assert 0 in sizes and max(sizes) >= 3000


@pytest.mark.parametrize("index", range(3))
def test_fernet_vector_decrypts_with_its_key(index):
    case = fernet_cases()[index]
    plaintext = legacy_open(io.BytesIO(case["token"].encode()), [case["fernet_key"].encode()])
    assert plaintext.read() == bytes.fromhex(case["plaintext_hex"])


def test_fernet_vector_with_a_wrong_key_is_rejected():
    case = fernet_cases()[-1]
    with pytest.raises(DecryptionError) as failure:
        legacy_open(io.BytesIO(case["token"].encode()), [Fernet.generate_key()])
    assert failure.value.reason == "legacy token failed authentication"


def test_tampered_or_keyless_fernet_token_is_rejected():
    case = fernet_cases()[-1]
    token = bytearray(case["token"].encode())
    token[100] = ord("A") if token[100] != ord("A") else ord("B")
    with pytest.raises(DecryptionError):
        legacy_open(io.BytesIO(bytes(token)), [case["fernet_key"].encode()])
    with pytest.raises(DecryptionError):
        legacy_open(io.BytesIO(case["token"].encode()), [])


def test_encryptor_releases_ciphertext_as_segments_fill_and_refuses_misuse():
    pushed = Encryptor(KEY, KEY_ID, segment_size=S)
    first_segment = b"x" * (S - PREAMBLE_SIZE + HEADER_SIZE - 16)
    # A full first segment may still be the last one: nothing but the preamble leaves yet.
    first = pushed.update(first_segment)
    assert len(first) == PREAMBLE_SIZE
    second = pushed.update(b"y")  # now the first segment is known not to be the last
    assert len(second) == S - PREAMBLE_SIZE + HEADER_SIZE
    tail = pushed.finalize()
    assert len(tail) == 1 + 16
    with DecryptingReader(io.BytesIO(first + second + tail), KEYS) as reader:
        assert reader.read() == first_segment + b"y"
    with pytest.raises(ValueError, match="finalize"):
        pushed.update(b"z")
    with pytest.raises(ValueError, match="twice"):
        pushed.finalize()
    with pytest.raises(TypeError):
        Encryptor(KEY, KEY_ID).update("text")


# Read-ahead: the same plaintext and the same failures, decrypted in a thread ------------------


def _read_ahead_threads() -> list:
    import threading

    return [thread for thread in threading.enumerate() if thread.name == "docvault-read-ahead"]


@pytest.mark.parametrize("start", [0, 1, FIRST - 1, FIRST, FIRST + 5 * LATER + 7])
def test_read_ahead_from_any_position_gives_the_same_plaintext(start):
    plaintext = data(FIRST + 9 * LATER + 100, seed=3)
    with DecryptingReader(io.BytesIO(seal(plaintext)), KEYS) as reader:
        reader.seek(start)
        assert b"".join(reader.segments(read_ahead=3)) == plaintext[start:]
        assert reader.tell() == len(plaintext)
    assert _read_ahead_threads() == []


def test_a_read_ahead_failure_is_reported_once_in_the_callers_thread_at_its_segment():
    import threading

    plaintext = data(FIRST + 6 * LATER, seed=4)
    ciphertext = seal(plaintext)
    start, _ = segment_spans(ciphertext)[4]
    failures = []

    def on_failure(exc):
        failures.append((exc.reason, threading.current_thread().name))

    released = []
    reader = DecryptingReader(io.BytesIO(flip(ciphertext, start + 3)), KEYS, on_failure=on_failure)
    with pytest.raises(DecryptionError, match="segment 4"), reader:
        for piece in reader.segments(read_ahead=2):
            released.append(bytes(piece))
    # Every segment before the bad one, and nothing of it or after it.
    assert b"".join(released) == plaintext[: FIRST + 3 * LATER]
    assert failures == [("segment 4 failed authentication", threading.current_thread().name)]
    assert _read_ahead_threads() == []


def test_closing_a_read_ahead_early_stops_its_thread_before_the_file_closes():
    plaintext = data(FIRST + 40 * LATER, seed=5)
    reader = DecryptingReader(io.BytesIO(seal(plaintext)), KEYS)
    segments = reader.segments(read_ahead=2)
    assert bytes(next(segments)) == plaintext[:FIRST]
    assert bytes(next(segments)) == plaintext[FIRST : FIRST + LATER]
    segments.close()
    assert _read_ahead_threads() == []
    reader.close()


def test_read_ahead_on_a_sequential_stream_reads_in_order_without_a_thread():
    plaintext = data(FIRST + 5 * LATER, seed=6)
    with DecryptingReader(Pipe(seal(plaintext)), KEYS) as reader:
        segments = reader.segments(read_ahead=2)
        assert bytes(next(segments)) == plaintext[:FIRST]
        assert _read_ahead_threads() == []
        assert bytes(next(segments)) + b"".join(segments) == plaintext[FIRST:]
