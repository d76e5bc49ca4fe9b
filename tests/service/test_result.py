"""The attestation-result extension: one DER encoding, decoded strictly."""

import hashlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestcall import der
from attestcall.service import result as results
from attestcall.service.result import (
    AttestationResult,
    MalformedResult,
    ResultError,
    decode,
    encode,
    from_verdict,
)
from attestcall.verifier.verdict import Verdict

SAMPLE = AttestationResult(
    technology=2,
    technology_name="sgx",
    measurement=bytes(range(32)),
    tcb_status="SWHardeningNeeded",
    advisories=("INTEL-SA-00334", "INTEL-SA-00615"),
    policy_digest=hashlib.sha256(b"[sgx]\n").digest(),
)


def utf8(text: str) -> bytes:
    return der.encode_tlv(0x0C, text.encode())


def fields(**override: bytes) -> list[bytes]:
    """SAMPLE's six encoded fields, some replaced."""
    items = {
        "technology": der.encode_integer(2),
        "name": utf8("sgx"),
        "measurement": der.encode_octet_string(SAMPLE.measurement),
        "tcb": utf8(SAMPLE.tcb_status),
        "advisories": der.encode_sequence(*(utf8(a) for a in SAMPLE.advisories)),
        "digest": der.encode_octet_string(SAMPLE.policy_digest),
    }
    items.update(override)
    return list(items.values())


def test_the_oid_is_ours_and_derived_from_the_uuid():
    assert results.RESULT_OID == f"2.25.{uuid.UUID(results.RESULT_UUID).int}"
    assert not results.RESULT_OID.startswith("1.3.6.1.4.1.58270")  # Enarx's arc


def test_the_encoding_is_the_documented_der():
    assert encode(SAMPLE) == der.encode_sequence(*fields())
    assert decode(encode(SAMPLE)) == SAMPLE


def test_an_empty_result_round_trips():
    empty = AttestationResult(0, "none", b"", "", (), results.policy_digest(None))
    assert decode(encode(empty)) == empty
    assert empty.policy_digest == hashlib.sha256(b"").digest()


results_strategy = st.builds(
    AttestationResult,
    technology=st.integers(0, results.MAX_TECHNOLOGY),
    technology_name=st.text(max_size=20),
    measurement=st.binary(max_size=64),
    tcb_status=st.text(max_size=30),
    advisories=st.lists(st.text(max_size=20), max_size=5).map(tuple),
    policy_digest=st.binary(min_size=32, max_size=32),
)


@given(results_strategy)
def test_round_trip(result):
    data = encode(result)
    assert decode(data) == result
    assert encode(decode(data)) == data


def test_every_truncation_is_refused():
    data = encode(SAMPLE)
    for end in range(len(data)):
        with pytest.raises(MalformedResult):
            decode(data[:end])


@pytest.mark.parametrize("tail", [b"\x00", b"\x30\x00", bytes(40)])
def test_trailing_bytes_are_refused(tail):
    with pytest.raises(MalformedResult, match="trailing"):
        decode(encode(SAMPLE) + tail)


def test_every_single_byte_tampering_is_refused_or_changes_the_result():
    """A flipped byte either breaks the structure or decodes to another result whose own
    encoding is exactly the tampered bytes: no second encoding of anything is accepted."""
    data = encode(SAMPLE)
    refused = 0
    for index in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            tampered = bytearray(data)
            tampered[index] ^= flip
            try:
                got = decode(bytes(tampered))
            except MalformedResult:
                refused += 1
                continue
            assert got != SAMPLE
            assert encode(got) == bytes(tampered)
    assert refused > 0


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_or_canonical(data):
    try:
        got = decode(data)
    except MalformedResult:
        return
    assert encode(got) == data


