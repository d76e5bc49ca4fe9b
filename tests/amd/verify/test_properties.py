from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.amd.roots import amd_arks
from attestcall.amd.verify.appraise import appraise_snp
from attestcall.errors import CollateralError, CollateralMissing, EvidenceError
from tests.amd.conftest import read

AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
MILAN = read("milan_report_v2.bin")
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 2**64 - 1)


def blob(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


@st.composite
def reports(draw: st.DrawFn) -> snp.Report:
    version = draw(st.integers(0, 8))
    cpuid = version >= 3
    mit = version >= 4
    policy = draw(st.integers(0, 2**26 - 1)) | 1 << 17
    signing_key = draw(st.sampled_from([0, 1, 7]))
    signer_info = signing_key << 2 | draw(st.integers(0, 3))
    algo = draw(st.sampled_from([1, 1, 0, 2]))
    if algo == 1:
        r, s = draw(st.integers(0, 2**384 - 1)), draw(st.integers(0, 2**384 - 1))
        signature = r.to_bytes(72, "little") + s.to_bytes(72, "little") + bytes(368)
    else:
        signature = draw(blob(snp.SIGNATURE_SIZE))
    return snp.Report(
        version=version, guest_svn=draw(u32), policy=policy, family_id=draw(blob(16)),
        image_id=draw(blob(16)), vmpl=draw(u32), signature_algo=algo,
        current_tcb=draw(u64), platform_info=draw(u64), signer_info=signer_info,
        report_data=draw(blob(64)), measurement=draw(blob(48)), host_data=draw(blob(32)),
        id_key_digest=draw(blob(48)), author_key_digest=draw(blob(48)),
        report_id=draw(blob(32)), report_id_ma=draw(blob(32)), reported_tcb=draw(u64),
        cpuid_fam_id=draw(u8) if cpuid else 0, cpuid_mod_id=draw(u8) if cpuid else 0,
        cpuid_step=draw(u8) if cpuid else 0, chip_id=draw(blob(64)),
        committed_tcb=draw(u64), current_build=draw(u8), current_minor=draw(u8),
        current_major=draw(u8), committed_build=draw(u8), committed_minor=draw(u8),
        committed_major=draw(u8), launch_tcb=draw(u64),
        launch_mit_vector=draw(u64) if mit else 0, current_mit_vector=draw(u64) if mit else 0,
        signature=signature,
    )


@FAST
@given(reports())
def test_pack_parse_round_trip(report):
    data = report.pack()
    assert len(data) == snp.REPORT_SIZE
    assert snp.parse(data) == report
    assert report.signed_bytes() == data[:snp.SIGNED_SIZE]


@FAST
@given(st.binary(min_size=snp.REPORT_SIZE, max_size=snp.REPORT_SIZE))
def test_parse_random_bytes(data):
    try:
        report = snp.parse(data)
    except EvidenceError as exc:
        assert "\n" not in str(exc)
        return
    assert report.pack() == data


@FAST
@given(st.lists(st.tuples(st.integers(0, snp.REPORT_SIZE - 1), u8), max_size=8))
def test_parse_mutated_report(changes):
    data = bytearray(MILAN)
    for offset, value in changes:
        data[offset] = value
    try:
        report = snp.parse(bytes(data))
    except EvidenceError:
        return
    assert report.pack() == bytes(data)


@FAST
@given(st.binary(max_size=400))
def test_parse_table_random(data):
    try:
        entries = amdcerts.parse_table(data)
    except amdcerts.CertTableError as exc:
        assert "\n" not in str(exc)
        return
    for entry in entries:
        assert entry.data and entry.data in data


@FAST
@given(st.dictionaries(st.uuids(), st.binary(min_size=1, max_size=64), max_size=6),
       st.binary(max_size=64))
def test_table_round_trip(blobs, padding):
    blobs.pop(uuid.UUID(int=0), None)
    pairs = list(blobs.items())
    table = amdcerts.pack_table(pairs) + bytes(len(padding))
    assert [(e.guid, e.data) for e in amdcerts.parse_table(table)] == pairs


OIDS = [amdcerts.OID_STRUCT_VERSION, amdcerts.OID_PRODUCT_NAME, amdcerts.OID_BOOTLOADER,
        amdcerts.OID_TEE, amdcerts.OID_SNP, amdcerts.OID_MICROCODE, amdcerts.OID_FMC,
        amdcerts.OID_HWID, amdcerts.OID_CSP_ID]
DER_VALUES = st.one_of(
    st.binary(max_size=70),
    st.integers(-300, 300).map(lambda n: bytes([0x02, 1 if -128 <= n < 128 else 2])
                               + n.to_bytes(1 if -128 <= n < 128 else 2, "big", signed=True)),
    st.text(max_size=12).map(lambda t: bytes([0x16, len(t.encode())]) + t.encode()),
    st.sampled_from([bytes(8), bytes(64), b"\x04\x08" + bytes(8)]),
)


@FAST
@given(st.dictionaries(st.sampled_from(OIDS), DER_VALUES))
def test_extension_decoder(values):
    try:
        ext = amdcerts.decode_vek_extensions(values)
    except CollateralError as exc:
        assert "\n" not in str(exc)
        return
    assert all(0 <= n <= 255 for n in (ext.bootloader, ext.tee, ext.snp, ext.microcode))
    assert ext.hwid is not None or ext.csp_id is not None


@FAST
@given(st.binary(max_size=600))
def test_load_certs_random(data):
    try:
        amdcerts.load_certs(data)
    except CollateralError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_appraise_random_tails(tail, with_report):
    evidence = (MILAN if with_report else b"") + tail
    try:
        appraisal = appraise_snp(evidence, at=AT, arks=amd_arks())
    except (EvidenceError, CollateralMissing):  # unusable; never accepted without a VCEK
        return
    assert appraisal.problems


@settings(max_examples=150, deadline=None)
@given(reports())
def test_appraise_random_reports(report):
    try:
        appraisal = appraise_snp(report.pack(), certs=read("milan_report_v2.vcek.der"), at=AT,
                                 arks=amd_arks())
    except CollateralMissing:  # a VLEK-signed report: a VCEK is no use
        assert report.signing_key == snp.SIGNING_KEY_VLEK
        return
    assert appraisal.problems
    assert appraisal.debug == bool(report.policy >> 19 & 1)
