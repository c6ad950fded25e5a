"""The v1 file format and the legacy Fernet reader: real primitives, fixed vectors, properties.

Pure pytest, no Django: `pytest tests/vault/test_fileformat.py -p no:django` runs it alone.
"""

import base64
import io
import itertools
import json
import os
import random
import tracemalloc
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
    HEADER_SIZE,
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
    legacy_open,
    plaintext_size,
)

VECTORS = Path(__file__).parent / "vectors"
KEY = bytes(range(32))
KEY_ID = bytes.fromhex("0011aabbccddeeff")
OTHER_KEY = bytes(range(100, 132))
OTHER_KEY_ID = bytes.fromhex("1122334455667788")
KEYS = {KEY_ID: KEY, OTHER_KEY_ID: OTHER_KEY}
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
    return b"".join(encrypt(plaintext, KEY, KEY_ID, segment_size=segment_size, **kwargs))


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


DECRYPTERS = [decrypt_seekable, decrypt_sequential, decrypt_streamed]


def assert_rejected(ciphertext: bytes, plaintext: bytes = b"", keys=KEYS) -> None:
    """Assert that every way of reading fails, and that nothing but authentic bytes came out."""
    for decrypt in DECRYPTERS:
        with pytest.raises(DecryptionError):
            decrypt(ciphertext, keys)
    for source in (io.BytesIO(ciphertext), Pipe(ciphertext)):
        released = []
        with pytest.raises(DecryptionError), DecryptingReader(source, keys) as reader:
            for piece in reader.segments():
                released.append(bytes(piece))
        assert plaintext.startswith(b"".join(released))


def segment_spans(ciphertext: bytes, segment_size: int = S) -> list[tuple[int, int]]:
    """Return the (start, end) offsets of each ciphertext segment."""
    spans, start = [], PREAMBLE_SIZE
    while start < len(ciphertext):
        end = min(HEADER_SIZE + (len(spans) + 1) * segment_size, len(ciphertext))
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
def test_round_trip_at_segment_boundaries(size, decrypt):
    plaintext = data(size, size)
    ciphertext = seal(plaintext)
    segments = 1 if size <= FIRST else 2 + (size - FIRST - 1) // LATER
    assert len(ciphertext) == PREAMBLE_SIZE + size + 16 * segments
    assert plaintext_size(len(ciphertext), S) == size
    assert decrypt(ciphertext) == plaintext


def test_empty_plaintext_is_77_bytes():
    ciphertext = seal(b"", segment_size=fileformat.SEGMENT_SIZE)
    assert len(ciphertext) == HEADER_SIZE + 40 + 16
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
)
def test_any_chunking_gives_the_same_ciphertext(size, seed, segment_size, cuts):
    plaintext = data(size, seed)
    salt, prefix = data(32, seed + 1), data(7, seed + 2)
    bounds = sorted({0, size, *(cut % (size + 1) for cut in cuts)})
    chunks = [plaintext[a:b] for a, b in itertools.pairwise(bounds)]

    def sealed(source) -> bytes:
        pieces = encrypt(
            source, KEY, KEY_ID, segment_size=segment_size, _random=fixed_random(salt, prefix)
        )
        return b"".join(pieces)

    expected = sealed(plaintext)
    assert sealed(iter(chunks)) == expected
    assert sealed(Pipe(plaintext, step=max(1, size // 3))) == expected
    assert sealed([bytearray(chunk) for chunk in chunks]) == expected
    assert sealed(io.BytesIO(plaintext)) == expected
    pushed = Encryptor(KEY, KEY_ID, segment_size=segment_size, _random=fixed_random(salt, prefix))
    assert b"".join([*(pushed.update(chunk) for chunk in chunks), pushed.finalize()]) == expected
    with DecryptingReader(io.BytesIO(expected), KEYS) as reader:
        assert reader.size == size
        assert reader.read() == plaintext
    assert decrypt_sequential(expected) == plaintext


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
        io.BytesIO(plaintext), KEY, KEY_ID, segment_size=S, _random=fixed_random(*randoms)
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
    assert source.reads == [(0, PREAMBLE_SIZE)]
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
TAMPER_CIPHERTEXT = seal(TAMPER_PLAINTEXT)


@pytest.mark.parametrize(
    "offset",
    [
        *range(HEADER_SIZE),  # every Docvault header byte
        HEADER_SIZE,  # Tink header length
        HEADER_SIZE + 1,  # salt
        PREAMBLE_SIZE - 1,  # nonce prefix
        PREAMBLE_SIZE,  # first ciphertext byte
        HEADER_SIZE + S - 1,  # tag of the first segment
        HEADER_SIZE + 2 * S + 500,  # middle of segment 2
        len(TAMPER_CIPHERTEXT) - 17,  # last byte of the last segment's body
        len(TAMPER_CIPHERTEXT) - 1,  # last tag byte
    ],
)
def test_any_flipped_byte_is_rejected(offset):
    assert_rejected(flip(TAMPER_CIPHERTEXT, offset), TAMPER_PLAINTEXT)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 4000), position=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255)
)
def test_property_any_single_byte_change_fails(size, position, mask):
    plaintext = data(size, size)
    ciphertext = seal(plaintext)
    offset = int(position * len(ciphertext))
    tampered = flip(ciphertext, offset, mask)
    for decrypt in DECRYPTERS:
        with pytest.raises(DecryptionError):
            decrypt(tampered)