@pytest.mark.parametrize("why, data", [
    ("not a sequence", der.encode_octet_string(b"x")),
    ("five fields", der.encode_sequence(*fields()[:5])),
    ("seven fields", der.encode_sequence(*fields(), utf8("extra"))),
    ("technology as octets", der.encode_sequence(*fields(technology=der.encode_octet_string(
        b"\x02")))),
    ("negative technology", der.encode_sequence(*fields(technology=der.encode_integer(-1)))),
    ("technology too large", der.encode_sequence(*fields(technology=der.encode_integer(
        1 << 32)))),
    ("non-minimal integer", der.encode_sequence(*fields(technology=b"\x02\x02\x00\x02"))),
    ("name as IA5String", der.encode_sequence(*fields(name=der.encode_ia5_string("sgx")))),
    ("name as PrintableString", der.encode_sequence(*fields(name=der.encode_tlv(0x13,
                                                                                b"sgx")))),
    ("name not UTF-8", der.encode_sequence(*fields(name=der.encode_tlv(0x0C, b"\xff\xfe")))),
    ("measurement as text", der.encode_sequence(*fields(measurement=utf8("ab")))),
    ("measurement too long", der.encode_sequence(*fields(
        measurement=der.encode_octet_string(bytes(65))))),
    ("tcb status as octets", der.encode_sequence(*fields(tcb=der.encode_octet_string(b"x")))),
    ("advisories not a sequence", der.encode_sequence(*fields(advisories=utf8("a")))),
    ("an advisory as integer", der.encode_sequence(*fields(advisories=der.encode_sequence(
        der.encode_integer(1))))),
    ("digest of 31 bytes", der.encode_sequence(*fields(digest=der.encode_octet_string(
        bytes(31))))),
    ("digest of 33 bytes", der.encode_sequence(*fields(digest=der.encode_octet_string(
        bytes(33))))),
    ("digest as text", der.encode_sequence(*fields(digest=utf8("0" * 32)))),
    ("indefinite length", b"\x30\x80" + b"".join(fields()) + b"\x00\x00"),
    ("long form for a short length", b"\x30\x81\x05" + der.encode_integer(2) + utf8("ab")),
])
def test_wrong_shapes_and_types_are_refused(why, data):
    with pytest.raises(MalformedResult):
        decode(data)


def test_a_result_that_cannot_be_encoded_cannot_be_made():
    with pytest.raises(ResultError, match="policy digest"):
        AttestationResult(2, "sgx", b"", "", (), b"short")
    with pytest.raises(ResultError, match="measurement"):
        AttestationResult(2, "sgx", bytes(65), "", (), bytes(32))
    with pytest.raises(ResultError, match="out of range"):
        AttestationResult(-1, "sgx", b"", "", (), bytes(32))


def verdict(technology: str, claims: dict, **kw) -> Verdict:
    base = dict(accepted=True, technology=technology, tcb_status="UpToDate",
                advisories=["INTEL-SA-00001"], claims=claims, reasons=[])
    base.update(kw)
    return Verdict(**base)


@pytest.mark.parametrize("name, technology, claim, size", [
    ("sgx", 2, "mrenclave", 32), ("tdx", 4, "mrtd", 48), ("snp", 3, "measurement", 48)])
def test_from_verdict_takes_the_technology_s_measurement(name, technology, claim, size):
    measurement = bytes(range(size))
    claims = {"mrsigner": "ff" * 32, "mrenclave": "00" * 32, "mrtd": "11" * 48,
              "measurement": "22" * 48, claim: measurement.hex()}
    got = from_verdict(verdict(name, claims), b"[policy]\n")
    assert got == AttestationResult(technology, name, measurement, "UpToDate",
                                    ("INTEL-SA-00001",), hashlib.sha256(b"[policy]\n").digest())


def test_from_verdict_without_a_tee_or_tcb_status():
    got = from_verdict(verdict("none", {}, tcb_status=None, advisories=[]), None)
    assert got == AttestationResult(0, "none", b"", "", (), hashlib.sha256(b"").digest())
    assert from_verdict(verdict("none", {}), b"").policy_digest == hashlib.sha256(b"").digest()


def test_from_verdict_refusals():
    with pytest.raises(ResultError, match="refused verdict"):
        from_verdict(verdict("sgx", {"mrenclave": "00" * 32}, accepted=False,
                             reasons=["debug"]), None)
    with pytest.raises(ResultError, match="no measurement claim is known for technology 'sev'"):
        from_verdict(verdict("sev", {}), None)
    with pytest.raises(ResultError, match="'cca' is not registered"):
        from_verdict(verdict("cca", {}), None)
    with pytest.raises(ResultError, match="no mrtd claim"):
        from_verdict(verdict("tdx", {"mrenclave": "00" * 32}), None)
    with pytest.raises(ResultError, match="not hex"):
        from_verdict(verdict("snp", {"measurement": "zz"}), None)
