from __future__ import annotations

import uuid
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import SignatureAlgorithmOID

from attestcall import der
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.amd.roots import amd_arks, amd_asks
from attestcall.errors import CollateralError, EvidenceError
from tests.amd.conftest import ask_ark, read

VCEK_FILES = ["milan_report_v2.vcek.der", "milan_report_v2_debug.vcek.der", "turin_vcek.der"]


def test_guids():
    assert amdcerts.VCEK_GUID.bytes == bytes.fromhex("63da758de6644564adc5f4b93be8accd")
    assert str(amdcerts.VLEK_GUID) == "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
    assert str(amdcerts.ASK_GUID) == "4ab7b379-bbac-4fe4-a02f-05aef327c782"
    assert str(amdcerts.ARK_GUID) == "c0b406a4-a803-4952-9743-3fb6014cd0ae"


# ---------------------------------------------------------------------------- the table


def test_table_round_trip():
    blobs = [(amdcerts.VCEK_GUID, b"vcek"), (amdcerts.ASK_GUID, b"ask!"),
             (amdcerts.ARK_GUID, b"the ark")]
    table = amdcerts.pack_table(blobs)
    assert table[:16] == amdcerts.VCEK_GUID.bytes
    assert table[72:96] == bytes(24)
    entries = amdcerts.parse_table(table)
    assert [(e.guid, e.data) for e in entries] == blobs
    assert [e.name for e in entries] == ["VCEK", "ASK", "ARK"]


def test_table_padding_is_ignored():
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, b"x")]) + bytes(4000)
    assert [e.data for e in amdcerts.parse_table(table)] == [b"x"]


@pytest.mark.parametrize("where", ["end", "last byte", "gap"])
def test_unreferenced_bytes_must_be_zero(where):
    """Issue 12, item 6: only zero padding may ride along with the certificates."""
    if where == "gap":  # a hole between the entry list and the one certificate
        entries = _entry(amdcerts.VCEK_GUID, 56, 1) + bytes(24)
        assert [e.data for e in amdcerts.parse_table(entries + bytes(8) + b"x")] == [b"x"]
        table = entries + b"\x07" + bytes(7) + b"x"
    else:
        table = amdcerts.pack_table([(amdcerts.VCEK_GUID, b"x")]) + bytes(4000)
        table += b"\x01" if where == "end" else b""
        if where == "last byte":
            table = table[:-1] + b"\xff"
    with pytest.raises(amdcerts.CertTableError, match="not zero padding"):
        amdcerts.parse_table(table)


def test_empty_tables():
    assert amdcerts.parse_table(b"") == []
    assert amdcerts.parse_table(bytes(24)) == []


def test_table_layout_is_little_endian():
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, b"abc")])
    assert table[16:24] == (48).to_bytes(4, "little") + (3).to_bytes(4, "little")


def _entry(guid: uuid.UUID, offset: int, length: int) -> bytes:
    return amdcerts.ENTRY.pack(guid.bytes, offset, length)


@pytest.mark.parametrize("table, message", [
    (bytes(23), "truncated"),
    (_entry(amdcerts.VCEK_GUID, 48, 1) + b"x", "truncated"),
    (_entry(amdcerts.VCEK_GUID, 48, 1) + bytes(23), "truncated"),
    (_entry(amdcerts.VCEK_GUID, 24, 4) + bytes(24) + b"abcd", "inside"),
    (_entry(amdcerts.VCEK_GUID, 0, 4) + bytes(24) + b"abcd", "inside"),
    (_entry(amdcerts.VCEK_GUID, 48, 5) + bytes(24) + b"abcd", "past the end"),
    (_entry(amdcerts.VCEK_GUID, 0xFFFFFFFF, 0xFFFFFFFF) + bytes(24), "past the end"),
    (_entry(amdcerts.VCEK_GUID, 48, 0) + bytes(24), "empty"),
    (_entry(amdcerts.VCEK_GUID, 72, 1) + _entry(amdcerts.VCEK_GUID, 72, 1) + bytes(25),
     "twice"),
])
def test_malformed_tables(table, message):
    with pytest.raises(amdcerts.CertTableError, match=message) as info:
        amdcerts.parse_table(table)
    assert isinstance(info.value, EvidenceError)
    assert "\n" not in str(info.value)


def test_zero_guid_with_offset_is_an_entry_not_the_terminator():
    table = _entry(uuid.UUID(int=0), 48, 1) + bytes(24) + b"z"
    entries = amdcerts.parse_table(table)
    assert [e.data for e in entries] == [b"z"]


def test_table_with_bad_certificate():
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, b"not a certificate")])
    with pytest.raises(amdcerts.CertTableError, match="VCEK"):
        amdcerts.certs_from_table(amdcerts.parse_table(table))


