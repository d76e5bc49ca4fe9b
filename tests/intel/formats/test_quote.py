import hashlib
import struct

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.errors import AttestcallError
from attestcall.intel.formats.quote import (
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    CertificationData,
    Quote,
    QuoteFormatError,
    QuoteHeader,
    Reader,
    public_key_from_raw,
    public_key_to_raw,
    signature_from_der,
    signature_to_der,
)
from tests import paths

DATA = paths.DATA / "intel"
REAL = (DATA / "sgx_quote_v3.bin").read_bytes()

# Offsets in the real quote (QE auth data is 32 bytes, the PEM chain 3548).
SIG_LEN = 432
SIG_DATA = 436
ATT_KEY = SIG_DATA + 64
QE_REPORT = ATT_KEY + 64
QE_SIG = QE_REPORT + 384
AUTH_SIZE = QE_SIG + 64
AUTH = AUTH_SIZE + 2
CERT_TYPE = AUTH + 32
CERT_SIZE = CERT_TYPE + 2
CERT_DATA = CERT_SIZE + 4
BOUNDARIES = [0, 1, 2, 4, 8, 10, 12, 28, 47, 48, 100, 431, 432, 433, SIG_DATA, ATT_KEY - 1,
              ATT_KEY, QE_REPORT, QE_SIG, AUTH_SIZE, AUTH_SIZE + 1, AUTH, CERT_TYPE,
              CERT_TYPE + 1, CERT_SIZE, CERT_SIZE + 3, CERT_DATA, CERT_DATA + 1000,
              len(REAL) - 1]  # fmt: skip


def ecdsa_verify(key: ec.EllipticCurvePublicKey, raw_signature: bytes, data: bytes) -> None:
    key.verify(signature_to_der(raw_signature), data, ec.ECDSA(hashes.SHA256()))


def with_signature_length(data: bytes) -> bytes:
    """``data`` with the u32 signature-data length fixed to what follows it."""
    return data[:SIG_LEN] + struct.pack("<I", len(data) - SIG_DATA) + data[SIG_DATA:]


def test_real_quote_round_trips_byte_for_byte() -> None:
    assert len(REAL) == 4600
    assert Quote.parse(REAL).pack() == REAL


def test_real_quote_fields() -> None:
    quote = Quote.parse(REAL)
    header = quote.header
    assert (header.version, header.att_key_type, header.tee_type) == (3, 2, 0)
    assert (header.qe_svn, header.pce_svn) == (10, 15)
    assert header.qe_vendor_id == INTEL_QE_VENDOR_ID
    assert quote.body.mr_enclave.hex() == (
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    )
    assert quote.body.mr_signer.hex() == (
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    )
    assert quote.body.report_data == b"Hello, world!" + bytes(51)
    assert not quote.body.debug
    qe = quote.signature_data.qe
    assert qe.qe_report.isv_prod_id == 1
    assert len(qe.qe_auth_data) == 32
    assert quote.certification_data.cert_type == CERT_PCK_CHAIN
    assert len(quote.certification_data.data) == 3548
    assert quote.signed_bytes() == REAL[:432]


def test_real_quote_signatures_verify_with_parsed_fields() -> None:
    quote = Quote.parse(REAL)
    sig = quote.signature_data
    attestation_key = public_key_from_raw(sig.attestation_key)
    ecdsa_verify(attestation_key, sig.signature, quote.signed_bytes())

    pems = quote.certification_data.pem_certificates()
    assert len(pems) == 3
    leaf = x509.load_pem_x509_certificate(pems[0])
    assert "PCK Certificate" in leaf.subject.rfc4514_string()
    pck_key = leaf.public_key()
    assert isinstance(pck_key, ec.EllipticCurvePublicKey)
    ecdsa_verify(pck_key, sig.qe.qe_report_signature, sig.qe.qe_report.pack())

    expected = hashlib.sha256(sig.attestation_key + sig.qe.qe_auth_data).digest() + bytes(32)
    assert sig.qe.qe_report.report_data == expected


