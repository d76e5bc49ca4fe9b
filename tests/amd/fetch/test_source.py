"""attestcall.amd.fetch.source: the certificate sources the SNP verifier asks, and certs_source."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.amd.fetch.kds import KdsSource
from attestcall.amd.fetch.source import (
    NO_CERTS,
    CertSource,
    FileSource,
    MemorySource,
    TableSource,
    VcekRequest,
    certs_source,
)
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.amd.roots import amd_arks
from attestcall.amd.verify.appraise import appraise_snp
from attestcall.errors import CollateralError, CollateralMissing, UsageError
from tests.amd.conftest import ask_ark, read
from tests.fakes import snp_forge as forge

AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def milan_certs() -> list[x509.Certificate]:
    return [amdcerts.load_certificate(read("milan_report_v2.vcek.der")), *ask_ark("milan")]


class Recording:
    """A source that hands out ``inner``'s certificates and notes every question."""

    def __init__(self, inner: CertSource) -> None:
        self.inner = inner
        self.asked: list[tuple[str, object]] = []

    def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
        self.asked.append(("vceks", request))
        return self.inner.vceks(request)

    def vleks(self) -> Sequence[x509.Certificate]:
        self.asked.append(("vleks", None))
        return self.inner.vleks()

    def signing_cas(self, product: str | None) -> Sequence[x509.Certificate]:
        self.asked.append(("signing_cas", product))
        return self.inner.signing_cas(product)

    def arks(self, product: str | None) -> Sequence[x509.Certificate]:
        self.asked.append(("arks", product))
        return self.inner.arks(product)


# ---------------------------------------------------------------------------- memory source


def test_memory_source_sorts_certificates_by_role():
    vcek, ask, ark = milan_certs()
    source = MemorySource.of([ark, vcek, ask])
    request = VcekRequest.from_report(snp.parse(read("milan_report_v2.bin")))
    assert list(source.vceks(request)) == [vcek]
    assert list(source.vleks()) == []
    assert list(source.signing_cas("Milan")) == [ask]
    assert list(source.arks(None)) == [ark]
    assert isinstance(source, CertSource)


def test_memory_source_verifies_like_the_same_certificates_as_bytes(milan_report):
    from_memory = appraise_snp(milan_report, certs=MemorySource.of(milan_certs()), at=AT,
                               arks=amd_arks())
    from_bytes = appraise_snp(milan_report, certs=read("milan_report_v2.vcek.der"), at=AT,
                              arks=amd_arks())
    assert from_memory.problems == [] == from_bytes.problems
    assert from_memory.claims == from_bytes.claims


def test_the_verifier_asks_for_the_reports_vcek_then_its_product_lines_chain(milan_report):
    source = Recording(MemorySource.of(milan_certs()))
    assert appraise_snp(milan_report, certs=source, at=AT, arks=amd_arks()).problems == []
    report = snp.parse(milan_report)
    request = VcekRequest(product=None, chip_id=report.chip_id,
                          reported_tcb=report.reported_tcb, chip_id_masked=False)
    # a version 2 report cannot tell Milan from Genoa; the VCEK's extensions can
    assert source.asked == [("vceks", request), ("signing_cas", "Milan"), ("arks", "Milan")]
    assert request.tcb("Milan").describe() == "bootloader 3, tee 0, snp 8, microcode 115"


def test_a_vlek_report_asks_for_vleks(base_report):
    chain = forge.chain(kind="VLEK")
    evidence = forge.report_for(chain, base_report)
    source = Recording(MemorySource.of([chain.vek, chain.ask, chain.ark]))
    assert appraise_snp(evidence, certs=source, at=AT, arks=[chain.ark]).problems == []
    assert source.asked == [("vleks", None), ("signing_cas", "Milan"), ("arks", "Milan")]


def test_an_unsigned_report_asks_for_nothing(base_report):
    chain = forge.chain()
    evidence = forge.report_for(chain, base_report, signer_info=snp.SIGNING_KEY_NONE << 2)
    source = Recording(MemorySource.of([chain.vek, chain.ask, chain.ark]))
    problems = appraise_snp(evidence, certs=source, at=AT, arks=[chain.ark]).problems
    assert problems == ["the report is not signed (SIGNING_KEY is none)"]
    assert source.asked == []