def test_unknown_guids_are_ignored():
    vcek = read("milan_report_v2.vcek.der")
    table = amdcerts.pack_table([(uuid.uuid4(), b"whatever"), (amdcerts.VCEK_GUID, vcek)])
    found = amdcerts.certs_from_table(amdcerts.parse_table(table))
    assert [c.public_bytes(Encoding.DER) for c in found.vceks] == [vcek]
    assert not found.intermediates and not found.roots


# ---------------------------------------------------------------------------- certificates


@pytest.mark.parametrize("name", VCEK_FILES)
def test_every_amd_vcek_has_serial_zero(name):
    data = read(name)
    assert amdcerts.serial_number_of(data) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        assert x509.load_der_x509_certificate(data).serial_number == 0


@pytest.mark.parametrize("name", VCEK_FILES)
def test_loading_serial_zero_is_silent(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = amdcerts.load_certificate(read(name))
        amdcerts.vek_extensions(cert)


def test_serial_number_of_rejects_garbage():
    with pytest.raises(CollateralError):
        amdcerts.serial_number_of(b"\x30\x03\x02\x01\x00")


def test_milan_vcek_extensions(milan_report):
    ext = amdcerts.vek_extensions(amdcerts.load_certificate(read("milan_report_v2.vcek.der")))
    assert ext.struct_version == 0
    assert ext.product_name == "Milan-B0" and ext.product == "Milan"
    assert (ext.bootloader, ext.tee, ext.snp, ext.microcode, ext.fmc) == (3, 0, 8, 115, None)
    assert ext.hwid == snp.parse(milan_report).chip_id
    assert ext.csp_id is None


def test_debug_vcek_extensions():
    ext = amdcerts.vek_extensions(
        amdcerts.load_certificate(read("milan_report_v2_debug.vcek.der")))
    assert (ext.bootloader, ext.tee, ext.snp, ext.microcode) == (2, 0, 5, 68)
    assert ext.hwid == snp.parse(read("milan_report_v2_debug.bin")).chip_id


def test_turin_vcek_extensions():
    ext = amdcerts.vek_extensions(amdcerts.load_certificate(read("turin_vcek.der")))
    assert ext.struct_version == 1
    assert ext.product_name == "Turin" and ext.product == snp.TURIN
    assert ext.fmc == 0
    assert (ext.bootloader, ext.tee, ext.snp, ext.microcode) == (0, 0, 0, 9)
    assert ext.hwid == bytes.fromhex("1e550a8ee5cf9f4d")


def test_extensions_missing():
    ask, _ = ask_ark("milan")
    with pytest.raises(CollateralError, match="3704"):
        amdcerts.vek_extensions(ask)
    assert not amdcerts.is_vek(ask)


@pytest.mark.parametrize("oid, value, message", [
    (amdcerts.OID_BOOTLOADER, b"\x02\x02\x01\x00", "outside"),
    (amdcerts.OID_BOOTLOADER, b"\x02\x01\xff", "outside"),
    (amdcerts.OID_TEE, b"\x04\x01\x00", "INTEGER"),
    (amdcerts.OID_SNP, b"\x02\x02\x00\x01", "INTEGER"),
    (amdcerts.OID_PRODUCT_NAME, b"\x0c\x05Milan", "IA5String"),
    (amdcerts.OID_PRODUCT_NAME, b"\x16\x02\xc3\xa9", "ASCII"),
    (amdcerts.OID_HWID, b"\x01\x02\x03", "8 or 64"),
    (amdcerts.OID_MICROCODE, b"", "INTEGER"),
])
def test_malformed_extension_values(oid, value, message):
    values = {
        amdcerts.OID_STRUCT_VERSION: b"\x02\x01\x00",
        amdcerts.OID_PRODUCT_NAME: b"\x16\x08Milan-B0",
        amdcerts.OID_BOOTLOADER: b"\x02\x01\x03",
        amdcerts.OID_TEE: b"\x02\x01\x00",
        amdcerts.OID_SNP: b"\x02\x01\x08",
        amdcerts.OID_MICROCODE: b"\x02\x01\x73",
        amdcerts.OID_HWID: bytes(64),
    }
    assert amdcerts.decode_vek_extensions(values).microcode == 115
    values[oid] = value
    with pytest.raises(CollateralError, match=message):
        amdcerts.decode_vek_extensions(values)


def test_hwid_as_octet_string():
    values = {
        amdcerts.OID_STRUCT_VERSION: b"\x02\x01\x00",
        amdcerts.OID_PRODUCT_NAME: b"\x16\x05Genoa",
        amdcerts.OID_BOOTLOADER: b"\x02\x01\x03",
        amdcerts.OID_TEE: b"\x02\x01\x00",
        amdcerts.OID_SNP: b"\x02\x01\x08",
        amdcerts.OID_MICROCODE: b"\x02\x01\x73",
        amdcerts.OID_HWID: b"\x04\x40" + b"\x07" * 64,
    }
    assert amdcerts.decode_vek_extensions(values).hwid == b"\x07" * 64
    del values[amdcerts.OID_HWID]
    with pytest.raises(CollateralError, match="hardware id"):
        amdcerts.decode_vek_extensions(values)
    values[amdcerts.OID_CSP_ID] = b"\x16\x03csp"
    assert amdcerts.decode_vek_extensions(values).csp_id == "csp"


# ---------------------------------------------------------------------------- --certs input


def test_load_der():
    found = amdcerts.load_certs(read("milan_report_v2.vcek.der"))
    assert len(found.vceks) == 1 and not found.vleks and not found.intermediates


def test_load_pem_chain():
    vcek = amdcerts.load_certificate(read("turin_vcek.der"))
    pem = vcek.public_bytes(Encoding.PEM) + read("ask_ark_turin.pem")
    found = amdcerts.load_certs(pem)
    assert found.vceks == [vcek]
    ask, ark = ask_ark("turin")
    assert found.intermediates == [ask] and found.roots == [ark]


def test_load_table():
    vcek = read("milan_report_v2.vcek.der")
    ask, ark = ask_ark("milan")
    table = amdcerts.pack_table([
        (amdcerts.VCEK_GUID, vcek),
        (amdcerts.ASK_GUID, ask.public_bytes(Encoding.DER)),
        (amdcerts.ARK_GUID, ark.public_bytes(Encoding.DER)),
    ])
    found = amdcerts.load_certs(table)
    assert len(found.vceks) == 1 and found.intermediates == [ask] and found.roots == [ark]


@pytest.mark.parametrize("data", [
    b"",
    b"hello",
    b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    b"\x30\x03\x02\x01\x00",
    bytes(10),
])
def test_load_garbage(data):
    with pytest.raises(CollateralError):
        amdcerts.load_certs(data)


def test_load_truncated_der():
    with pytest.raises(CollateralError):
        amdcerts.load_certs(read("milan_report_v2.vcek.der")[:-1])


# ---------------------------------------------------------------------------- pinned roots


def test_pinned_arks_are_self_signed_rsa4096_pss_sha384():
    arks = amd_arks()
    assert [ark.subject.rfc4514_string().split(",")[0] for ark in arks] == [
        "CN=ARK-Milan", "CN=ARK-Genoa", "CN=ARK-Turin"]
    for ark in arks:
        key = ark.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
        assert ark.subject == ark.issuer
        assert ark.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
        assert isinstance(ark.signature_hash_algorithm, hashes.SHA384)
        key.verify(ark.signature, ark.tbs_certificate_bytes,
                   padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
                   hashes.SHA384())


def test_pinned_asks_are_signed_by_the_arks():
    for ask, ark in zip(amd_asks(), amd_arks(), strict=True):
        assert ask.issuer == ark.subject
        ask.verify_directly_issued_by(ark)


@pytest.mark.parametrize("product", ["milan", "genoa", "turin"])
def test_pinned_roots_are_the_vectors(product):
    ask, ark = ask_ark(product)
    assert ark in amd_arks() and ask in amd_asks()


def test_roots_are_loaded_once():
    assert amd_arks()[0] is amd_arks()[0]


def test_ia5_strings_through_the_shared_der_codec():
    encoded = der.encode_ia5_string("Milan-B0")
    assert encoded == b"\x16\x08Milan-B0"
    assert der.decode(encoded).as_ia5_string() == "Milan-B0"
    long_name = "x" * 200  # long-form length, which the old simulator encoder refused
    assert der.decode(der.encode_ia5_string(long_name)).as_ia5_string() == long_name
    with pytest.raises(der.DerError):
        der.encode_ia5_string("Mil\u00e1n")
    with pytest.raises(der.DerError, match="ASCII"):
        der.decode(b"\x16\x02\xc3\xa9").as_ia5_string()
    with pytest.raises(der.DerError, match="IA5String"):
        der.decode(b"\x0c\x05Milan").as_ia5_string()


def test_simulated_vek_extensions_decode_with_the_verifier():
    from attestcall.amd.sim.snp import certs as simcerts
    from attestcall.amd.sim.snp.products import PRODUCTS, Tcb

    for product in PRODUCTS.values():
        tcb = Tcb(bootloader=3, tee=0, snp=255, microcode=0x73, fmc=1)
        extensions = simcerts.vek_extensions(product, tcb, hwid=bytes(64))
        values = {ext.oid.dotted_string: ext.value for ext in extensions}
        decoded = amdcerts.decode_vek_extensions(values)
        assert (decoded.bootloader, decoded.snp, decoded.microcode) == (3, 255, 0x73)
        assert decoded.product_name == product.product_name
        assert values[amdcerts.OID_SNP] == b"\x02\x02\x00\xff"