def test_altered_signed_byte_breaks_the_quote_signature() -> None:
    altered = bytearray(REAL)
    altered[48 + 320] ^= 1  # first REPORTDATA byte
    quote = Quote.parse(bytes(altered))
    with pytest.raises(InvalidSignature):
        ecdsa_verify(
            public_key_from_raw(quote.signature_data.attestation_key),
            quote.signature_data.signature,
            quote.signed_bytes(),
        )


@pytest.mark.parametrize("cut", BOUNDARIES)
def test_truncation_is_rejected(cut: int) -> None:
    with pytest.raises(QuoteFormatError):
        Quote.parse(REAL[:cut])


@pytest.mark.parametrize("cut", [c for c in BOUNDARIES if c > SIG_DATA])
def test_truncation_with_consistent_length_is_rejected(cut: int) -> None:
    # The outer length agrees, so the inner structure must notice.
    with pytest.raises(QuoteFormatError, match="truncated"):
        Quote.parse(with_signature_length(REAL[:cut]))


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(QuoteFormatError, match="signature data length"):
        Quote.parse(REAL + b"\x00")
    with pytest.raises(QuoteFormatError, match="unexpected bytes"):
        Quote.parse(with_signature_length(REAL + b"\x00"))


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "match"),
    [
        (0, "<H", 2, "version"),
        (0, "<H", 4, "version"),
        (2, "<H", 3, "key type"),
        (4, "<I", 0x81, "TEE type"),
        (SIG_LEN, "<I", 4163, "signature data length"),
        (SIG_LEN, "<I", 0xFFFFFFFF, "signature data length"),
        (CERT_TYPE, "<H", 9, "certification data type"),
        (CERT_TYPE, "<H", 0, "certification data type"),
        (CERT_TYPE, "<H", 6, "type 6"),
        (CERT_SIZE, "<I", 3549, "truncated"),
        (CERT_SIZE, "<I", 3547, "unexpected bytes"),
        (CERT_SIZE, "<I", 0, "not a chain of PEM|unexpected bytes"),
        (AUTH_SIZE, "<H", 33, None),
        (AUTH_SIZE, "<H", 0xFFFF, "truncated"),
    ],
)
def test_malformed_fields_are_rejected(
    offset: int, fmt: str, value: int, match: str | None
) -> None:
    altered = bytearray(REAL)
    struct.pack_into(fmt, altered, offset, value)
    with pytest.raises(QuoteFormatError, match=match):
        Quote.parse(bytes(altered))


@pytest.mark.parametrize("offset", [48 + 20, 48 + 100, QE_REPORT + 300])
def test_nonzero_reserved_report_bytes_are_rejected(offset: int) -> None:
    altered = bytearray(REAL)
    altered[offset] = 1
    with pytest.raises(QuoteFormatError, match="reserved"):
        Quote.parse(bytes(altered))


def test_type5_without_pem_is_rejected() -> None:
    altered = bytearray(REAL)
    altered[CERT_DATA : CERT_DATA + 11] = b"-----BOGUS-"
    with pytest.raises(QuoteFormatError, match="not a chain of PEM"):
        Quote.parse(bytes(altered))


@pytest.mark.parametrize(
    "junk", [b"x", b"\x00-----BEGIN CERTIFICATE-----\n", b"\x00\x01", b"garbage\n"]
)
def test_type5_with_anything_after_the_chain_is_rejected(junk: bytes) -> None:
    chain = Quote.parse(REAL).certification_data.data.rstrip(b"\x00") + junk
    tail = struct.pack("<HI", 5, len(chain)) + chain
    with pytest.raises(QuoteFormatError, match="not a chain of PEM"):
        Quote.parse(with_signature_length(REAL[:CERT_TYPE] + tail))


def test_type5_padded_with_nuls_is_accepted() -> None:
    chain = Quote.parse(REAL).certification_data.data + bytes(70)
    raw = with_signature_length(REAL[:CERT_TYPE] + struct.pack("<HI", 5, len(chain)) + chain)
    assert Quote.parse(raw).pack() == raw