def test_every_truncation_is_rejected():
    plaintext = data(FIRST + 2 * LATER + 100)
    ciphertext = seal(plaintext)
    for length in range(len(ciphertext)):
        for decrypt in (decrypt_seekable, decrypt_sequential):
            with pytest.raises(DecryptionError):
                decrypt(ciphertext[:length])


@pytest.mark.parametrize("segments_kept", [1, 2, 3])
def test_truncation_exactly_at_a_segment_boundary_is_rejected(segments_kept):
    # What remains is a valid-looking shorter file whose last segment is not marked last.
    truncated = TAMPER_CIPHERTEXT[: HEADER_SIZE + segments_kept * S]
    assert plaintext_size(len(truncated), S) == FIRST + (segments_kept - 1) * LATER
    assert_rejected(truncated, TAMPER_PLAINTEXT)


def test_a_dropped_segment_is_rejected():
    spans = segment_spans(TAMPER_CIPHERTEXT)
    start, end = spans[2]
    assert_rejected(TAMPER_CIPHERTEXT[:start] + TAMPER_CIPHERTEXT[end:], TAMPER_PLAINTEXT)


def test_reordered_segments_are_rejected():
    spans = segment_spans(TAMPER_CIPHERTEXT)
    (a0, a1), (b0, b1) = spans[1], spans[2]
    swapped = (
        TAMPER_CIPHERTEXT[:a0]
        + TAMPER_CIPHERTEXT[b0:b1]
        + TAMPER_CIPHERTEXT[a0:a1]
        + TAMPER_CIPHERTEXT[b1:]
    )
    assert_rejected(swapped, TAMPER_PLAINTEXT)


@pytest.mark.parametrize("index", [0, 2, 4])
def test_a_segment_spliced_from_another_file_under_the_same_key_is_rejected(index):
    other = seal(data(len(TAMPER_PLAINTEXT), 99))  # same key, same length, other salt
    start, end = segment_spans(TAMPER_CIPHERTEXT)[index]
    spliced = TAMPER_CIPHERTEXT[:start] + other[start:end] + TAMPER_CIPHERTEXT[end:]
    assert_rejected(spliced, TAMPER_PLAINTEXT)


def test_another_files_tink_header_is_rejected():
    other = seal(data(len(TAMPER_PLAINTEXT), 99))
    spliced = other[:PREAMBLE_SIZE] + TAMPER_CIPHERTEXT[PREAMBLE_SIZE:]
    assert_rejected(spliced, TAMPER_PLAINTEXT)


