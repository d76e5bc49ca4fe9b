"""DCAP quote v4/v5 parsing: the real TDX vector, built v5 quotes, strictness, trailing bytes."""

import struct

import pytest

from attestcall.intel.formats.quote import (
    CERT_PCK_CHAIN,
    CERT_QE_REPORT,
    INTEL_QE_VENDOR_ID,
    CertificationData,
    QuoteFormatError,
    QuoteHeader,
)
from attestcall.intel.formats.structs import ReportBody
from attestcall.intel.formats.tdx_quote import (
    BODY_SGX,
    BODY_TD10,
    BODY_TD15,
    TD10_SIZE,
    TD15_SIZE,
    TD_ATTR_SEPT_VE_DISABLE,
    DcapQuote,
    TdReportBody,
    quote_length,
)
from tests import paths
from tests.fakes.dcap import FakePlatform

DATA = paths.DATA / "intel"
TDX = (DATA / "tdx_quote_v4.bin").read_bytes()
SGX = (DATA / "sgx_quote_v3.bin").read_bytes()
TDX_END = 4936  # 48 + 584 + 4 + 4300: the quote's own length; 70 zero bytes follow it


@pytest.fixture(scope="module")
def fake() -> FakePlatform:
    return FakePlatform(tdx=True)


def test_real_v4_header_and_body():
    quote = DcapQuote.parse(TDX)
    assert quote.header.version == 4
    assert quote.header.tee_type == 0x81
    assert quote.header.qe_vendor_id == INTEL_QE_VENDOR_ID
    assert quote.body_type == BODY_TD10 and quote.is_tdx
    body = quote.body
    assert isinstance(body, TdReportBody) and not body.is_td15
    assert body.tee_tcb_svn.hex() == "06010300000000000000000000000000"
    assert body.td_attribute_flags == TD_ATTR_SEPT_VE_DISABLE
    assert not body.debug
    assert body.mr_seam.hex().startswith("5b38e33a6487958b")
    assert body.report_data.hex().startswith("9a9d48e7f6799642")


def test_real_v4_signed_region_is_header_and_body():
    quote = DcapQuote.parse(TDX)
    assert quote.signed == TDX[: 48 + TD10_SIZE]


def test_real_v4_certification_data_is_type_6_around_a_pck_chain():
    quote = DcapQuote.parse(TDX)
    assert quote.certification_data.cert_type == CERT_PCK_CHAIN
    assert len(quote.certification_data.pem_certificates()) == 3
    assert len(quote.qe.qe_auth_data) == 32
    assert struct.unpack_from("<H", TDX, 48 + TD10_SIZE + 4 + 128)[0] == CERT_QE_REPORT


def test_real_v4_bytes_after_the_declared_length_are_not_part_of_the_quote():
    assert quote_length(TDX) == TDX_END
    quote = DcapQuote.parse(TDX)
    assert quote.trailing == len(TDX) - TDX_END == 70
    assert TDX[TDX_END:] == bytes(70)
    assert quote.pack() == TDX[:TDX_END]
    # Zero padding of any length is the buffer's unused rest: the same quote comes out.
    for tail in (b"", bytes(1), bytes(70), bytes(5000)):
        assert DcapQuote.parse(TDX[:TDX_END] + tail).pack() == TDX[:TDX_END]


@pytest.mark.parametrize("tail", [b"\xff" * 70, b"garbage", bytes(69) + b"\x01", b"\x01"])
def test_non_zero_bytes_after_a_quote_are_an_error(tail):
    with pytest.raises(QuoteFormatError, match="not all zero"):
        DcapQuote.parse(TDX[:TDX_END] + tail)


def test_quote_length_of_v3():
    assert quote_length(SGX) == len(SGX)
    assert quote_length(SGX + b"\x00" * 9) == len(SGX)


@pytest.mark.parametrize(("version", "td15"), [(4, False), (5, False), (5, True)])
def test_built_tdx_quotes_round_trip(fake, version, td15):
    raw = fake.tdx_quote(version, td15)
    quote = DcapQuote.parse(raw)
    assert quote.pack() == raw and quote.trailing == 0
    assert quote.header.version == version
    assert quote.body_type == (BODY_TD15 if td15 else BODY_TD10)
    assert isinstance(quote.body, TdReportBody) and quote.body.is_td15 == td15


def test_v5_signed_region_includes_the_body_descriptor(fake):
    raw = fake.tdx_quote(5, True)
    quote = DcapQuote.parse(raw)
    assert raw[48:54] == struct.pack("<HI", BODY_TD15, TD15_SIZE)
    assert quote.signed == raw[: 48 + 6 + TD15_SIZE]
    assert quote.body.tee_tcb_svn2 == bytes(16)
    assert quote.body.mr_service_td == b"\x55" * 48


