"""Collateral loading: every accepted source, the typed TCB info / QE identity, and
CollateralError for each malformed input."""

import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.errors import CollateralError
from attestcall.intel.formats.collateral import (
    FIELDS,
    Collateral,
    parse_qe_identity,
    parse_tcb_info,
)
from attestcall.intel.formats.quote import signature_to_der
from tests import paths

DATA = paths.DATA / "intel"
SGX_PATH = DATA / "sgx_quote_v3.collateral.json"
TDX_PATH = DATA / "tdx_quote_v4.collateral.json"
SGX_TEXT = SGX_PATH.read_text()
SGX_DICT = json.loads(SGX_TEXT)
TDX_DICT = json.loads(TDX_PATH.read_text())


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    "source",
    [SGX_PATH, str(SGX_PATH), SGX_TEXT, SGX_TEXT.encode(), SGX_DICT],
    ids=["Path", "str path", "text", "bytes", "dict"],
)
def test_every_source_gives_the_same_collateral(source):
    collateral = Collateral.load(source)
    assert collateral == Collateral.load(SGX_DICT)
    assert collateral.key == tuple(SGX_DICT[name] for name in FIELDS)
    assert hash(collateral) == hash(Collateral.load(SGX_DICT))


def test_sgx_tcb_info_is_typed():
    info = Collateral.load(SGX_DICT).tcb_info
    assert info.id == "SGX" and info.version == 3
    assert info.fmspc == bytes.fromhex("00A067110000") and info.pce_id == b"\x00\x00"
    assert info.issue_date == utc("2025-06-19T10:56:11Z")
    assert info.next_update == utc("2025-07-19T10:56:11Z")
    assert info.tcb_evaluation_data_number == 17 and info.tcb_type == 0
    assert len(info.tcb_levels) == 11
    first, second = info.tcb_levels[:2]
    assert first.sgx_components == (11, 11, 2, 2, 255, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert first.pce_svn == 13 and first.tdx_components is None
    assert first.status == "SWHardeningNeeded" and first.advisory_ids == ("INTEL-SA-00615",)
    assert second.status == "ConfigurationAndSWHardeningNeeded"
    assert second.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert info.tdx_module is None and info.tdx_module_identities == ()


def test_tdx_tcb_info_is_typed():
    info = Collateral.load(TDX_DICT).tcb_info
    assert info.id == "TDX" and info.fmspc == bytes.fromhex("B0C06F000000")
    assert info.tdx_module is not None and info.tdx_module.mrsigner == bytes(48)
    assert info.tdx_module.attributes_mask == b"\xff" * 8
    assert [i.id for i in info.tdx_module_identities] == ["TDX_03", "TDX_01"]
    tdx01 = info.tdx_module_identities[1]
    assert [(lv.isv_svn, lv.status) for lv in tdx01.tcb_levels] == [
        (4, "UpToDate"), (2, "OutOfDate"),
    ]  # fmt: skip
    level = info.tcb_levels[0]
    assert level.tdx_components == (5, 0, 2) + (0,) * 13
    assert level.pce_svn == 11 and level.status == "UpToDate"


def test_qe_identities_are_typed():
    sgx = Collateral.load(SGX_DICT).qe_identity
    assert sgx.id == "QE" and sgx.version == 2 and sgx.isv_prod_id == 1
    assert sgx.mrsigner.hex().startswith("8c4f5775d796503e")
    assert sgx.miscselect == 0 and sgx.miscselect_mask == 0xFFFFFFFF
    assert sgx.attributes == bytes.fromhex("11" + "00" * 15)
    assert sgx.attributes_mask == bytes.fromhex("FBFFFFFFFFFFFFFF" + "00" * 8)
    assert [lv.isv_svn for lv in sgx.tcb_levels] == [8, 6, 5, 4, 2, 1]
    assert sgx.tcb_levels[1].advisory_ids == ("INTEL-SA-00615",)
    tdx = Collateral.load(TDX_DICT).qe_identity
    assert tdx.id == "TD_QE" and tdx.isv_prod_id == 2


def test_signed_texts_are_kept_exactly_and_their_signatures_verify():
    collateral = Collateral.load(SGX_DICT)
    assert collateral.tcb_info_bytes == SGX_DICT["tcb_info"].encode()
    assert collateral.qe_identity_bytes == SGX_DICT["qe_identity"].encode()
    key = collateral.tcb_info_issuer_chain[0].public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(hashes.SHA256())
    key.verify(
        signature_to_der(collateral.tcb_info_signature), collateral.tcb_info_bytes, algorithm
    )
    key.verify(
        signature_to_der(collateral.qe_identity_signature), collateral.qe_identity_bytes, algorithm
    )


def test_chains_and_crls_are_parsed():
    collateral = Collateral.load(TDX_DICT)
    assert len(collateral.pck_crl_issuer_chain) == 2
    assert "PCK Platform CA" in collateral.pck_crl_issuer_chain[0].subject.rfc4514_string()
    assert collateral.tcb_info_issuer_chain == collateral.qe_identity_issuer_chain
    assert collateral.pck_crl_der == bytes.fromhex(TDX_DICT["pck_crl"])
    assert collateral.pck_crl.next_update_utc == utc("2025-07-19T10:00:35Z")
    assert collateral.root_ca_crl_der == bytes.fromhex(TDX_DICT["root_ca_crl"])


def _with(field: str, value: object) -> dict:
    data = dict(SGX_DICT)
    data[field] = value
    return data


def _tcb(change) -> dict:
    info = json.loads(SGX_DICT["tcb_info"])
    change(info)
    return _with("tcb_info", json.dumps(info))


def _qe(change) -> dict:
    identity = json.loads(SGX_DICT["qe_identity"])
    change(identity)
    return _with("qe_identity", json.dumps(identity))


MALFORMED = {
    "not JSON": "{not json",
    "not an object": "[1, 2]",
    "missing field": {k: v for k, v in SGX_DICT.items() if k != "pck_crl"},
    "field not a string": _with("tcb_info_signature", 7),
    "CRL not hex": _with("pck_crl", "zz"),
    "CRL odd hex": _with("root_ca_crl", "abc"),
    "CRL not DER": _with("pck_crl", "3003020101"),
    "chain not PEM": _with("pck_crl_issuer_chain", "not a certificate"),
    "chain of one": _with(
        "tcb_info_issuer_chain",
        SGX_DICT["tcb_info_issuer_chain"].split("-----END")[0] + "-----END CERTIFICATE-----\n",
    ),
    "signature length": _with("tcb_info_signature", "00" * 63),
    "tcb_info not JSON": _with("tcb_info", "{"),
    "tcb_info not object": _with("tcb_info", "[]"),
    "tcb_info version 2": _tcb(lambda i: i.update(version=2)),
    "tcb_info unknown id": _tcb(lambda i: i.update(id="SEV")),
    "tcb_info no levels": _tcb(lambda i: i.update(tcbLevels=[])),
    "tcb_info missing fmspc": _tcb(lambda i: i.pop("fmspc")),
    "tcb_info short fmspc": _tcb(lambda i: i.update(fmspc="00A0671100")),
    "tcb_info bad date": _tcb(lambda i: i.update(issueDate="2025-06-19 10:56:11")),
    "tcb_info date no Z": _tcb(lambda i: i.update(nextUpdate="2025-07-19T10:56:11+00:00")),
    "tcb_info unknown status": _tcb(lambda i: i["tcbLevels"][0].update(tcbStatus="Fine")),
    "tcb_info 15 components": _tcb(lambda i: i["tcbLevels"][0]["tcb"]["sgxtcbcomponents"].pop()),
    "tcb_info svn 256": _tcb(
        lambda i: i["tcbLevels"][0]["tcb"]["sgxtcbcomponents"][0].update(svn=256)
    ),
    "tcb_info bool pcesvn": _tcb(lambda i: i["tcbLevels"][0]["tcb"].update(pcesvn=True)),
    "tcb_info advisories not strings": _tcb(lambda i: i["tcbLevels"][0].update(advisoryIDs=[1])),
    "qe_identity version 1": _qe(lambda q: q.update(version=1)),
    "qe_identity unknown id": _qe(lambda q: q.update(id="QVE")),
    "qe_identity short mrsigner": _qe(lambda q: q.update(mrsigner="00")),
    "qe_identity bad status": _qe(
        lambda q: q["tcbLevels"][0].update(tcbStatus="SWHardeningNeeded")
    ),
    "qe_identity no levels": _qe(lambda q: q.update(tcbLevels=[])),
    "qe_identity isvsvn negative": _qe(lambda q: q["tcbLevels"][0]["tcb"].update(isvsvn=-1)),
}


@pytest.mark.parametrize("source", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_collateral_is_a_collateral_error(source):
    with pytest.raises(CollateralError):
        Collateral.load(source)


def test_missing_file_is_a_collateral_error(tmp_path):
    with pytest.raises(CollateralError, match="cannot read"):
        Collateral.load(tmp_path / "absent.json")
    with pytest.raises(CollateralError, match="cannot read"):
        Collateral.load(str(tmp_path / "absent.json"))


def test_tdx_tcb_info_needs_its_tdx_parts():
    info = json.loads(TDX_DICT["tcb_info"])
    info.pop("tdxModule")
    with pytest.raises(CollateralError, match="tdxModule"):
        parse_tcb_info(json.dumps(info))
    info = json.loads(TDX_DICT["tcb_info"])
    info["tcbLevels"][0]["tcb"].pop("tdxtcbcomponents")
    with pytest.raises(CollateralError, match="tdxtcbcomponents"):
        parse_tcb_info(json.dumps(info))


def test_parsers_accept_the_vectors_text():
    assert parse_tcb_info(TDX_DICT["tcb_info"]).id == "TDX"
    assert parse_qe_identity(TDX_DICT["qe_identity"]).id == "TD_QE"