def header_with(ciphertext: bytes, *, version=None, key_id=None, segment_size=None) -> bytes:
    header = bytearray(ciphertext[:HEADER_SIZE])
    if version is not None:
        header[8] = version
    if key_id is not None:
        header[9:17] = key_id
    if segment_size is not None:
        header[17:21] = segment_size.to_bytes(4, "big")
    return bytes(header) + ciphertext[HEADER_SIZE:]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 2}, "unsupported format version 2"),
        ({"version": 0}, "unsupported format version 0"),
        ({"key_id": OTHER_KEY_ID}, "segment 0 failed authentication"),  # a known key, not its own
        ({"key_id": bytes(8)}, "unknown key id 0000000000000000"),
        ({"segment_size": S + 16}, None),
        ({"segment_size": 2 * S}, None),
        ({"segment_size": 16}, "bad segment size 16"),
        ({"segment_size": 2**32 - 1}, f"bad segment size {2**32 - 1}"),
    ],
)
def test_changed_header_fields_are_rejected(change, reason):
    changed = header_with(TAMPER_CIPHERTEXT, **change)
    assert_rejected(changed, TAMPER_PLAINTEXT)
    if reason is not None:
        with pytest.raises(DecryptionError) as failure:
            decrypt_seekable(changed)
        assert failure.value.reason == reason


def test_unknown_key_id_names_the_id_and_nothing_secret():
    with pytest.raises(DecryptionError) as failure:
        DecryptingReader(io.BytesIO(TAMPER_CIPHERTEXT), {OTHER_KEY_ID: OTHER_KEY})
    assert failure.value.reason == "unknown key id 0011aabbccddeeff"
    assert str(failure.value) == "Decryption failed: unknown key id 0011aabbccddeeff"


def test_wrong_key_is_rejected_without_revealing_it():
    keys = {KEY_ID: OTHER_KEY}
    assert_rejected(TAMPER_CIPHERTEXT, TAMPER_PLAINTEXT, keys=keys)
    with pytest.raises(DecryptionError) as failure:
        decrypt_seekable(TAMPER_CIPHERTEXT, keys)
    assert failure.value.reason == "segment 0 failed authentication"
    message = str(failure.value) + repr(failure.value)
    assert OTHER_KEY.hex() not in message and KEY.hex() not in message


@pytest.mark.parametrize("extra", [1, 15, 16, 17, S, S + 16])
def test_appended_bytes_are_rejected(extra):
    assert_rejected(TAMPER_CIPHERTEXT + data(extra, extra), TAMPER_PLAINTEXT)


def test_an_appended_empty_segment_is_rejected():
    # A well-formed empty segment after the real last one, under the right key and nonce.
    assert_rejected(TAMPER_CIPHERTEXT + bytes(16), TAMPER_PLAINTEXT)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x89",
        b"\x89DVLT\r\n\x1a",
        TAMPER_CIPHERTEXT[:HEADER_SIZE],
        TAMPER_CIPHERTEXT[:PREAMBLE_SIZE],
        TAMPER_CIPHERTEXT[: PREAMBLE_SIZE + 15],
        b"%PDF-1.7\n" + bytes(100),
        b"plain text, not encrypted at all\n" * 10,
    ],
)
def test_empty_short_and_unencrypted_files_are_rejected(content):
    assert_rejected(content)


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


def test_plaintext_size_matches_real_files():
    for size in BOUNDARY_SIZES:
        assert plaintext_size(len(seal(data(size))), S) == size


@pytest.mark.parametrize(
    "ciphertext_size",
    [
        0,
        HEADER_SIZE,
        PREAMBLE_SIZE + 15,  # no room for a tag
        HEADER_SIZE + S + 1,  # a full segment, then 1 byte: not even a tag
        HEADER_SIZE + 3 * S + 15,
        HEADER_SIZE + (2**32 + 1) * S,  # more segments than a 32-bit index counts
    ],
)
def test_impossible_lengths_are_rejected(ciphertext_size):
    with pytest.raises(DecryptionError):
        plaintext_size(ciphertext_size, S)


def test_plaintext_size_rejects_a_bad_segment_size():
    with pytest.raises(ValueError):
        plaintext_size(10_000, 100)


# Classification ------------------------------------------------------------------------------


def fernet_cases() -> list[dict]:
    return json.loads((VECTORS / "fernet.json").read_text())["cases"]


