"""The pure helpers of the download views: stored names, containment, ranges, dispositions."""

import os

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, InMemoryStorage
from hypothesis import given
from hypothesis import strategies as st

from vault.http import RangeNotSatisfiable, byte_range_parse, content_disposition
from vault.paths import stored_name_validate, stored_path_check
from vault.storage import EncryptedStorage

HOSTILE_NAMES = [
    "",
    "/etc/passwd",
    "//etc/passwd",
    "../etc/passwd",
    "documents/../../etc/passwd",
    "documents/2026/..",
    "./documents/x",
    "documents/./x",
    "documents//x",
    "documents/x/",
    "documents/x\x00.pdf",
    "documents/x\n",
    "documents\\..\\..\\etc\\passwd",
    "..\\media-old\\secret",
    "documents/%2e%2e/%2e%2e/etc/passwd",
    "documents%2f..%2fetc",
    "%252e%252e/etc/passwd",
    "documents/%c0%ae%c0%ae/x",
    "x" * 256,
]


@pytest.mark.parametrize("name", ["documents/2026/11/" + "a" * 32, "legacy/Report Q3.pdf", "x"])
def test_clean_names_pass(name):
    assert stored_name_validate(name) == name


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused(name):
    with pytest.raises(SuspiciousFileOperation):
        stored_name_validate(name)


def test_file_inside_the_root_passes(media_root):
    (media_root / "documents").mkdir()
    (media_root / "documents" / "x").write_bytes(b"x")
    stored_path_check(FileSystemStorage(location=media_root), "documents/x")


def test_symlink_out_of_the_root_is_refused(media_root, tmp_path):
    outside = tmp_path / "media-old"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (media_root / "link").symlink_to(outside / "secret")
    (media_root / "folder").symlink_to(outside)
    storage = FileSystemStorage(location=media_root)
    for name in ("link", "folder/secret"):
        with pytest.raises(SuspiciousFileOperation):
            stored_path_check(storage, name)


def test_symlink_to_the_root_itself_is_refused(media_root):
    (media_root / "here").symlink_to(media_root)
    with pytest.raises(SuspiciousFileOperation):
        stored_path_check(FileSystemStorage(location=media_root), "here")


def test_symlink_inside_the_root_passes(media_root):
    (media_root / "a").write_bytes(b"a")
    (media_root / "b").symlink_to(media_root / "a")
    stored_path_check(FileSystemStorage(location=media_root), "b")


def test_sibling_folder_with_the_root_as_prefix_is_refused(media_root):
    sibling = media_root.parent / (media_root.name + "-old")
    sibling.mkdir()
    (media_root / "x").symlink_to(sibling)
    assert str(sibling).startswith(str(media_root))  # what fooled the case study's check
    with pytest.raises(SuspiciousFileOperation):
        stored_path_check(FileSystemStorage(location=media_root), "x/anything")


def test_root_reached_through_a_symlink_still_contains_its_files(media_root, tmp_path):
    (media_root / "x").write_bytes(b"x")
    alias = tmp_path / "alias"
    alias.symlink_to(media_root)
    stored_path_check(FileSystemStorage(location=alias), "x")


def test_encrypted_storage_is_checked_through_its_inner_storage(media_root, tmp_path):
    (media_root / "link").symlink_to(tmp_path)
    with pytest.raises(SuspiciousFileOperation):
        stored_path_check(EncryptedStorage(inner=FileSystemStorage(location=media_root)), "link")


def test_non_filesystem_storage_is_not_checked():
    stored_path_check(EncryptedStorage(inner=InMemoryStorage()), "any/name")
    stored_path_check(InMemoryStorage(), "any/name")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=0-", (0, 99)),
        ("bytes=99-", (99, 99)),
        ("bytes=-1", (99, 99)),
        ("bytes=-100", (0, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=10-19", (10, 19)),
        ("bytes=10-1000", (10, 99)),
        ("Bytes = 5 - 6 ", (5, 6)),
        ("bytes=" + "0" * 30 + "1-2", (1, 2)),
        (None, None),
        ("", None),
        ("bytes=", None),
        ("bytes=-", None),
        ("bytes=abc", None),
        ("bytes=5-3", None),
        ("bytes=1.5-2", None),
        ("bytes=+1-2", None),
        ("items=0-1", None),
        ("0-1", None),
        ("bytes=0-1,5-6", None),
        ("bytes=0-1\r\nX: y", None),
        ("bytes=" + "9" * 5000 + "-", None),
    ],
)
def test_range_parse(header, expected):
    assert byte_range_parse(header, 100) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_range_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        byte_range_parse(header, size)


def test_suffix_range_of_an_empty_file_sends_it_whole():
    assert byte_range_parse("bytes=-5", 0) is None


@given(size=st.integers(1, 10**12), first=st.integers(0, 10**12), last=st.integers(0, 10**12))
def test_range_always_within_the_file(size, first, last):
    for header in (f"bytes={first}-{last}", f"bytes={first}-", f"bytes=-{last}"):
        try:
            result = byte_range_parse(header, size)
        except RangeNotSatisfiable:
            continue
        if result is not None:
            assert 0 <= result[0] <= result[1] < size


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        ("Q3 report; final.pdf", 'attachment; filename="Q3 report; final.pdf"'),
        (
            "Bilanz Müller.pdf",
            "attachment; filename=\"Bilanz Muller.pdf\"; filename*=UTF-8''Bilanz%20M%C3%BCller.pdf",
        ),
        (
            "отчёт.pdf",
            "attachment; filename=\"_____.pdf\"; filename*=UTF-8''"
            "%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf",
        ),
        ('a"b.pdf', "attachment; filename=\"a_b.pdf\"; filename*=UTF-8''a%22b.pdf"),
        ("a\r\nSet-Cookie: x=1.pdf", 'attachment; filename="a__Set-Cookie: x=1.pdf"'),
        ("../../etc/passwd", 'attachment; filename=".._.._etc_passwd"'),
        ("a\\b.pdf", 'attachment; filename="a_b.pdf"'),
        ("", 'attachment; filename="document"'),
    ],
)
def test_content_disposition(filename, expected):
    assert content_disposition("attachment", filename) == expected


@given(st.text())
def test_content_disposition_is_always_one_safe_ascii_line(filename):
    value = content_disposition("inline", filename)
    assert value.isascii() and value.isprintable()
    assert value.startswith('inline; filename="')
    assert value.count('"') == 2
    assert os.linesep not in value