def test_v5_sgx_body(fake):
    v3 = fake.sgx_quote()
    body = ReportBody.unpack(v3[48:432])
    qe = DcapQuote.parse(fake.tdx_quote(4)).qe
    header = QuoteHeader(5, 2, 0, 0, 0, INTEL_QE_VENDOR_ID, bytes(20))
    quote = DcapQuote.build(header, body, bytes(64), bytes(64), qe)
    parsed = DcapQuote.parse(quote.pack())
    assert parsed.body_type == BODY_SGX and parsed.body == body and not parsed.is_tdx
    assert parsed.signed[48:54] == struct.pack("<HI", BODY_SGX, 384)


def test_v3_sgx_quote_is_not_parsed_as_v4():
    with pytest.raises(QuoteFormatError, match="version 3"):
        DcapQuote.parse(SGX)


def _mutate(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, struct.pack("<H", 6), "version 6"),
        (2, struct.pack("<H", 3), "attestation key type"),
        (4, struct.pack("<I", 0x82), "TEE type"),
        (48 + TD10_SIZE, struct.pack("<I", 4301), "exceeds"),
        (48 + TD10_SIZE, struct.pack("<I", 4299), "unexpected bytes|truncated"),
        (48 + TD10_SIZE + 4 + 128, struct.pack("<H", 5), "type 5"),
        (48 + TD10_SIZE + 4 + 128, struct.pack("<H", 9), "unknown certification data type"),
        (48 + TD10_SIZE + 4 + 130, struct.pack("<I", 4167), "truncated|unexpected"),
    ],
)
def test_malformed_v4(offset, value, message):
    with pytest.raises(QuoteFormatError, match=message):
        DcapQuote.parse(_mutate(TDX[:TDX_END], offset, value))


def test_type_6_must_hold_a_pck_chain(fake):
    quote = DcapQuote.parse(fake.tdx_quote(4))
    inner = quote.qe.__class__(
        quote.qe.qe_report, quote.qe.qe_report_signature, quote.qe.qe_auth_data,
        CertificationData(4, b"leaf"),
    )  # fmt: skip
    bad = DcapQuote(quote.header, quote.body_type, quote.body, quote.signature,
                    quote.attestation_key, inner, quote.signed)  # fmt: skip
    with pytest.raises(QuoteFormatError, match="expected 5"):
        DcapQuote.parse(bad.pack())


@pytest.mark.parametrize(
    ("body_type", "size", "message"),
    [(9, TD10_SIZE, "unknown quote body type"), (BODY_TD10, TD15_SIZE, "must be 584"),
     (BODY_SGX, 384, "does not match TEE type")],
)  # fmt: skip
def test_malformed_v5_body_descriptor(fake, body_type, size, message):
    raw = fake.tdx_quote(5)
    with pytest.raises(QuoteFormatError, match=message):
        DcapQuote.parse(_mutate(raw, 48, struct.pack("<HI", body_type, size)))


def test_every_truncation_of_the_real_quote_is_a_format_error():
    for length in range(TDX_END):
        with pytest.raises(QuoteFormatError):
            DcapQuote.parse(TDX[:length])


def test_td_report_body_round_trip_and_sizes():
    raw = TDX[48 : 48 + TD10_SIZE]
    body = TdReportBody.unpack(raw)
    assert body.pack() == raw and body.size == TD10_SIZE
    body15 = TdReportBody.unpack(raw + b"\x01" * 16 + b"\x02" * 48)
    assert body15.is_td15 and body15.size == TD15_SIZE
    assert body15.pack() == raw + b"\x01" * 16 + b"\x02" * 48
    for size in (0, 583, 585, 647, 649):
        with pytest.raises(QuoteFormatError):
            TdReportBody.unpack(bytes(size))
    with pytest.raises(QuoteFormatError):
        TdReportBody(*([bytes(16)] + [bytes(1)] * 14))


def test_debug_bit(fake):
    quote = DcapQuote.parse(fake.tdx_quote(4, debug=True))
    assert quote.body.debug


def test_cannot_build_a_v4_td15_quote(fake):
    quote = DcapQuote.parse(fake.tdx_quote(5, True))
    header = QuoteHeader(4, 2, 0x81, 0, 0, INTEL_QE_VENDOR_ID, bytes(20))
    with pytest.raises(QuoteFormatError):
        DcapQuote.build(header, quote.body, bytes(64), bytes(64), quote.qe)
