"""The EFI secret table and the efi_secret source, against a fake of the driver's files."""

from __future__ import annotations

import errno
import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attestcall.abi import BufferMemory, get_attestation
from attestcall.amd.client import efi_secret as es
from tests.fakes.efi_secret import FakeEfiSecret, table

KEY = bytes(range(200))
OTHER = uuid.UUID("736870e5-84f0-4973-92ec-06879ce3da0b")


def test_the_header_guid_in_efi_byte_order() -> None:
    raw = es.build_table({})
    assert raw[:16] == bytes.fromhex("42f5741edd71664d963eef4287ff173b")
    assert raw[16:20] == (20).to_bytes(4, "little") and len(raw) == 20


def test_build_and_parse() -> None:
    raw = es.build_table({OTHER: b"x" * 5, es.ATTESTCALL_KEY_GUID: KEY}, align=16)
    assert len(raw) % 16 == 0
    assert int.from_bytes(raw[16:20], "little") == 20 + 25 + 220
    assert es.parse_table(raw) == {OTHER: b"x" * 5, es.ATTESTCALL_KEY_GUID: KEY}
    assert es.parse_table(raw + bytes(100)) == es.parse_table(raw)  # the rest of the area


@pytest.mark.parametrize("raw, message", [
    (b"", "smaller than"),
    (bytes(40), "GUID"),
    (table([(OTHER, b"abc")], length=19), "smaller than its header"),
    (table([(OTHER, b"abc")], length=44), "exceeds"),
    (table([(OTHER, b"abc")])[:36] + (19).to_bytes(4, "little") + b"abc", "length 19"),
    (table([(OTHER, b"abc")])[:36] + (24).to_bytes(4, "little") + b"abc", "length 24"),
    (table([(OTHER, b"a"), (OTHER, b"b")]), "twice"),
])
def test_parse_is_bounds_checked(raw, message) -> None:
    with pytest.raises(es.SecretTableError, match=message):
        es.parse_table(raw)


def test_deleted_entries_are_skipped_and_files_are_capped() -> None:
    raw = table([(uuid.UUID(int=0), bytes(8)), (OTHER, b"v")])
    assert es.parse_table(raw) == {OTHER: b"v"}
    many = table([(uuid.uuid4(), b"") for _ in range(70)])
    assert len(es.parse_table(many)) == 64 == len(FakeEfiSecret(many).files)


@given(st.dictionaries(st.uuids().filter(lambda u: u.int != 0), st.binary(max_size=64),
                       max_size=8), st.integers(0, 64))
def test_parser_agrees_with_the_driver_model(entries, slack) -> None:
    raw = es.build_table(entries) + os.urandom(slack)
    fake = FakeEfiSecret(raw)
    assert fake.present
    assert {uuid.UUID(k): v for k, v in fake.files.items()} == es.parse_table(raw)


@given(st.binary(min_size=0, max_size=120))
def test_parser_never_reads_out_of_bounds(noise) -> None:
    raw = es.TABLE_GUID.bytes_le + noise
    try:
        entries = es.parse_table(raw)
    except es.SecretTableError:
        assert not FakeEfiSecret(raw).present
        return
    assert FakeEfiSecret(raw).present
    assert sum(len(v) + 20 for v in entries.values()) <= len(raw)


def test_source_reads_the_key_through_the_core() -> None:
    fake = FakeEfiSecret(table([(OTHER, b"not ours"), (es.ATTESTCALL_KEY_GUID, KEY)], 4096))
    source = es.EfiSecretSource(files=fake)
    assert source.path == f"{es.DEFAULT_ROOT}/9b7402bb-2e87-4c19-b60d-61492a157b30"
    assert source.available()
    memory = BufferMemory(bytearray(1024))
    size = get_attestation(0, 0, 0, 0, memory=memory, source=source)
    assert (size.ret, size.technology) == (len(KEY), 1)
    outcome = get_attestation(memory.base, 64, memory.base + 64, 900, memory=memory,
                              source=source)
    assert (outcome.ret, outcome.technology) == (len(KEY), 1)
    assert memory.read(memory.base + 64, len(KEY)) == KEY


def test_root_is_a_parameter(tmp_path) -> None:
    fake = FakeEfiSecret(table([(es.ATTESTCALL_KEY_GUID, KEY)]), root=str(tmp_path))
    assert es.EfiSecretSource(root=str(tmp_path), files=fake).evidence(bytes(64)) == KEY
    assert not es.EfiSecretSource(files=fake).available()


def test_real_files_on_disk(tmp_path) -> None:
    (tmp_path / str(es.ATTESTCALL_KEY_GUID)).write_bytes(KEY)
    assert es.EfiSecretSource(root=str(tmp_path)).evidence(bytes(64)) == KEY


@pytest.mark.parametrize("fake", [
    FakeEfiSecret(table([(OTHER, b"x")])),  # no attestcall entry
    FakeEfiSecret(bytes(64)),  # area not populated: no directory
    FakeEfiSecret(table([(es.ATTESTCALL_KEY_GUID, b"")])),  # empty entry
    FakeEfiSecret(table([(es.ATTESTCALL_KEY_GUID, KEY)]), read_error=errno.EACCES),
])
def test_missing_or_unreadable_secret_is_eio(fake) -> None:
    source = es.EfiSecretSource(files=fake)
    memory = BufferMemory(bytearray(1024))
    with pytest.raises(es.SecretUnavailable):
        source.evidence(bytes(64))
    assert get_attestation(0, 0, 0, 0, memory=memory, source=source).ret == -errno.EIO
    outcome = get_attestation(memory.base, 64, memory.base + 64, 900, memory=memory,
                              source=source)
    assert outcome.ret == -errno.EIO and outcome.technology is None


def test_an_unlinked_secret_is_gone() -> None:
    fake = FakeEfiSecret(table([(es.ATTESTCALL_KEY_GUID, KEY)]))
    fake.unlink(str(es.ATTESTCALL_KEY_GUID))
    with pytest.raises(es.SecretUnavailable, match="deleted"):
        es.EfiSecretSource(files=fake).evidence_size()
