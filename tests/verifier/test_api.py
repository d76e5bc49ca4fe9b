"""attestcall.verify(): the same decision as the command, from Python."""

import datetime as dt
import json

import pytest

import attestcall
from attestcall.errors import PolicyError
from attestcall.verifier.policy import Policy
from tests import paths

DATA = paths.DATA
SGX = DATA / "intel" / "sgx_quote_v3.bin"
SGX_COLL = DATA / "intel" / "sgx_quote_v3.collateral.json"
AT = "2025-07-19T10:01:17Z"


@pytest.mark.parametrize(
    "collateral",
    [SGX_COLL, SGX_COLL.read_text(), SGX_COLL.read_bytes(), json.loads(SGX_COLL.read_text())],
    ids=["path", "json-text", "json-bytes", "dict"],
)
def test_collateral_forms(collateral):
    verdict = attestcall.verify(SGX.read_bytes(), collateral=collateral, at=AT,
                                policy={"sgx": {"accept_tcb_status":
                                                ["ConfigurationAndSWHardeningNeeded"]}})
    assert verdict.accepted, verdict.reasons
    assert verdict.technology == "sgx"


@pytest.mark.parametrize("at", [AT, 1752919277, dt.datetime(2025, 7, 19, 10, 1, 17,
                                                            tzinfo=dt.UTC)])
def test_instant_forms(at):
    verdict = attestcall.verify(SGX.read_bytes(), collateral=SGX_COLL, at=at)
    assert verdict.tcb_status == "ConfigurationAndSWHardeningNeeded"


def test_policy_forms_and_errors(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[sgx]\naccept_tcb_status = ["ConfigurationAndSWHardeningNeeded"]\n')
    for policy in (path, path.read_text(), Policy.load(path)):
        assert attestcall.verify(SGX.read_bytes(), collateral=SGX_COLL, at=AT,
                                 policy=policy).accepted
    with pytest.raises(PolicyError):
        attestcall.verify(SGX.read_bytes(), collateral=SGX_COLL, at=AT,
                          policy={"sgx": {"nope": 1}})


def test_unusable_input_raises_dedicated_exceptions():
    with pytest.raises(attestcall.EvidenceError):
        attestcall.verify(b"\0" * 100)
    with pytest.raises(attestcall.EvidenceError):
        attestcall.verify(SGX.read_bytes()[:300], technology="sgx", collateral=SGX_COLL, at=AT)
    with pytest.raises(attestcall.CollateralError):
        attestcall.verify(SGX.read_bytes(), collateral="{not json", at=AT)
    with pytest.raises(attestcall.CollateralError):
        attestcall.verify(SGX.read_bytes(), at=AT)


def test_nonce_must_be_64_bytes_and_equal():
    report_data = SGX.read_bytes()[368:432]
    ok = attestcall.verify(SGX.read_bytes(), collateral=SGX_COLL, at=AT, nonce=report_data,
                           policy={"sgx": {"accept_tcb_status":
                                           ["ConfigurationAndSWHardeningNeeded"]}})
    assert ok.accepted
    bad = attestcall.verify(SGX.read_bytes(), collateral=SGX_COLL, at=AT, nonce=bytes(64))
    assert "the report data does not equal the nonce" in bad.reasons
    from attestcall.errors import UsageError

    with pytest.raises(UsageError):
        attestcall.verify(SGX.read_bytes(), collateral=SGX_COLL, at=AT, nonce=bytes(63))
