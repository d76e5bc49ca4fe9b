import dataclasses
from collections.abc import Callable

import pytest
from cryptography import x509

from attestcall import der
from attestcall.intel.formats.pck import (
    OID_CONFIGURATION,
    OID_FMSPC,
    OID_PCE_ID,
    OID_PPID,
    OID_SGX_TYPE,
    SGX_EXTENSION_OID,
    PckConfiguration,
    PckExtension,
    PckFormatError,
    PckTcb,
)
from attestcall.intel.formats.quote import Quote
from attestcall.intel.sim.sgx import SgxState, load_state
from tests import paths

DATA = paths.DATA / "intel"


def pck_leaf(quote_file: str) -> x509.Certificate:
    raw = (DATA / quote_file).read_bytes()
    start = raw.index(b"-----BEGIN CERTIFICATE-----")
    return x509.load_pem_x509_certificates(raw[start:].rstrip(b"\x00"))[0]


def raw_extension(cert: x509.Certificate) -> bytes:
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value


PROCESSOR_LEAF = pck_leaf("sgx_quote_v3.bin")  # issued by the PCK Processor CA
PLATFORM_LEAF = pck_leaf("tdx_quote_v4.bin")  # issued by the PCK Platform CA


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> SgxState:
    return load_state(tmp_path_factory.getbasetemp() / "attestcall-home")


def shape(encoded: bytes) -> list[object]:
    """The extension's structure: each entry's OID and its value's type, recursively."""
    out: list[object] = []
    for entry in der.decode(encoded).children():
        oid, value = entry.children()
        if value.tag == der.SEQUENCE:
            out.append((oid.as_oid(), shape(der.encode_tlv(value.tag, value.value))))
        else:
            out.append((oid.as_oid(), der.tag_name(value.tag), len(value.value)
                        if value.tag == der.OCTET_STRING else None))  # fmt: skip
    return out


def test_decode_real_processor_ca_extension() -> None:
    ext = PckExtension.from_certificate(PROCESSOR_LEAF)
    assert ext.fmspc.hex().upper() == "00A067110000"
    assert ext.pce_id == b"\x00\x00"
    assert ext.ppid.hex() == "d04ec06d4e6d92dc90d0ad3cf5ee2ddf"
    assert ext.tcb.comp_svns == (11, 11, 2, 2, 255, 1) + (0,) * 10
    assert ext.tcb.pce_svn == 13
    assert ext.tcb.cpu_svn.hex() == "0b0b0202ff0100000000000000000000"
    assert ext.sgx_type == 0
    assert ext.platform_instance_id is None and ext.configuration is None


def test_decode_real_platform_ca_extension() -> None:
    ext = PckExtension.from_certificate(PLATFORM_LEAF)
    assert ext.fmspc.hex().upper() == "B0C06F000000"
    assert ext.sgx_type == 1
    assert ext.tcb.pce_svn == 11
    assert ext.platform_instance_id is not None
    assert ext.platform_instance_id.hex() == "07828474603e7019dc930775ffe8cdd2"
    assert ext.configuration == PckConfiguration(True, True, True)


@pytest.mark.parametrize("cert", [PROCESSOR_LEAF, PLATFORM_LEAF], ids=["processor", "platform"])
def test_encoding_reproduces_real_extension_bytes(cert: x509.Certificate) -> None:
    raw = raw_extension(cert)
    assert PckExtension.decode(raw).encode() == raw


def test_simulated_extension_has_the_real_platform_ca_structure(state: SgxState) -> None:
    simulated = raw_extension(state.pck_cert)
    assert shape(simulated) == shape(raw_extension(PLATFORM_LEAF))
    # and the Processor CA shape is the same up to the Platform CA-only entries
    assert shape(simulated)[:5] == shape(raw_extension(PROCESSOR_LEAF))


