"""attestcall.intel.fetch.source: the verifier asks an injected source for what a quote needs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from attestcall.errors import CollateralError
from attestcall.intel.fetch.pcs import PcsSource
from attestcall.intel.fetch.source import (
    Bundle,
    CollateralSource,
    IssuedCrl,
    MemorySource,
    SignedText,
    collateral_source,
)
from attestcall.intel.formats.collateral import Collateral
from attestcall.intel.roots import intel_root
from attestcall.intel.verify.appraise import appraise_intel, appraise_sgx, appraise_tdx
from tests import paths

DATA = paths.DATA / "intel"
SGX = (DATA / "sgx_quote_v3.bin").read_bytes()
TDX = (DATA / "tdx_quote_v4.bin").read_bytes()
SGX_PATH = DATA / "sgx_quote_v3.collateral.json"
TDX_PATH = DATA / "tdx_quote_v4.collateral.json"
SGX_JSON = json.loads(SGX_PATH.read_text())
TDX_JSON = json.loads(TDX_PATH.read_text())
SGX_AT = dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)
TDX_AT = dt.datetime(2025, 7, 19, 10, 0, 33, tzinfo=dt.UTC)
ROOTS = [intel_root()]


def _both() -> MemorySource:
    return MemorySource().add(SGX_JSON).add(TDX_PATH)


def test_memory_source_answers_what_each_quote_needs() -> None:
    source = _both()
    sgx = appraise_sgx(SGX, collateral=source, at=SGX_AT, roots=ROOTS)
    assert sgx.problems == [] and sgx.tcb_status is not None
    assert source.asked == [
        ("PCK CRL", "processor"), ("root CA CRL",), ("TCB info", "sgx", "00A067110000"),
        ("QE identity", "sgx"),
    ]  # fmt: skip
    source.asked.clear()
    tdx = appraise_tdx(TDX, collateral=source, at=TDX_AT, roots=ROOTS)
    assert tdx.problems == []
    assert ("TCB info", "tdx", "B0C06F000000") in source.asked
    assert ("PCK CRL", "platform") in source.asked


def test_every_kind_of_collateral_gives_the_same_appraisal() -> None:
    expected = appraise_intel(SGX, collateral=Collateral.load(SGX_JSON), at=SGX_AT, roots=ROOTS)
    for given in (SGX_JSON, SGX_PATH, str(SGX_PATH), SGX_PATH.read_text(),
                  SGX_PATH.read_bytes(), Collateral.load(SGX_PATH), _both()):  # fmt: skip
        source = collateral_source(given)
        result = appraise_intel(SGX, collateral=source, at=SGX_AT, roots=ROOTS)
        assert result == expected, type(given)


def test_a_question_without_an_answer_is_a_collateral_error() -> None:
    source = MemorySource().add(TDX_JSON)  # no SGX TCB info, no processor CA CRL
    with pytest.raises(CollateralError, match="no PCK CRL"):
        appraise_sgx(SGX, collateral=source, at=SGX_AT, roots=ROOTS)
    with pytest.raises(CollateralError, match="no root CA CRL"):
        MemorySource().root_ca_crl()


def test_a_source_answering_for_another_platform_is_a_problem() -> None:
    class Wrong(MemorySource):
        def tcb_info(self, tee: str, fmspc: str) -> SignedText:
            return super().tcb_info("tdx", "B0C06F000000")

    source = Wrong().add(SGX_JSON).add(TDX_JSON)
    result = appraise_sgx(SGX, collateral=source, at=SGX_AT, roots=ROOTS)
    assert any("TCB info is for TDX" in problem for problem in result.problems)


def test_bundle_answers_with_its_own_fields() -> None:
    bundle = Bundle.load(SGX_JSON)
    assert bundle.pck_crl("platform") == IssuedCrl(SGX_JSON["pck_crl"],
                                                   SGX_JSON["pck_crl_issuer_chain"])  # fmt: skip
    assert bundle.root_ca_crl() == SGX_JSON["root_ca_crl"]
    assert bundle.tcb_info("tdx", "00") == SignedText(
        SGX_JSON["tcb_info"], SGX_JSON["tcb_info_signature"], SGX_JSON["tcb_info_issuer_chain"]
    )
    assert bundle.qe_identity("sgx").text == SGX_JSON["qe_identity"]
    assert isinstance(bundle, CollateralSource)
    with pytest.raises(TypeError):
        Bundle(SGX_JSON)  # type: ignore[arg-type]


def test_a_tampered_answer_is_a_problem_not_an_exception() -> None:
    source = _both()
    original = source.qe_identities["sgx"]
    source.qe_identities["sgx"] = dataclasses.replace(original, text=original.text + " ")
    result = appraise_sgx(SGX, collateral=source, at=SGX_AT, roots=ROOTS)
    assert "QE identity signature does not verify with the TCB signing key" in result.problems


def test_collateral_source_picks_the_implementation() -> None:
    assert isinstance(collateral_source(SGX_JSON), Bundle)
    assert isinstance(collateral_source(Collateral.load(SGX_JSON)), Bundle)
    memory = MemorySource()
    assert collateral_source(memory) is memory
    pcs = collateral_source(None, "https://pccs.example:8081/sgx/certification/v4/")
    assert isinstance(pcs, PcsSource) and pcs.base_url == "https://pccs.example:8081"
    with pytest.raises(CollateralError):
        collateral_source(None)
    with pytest.raises(CollateralError):
        collateral_source(SGX_JSON, "https://pccs.example")
    with pytest.raises(CollateralError):
        collateral_source(None, "file:///etc/passwd")
    with pytest.raises(TypeError):
        collateral_source(42)
    with pytest.raises(TypeError):
        appraise_sgx(SGX, collateral=42, at=SGX_AT, roots=ROOTS)  # type: ignore[arg-type]