def test_the_source_is_preferred_to_the_table(base_report):
    good = forge.chain()
    other = forge.chain(tcb=forge.Tcb(bootloader=4))  # same key, another TCB
    evidence = forge.report_for(good, base_report)
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, other.der("vek"))])
    source = MemorySource.of([good.vek, good.ask])
    assert appraise_snp(evidence + table, certs=source, at=AT, arks=[good.ark]).problems == []
    swapped = MemorySource.of([other.vek, other.ask])
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, good.der("vek"))])
    problems = appraise_snp(evidence + table, certs=swapped, at=AT, arks=[good.ark]).problems
    assert len(problems) == 1 and "REPORTED_TCB" in problems[0]


def test_a_failing_source_fails_the_appraisal(milan_report):
    class Broken(MemorySource):
        def vceks(self, request: VcekRequest) -> Sequence[x509.Certificate]:
            raise CollateralError("the source is down")

    with pytest.raises(CollateralError, match="the source is down"):
        appraise_snp(milan_report, certs=Broken(), at=AT, arks=amd_arks())


def test_no_certs_leaves_the_reports_table(milan_report):
    assert certs_source(None) is NO_CERTS
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, read("milan_report_v2.vcek.der"))])
    assert appraise_snp(milan_report + table, certs=NO_CERTS, at=AT,
                        arks=amd_arks()).problems == []
    with pytest.raises(CollateralMissing, match="^no VCEK"):  # unusable, as for Intel
        appraise_snp(milan_report, certs=NO_CERTS, at=AT, arks=amd_arks())


# ---------------------------------------------------------------------------- table and file


def test_table_source_by_guid(milan_report):
    vcek, ask, ark = milan_certs()
    blobs = [(amdcerts.ARK_GUID, ark), (amdcerts.VCEK_GUID, vcek), (amdcerts.ASK_GUID, ask)]
    table = amdcerts.pack_table([(guid, cert.public_bytes(Encoding.DER)) for guid, cert in blobs])
    source = TableSource.from_evidence(milan_report + table)
    request = VcekRequest.from_report(snp.parse(milan_report))
    assert [list(source.vceks(request)), list(source.signing_cas(None)),
            list(source.arks(None)), list(source.vleks())] == [[vcek], [ask], [ark], []]
    assert list(TableSource.from_evidence(milan_report).vceks(request)) == []


def test_table_source_refuses_an_entry_that_is_not_a_certificate():
    table = amdcerts.pack_table([(amdcerts.ASK_GUID, b"\x30\x03\x02\x01\x00")])
    with pytest.raises(amdcerts.CertTableError, match="the ASK entry is not a usable"):
        TableSource(amdcerts.parse_table(table))


def test_certs_source_takes_bytes_paths_and_sources(tmp_path: Path):
    data = read("milan_report_v2.vcek.der")
    from_bytes = certs_source(data)
    assert isinstance(from_bytes, FileSource)
    path = tmp_path / "vcek.der"
    path.write_bytes(data)
    for given in (path, str(path)):
        source = certs_source(given)
        assert isinstance(source, FileSource) and source.data == data
    memory = MemorySource()
    assert certs_source(memory) is memory
    assert isinstance(certs_source(None, url="https://kds.example"), KdsSource)


def test_certs_source_refusals(tmp_path: Path):
    with pytest.raises(UsageError, match="not both"):
        certs_source(b"x", url="https://kds.example")
    with pytest.raises(CollateralError, match="cannot read certificates"):
        certs_source(tmp_path / "absent.pem")
    with pytest.raises(CollateralError):
        certs_source(b"garbage")
    with pytest.raises(CollateralError, match="http"):
        certs_source(None, url="ftp://kds.example")
    with pytest.raises(TypeError):
        certs_source(42)  # type: ignore[arg-type]


def test_appraise_snp_reads_a_path(tmp_path: Path, milan_report):
    path = tmp_path / "chain.pem"
    path.write_bytes(read("ask_ark_milan.pem"))
    with pytest.raises(CollateralMissing, match="no VCEK"):
        appraise_snp(milan_report, certs=path, at=AT, arks=amd_arks())
    path.write_bytes(read("milan_report_v2.vcek.der"))
    assert appraise_snp(milan_report, certs=str(path), at=AT, arks=amd_arks()).problems == []


def test_request_of_a_masked_report(base_report):
    masked = dataclasses.replace(base_report, signer_info=0b10, chip_id=bytes(64))
    request = VcekRequest.from_report(masked)
    assert request.chip_id_masked and request.product is None