def test_sgx_extension_in_the_real_quote_chain() -> None:
    quote = Quote.parse((DATA / "sgx_quote_v3.bin").read_bytes())
    leaf = x509.load_pem_x509_certificate(quote.certification_data.pem_certificates()[0])
    ext = PckExtension.from_certificate(leaf)
    assert ext.tcb.cpu_svn[:6] == bytes(ext.tcb.comp_svns[:6])


def test_round_trip_of_constructed_extension() -> None:
    ext = PckExtension(
        ppid=bytes(range(16)),
        tcb=PckTcb(tuple(range(16)), 300, bytes(range(16, 32))),
        pce_id=b"\x00\x01",
        fmspc=bytes.fromhex("00906ED50000"),
        sgx_type=1,
        platform_instance_id=b"\x05" * 16,
        configuration=PckConfiguration(dynamic_platform=False, cached_keys=None, smt_enabled=True),
    )
    assert PckExtension.decode(ext.encode()) == ext
    minimal = dataclasses.replace(ext, platform_instance_id=None, configuration=None)
    assert PckExtension.decode(minimal.encode()) == minimal


def entries(encoded: bytes) -> list[bytes]:
    return [der.encode_tlv(t.tag, t.value) for t in der.decode(encoded).children()]


def rebuild(items: list[bytes]) -> bytes:
    return der.encode_sequence(*items)


def entry(oid: str, value: bytes) -> bytes:
    return der.encode_sequence(der.encode_oid(oid), value)


REAL = raw_extension(PROCESSOR_LEAF)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda items: items[1:], id="missing-ppid"),
        pytest.param(lambda items: items[:4], id="missing-sgx-type"),
        pytest.param(lambda items: [items[1], items[0], *items[2:]], id="wrong-order"),
        pytest.param(lambda items: [*items, items[4]], id="duplicate"),
        pytest.param(
            lambda items: [*items, entry(SGX_EXTENSION_OID + ".99", der.encode_integer(1))],
            id="unknown-entry",
        ),
        pytest.param(
            lambda items: [
                *items[:3], entry(OID_FMSPC, der.encode_octet_string(bytes(5))), items[4]
            ],
            id="short-fmspc",
        ),
        pytest.param(
            lambda items: [*items[:2], entry(OID_PCE_ID, der.encode_integer(0)), *items[3:]],
            id="pce-id-wrong-type",
        ),
        pytest.param(
            lambda items: [entry(OID_PPID, der.encode_octet_string(bytes(17))), *items[1:]],
            id="long-ppid",
        ),
        pytest.param(
            lambda items: [*items[:4], entry(OID_SGX_TYPE, der.encode_enumerated(7))],
            id="unknown-sgx-type",
        ),
        pytest.param(
            lambda items: [*items, entry(OID_CONFIGURATION, der.encode_integer(1))],
            id="configuration-not-sequence",
        ),
        pytest.param(
            lambda items: [*items[:4], der.encode_sequence(der.encode_oid(OID_SGX_TYPE))],
            id="entry-without-value",
        ),
    ],
)
def test_malformed_extensions_are_rejected(mutate: Callable[[list[bytes]], list[bytes]]) -> None:
    with pytest.raises(PckFormatError):
        PckExtension.decode(rebuild(mutate(entries(REAL))))


def test_tcb_component_out_of_range_is_rejected() -> None:
    bad = REAL.replace(bytes.fromhex("020200ff"), bytes.fromhex("02020100"))  # 255 -> 256
    assert bad != REAL
    with pytest.raises(PckFormatError):
        PckExtension.decode(bad)


def test_truncated_or_trailing_bytes_are_rejected() -> None:
    with pytest.raises(PckFormatError):
        PckExtension.decode(REAL[:-1])
    with pytest.raises(PckFormatError):
        PckExtension.decode(REAL + b"\x00")


def test_certificate_without_extension(state: SgxState) -> None:
    with pytest.raises(PckFormatError, match="no SGX extension"):
        PckExtension.from_certificate(state.root_cert)
