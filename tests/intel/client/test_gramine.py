"""Gramine's /dev/attestation (attestcall.intel.client.gramine) against the fake, and against a real
directory laid out like it (to drive the default OsFiles)."""

from __future__ import annotations

import errno
import struct

import pytest

from attestcall.abi import PlatformFailure
from attestcall.intel.client.gramine import GramineClient, GramineError
from tests.fakes import blobs
from tests.fakes.gramine import ROOT, FakeGramine

NONCE = bytes(range(0xA0, 0xE0))


def client(fake: FakeGramine) -> GramineClient:
    return GramineClient(fake.root, files=fake)


def report_data(quote: bytes) -> bytes:
    offset = blobs.SGX_QUOTE_REPORT_DATA_OFFSET
    return quote[offset:offset + 64]


def test_fake_file_set_and_sizes():
    fake = FakeGramine()
    assert fake.names() == {"attestation_type", "user_report_data", "target_info",
                            "my_target_info", "report", "quote"}
    assert len(fake.read(f"{ROOT}/my_target_info")) == 512
    assert len(fake.read(f"{ROOT}/report")) == 432
    assert fake.write(f"{ROOT}/user_report_data", b"abc") == 3
    assert fake.read(f"{ROOT}/user_report_data") == b"abc" + bytes(61), "zero-padded"
    with pytest.raises(OSError) as info:
        fake.write(f"{ROOT}/quote", b"x")
    assert info.value.errno == errno.EACCES
    assert "quote" not in FakeGramine(attestation_type="none").names()


def test_quote_carries_the_report_data():
    fake = FakeGramine()
    quote = client(fake).quote(NONCE)
    assert report_data(quote) == NONCE
    assert struct.unpack_from("<H", quote)[0] == 3
    assert fake.user_report_data == NONCE


def test_size_from_a_zero_quote_then_cached():
    fake = FakeGramine(quote_size=5000)
    gramine = client(fake)
    assert gramine.quote_size() == 5000 and fake.quotes == 1
    assert gramine.quote_size() == 5000 and fake.quotes == 1
    assert len(gramine.quote(NONCE)) == 5000


@pytest.mark.parametrize("kind", ["none", "epid", ""])
def test_wrong_attestation_type(kind):
    fake = FakeGramine(attestation_type=kind)
    with pytest.raises(GramineError, match=f"attestation type is {kind!r}, not 'dcap'"):
        client(fake).quote(NONCE)
    assert fake.user_report_data == bytes(64), "nothing written"


@pytest.mark.parametrize("name", ["attestation_type", "user_report_data", "quote"])
def test_missing_files(name):
    fake = FakeGramine(missing={name})
    with pytest.raises(GramineError, match=f"{name}.*ENOENT") as info:
        client(fake).quote(NONCE)
    assert isinstance(info.value, PlatformFailure)
    assert info.value.errno == errno.ENOENT


def test_not_in_gramine():
    fake = FakeGramine(present=False)
    with pytest.raises(GramineError, match="not running inside Gramine"):
        client(fake).quote(NONCE)


def test_short_write():
    fake = FakeGramine(short_write=40)
    with pytest.raises(GramineError, match="short write.*40 of 64"):
        client(fake).quote(NONCE)
    assert fake.quotes == 0


def test_quote_failure_is_eacces():
    fake = FakeGramine(quote_error=errno.EACCES)
    with pytest.raises(GramineError, match="EACCES.*Gramine refused"):
        client(fake).quote(NONCE)


@pytest.mark.parametrize(
    ("quote", "message"),
    [
        (b"", "0 bytes, too short"),
        (b"\x03\x00" + bytes(100), "too short"),
        (struct.pack("<H", 2) + bytes(1000), "quote version 2"),
        (struct.pack("<H", 4) + bytes(1000), "quote version 4"),
    ],
)
def test_unusable_quotes(quote, message):
    fake = FakeGramine(quote_override=quote)
    with pytest.raises(GramineError, match=message):
        client(fake).quote(NONCE)


def test_wrong_report_data_size_is_a_caller_bug():
    with pytest.raises(ValueError):
        client(FakeGramine()).quote(bytes(32))


def test_real_files_in_a_directory(tmp_path):
    """OsFiles (the default) over a directory laid out like /dev/attestation: the type is
    read, the 64 bytes are written with one write, the quote is read whole."""
    quote = blobs.sgx_quote(bytes(64))
    (tmp_path / "attestation_type").write_bytes(b"dcap")
    (tmp_path / "user_report_data").write_bytes(b"")
    (tmp_path / "quote").write_bytes(quote)
    gramine = GramineClient(str(tmp_path))
    assert gramine.quote(NONCE) == quote
    assert (tmp_path / "user_report_data").read_bytes() == NONCE
    assert gramine.quote_size() == len(quote)