def test_classify_v1_gives_the_key_id_segment_size_and_file_id():
    head = TAMPER_CIPHERTEXT[:CLASSIFY_BYTES]
    with DecryptingReader(io.BytesIO(TAMPER_CIPHERTEXT), KEYS) as reader:
        assert classify(head) == Classification(Kind.V1, KEY_ID, S, reader.file_id)
    assert classify(head[:HEADER_SIZE]) == Classification(Kind.V1, KEY_ID, S, None)
    assert classify(seal(b"x")).file_id != reader.file_id  # every file has its own
    default = seal(b"x", segment_size=fileformat.SEGMENT_SIZE)
    assert classify(default[:CLASSIFY_BYTES]).segment_size == 1 << 20


def test_classify_legacy_fernet():
    for case in fernet_cases():
        assert classify(case["token"].encode()[:CLASSIFY_BYTES]) == Classification(Kind.LEGACY)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        b"\x89PNG\r\n\x1a\n" + bytes(60),
        b"Dear customer, please find attached the report.\n",
        b"gAAAAA" + b"not base64 at all! " * 4,
        b"gAAAAABshort",  # a Fernet prefix, but far too short for a token
        b"\x89DVLT\r\n\x1a",  # the magic alone
        TAMPER_CIPHERTEXT[:20],  # one byte short of a header
        header_with(TAMPER_CIPHERTEXT, version=2)[:CLASSIFY_BYTES],
    ],
)
def test_classify_anything_else_is_unknown(head):
    assert classify(head) == Classification(Kind.UNKNOWN)


# decrypt_open --------------------------------------------------------------------------------


@pytest.mark.parametrize("seekable", [True, False])
def test_decrypt_open_reads_v1(seekable):
    plaintext = data(3000)
    ciphertext = seal(plaintext)
    source = io.BytesIO(ciphertext) if seekable else Pipe(ciphertext, step=50)
    reader = decrypt_open(source, KEYS, [])
    assert isinstance(reader, DecryptingReader)
    assert reader.key_id == KEY_ID
    assert reader.read() == plaintext
    reader.close()
    assert source.closed


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
        (header_with(TAMPER_CIPHERTEXT, version=2), "unsupported format version 2"),
    ],
)
def test_decrypt_open_refuses_other_files(content, reason):
    source = io.BytesIO(content)
    with pytest.raises(DecryptionError) as failure:
        decrypt_open(source, KEYS, [Fernet.generate_key()])
    assert failure.value.reason == reason
    assert not source.closed  # on error the caller still owns it


# Fixed vectors -------------------------------------------------------------------------------


def v1_cases() -> list[dict]:
    return json.loads((VECTORS / "v1.json").read_text())["cases"]


@pytest.mark.parametrize("case", v1_cases(), ids=lambda case: case["name"])
def test_v1_vector_decrypts(case):
    key_id = bytes.fromhex(case["key_id_hex"])
    keys = {key_id: bytes.fromhex(case["key_hex"])}
    ciphertext = bytes.fromhex(case["ciphertext_hex"])
    plaintext = bytes.fromhex(case["plaintext_hex"])
    assert decrypt_seekable(ciphertext, keys) == plaintext
    assert decrypt_sequential(ciphertext, keys) == plaintext
    assert plaintext_size(len(ciphertext), case["segment_size"]) == len(plaintext)
    salt = bytes.fromhex(case["salt_hex"])
    assert classify(ciphertext) == Classification(Kind.V1, key_id, case["segment_size"], salt)
    with DecryptingReader(io.BytesIO(ciphertext), keys) as reader:
        assert reader.file_id == salt


@pytest.mark.parametrize("case", v1_cases(), ids=lambda case: case["name"])
def test_v1_vector_is_reproduced_by_the_writer(case):
    randoms = fixed_random(bytes.fromhex(case["salt_hex"]), bytes.fromhex(case["nonce_prefix_hex"]))
    pieces = encrypt(
        bytes.fromhex(case["plaintext_hex"]),
        bytes.fromhex(case["key_hex"]),
        bytes.fromhex(case["key_id_hex"]),
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
