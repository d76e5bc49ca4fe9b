
import pytest

from attestcall.intel.formats.structs import (
    ATTR_DEBUG,
    Report,
    ReportBody,
    SgxFormatError,
    TargetInfo,
    attributes_bytes,
)
from tests import paths

DATA = paths.DATA / "intel"
REAL_BODY = (DATA / "sgx_quote_v3.bin").read_bytes()[48 : 48 + 384]


def sample_body(**changes: object) -> ReportBody:
    fields: dict[str, object] = dict(
        cpu_svn=bytes(range(1, 17)),
        misc_select=0x11223344,
        isv_ext_prod_id=b"\xe1" * 16,
        attributes=attributes_bytes(0x05, 0xE7),
        mr_enclave=b"\xaa" * 32,
        mr_signer=b"\xbb" * 32,
        config_id=b"\xcc" * 64,
        isv_prod_id=0x0102,
        isv_svn=0x0304,
        config_svn=0x0506,
        isv_family_id=b"\xf1" * 16,
        report_data=b"\xdd" * 64,
    )
    fields.update(changes)
    return ReportBody(**fields)  # type: ignore[arg-type]


def test_sizes() -> None:
    assert len(sample_body().pack()) == ReportBody.SIZE == 384
    assert Report.SIZE == 432
    assert len(TargetInfo(b"\x01" * 32, bytes(16)).pack()) == TargetInfo.SIZE == 512


def test_report_body_offsets() -> None:
    raw = sample_body().pack()
    assert raw[0:16] == bytes(range(1, 17))
    assert raw[16:20] == bytes.fromhex("44332211")
    assert raw[20:32] == bytes(12)
    assert raw[32:48] == b"\xe1" * 16
    assert raw[48:64] == bytes.fromhex("0500000000000000e700000000000000")
    assert raw[64:96] == b"\xaa" * 32
    assert raw[96:128] == bytes(32)
    assert raw[128:160] == b"\xbb" * 32
    assert raw[160:192] == bytes(32)
    assert raw[192:256] == b"\xcc" * 64
    assert raw[256:262] == bytes.fromhex("020104030605")
    assert raw[262:304] == bytes(42)
    assert raw[304:320] == b"\xf1" * 16
    assert raw[320:384] == b"\xdd" * 64


def test_report_body_round_trip() -> None:
    body = sample_body()
    assert ReportBody.unpack(body.pack()) == body


def test_real_report_body() -> None:
    body = ReportBody.unpack(REAL_BODY)
    assert body.mr_enclave.hex().startswith("33d8736d")
    assert body.mr_signer.hex().startswith("815f42f1")
    assert body.report_data.startswith(b"Hello, world!")
    assert body.attribute_flags == 0x05 and body.xfrm == 0xE7
    assert not body.debug
    assert body.pack() == REAL_BODY


def test_debug_flag() -> None:
    assert sample_body(attributes=attributes_bytes(0x05 | ATTR_DEBUG, 0xE7)).debug
    assert not sample_body().debug


@pytest.mark.parametrize("offset", [20, 31, 96, 127, 160, 191, 262, 303])
def test_report_body_reserved_must_be_zero(offset: int) -> None:
    raw = bytearray(sample_body().pack())
    raw[offset] = 1
    with pytest.raises(SgxFormatError, match="reserved"):
        ReportBody.unpack(bytes(raw))


@pytest.mark.parametrize("size", [0, 383, 385])
def test_report_body_length(size: int) -> None:
    with pytest.raises(SgxFormatError):
        ReportBody.unpack(bytes(size))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mr_enclave", bytes(31)),
        ("report_data", bytes(65)),
        ("isv_svn", 0x10000),
        ("misc_select", -1),
    ],
)
def test_report_body_field_checks(field: str, value: object) -> None:
    with pytest.raises(SgxFormatError):
        sample_body(**{field: value})


def test_report_round_trip_and_layout() -> None:
    report = Report(sample_body(), b"\x42" * 32, b"\x99" * 16)
    raw = report.pack()
    assert len(raw) == 432
    assert raw[384:416] == b"\x42" * 32 and raw[416:] == b"\x99" * 16
    assert Report.unpack(raw) == report
    with pytest.raises(SgxFormatError):
        Report.unpack(raw[:-1])
    with pytest.raises(SgxFormatError):
        Report.unpack(raw + b"\x00")
    with pytest.raises(SgxFormatError):
        Report(sample_body(), bytes(31), bytes(16))


def test_targetinfo_layout_and_round_trip() -> None:
    target = TargetInfo(
        mr_enclave=b"\x11" * 32,
        attributes=attributes_bytes(0x15, 0xE7),
        cet_attributes=0x03,
        config_svn=0x0A0B,
        misc_select=0x01020304,
        config_id=b"\x77" * 64,
    )
    raw = target.pack()
    assert raw[0:32] == b"\x11" * 32
    assert raw[32:48] == attributes_bytes(0x15, 0xE7)
    assert raw[48] == 0x03 and raw[49] == 0
    assert raw[50:52] == bytes.fromhex("0b0a")
    assert raw[52:56] == bytes.fromhex("04030201")
    assert raw[56:64] == bytes(8)
    assert raw[64:128] == b"\x77" * 64
    assert raw[128:] == bytes(384)
    assert TargetInfo.unpack(raw) == target


@pytest.mark.parametrize("offset", [49, 56, 63, 128, 511])
def test_targetinfo_reserved_must_be_zero(offset: int) -> None:
    raw = bytearray(TargetInfo(b"\x11" * 32, bytes(16)).pack())
    raw[offset] = 1
    with pytest.raises(SgxFormatError, match="reserved"):
        TargetInfo.unpack(bytes(raw))


@pytest.mark.parametrize("size", [0, 511, 513])
def test_targetinfo_length(size: int) -> None:
    with pytest.raises(SgxFormatError):
        TargetInfo.unpack(bytes(size))