def test_quote_built_from_parts_round_trips() -> None:
    real = Quote.parse(REAL)
    header = QuoteHeader(3, 2, 0, 1, 2, INTEL_QE_VENDOR_ID, b"\x07" * 20)
    rebuilt = Quote(header, real.body, real.signature_data)
    packed = rebuilt.pack()
    assert packed[:2] == b"\x03\x00"
    assert Quote.parse(packed) == rebuilt
    assert packed[48:] == REAL[48:]


def test_header_field_checks() -> None:
    with pytest.raises(QuoteFormatError):
        QuoteHeader(3, 2, 0, 0, 0, bytes(15), bytes(20))
    with pytest.raises(QuoteFormatError):
        QuoteHeader(0x10000, 2, 0, 0, 0, bytes(16), bytes(20))
    with pytest.raises(QuoteFormatError):
        QuoteHeader.unpack(REAL[:47])


def test_certification_data_pack_and_pem_split() -> None:
    data = Quote.parse(REAL).certification_data
    packed = data.pack()
    assert packed[:6] == struct.pack("<HI", 5, 3548)
    assert CertificationData.read(Reader(packed)) == data
    pems = data.pem_certificates()
    assert all(p.startswith(b"-----BEGIN CERTIFICATE-----") for p in pems)
    assert b"".join(pems) + b"\x00" == data.data
    with pytest.raises(QuoteFormatError):
        CertificationData(4, b"x").pem_certificates()
    with pytest.raises(QuoteFormatError):
        CertificationData(8, b"")


def test_raw_key_and_signature_helpers() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw_key = public_key_to_raw(key.public_key())
    assert len(raw_key) == 64
    assert public_key_from_raw(raw_key) == key.public_key()
    der_sig = key.sign(b"message", ec.ECDSA(hashes.SHA256()))
    raw_sig = signature_from_der(der_sig)
    assert len(raw_sig) == 64
    ecdsa_verify(key.public_key(), raw_sig, b"message")
    with pytest.raises(QuoteFormatError):
        public_key_from_raw(bytes(64))  # not a point on the curve
    with pytest.raises(QuoteFormatError):
        public_key_from_raw(bytes(63))


def test_error_hierarchy() -> None:
    assert issubclass(QuoteFormatError, AttestcallError)
    assert issubclass(QuoteFormatError, ValueError)


def test_shared_parts_parse_the_real_tdx_v4_quote() -> None:
    # v4 reuses the header, the certification data and (as type 6) the QE report part.
    raw = (DATA / "tdx_quote_v4.bin").read_bytes()
    header = QuoteHeader.unpack(raw[:48])
    assert (header.version, header.att_key_type, header.tee_type) == (4, 2, 0x81)
    with pytest.raises(QuoteFormatError, match="version 4"):
        Quote.parse(raw)
    size = int.from_bytes(raw[632:636], "little")  # TD 1.0 report body is 584 bytes
    # This real v4 quote is followed by 70 zero bytes beyond its signature data length
    # (a padded buffer); the v4 parser will have to decide about them.
    end = 636 + size
    assert len(raw) - end == 70 and not any(raw[end:])
    reader = Reader(raw[:end], 636)
    reader.take(128, "signature and attestation key")
    outer = CertificationData.read(reader)
    reader.expect_end("signature data")
    assert outer.cert_type == 6
    inner = outer.qe_report_certification()
    assert inner.certification_data.cert_type == CERT_PCK_CHAIN
    assert len(inner.certification_data.pem_certificates()) == 3
    assert outer.pack() == raw[636 + 128 : end]
    with pytest.raises(QuoteFormatError):
        CertificationData(6, outer.data[:-1]).qe_report_certification()
    with pytest.raises(QuoteFormatError):
        CertificationData(6, outer.data + b"\x00").qe_report_certification()
    with pytest.raises(QuoteFormatError):
        inner.certification_data.qe_report_certification()
